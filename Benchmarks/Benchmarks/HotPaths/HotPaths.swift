import AsyncHTTPClient
import Benchmark
import Foundation
import KandyLinkProtocol
import KandyLinkServer
import Logging
import NIOCore
import NIOHTTP1
import Synchronization
import WSClient

/// The platform's hot paths, in allocations and time per operation: what a notification costs to
/// encode, and to restamp with a fresh eventId, what a token costs to check, what a subscription
/// costs to make and end, and what one presence change costs to reach a hundred open channels.
/// The last two run a real platform on loopback (plain HTTP, so that TLS does not hide the
/// platform's own cost); their allocation counts include the client side, which does the same
/// work on every run.
let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .mallocCountTotal, .throughput], maxDuration: .seconds(3), maxIterations: 100_000)

    Benchmark("Notification encode: instant message") { benchmark in
        for index in benchmark.scaledIterations {
            let message = NotificationMessage.instantMessage(
                eventId: String(index), from: "alice@example.com", text: "Lunch at noon?", time: 1_800_000_000_000)
            blackHole(try WireJSON.text(NotificationDocument(notificationMessage: message)))
        }
    }

    Benchmark("Notification restamp: instant message") { benchmark in
        let message = NotificationMessage.instantMessage(
            eventId: "1", from: "alice@example.com", text: "Lunch at noon?", time: 1_800_000_000_000)
        let text = try WireJSON.text(NotificationDocument(notificationMessage: message))
        benchmark.startMeasurement()
        for index in benchmark.scaledIterations {
            blackHole(NotificationDocument.restamped(text, eventID: String(index)))
        }
    }

    Benchmark("Token check") { benchmark in
        let issuer = TokenIssuer(secret: Array(repeating: 7, count: 32))
        let token = issuer.issue(for: "alice@example.com", expiresAt: Date() + 3600)
        let now = Date()
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            blackHole(issuer.verify(token, now: now))
        }
    }

    Benchmark("Subscribe and unsubscribe over REST") { benchmark in
        let rig = try Rig.current()
        let user = rig.users[0]
        for _ in benchmark.scaledIterations {
            let session = try await rig.subscribe(user, services: ["call", "Presence", "IM"])
            try await rig.request(.DELETE, session.subscription, as: user)
        }
    } setup: {
        try await Rig.start(users: 1)
    } teardown: {
        await Rig.stop()
    }

    Benchmark("Presence change fanned out to 100 channels") { benchmark in
        let rig = try Rig.current()
        let publisher = rig.users[100]
        for index in benchmark.scaledIterations {
            let arrived = rig.arrivals.expect(100)
            try await rig.request(
                .POST, LinkPath.presence(user: publisher.name), as: publisher,
                body: PresenceRequestDocument(
                    presenceRequest: .init(status: .open, activity: index.isMultiple(of: 2) ? .busy : .away)))
            await arrived()
        }
    } setup: {
        let rig = try await Rig.start(users: 101)
        try await rig.watch(rig.users[100].name, from: Array(rig.users.prefix(100)))
    } teardown: {
        await Rig.stop()
    }
}

/// An embedded platform with users and tokens, an HTTP client, and channels counting frames.
final class Rig: Sendable {
    struct User: Sendable {
        var name: String
        var token: String
    }

    let port: Int
    let users: [User]
    let arrivals = Arrivals()
    private let platform: Platform
    private let running: Task<Void, any Error>
    private let http: HTTPClient
    private let channels = Mutex<[Task<Void, any Error>]>([])
    private let directory: URL

    private static let shared = Mutex<Rig?>(nil)

    static func current() throws -> Rig {
        guard let rig = shared.withLock({ $0 }) else { throw CancellationError() }
        return rig
    }

