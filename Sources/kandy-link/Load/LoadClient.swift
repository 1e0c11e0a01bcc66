import Foundation
import KandyLinkProtocol
import KandyLinkServer
import NIOCore
import NIOPosix
import NIOSSL
import Synchronization

/// What a load run needs to reach the platform: its nodes, how to trust them, and the users to
/// log in as. Written to a file by the coordinating process and read by its workers.
struct LoadPlan: Codable, Sendable {
    struct Node: Codable, Sendable {
        var host: String
        var port: Int
    }

    struct User: Codable, Sendable {
        var name: String
        var token: String
    }

    var nodes: [Node]
    var secure: Bool
    /// PEM file to trust for the nodes' certificate.
    var trust: String?
    var users: [User]

    func write(to path: String) throws {
        try JSONEncoder().encode(self).write(to: URL(fileURLWithPath: path))
    }

    static func read(from path: String) throws -> LoadPlan {
        try JSONDecoder().decode(LoadPlan.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
    }
}

/// The load generator's side of the protocol: sessions over ``WireConnection``s, on a few event
/// loops, from source addresses spread over 127.0.0.2–127.0.0.201 so that a hundred thousand
/// connections to one port do not run out of ephemeral ports.
final class LoadClient: Sendable {
    let plan: LoadPlan
    let group: MultiThreadedEventLoopGroup
    private let tls: NIOSSLContext?
    private let addresses: [SocketAddress]
    private let next = Atomic(0)
    static let sourceAddresses = 200

    init(plan: LoadPlan, threads: Int) throws {
        self.plan = plan
        group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
        if plan.secure {
            var configuration = TLSConfiguration.makeClientConfiguration()
            if let trust = plan.trust {
                configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(trust))
            }
            tls = try NIOSSLContext(configuration: configuration)
        } else {
            tls = nil
        }
        addresses = try plan.nodes.map { try SocketAddress(ipAddress: $0.host, port: $0.port) }
    }

    func shutdown() async {
        try? await group.shutdownGracefully()
    }

    /// A client for `body` in a process allowed all the sockets it may hold, shut down afterwards.
    static func using(_ plan: LoadPlan, threads: Int, _ body: (LoadClient) async throws -> Void) async throws {
        ProcessReading.raiseOpenFilesLimit()
        let client = try LoadClient(plan: plan, threads: threads)
        try await withCleanup {
            try await body(client)
        } cleanup: {
            await client.shutdown()
        }
    }

    /// A new connection to node `node`, from the next source address.
    func connect(node: Int) async throws -> WireConnection {
        let index = next.add(1, ordering: .relaxed).oldValue
        let target = addresses[node % addresses.count]
        let source =
            target.ipAddress == "127.0.0.1"
            ? try SocketAddress(ipAddress: "127.0.0.\(2 + index % Self.sourceAddresses)", port: 0) : nil
        let name = plan.nodes[node % plan.nodes.count]
        return try await WireConnection.connect(
            to: target, from: source, tls: tls, serverName: tls == nil ? nil : "localhost",
            host: "\(name.host):\(name.port)", on: group.next())
    }

    struct Session: Sendable {
        var subscription: String
        var channel: String
    }

    /// POSTs a subscription for `user` on `http`.
    func subscribe(_ user: LoadPlan.User, services: [ServiceName], over http: WireConnection) async throws -> Session {
        let body = try await post(
            SubscribeRequestDocument(subscribeRequest: .init(expires: 3600, service: services, forceLogOut: .true)),
            to: LinkPath.subscriptions(user: user.name), as: user, over: http)
        let answer = try WireJSON.decode(SubscribeResponseDocument.self, from: Data(buffer: body))
        guard let subscription = answer.subscribeResponse.subscription,
            let channel = answer.subscribeResponse.subscriptionParams?.notificationChannel
        else { throw WireConnection.Failure.malformed("no subscription or channel in the answer") }
        return Session(subscription: subscription, channel: channel)
    }

    /// DELETEs a subscription.
    func unsubscribe(_ user: LoadPlan.User, _ session: Session, over http: WireConnection) async throws {
        try await request("DELETE", session.subscription, as: user, over: http)
    }

    /// POSTs `document` to `path` as `user`; returns the answer's body.
    @discardableResult
    func post(_ document: some Encodable, to path: String, as user: LoadPlan.User, over http: WireConnection)
        async throws -> ByteBuffer
    {
        try await request("POST", path, as: user, body: ByteBuffer(bytes: try WireJSON.encode(document)), over: http)
    }

