import Foundation
import KandyLinkProtocol
import NIOPosix
import Testing

@testable import KandyLinkServer

@Suite(.timeLimit(.minutes(1))) struct TurnCredentialTests {
    let now = Date(timeIntervalSince1970: 1_800_000_000)

    /// Vectors computed independently: base64(HMAC-SHA1(secret, username)) with Python's hmac.
    @Test(arguments: [
        ("s3cret", "alice@example.com", 86400.0, "1800086400:alice@example.com", "7Lpl9/m/yB93MSi7oqkGarjJ4Vs="),
        ("another secret", "bob smith", 60.0, "1800000060:bob smith", "MoHoAKDBHgFCP3BVQRYZJqE55eA="),
    ])
    func theTURNRESTScheme(secret: String, user: String, lifetime: Double, username: String, password: String) {
        let credentials = TurnCredentialIssuer(secret: secret, lifetime: lifetime).credentials(for: user, now: now)
        #expect(credentials == TurnCredentials(username: username, password: password))
    }

    @Test func lifetimeIsBounded() {
        #expect(TurnCredentialIssuer(secret: "s", lifetime: 1).lifetime == 60)
        #expect(TurnCredentialIssuer(secret: "s", lifetime: 1e9).lifetime == 604_800)
        #expect(TurnCredentialIssuer(secret: "s", lifetime: 3600).lifetime == 3600)
    }

    @Test func subscribeAndUpdateCarryCredentialsWhenASecretIsSet() async throws {
        try await TestPlatform.with(configure: {
            $0.turn = .init(secret: "s3cret", uris: ["turns:turn.example.com:443"])
        }) {
            test in
            let subscribed = try await test.subscribe()
            let expected = TurnCredentials(
                username: "1800086400:alice@example.com", password: "7Lpl9/m/yB93MSi7oqkGarjJ4Vs=")
            #expect(subscribed.subscriptionParams?.turnCredentials == expected)
            test.clock.advance(by: 100)
            let updated = try await test.request(
                .PUT, try #require(subscribed.subscription), body: TestPlatform.refreshBody(services: ["call"]))
            let fresh = try #require(updated.subscribeResponse?.subscriptionParams?.turnCredentials)
            #expect(fresh.username == "1800086500:alice@example.com")
            #expect(fresh != expected)
        }
    }

    @Test func withoutASecretNothingIsSent() async throws {
        try await TestPlatform.with { test in
            let subscribed = try await test.subscribe()
            #expect(subscribed.subscriptionParams?.turnCredentials == nil)
        }
    }

    /// The real coturn, with `use-auth-secret`, accepts an allocation with the credentials of a
    /// subscribe, and refuses a tampered password and an expired username.
    @Test(.enabled(if: Coturn.shouldRun, "coturn is not installed (apt-get install coturn)"))
    func coturnAcceptsThePlatformsCredentials() async throws {
        let secret = "kandy-link-\(UUID().uuidString)"
        let coturn = try await Coturn.start(secret: secret)
        do {
            try await Self.tryCredentials(coturn, secret: secret)
        } catch {
            await coturn.stop()
            throw error
        }
        await coturn.stop()
    }

    static func tryCredentials(_ coturn: Coturn, secret: String) async throws {
        try await TestPlatform.with(configure: { $0.turn = .init(secret: secret) }) { test in
            // The platform's clock runs ahead of the real one here, so its credentials are current
            // for coturn too.
            let issued = try #require(try await test.subscribe().subscriptionParams?.turnCredentials)
            #expect(try await coturn.allocate(username: issued.username, password: issued.password))

            let tampered = String(issued.password.dropFirst()) + "A"
            #expect(try await !coturn.allocate(username: issued.username, password: tampered))

            let expired = TurnCredentialIssuer(secret: secret, lifetime: 60)
                .credentials(for: TestPlatform.alice, now: Date() - 3600)
            #expect(try await !coturn.allocate(username: expired.username, password: expired.password))

            let otherSecret = TurnCredentialIssuer(secret: "not the secret", lifetime: 3600)
                .credentials(for: TestPlatform.alice, now: Date())
            #expect(try await !coturn.allocate(username: otherSecret.username, password: otherSecret.password))
        }
    }
}

/// A coturn `turnserver` on loopback with `--use-auth-secret`, and `turnutils_uclient` to try
/// an allocation against it. Waiting for their output and exits blocks a thread, so it happens on
/// NIO's thread pool, never on the tests' cooperative threads.
struct Coturn: Sendable {
    static let server = "/usr/bin/turnserver"
    static let client = "/usr/bin/turnutils_uclient"
    /// CI sets KANDY_LINK_REQUIRE_COTURN=1, so a missing coturn fails there instead of skipping.
    static var shouldRun: Bool {
        FileManager.default.isExecutableFile(atPath: server)
            || ProcessInfo.processInfo.environment["KANDY_LINK_REQUIRE_COTURN"] == "1"
    }

    let process: Process
    let port: Int
    let directory: URL

    static func start(secret: String) async throws -> Coturn {
        try await NIOThreadPool.singleton.runIfActive { try startBlocking(secret: secret) }
    }

    private static func startBlocking(secret: String) throws -> Coturn {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("coturn-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let config = directory.appendingPathComponent("turnserver.conf")
        try "".write(to: config, atomically: true, encoding: .utf8)
        let port = Int.random(in: 40_000...49_000)
        let process = Process()
        // Line-buffered, so its start-up log reaches the pipe as it happens.
        process.executableURL = URL(fileURLWithPath: "/usr/bin/stdbuf")
        process.arguments = [
            "-oL", server, "-c", config.path, "--use-auth-secret", "--static-auth-secret=\(secret)",
            "--realm=kandy.test",
            "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1", "--listening-port=\(port)",
            "--min-port=49200", "--max-port=49400", "--allow-loopback-peers", "--no-tls", "--no-dtls", "--no-cli",
            "--log-file=stdout", "--simple-log", "--pidfile=\(directory.path)/turnserver.pid",
            "--userdb=\(directory.path)/turndb.sqlite",
        ]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        // Ready once its last start-up step, the user database, is done.
        var seen = ""
        while !seen.contains("DB connection success") {
            let chunk = output.fileHandleForReading.availableData  // blocks until output or exit
            if chunk.isEmpty { break }
            seen += String(decoding: chunk, as: UTF8.self)
        }
        guard process.isRunning else { throw TestFailure("turnserver did not start:\n\(seen)") }
        // Keep draining its log, or it blocks writing once the pipe is full and cannot stop.
        output.drain()
        return Coturn(process: process, port: port, directory: directory)
    }

    /// One allocation over UDP; true when the server granted it.
    func allocate(username: String, password: String) async throws -> Bool {
        try await NIOThreadPool.singleton.runIfActive { try allocateBlocking(username: username, password: password) }
    }

    private func allocateBlocking(username: String, password: String) throws -> Bool {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.client)
        process.arguments = [
            "-y", "-n", "1", "-m", "1", "-u", username, "-w", password, "-p", String(port), "127.0.0.1",
        ]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        // turnutils_uclient has no time limit of its own, and once waited on coturn for good.
        let limit = MultiThreadedEventLoopGroup.singleton.any().scheduleTask(in: .seconds(20)) { process.terminate() }
        process.waitUntilExit()
        limit.cancel()
        guard process.terminationReason == .exit else { throw TestFailure("turnutils_uclient did not finish in 20 s") }
        return process.terminationStatus == 0
    }

    func stop() async {
        // turnserver lingers on SIGTERM; it holds nothing worth a clean shutdown here.
        kill(process.processIdentifier, SIGKILL)
        try? await NIOThreadPool.singleton.runIfActive { process.waitUntilExit() }
        try? FileManager.default.removeItem(at: directory)
    }
}