    @discardableResult
    static func start(users count: Int) async throws -> Rig {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("kandy-link-hot-paths-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var configuration = PlatformConfiguration()
        configuration.database = directory.appendingPathComponent("platform.sqlite").path
        configuration.transportSecurity = .plaintext
        configuration.port = 0
        configuration.maxSessionsPerUser = 10
        var logger = Logger(label: "hot-paths")
        logger.logLevel = .error
        let platform = try await Platform(configuration: configuration, logger: logger)
        let names = (0..<count).map { "user-\($0)" }
        let store = try await openStore(configuration.database, logger: logger)
        let tokens = try await withCleanup {
            let accounts = try await Accounts(store: store, configuration: configuration)
            try await accounts.addMissing(usernames: names, password: UUID().uuidString)
            return try await accounts.tokens(for: names)
        } cleanup: {
            await store.close()
        }
        let running = Task { try await platform.run() }
        let port = try await platform.listeningPort()
        let rig = Rig(
            port: port, users: zip(names, tokens).map { User(name: $0, token: $1) }, platform: platform,
            running: running, directory: directory)
        shared.withLock { $0 = rig }
        return rig
    }

    static func stop() async {
        guard
            let rig = shared.withLock({ rig in
                defer { rig = nil }; return rig
            })
        else { return }
        for task in rig.channels.withLock({ $0 }) { task.cancel() }
        try? await rig.http.shutdown()
        await rig.platform.shutdown()
        _ = await rig.running.result
        try? FileManager.default.removeItem(at: rig.directory)
    }

    private init(port: Int, users: [User], platform: Platform, running: Task<Void, any Error>, directory: URL) {
        self.port = port
        self.users = users
        self.platform = platform
        self.running = running
        self.directory = directory
        http = HTTPClient(eventLoopGroupProvider: .singleton)
    }

    @discardableResult
    func request(_ method: HTTPMethod, _ path: String, as user: User, body: (some Encodable)? = String?.none)
        async throws -> ByteBuffer
    {
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)")
        request.method = method
        request.headers.add(name: "Authorization", value: "Bearer \(user.token)")
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: try WireJSON.encode(body)))
        }
        let response = try await http.execute(request, timeout: .seconds(10))
        let bytes = try await response.body.collect(upTo: 1 << 20)
        guard (200..<300).contains(response.status.code) else {
            throw Failure(description: "\(method) \(path): \(response.status) \(String(buffer: bytes))")
        }
        return bytes
    }

    func subscribe(_ user: User, services: [ServiceName]) async throws -> (subscription: String, channel: String) {
        let answer = try await request(
            .POST, LinkPath.subscriptions(user: user.name), as: user,
            body: SubscribeRequestDocument(subscribeRequest: .init(expires: 3600, service: services)))
        let document = try WireJSON.decode(SubscribeResponseDocument.self, from: Data(buffer: answer))
        guard let subscription = document.subscribeResponse.subscription,
            let channel = document.subscribeResponse.subscriptionParams?.notificationChannel
        else { throw Failure(description: "no subscription in \(String(buffer: answer))") }
        return (subscription, channel)
    }

    /// Subscribes `watchers` to Presence, makes them watch `presentity`, and opens their channels,
    /// whose text frames count as arrivals.
    func watch(_ presentity: String, from watchers: [User]) async throws {
        for watcher in watchers {
            let (_, channel) = try await subscribe(watcher, services: ["Presence"])
            try await request(
                .POST, LinkPath.presenceWatcher(user: watcher.name), as: watcher,
                body: PresenceWatcherRequestDocument(
                    presenceWatcherRequest: .init(userList: [presentity], action: .watch)))
            let url = "ws://127.0.0.1:\(port)\(channel)"
            let arrivals = self.arrivals
            let task = Task {
                var logger = Logger(label: "hot-paths.channel")
                logger.logLevel = .error
                _ = try await WebSocketClient.connect(url: url, logger: logger) { inbound, _, _ in
                    for try await frame in inbound where frame.opcode == .text {
                        arrivals.arrived()
                    }
                }
            }
            channels.withLock { $0.append(task) }
        }
        // Each watcher's channel carries the presentity's current presence first.
        await arrivals.expect(watchers.count)()
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }
}

/// Frames arriving on the rig's channels, and those waiting for a number of them.
final class Arrivals: Sendable {
    private struct State {
        var count = 0
        var waiting: [(target: Int, continuation: CheckedContinuation<Void, Never>)] = []
        var promised = 0
    }

    private let state = Mutex(State())

    /// Returns a wait for `count` more frames than were promised before.
    func expect(_ count: Int) -> @Sendable () async -> Void {
        let target = state.withLock { state in
            state.promised += count
            return state.promised
        }
        return { [self] in
            await withCheckedContinuation { continuation in
                let ready = state.withLock { state in
                    if state.count >= target { return true }
                    state.waiting.append((target, continuation))
                    return false
                }
                if ready { continuation.resume() }
            }
        }
    }

    func arrived() {
        let ready = state.withLock { state in
            state.count += 1
            let count = state.count
            let ready = state.waiting.filter { $0.target <= count }.map(\.continuation)
            state.waiting.removeAll { $0.target <= count }
            return ready
        }
        for continuation in ready { continuation.resume() }
    }
}
