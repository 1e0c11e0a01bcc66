import Foundation
import KandyLinkProtocol
import NIOCore

/// Where a published message goes: one channel of many, or the topic every fan-out channel shares.
enum Destination: Sendable {
    case channel(Int)
    case fanout

    /// The peers' name for it: an nchan channel id, an MQTT topic.
    var name: String {
        switch self {
        case .channel(let index): "c\(index)"
        case .fanout: "fanout"
        }
    }
}

/// A server in `bench compare`, used the way its own clients use it. The same generator, pacing
/// and measurements drive each one.
protocol Contender: Sendable {
    var title: String { get }
    /// The processes whose CPU time and memory are the server's.
    var pids: [Int32] { get }
    var client: LoadClient { get }

    /// One session set up and torn down by client `index`; `http` is that client's keep-alive
    /// connection, for servers whose sessions start with a request.
    func cycle(_ index: Int, over http: WireConnection) async throws
    /// An open channel receiving what is published to `destination`; `http` as for `cycle`.
    func open(
        _ destination: Destination, _ index: Int, over http: WireConnection,
        onMessage: @escaping @Sendable (ByteBuffer) -> Void
    ) async throws -> WireConnection
    /// A connection to publish on.
    func publisher() async throws -> WireConnection
    /// Publishes `text` to `destination`, answered (or, for MQTT at QoS 0, written).
    func publish(_ text: String, to destination: Destination, over connection: WireConnection) async throws
}

/// The platform: a session is a subscription and its channel; a message is an instant message
/// (one REST request); a fan-out is a presence change to its watchers.
struct PlatformContender: Contender {
    let setup: LoadSetup
    let client: LoadClient
    var title: String { "kandy-link" }
    var pids: [Int32] { setup.pids }
    /// `bench compare` adds the fan-out publisher after the numbered users.
    private var publisherUser: LoadPlan.User { setup.plan.users[setup.plan.users.count - 1] }

    func cycle(_ index: Int, over http: WireConnection) async throws {
        let user = setup.plan.users[index]
        let session = try await client.subscribe(user, services: ["IM"], over: http)
        let socket = try await client.connect(node: 0)
        try await socket.upgrade(session.channel, onMessage: { _ in }, onClose: {})
        try await client.unsubscribe(user, session, over: http)
        await socket.close()
    }

    func open(
        _ destination: Destination, _ index: Int, over http: WireConnection,
        onMessage: @escaping @Sendable (ByteBuffer) -> Void
    ) async throws -> WireConnection {
        let user = setup.plan.users[index]
        let session: LoadClient.Session
        switch destination {
        case .channel:
            session = try await client.subscribe(user, services: ["IM"], over: http)
        case .fanout:
            session = try await client.subscribe(user, services: ["Presence"], over: http)
            try await client.post(
                PresenceWatcherRequestDocument(
                    presenceWatcherRequest: .init(userList: [publisherUser.name], action: .watch)),
                to: LinkPath.presenceWatcher(user: user.name), as: user, over: http)
        }
        let socket = try await client.connect(node: 0)
        guard case .fanout = destination else {
            try await socket.upgrade(session.channel, onMessage: onMessage, onClose: {})
            return socket
        }
        // A watcher's channel first gets the publisher's current presence; it is ready once that
        // has come, so that the fan-out measured does not include it.
        let (first, arrived) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        try await socket.upgrade(
            session.channel,
            onMessage: { frame in
                arrived.yield()
                onMessage(frame)
            }, onClose: { arrived.finish() })
        for await _ in first { break }
        return socket
    }

    func publisher() async throws -> WireConnection { try await client.connect(node: 0) }

    func publish(_ text: String, to destination: Destination, over connection: WireConnection) async throws {
        switch destination {
        case .channel(let index):
            // Each user writes to itself, so no two messages share a sender's turn.
            let user = setup.plan.users[index]
            try await client.post(
                InstantMessageRequestDocument(imRequest: .init(toUrl: user.name, message: text)),
                to: LinkPath.instantMessage(user: user.name), as: user, over: connection)
        case .fanout:
            try await client.post(
                PresenceRequestDocument(presenceRequest: .init(status: .open, activity: .active, note: text)),
                to: LinkPath.presence(user: publisherUser.name), as: publisherUser, over: connection)
        }
    }

    /// The node's floor: a request that does nothing but answer.
    func health(over connection: WireConnection) async throws {
        let response = try await connection.request("GET", "/health")
        guard response.status == 200 else { throw WireConnection.Failure.status(response.status, "GET /health") }
    }
}

