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
        kandy.on(.callStateChange) { event in
            guard case .callStateChange(let change) = event else { return }
            let why = change.transition?.reasonText.map { " (\($0))" } ?? change.error.map { " (\($0.message))" } ?? ""
            say("Call state: \(change.previous.rawValue) → \(change.state.rawValue)\(why)")
        }
        kandy.on(.subscriptionError) { event in
            if case .subscriptionError(let error) = event {
                say("Subscription error: \(error.message) (\(error.code))")
            }
        }
    }

    /// Login, subscribe with forceLogOut, one refresh, unsubscribe, destroy. With a `peer`, the
    /// peer logs in first and watches this user's presence; this user then publishes a presence
    /// and sends the peer a message, and the peer sees this user go offline at the end.
    func run(
        _ kandy: Kandy, username: String, password: String, resubscribeWithin timeout: Duration,
        peer: Peer? = nil
    ) async throws {
        wire(kandy)
        let events = kandy.events
        do {
            if let peer { try await peer.join(watching: username, tutorial: self) }
            try await kandy.setCredentials(username: username, password: password)
            try await kandy.services.subscribe(Self.services, forceLogOut: true)
            if let peer {
                try await peer.exchange(with: kandy, as: username, tutorial: self)
                try await peer.call(from: kandy, tutorial: self)
            }
            let expires = kandy.services.current()?.expires ?? 0
            let floor = Double(kandy.configuration.subscription.minimumRefreshInterval.components.seconds)
            let due = max(floor, Double(expires) / 2)
            say("Waiting for the subscription refresh, due in about \(Int(due.rounded())) s…")
            guard try await Self.firstResubscription(in: events, within: timeout) else {
                throw CommandFailure("no subscription refresh within \(timeout)")
            }
            let offline = peer.map { $0.kandy.events }
            try await kandy.services.unsubscribe(Self.services)
            if let peer, let offline {
                try await peer.await(offline, "\(username) go offline") {
                    if case .presenceChange(let presence) = $0 {
                        presence.userId == username && presence.status == .closed
                    } else {
                        false
                    }
                }
            }
        } catch {
            await kandy.destroy()
            await peer?.leave()
            throw CommandFailure(Self.describe(error))
        }
        await kandy.destroy()
        say("Kandy SDK has been uninitialized.")
        await peer?.leave()
    }

    /// A second user of the demo: watches the tutorial user and receives their message.
    struct Peer: Sendable {
        let kandy: Kandy
        let username: String
        let password: String
        static let note = "Trying the Swift SDK"
        static let message = "Hello from the tutorial 👋 — ¡hola! こんにちは"

        /// Logs in, subscribes, and starts watching `user`, printing what it sees.
        func join(watching user: String, tutorial: Tutorial) async throws {
            kandy.on(.presenceChange) { event in
                guard case .presenceChange(let presence) = event else { return }
                tutorial.say("\(username) sees \(presence.userId): \(Tutorial.describe(presence))")
            }
            kandy.on(.messagesChange) { event in
                guard case .messagesChange(let message) = event, message.direction == .incoming else { return }
                tutorial.say("\(username) received message \(message.id) from \(message.sender): \(message.text)")
            }
            try await kandy.setCredentials(username: username, password: password)
            try await kandy.services.subscribe(Tutorial.services, forceLogOut: true)
            tutorial.say("\(username) subscribed and watches \(user)'s presence")
            let current = kandy.events
            try await kandy.presence.subscribe([user])
            try await self.await(current, "\(user)'s presence") { $0.name == .presenceChange }
        }

        /// `user` publishes a presence and sends a message; both are awaited at the peer.
        func exchange(with user: Kandy, as username: String, tutorial: Tutorial) async throws {
            let seen = kandy.events
            tutorial.say("Publishing presence: open, active — “\(Self.note)”")
            try await user.presence.update(.open, activity: .active, note: Self.note)
            try await self.await(seen, "\(username)'s new presence") {
                if case .presenceChange(let presence) = $0 {
                    presence.userId == username && presence.status == .open
                } else {
                    false
                }
            }
            let received = kandy.events
            tutorial.say("Sending \(self.username) a message")
            try await user.messages.send(to: self.username, text: Self.message)
            try await self.await(received, "the message") { $0.name == .messagesChange }
        }

        /// `user` calls the peer, who answers; `user` holds and unholds; the peer hangs up. The
        /// demo has no media engine: SDP is exchanged and no media flows.
        func call(from user: Kandy, tutorial: Tutorial) async throws {
            tutorial.say(
                "Calling \(username) (signalling only: the demo carries no media; kandy-link call does)")
            let rings = kandy.events
            let callerEvents = user.events
            let call = try await user.call.make(to: username, media: CallMedia(audio: true, video: true))
            try await self.await(rings, "the call") { $0.name == .callReceive }
            guard let incoming = kandy.call.getAll().last(where: { $0.direction == .incoming }) else {
                throw CommandFailure("\(username) has no incoming call")
            }
            tutorial.say("\(username)'s phone rings: \(incoming.remoteParticipant.displayNumber) calls; answering")
            try await kandy.call.answer(incoming.id)
            try await self.await(callerEvents, "the call connect") { event in
                if case .callStateChange(let change) = event { change.state == .connected } else { false }
            }
            try await user.call.hold(call.id)
            try await user.call.unhold(call.id)
            let ended = user.events
            tutorial.say("\(username) hangs up")
            try await kandy.call.end(incoming.id)
            try await self.await(ended, "the call end") { event in
                if case .callStateChange(let change) = event { change.state == .ended } else { false }
            }
        }

        func leave() async {
            try? await kandy.services.unsubscribe(Tutorial.services)
            await kandy.destroy()
        }

        /// Waits for the first event in `events` that matches. It normally comes within
        /// milliseconds; the bound only turns a platform that never sends it into an error.
        func await(
            _ events: AsyncStream<KandyEvent>, _ what: String, _ matches: @escaping @Sendable (KandyEvent) -> Bool
        ) async throws {
            guard try await Tutorial.first(in: events, within: .seconds(30), where: matches) else {
                throw CommandFailure("\(username) did not see \(what) within 30 s")
            }
        }
    }

    static func describe(_ presence: UserPresence) -> String {
        "\(presence.status), \(presence.activity)" + (presence.note.map { " — “\($0)”" } ?? "")
    }

    static func firstResubscription(in events: AsyncStream<KandyEvent>, within timeout: Duration) async throws -> Bool {
        try await first(in: events, within: timeout) {
            if case .subscriptionResub(let resub) = $0 { !resub.isFailure } else { false }
        }
    }

    /// Whether an event matching `matches` arrives within `timeout`.
    static func first(
        in events: AsyncStream<KandyEvent>, within timeout: Duration,
        where matches: @escaping @Sendable (KandyEvent) -> Bool
    ) async throws -> Bool {
        try await withThrowingTaskGroup(of: Bool.self) { group in
            group.addTask {
                for await event in events where matches(event) { return true }
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
    /// The second user: watches alice and receives her message.
    static let peerUsername = "bob@example.com"

    let platform: Platform
    let running: Task<Void, any Error>
    let port: Int
    let directory: URL
    let password: String

    /// Beside the SQLite file; in the working directory with PostgreSQL.
    var certificatePath: String {
        platform.configuration.dataDirectory.appendingPathComponent(DevelopmentCertificate.chainFileName).path
    }

    /// `minExpires` short, so the refresh shows within seconds.
    /// `database`: a PostgreSQL URL to use instead of a new SQLite file (its users stay).
    static func start(minExpires: Int = 2, maxQueuedNotifications: Int? = nil, database: String? = nil) async throws
        -> EmbeddedPlatform
    {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "kandy-link-demo-\(UUID().uuidString)")
        var configuration = PlatformConfiguration()
        configuration.port = 0
        configuration.database = database ?? directory.appendingPathComponent("demo.sqlite").path
        configuration.minExpires = minExpires
        if let maxQueuedNotifications {
            configuration.maxQueuedNotifications = maxQueuedNotifications
            configuration.maxQueuedBytes = max(configuration.maxQueuedBytes, maxQueuedNotifications * 512)
        }
        configuration.passwordCost = 4  // a throwaway user; keep start-up quick
        var logger = Logger(label: "kandy-link.demo")
        logger.logLevel = .error
        let platform = try await Platform(configuration: configuration, logger: logger)
        let password = UUID().uuidString
        for user in [username, peerUsername] {
            // A given database may hold them from an earlier run; a new file holds nobody.
            if database != nil { try? await platform.accounts.remove(username: user) }
            try await platform.accounts.add(username: user, password: password)
        }
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

    /// Starts a platform for `body` and stops it afterwards (its files go too), whether `body`
    /// returns or throws.
    static func with<T>(
        minExpires: Int = 2, maxQueuedNotifications: Int? = nil, database: String? = nil,
        _ body: (EmbeddedPlatform) async throws -> T
    ) async throws -> T {
        let embedded = try await start(
            minExpires: minExpires, maxQueuedNotifications: maxQueuedNotifications, database: database)
        return try await withCleanup {
            try await body(embedded)
        } cleanup: {
            await embedded.stop()
        }
    }
}

extension Kandy {
    /// Makes an instance for `body` and destroys it afterwards, whether `body` returns or throws.
    static func using<T>(
        _ configuration: KandyConfiguration, mediaEngine: (any MediaEngine)? = nil,
        _ body: (Kandy) async throws -> T
    ) async throws -> T {
        let kandy = try Kandy.create(configuration, mediaEngine: mediaEngine)
        return try await withCleanup {
            try await body(kandy)
        } cleanup: {
            await kandy.destroy()
        }
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
