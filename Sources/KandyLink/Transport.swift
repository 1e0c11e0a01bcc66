import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOFoundationCompat
import NIOSSL
import Synchronization
import WSClient

/// An HTTP request as the SDK makes it.
public struct HTTPRequestSpec: Sendable, Equatable {
    public var method: String
    public var url: String
    public var headers: [String: String]
    public var body: Data?
}

public struct HTTPResponseSpec: Sendable, Equatable {
    public var status: Int
    public var contentType: String?
    public var body: Data

    public init(status: Int, contentType: String?, body: Data) {
        self.status = status
        self.contentType = contentType
        self.body = body
    }
}

/// How the SDK sends REST requests. The default is AsyncHTTPClient; an app on Apple platforms
/// may plug in URLSession.
public protocol HTTPTransport: Sendable {
    func send(_ request: HTTPRequestSpec) async throws -> HTTPResponseSpec
    /// Releases the transport's resources; called once by `destroy()`.
    func shutdown() async
}

/// How the SDK opens its notification channel.
public protocol WebSocketTransport: Sendable {
    /// Opens a socket; returns once it is open, throws if it cannot be. `onMessage` receives text
    /// frames in arrival order, one call at a time; `onClose` is called once, after the last
    /// frame, when the socket closes for any reason.
    func connect(
        url: String,
        onMessage: @escaping @Sendable (String) -> Void,
        onClose: @escaping @Sendable () -> Void
    ) async throws -> any WebSocketConnection
}

public protocol WebSocketConnection: Sendable {
    func send(_ text: String) async throws
    /// Sends a close frame; `onClose` follows.
    func close() async
}

/// AsyncHTTPClient, trusting the configured roots.
final class AsyncHTTPTransport: HTTPTransport {
    private let client: HTTPClient

    init(tls: TLSConfiguration) {
        var configuration = HTTPClient.Configuration(tlsConfiguration: tls)
        configuration.timeout = .init(connect: .seconds(10), read: .seconds(30))
        client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    func send(_ request: HTTPRequestSpec) async throws -> HTTPResponseSpec {
        var outgoing = HTTPClientRequest(url: request.url)
        outgoing.method = .init(rawValue: request.method)
        for (name, value) in request.headers { outgoing.headers.add(name: name, value: value) }
        if let body = request.body { outgoing.body = .bytes(ByteBuffer(data: body)) }
        let response = try await client.execute(outgoing, timeout: .seconds(30))
        let body = try await response.body.collect(upTo: 1 << 20)
        return HTTPResponseSpec(
            status: Int(response.status.code), contentType: response.headers.first(name: "Content-Type"),
            body: Data(buffer: body))
    }

    func shutdown() async {
        try? await client.shutdown()
    }
}

/// WSClient. Its protocol-level ping doubles as the silent-socket detector: no pong within the
/// keepalive interval closes the socket, which the channel machine then sees as a loss.
struct WSClientTransport: WebSocketTransport {
    let tls: TLSConfiguration
    let serverName: String?
    let pingInterval: Duration
    /// How long the open (TCP, TLS, upgrade) may take; then it fails and is abandoned.
    let openTimeout: Duration

    private enum Command: Sendable {
        case text(String)
        case close
    }

    private final class Connection: WebSocketConnection {
        let commands: AsyncStream<Command>.Continuation
        init(commands: AsyncStream<Command>.Continuation) { self.commands = commands }
        func send(_ text: String) async throws { commands.yield(.text(text)) }
        func close() async { commands.yield(.close) }
    }

    func connect(
        url: String, onMessage: @escaping @Sendable (String) -> Void, onClose: @escaping @Sendable () -> Void
    ) async throws -> any WebSocketConnection {
        let (commandStream, commands) = AsyncStream.makeStream(of: Command.self)
        let (opened, openedSink) = AsyncStream.makeStream(of: Result<Void, any Error>.self)
        var logger = Logger(label: "kandy-link.channel")
        logger.logLevel = .critical
        let configuration = WebSocketClientConfiguration(
            maxFrameSize: 1 << 20, autoPing: .enabled(timePeriod: pingInterval), sniHostname: serverName)
        let useTLS = url.hasPrefix("wss:")
        let closed = CloseSignal(onClose)
        let running = Task {
            do {
                try await WebSocketClient.connect(
                    url: url, configuration: configuration, tlsConfiguration: useTLS ? tls : nil, logger: logger
                ) { inbound, outbound, _ in
                    openedSink.yield(.success(()))
                    try await withThrowingTaskGroup(of: Void.self) { group in
                        group.addTask {
                            for await command in commandStream {
                                switch command {
                                case .text(let text): try await outbound.write(.text(text))
                                case .close:
                                    try await outbound.close(.normalClosure, reason: nil)
                                    return
                                }
                            }
                        }
                        for try await message in inbound.messages(maxSize: 1 << 20) {
                            if case .text(let text) = message { onMessage(text) }
                        }
                        group.cancelAll()
                    }
                    // The close handshake is over: the socket is closed for the SDK now, however
                    // long TLS's own goodbye takes (NIOSSL gives a server that closed first 5 s).
                    closed.signal()
                }
                openedSink.yield(.failure(ChannelClosedBeforeOpening()))
            } catch {
                openedSink.yield(.failure(error))
            }
            commands.finish()
            closed.signal()
        }
        let openTimeout = self.openTimeout
        let outcome = await withTaskGroup(of: Result<Void, any Error>.self) { group in
            group.addTask {
                for await outcome in opened { return outcome }
                return .failure(ChannelClosedBeforeOpening())
            }
            group.addTask {
                try? await Task.sleep(for: openTimeout)
                return .failure(OpenTimedOut(limit: openTimeout))
            }
            defer { group.cancelAll() }
            return await group.next() ?? .failure(ChannelClosedBeforeOpening())
        }
        switch outcome {
        case .success: return Connection(commands: commands)
        case .failure(let error):
            // An open that timed out is abandoned: its connection is closed, and it never opens.
            running.cancel()
            commands.finish()
            throw error
        }
    }

    struct ChannelClosedBeforeOpening: Error {}

    struct OpenTimedOut: Error, CustomStringConvertible {
        let limit: Duration
        var description: String { "The channel did not open within \(limit)." }
    }

    /// Calls `onClose` the first time it is signalled: at the end of the close handshake, or when
    /// the connection fails.
    private final class CloseSignal: Sendable {
        private let onClose: @Sendable () -> Void
        private let signalled = Atomic(false)

        init(_ onClose: @escaping @Sendable () -> Void) { self.onClose = onClose }

        func signal() {
            guard signalled.compareExchange(expected: false, desired: true, ordering: .relaxed).exchanged else {
                return
            }
            onClose()
        }
    }
}
