import Foundation
import KandyLinkServer
import Logging
import Synchronization

/// A real platform for tests: an ephemeral loopback port with its development certificate, a
/// database in a fresh directory, and a manual wall clock. It restarts in place on the same
/// database, as a process restart would.
public final class PlatformFixture: Sendable {
    private struct Running: Sendable {
        var platform: Platform
        var port: Int
        var task: Task<Void, any Error>?
    }

    public static let alice = "alice@example.com"
    public static let bob = "bob@example.com"
    public static let password = "pä ss word"

    public let clock: ManualPlatformClock
    public let directory: URL
    private let configure: @Sendable (inout PlatformConfiguration) -> Void
    private let running: Mutex<Running>

    public var platform: Platform { running.withLock { $0.platform } }
    public var port: Int { running.withLock { $0.port } }
    public var databasePath: String { directory.appendingPathComponent("platform.sqlite").path }
    public var certificatePath: String {
        directory.appendingPathComponent(DevelopmentCertificate.chainFileName).path
    }

    public init(
        users: [String] = [alice, bob], configure: @escaping @Sendable (inout PlatformConfiguration) -> Void = { _ in }
    ) async throws {
        clock = ManualPlatformClock()
        directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "kandy-link-tests-\(UUID().uuidString)")
        self.configure = configure
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let (platform, task, port) = try await Self.launch(directory: directory, clock: clock, configure: configure)
        running = Mutex(Running(platform: platform, port: port, task: task))
        for user in users {
            try await platform.accounts.add(username: user, password: Self.password)
        }
    }

    private static func launch(
        directory: URL, clock: ManualPlatformClock, configure: (inout PlatformConfiguration) -> Void
    ) async throws -> (Platform, Task<Void, any Error>, Int) {
        var configuration = PlatformConfiguration()
        configuration.port = 0
        configuration.database = directory.appendingPathComponent("platform.sqlite").path
        configuration.sweepInterval = nil  // tests sweep by hand, after moving the clock
        configuration.passwordCost = 4
        configure(&configuration)
        if configuration.transportSecurity == .developmentCertificate, PostgresStore.isURL(configuration.database) {
            // Kept beside a SQLite file, which a PostgreSQL node has not: keep it in the directory.
            let files = try DevelopmentCertificate.loadOrCreate(in: directory)
            configuration.transportSecurity = .certificate(chainPath: files.chainPath, keyPath: files.keyPath)
        }
        var logger = Logger(label: "test-platform")
        logger.logLevel = .warning
        let platform = try await Platform(configuration: configuration, clock: clock, logger: logger)
        let task = Task { try await platform.run() }
        return (platform, task, try await platform.listeningPort())
    }

    /// Graceful shutdown; the database stays.
    public func stopPlatform() async throws {
        let (platform, task) = running.withLock { running in
            defer { running.task = nil }
            return (running.platform, running.task)
        }
        guard let task else { return }
        await platform.shutdown()
        try await task.value
    }

    /// A new platform on the same database and clock, on a new port unless `samePort`.
    public func restart(samePort: Bool = false) async throws {
        try await restart(on: samePort ? port : 0)
    }

    /// A new platform on the same database and clock, on `port` (0: any free one).
    public func restart(on port: Int) async throws {
        try await stopPlatform()
        let configure = self.configure
        let (platform, task, port) = try await Self.launch(directory: directory, clock: clock) { configuration in
            configure(&configuration)
            configuration.port = port
        }
        running.withLock { $0 = Running(platform: platform, port: port, task: task) }
    }

    /// Stops the platform and removes its files.
    public func stop() async throws {
        try await stopPlatform()
        try? FileManager.default.removeItem(at: directory)
    }
}