/// A peer started by the bench: its title and processes are its server's.
protocol PeerContender: Contender {
    var server: PeerServer { get }
}

extension PeerContender {
    var title: String { server.kind.title }
    var pids: [Int32] { server.pids }
}

/// nginx + nchan: a session is a WebSocket subscriber connecting and leaving; a message is an
/// HTTP POST to the channel's publisher location.
struct NchanContender: PeerContender {
    let server: PeerServer
    let client: LoadClient

    func cycle(_ index: Int, over http: WireConnection) async throws {
        let socket = try await client.connect(node: 0)
        try await socket.upgrade("/sub/session\(index)", onMessage: { _ in }, onClose: {})
        await socket.close()
    }

    func open(
        _ destination: Destination, _ index: Int, over http: WireConnection,
        onMessage: @escaping @Sendable (ByteBuffer) -> Void
    ) async throws -> WireConnection {
        let socket = try await client.connect(node: 0)
        try await socket.upgrade("/sub/\(destination.name)", onMessage: onMessage, onClose: {})
        return socket
    }

    func publisher() async throws -> WireConnection { try await client.connect(node: 0) }

    func publish(_ text: String, to destination: Destination, over connection: WireConnection) async throws {
        let response = try await connection.request(
            "POST", "/pub/\(destination.name)", body: ByteBuffer(string: text))
        guard (200..<300).contains(response.status) else {
            throw WireConnection.Failure.status(response.status, String(buffer: response.body))
        }
    }
}

/// mosquitto: a session is an MQTT-over-WebSocket client connecting, subscribing and
/// disconnecting; a message is a QoS 0 PUBLISH on a publisher's connection.
struct MosquittoContender: PeerContender {
    let server: PeerServer
    let client: LoadClient

    func cycle(_ index: Int, over http: WireConnection) async throws {
        let (socket, control) = try await connect(onPublish: { _ in })
        try await subscribe(socket, control, to: "session\(index)")
        socket.send(binary: MQTTPacket.disconnect)
        await socket.close()
    }

    func open(
        _ destination: Destination, _ index: Int, over http: WireConnection,
        onMessage: @escaping @Sendable (ByteBuffer) -> Void
    ) async throws -> WireConnection {
        let (socket, control) = try await connect(onPublish: onMessage)
        try await subscribe(socket, control, to: destination.name)
        return socket
    }

    func publisher() async throws -> WireConnection { try await connect(onPublish: { _ in }).0 }

    func publish(_ text: String, to destination: Destination, over connection: WireConnection) async throws {
        connection.send(binary: MQTTPacket.publish(topic: destination.name, payload: Array(text.utf8)))
    }

    /// A WebSocket with the `mqtt` subprotocol and a CONNECT acknowledged; PUBLISH packets go to
    /// `onPublish`, the other packets' types to the returned stream.
    private func connect(onPublish: @escaping @Sendable (ByteBuffer) -> Void) async throws
        -> (WireConnection, AsyncStream<UInt8>.AsyncIterator)
    {
        let (packets, arrived) = AsyncStream.makeStream(of: UInt8.self)
        let socket = try await client.connect(node: 0)
        try await socket.upgrade(
            "/mqtt", headers: [("Sec-WebSocket-Protocol", "mqtt")],
            onMessage: { message in
                for type in MQTTPacket.types(in: message) {
                    if type == MQTTPacket.publishType { onPublish(message) } else { arrived.yield(type) }
                }
            }, onClose: { arrived.finish() })
        var control = packets.makeAsyncIterator()
        socket.send(binary: MQTTPacket.connect(clientID: "bench-\(UUID().uuidString.prefix(12))"))
        try await Self.expect(MQTTPacket.connackType, from: &control)
        return (socket, control)
    }

    private func subscribe(
        _ socket: WireConnection, _ control: AsyncStream<UInt8>.AsyncIterator, to topic: String
    ) async throws {
        var control = control
        socket.send(binary: MQTTPacket.subscribe(topic: topic, packetID: 1))
        try await Self.expect(MQTTPacket.subackType, from: &control)
    }

    private static func expect(_ type: UInt8, from control: inout AsyncStream<UInt8>.AsyncIterator) async throws {
        guard let got = await control.next() else { throw WireConnection.Failure.closed }
        guard got == type else { throw WireConnection.Failure.malformed("MQTT packet type \(got), not \(type)") }
    }
}