    /// One request as `user` (a bearer token); anything but a 2xx answer is a failure.
    @discardableResult
    private func request(
        _ method: String, _ path: String, as user: LoadPlan.User, body: ByteBuffer? = nil, over http: WireConnection
    ) async throws -> ByteBuffer {
        let response = try await http.request(
            method, path, headers: [("Authorization", "Bearer \(user.token)")], body: body)
        guard (200..<300).contains(response.status) else {
            throw WireConnection.Failure.status(response.status, String(buffer: response.body))
        }
        return response.body
    }

    /// The protocol keepalive (spec §4.3), sent by every idle channel every 30 s.
    static let keepalive = KeepaliveMessage.text
}

/// Keep-alive HTTP connections shared by many sessions, one request at a time on each; a
/// connection that fails is replaced.
final class ConnectionPool: Sendable {
    private struct State {
        var idle: [WireConnection] = []
        var open = 0
        var waiters: [CheckedContinuation<WireConnection?, Never>] = []
    }

    private let state = Mutex(State())
    private let size: Int
    private let make: @Sendable () async throws -> WireConnection

    init(size: Int, make: @escaping @Sendable () async throws -> WireConnection) {
        self.size = size
        self.make = make
    }

    /// Runs `body` on a pooled connection; a failed connection is closed and not reused.
    func with<T: Sendable>(_ body: (WireConnection) async throws -> T) async throws -> T {
        let connection = try await borrow()
        do {
            let result = try await body(connection)
            giveBack(connection)
            return result
        } catch {
            await connection.close()
            giveBack(nil)
            throw error
        }
    }

    private func borrow() async throws -> WireConnection {
        enum Next {
            case use(WireConnection)
            case open
            case wait
        }
        let next = state.withLock { state -> Next in
            if let connection = state.idle.popLast() { return .use(connection) }
            if state.open < size {
                state.open += 1
                return .open
            }
            return .wait
        }
        switch next {
        case .use(let connection): return connection
        case .open:
            do { return try await make() } catch {
                giveBack(nil)
                throw error
            }
        case .wait:
            let handed = await withCheckedContinuation { continuation in
                state.withLock { $0.waiters.append(continuation) }
            }
            if let handed { return handed }
            return try await borrow()
        }
    }

    /// Returns a connection, or a slot when `connection` is nil (it failed).
    private func giveBack(_ connection: WireConnection?) {
        let waiter = state.withLock { state -> CheckedContinuation<WireConnection?, Never>? in
            if connection == nil { state.open -= 1 }
            if !state.waiters.isEmpty { return state.waiters.removeFirst() }
            if let connection { state.idle.append(connection) }
            return nil
        }
        waiter?.resume(returning: connection)
    }
}

/// Starts work at a steady rate: the n-th start is due n/rate seconds after the first.
struct Pacer {
    let rate: Double
    let clock = ContinuousClock()
    let start: ContinuousClock.Instant

    init(rate: Double) {
        self.rate = rate
        start = clock.now
    }

    func wait(for n: Int) async throws {
        guard rate > 0, rate.isFinite else { return }
        let due = start + .nanoseconds(Int64(Double(n) / rate * 1e9))
        if due > clock.now { try await Task.sleep(until: due, clock: clock) }
    }
}

/// Failures counted across tasks, the first one kept to show.
final class Failures: Sendable {
    private let state = Mutex((count: 0, first: String?.none))

    func record(_ error: any Error) {
        state.withLock { state in
            state.count += 1
            if state.first == nil { state.first = "\(error)" }
        }
    }

    var count: Int { state.withLock { $0.count } }
    var first: String? { state.withLock { $0.first } }
}

/// Values gathered from many tasks.
final class Gathered<Element: Sendable>: Sendable {
    private let elements = Mutex<[Element]>([])

    func append(_ element: Element) { elements.withLock { $0.append(element) } }
    var all: [Element] { elements.withLock { $0 } }
    var count: Int { elements.withLock { $0.count } }
}

/// A count shared by many tasks and event loops.
final class Counter: Sendable {
    private let value = Atomic(0)

    /// Adds one; returns the count it makes.
    @discardableResult
    func increment() -> Int { value.add(1, ordering: .relaxed).newValue }
    var count: Int { value.load(ordering: .relaxed) }
}
