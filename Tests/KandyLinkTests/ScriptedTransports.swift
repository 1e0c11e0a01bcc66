import Foundation
import KandyLinkProtocol
import Synchronization

@testable import KandyLink

/// An HTTP transport whose every request waits until the test answers it, so a test decides
/// what the platform says and when.
final class ScriptedHTTP: HTTPTransport {
    struct Exchange: Sendable {
        let request: HTTPRequestSpec
        fileprivate let reply: CheckedContinuation<HTTPResponseSpec, any Error>

        func answer(_ status: Int = 200, _ document: some Encodable) {
            reply.resume(
                returning: HTTPResponseSpec(
                    status: status, contentType: "application/json", body: try! WireJSON.encode(document)))
        }

        /// The transport fails, as on a refused connection.
        func fail() { reply.resume(throwing: URLError(.cannotConnectToHost)) }

        /// The request's body, decoded.
        func body<Document: Decodable>(as: Document.Type) -> Document? {
            request.body.flatMap { try? WireJSON.decode(Document.self, from: $0) }
        }
    }

    private let sink: AsyncStream<Exchange>.Continuation
    private let stream: AsyncStream<Exchange>
    private let shutdowns = Atomic(0)

    init() {
        (stream, sink) = AsyncStream.makeStream(of: Exchange.self)
    }

    func send(_ request: HTTPRequestSpec) async throws -> HTTPResponseSpec {
        try await withCheckedThrowingContinuation { sink.yield(Exchange(request: request, reply: $0)) }
    }

    func shutdown() async { shutdowns.add(1, ordering: .relaxed) }

    var shutdownCount: Int { shutdowns.load(ordering: .relaxed) }

    /// The next request the SDK makes, once it makes it.
    func next() async -> Exchange {
        for await exchange in stream { return exchange }
        fatalError("the request stream never finishes")
    }
}

/// A WebSocket transport whose every open waits until the test lets it open or fail, and whose
/// sockets the test drives: frames from the platform, a close by the platform.
final class ScriptedWebSocket: WebSocketTransport {
    struct Opening: Sendable {
        let url: String
        fileprivate let reply: CheckedContinuation<any WebSocketConnection, any Error>
        fileprivate let socket: Socket

        /// Opens the socket; the test drives it through what this returns.
        @discardableResult func open() -> Socket {
            reply.resume(returning: socket)
            return socket
        }

        func fail() { reply.resume(throwing: URLError(.cannotConnectToHost)) }
    }

    final class Socket: WebSocketConnection {
        private let onMessage: @Sendable (String) -> Void
        private let onClose: @Sendable () -> Void
        private let sentStream: AsyncStream<String>
        private let sentSink: AsyncStream<String>.Continuation
        private let closeStream: AsyncStream<Void>
        private let closeSink: AsyncStream<Void>.Continuation

        fileprivate init(onMessage: @escaping @Sendable (String) -> Void, onClose: @escaping @Sendable () -> Void) {
            self.onMessage = onMessage
            self.onClose = onClose
            (sentStream, sentSink) = AsyncStream.makeStream(of: String.self)
            (closeStream, closeSink) = AsyncStream.makeStream(of: Void.self)
        }

        func send(_ text: String) async throws { sentSink.yield(text) }

        func close() async {
            closeSink.yield()
            closeSink.finish()
            onClose()
        }

        /// A frame from the platform.
        func deliver(_ message: NotificationMessage) {
            onMessage(
                String(
                    decoding: try! WireJSON.encode(NotificationDocument(notificationMessage: message)), as: UTF8.self))
        }

        /// The platform (or the network) closes the socket.
        func closeFromPlatform() { onClose() }

        /// The next frame the SDK sends.
        func sent() async -> String? {
            for await text in sentStream { return text }
            return nil
        }

        /// Returns once the SDK has closed this socket.
        func closedBySDK() async {
            for await _ in closeStream { return }
        }
    }

    private let sink: AsyncStream<Opening>.Continuation
    private let stream: AsyncStream<Opening>

    init() {
        (stream, sink) = AsyncStream.makeStream(of: Opening.self)
    }

    func connect(
        url: String, onMessage: @escaping @Sendable (String) -> Void, onClose: @escaping @Sendable () -> Void
    ) async throws -> any WebSocketConnection {
        try await withCheckedThrowingContinuation {
            sink.yield(Opening(url: url, reply: $0, socket: Socket(onMessage: onMessage, onClose: onClose)))
        }
    }

    /// The next socket the SDK opens, once it tries.
    func next() async -> Opening {
        for await opening in stream { return opening }
        fatalError("the opening stream never finishes")
    }
}

/// Real sockets, each open attempt's outcome reported: a test moves the clock to a retry only
/// once the failure it follows has happened.
final class WatchedWebSocket: WebSocketTransport {
    enum Attempt: Sendable, Equatable {
        case opened, failed
    }

    private let inner: any WebSocketTransport
    private let stream: AsyncStream<Attempt>
    private let sink: AsyncStream<Attempt>.Continuation

    init(_ inner: any WebSocketTransport) {
        self.inner = inner
        (stream, sink) = AsyncStream.makeStream(of: Attempt.self)
    }

    func connect(
        url: String, onMessage: @escaping @Sendable (String) -> Void, onClose: @escaping @Sendable () -> Void
    ) async throws -> any WebSocketConnection {
        do {
            let connection = try await inner.connect(url: url, onMessage: onMessage, onClose: onClose)
            sink.yield(.opened)
            return connection
        } catch {
            sink.yield(.failed)
            throw error
        }
    }

    /// The outcome of the next open attempt, in order, once it is known.
    func nextAttempt() async -> Attempt {
        for await attempt in stream { return attempt }
        fatalError("the attempt stream never finishes")
    }
}
