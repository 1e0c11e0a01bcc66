import Foundation
import KandyLink
import KandyLinkServer
import Logging
import Synchronization

/// The Kandy.js "User Connect" tutorial, run with the Swift SDK: the same handlers, the same
/// messages, each with a timestamp.
struct Tutorial: Sendable {
    /// Where the tutorial's messages go: standard output, or a test's buffer.
    let log: @Sendable (String) -> Void
    /// Called with the page's state line whenever it changes (interactive mode redraws it).
    var stateChanged: @Sendable (Bool) -> Void = { _ in }

    static let services = ["call", "Presence", "IM"]

    func say(_ message: String) {
        log(Self.timestamp() + " " + message)
    }

    /// The tutorial's event handlers (Step 3), with its resub message fixed: Kandy.js's
    /// `'…' + isFailure ? a : b` always printed the first branch.
    func wire(_ kandy: Kandy) {
        kandy.on(.authChange) { _ in
            say("Credentials " + (kandy.getUserInfo().username != nil ? "set" : "unset"))
        }
        kandy.on(.authError) { event in
            if case .authError(let error) = event { say("Connect error: \(error.message) (\(error.code))") }
        }
        kandy.on(.subscriptionChange) { _ in
            let services = kandy.services.getSubscriptions()
            stateChanged(!services.subscribed.isEmpty)
            say("Subscription state changed.")
            say("Subscribed services: " + services.subscribed.joined(separator: ","))
        }
        kandy.on(.subscriptionResub) { event in
            guard case .subscriptionResub(let resub) = event else { return }
            say(
                resub.isFailure
                    ? "Failed to resubscribe to services: \(resub.error?.message ?? "")" : "Resubscribed to services")
        }
        kandy.on(.subscriptionError) { event in
            if case .subscriptionError(let error) = event {
                say("Subscription error: \(error.message) (\(error.code))")
            }
        }
    }

    /// Login, subscribe with forceLogOut, one refresh, unsubscribe, destroy.
    func run(_ kandy: Kandy, username: String, password: String, resubscribeWithin timeout: Duration) async throws {
        wire(kandy)
        let events = kandy.events
        do {
            try await kandy.setCredentials(username: username, password: password)
            try await kandy.services.subscribe(Self.services, forceLogOut: true)
            let expires = kandy.services.current()?.expires ?? 0
            let floor = Double(kandy.configuration.subscription.minimumRefreshInterval.components.seconds)
            let due = max(floor, Double(expires) / 2)
            say("Waiting for the subscription refresh, due in about \(Int(due.rounded())) s…")
            guard try await Self.firstResubscription(in: events, within: timeout) else {
                throw CommandFailure("no subscription refresh within \(timeout)")
            }
            try await kandy.services.unsubscribe(Self.services)
        } catch {
            await kandy.destroy()
            throw CommandFailure(Self.describe(error))
        }
        await kandy.destroy()
        say("Kandy SDK has been uninitialized.")
    }

    static func firstResubscription(in events: AsyncStream<KandyEvent>, within timeout: Duration) async throws -> Bool {
        try await withThrowingTaskGroup(of: Bool.self) { group in
            group.addTask {
                for await event in events {
                    if case .subscriptionResub(let resub) = event, !resub.isFailure { return true }
                }
                return false
            }
            group.addTask {
                try await Task.sleep(for: timeout)
                return false
            }
            defer { group.cancelAll() }
            return try await group.next() ?? false
        }
    }

    static func describe(_ error: any Error) -> String {
        if let error = error as? KandyError { return "\(error.message) (\(error.code))" }
        return "\(error)"
    }

    static func timestamp(_ date: Date = Date()) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = .current
        let parts = calendar.dateComponents([.hour, .minute, .second, .nanosecond], from: date)
        return String(
            format: "%02d:%02d:%02d.%03d", parts.hour ?? 0, parts.minute ?? 0, parts.second ?? 0,
            (parts.nanosecond ?? 0) / 1_000_000)
    }
}

/// A platform in this process for the demo: a temporary SQLite file, a development certificate,
/// an ephemeral loopback port and a demo user.
struct EmbeddedPlatform: Sendable {
    static let username = "alice@example.com"

    let platform: Platform
    let running: Task<Void, any Error>
    let port: Int
    let directory: URL
    let password: String

    var certificatePath: String { directory.appendingPathComponent(DevelopmentCertificate.chainFileName).path }

    /// `minExpires` short, so the refresh shows within seconds.
    static func start(minExpires: Int = 2) async throws -> EmbeddedPlatform {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "kandy-link-demo-\(UUID().uuidString)")
        var configuration = PlatformConfiguration()
        configuration.port = 0
        configuration.databasePath = directory.appendingPathComponent("demo.sqlite").path
        configuration.minExpires = minExpires
        configuration.passwordCost = 4  // a throwaway user; keep start-up quick
        var logger = Logger(label: "kandy-link.demo")
        logger.logLevel = .error
        let platform = try Platform(configuration: configuration, logger: logger)
        let password = UUID().uuidString
        try await platform.accounts.add(username: username, password: password)
        let running = Task { try await platform.run() }
        let port = try await platform.listeningPort()
        return EmbeddedPlatform(
            platform: platform, running: running, port: port, directory: directory, password: password)
    }

    func stop() async {
        await platform.shutdown()
        _ = try? await running.value
        try? FileManager.default.removeItem(at: directory)
    }
}

/// Where the demo connects: a URL of a platform, parsed.
struct PlatformAddress: Equatable, Sendable {
    var scheme: String
    var host: String
    var port: Int

    init(_ text: String) throws {
        guard let url = URL(string: text), let scheme = url.scheme?.lowercased(), ["https", "http"].contains(scheme),
            let host = url.host, !host.isEmpty
        else {
            throw CommandFailure("--server must be a URL such as https://127.0.0.1:8443, not \"\(text)\".")
        }
        self.scheme = scheme
        self.host = host
        self.port = url.port ?? (scheme == "https" ? 443 : 80)
    }

    func configuration(expires: Int, trust: [String], minimumRefresh: Duration = .seconds(30)) -> KandyConfiguration {
        KandyConfiguration(
            authentication: .init(server: .init(base: host, protocol: scheme, port: port)),
            subscription: .init(
                websocket: .init(server: host, protocol: scheme == "https" ? "wss" : "ws", port: port),
                expires: expires, minimumRefreshInterval: minimumRefresh),
            tls: .init(trustedCertificateFiles: trust))
    }
}
