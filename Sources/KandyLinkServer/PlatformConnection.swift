import Foundation
import HTTPTypes
import HummingbirdCore
import KandyLinkProtocol
import Logging
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1
import NIOWebSocket
import Synchronization

/// One client connection to the platform's port: HTTP/1.1 requests for the REST side, or, when
/// its first request is the WebSocket upgrade of a live channel, that channel's socket.
///
/// A socket is served by ``ChannelSocketHandler`` inside the connection's pipeline: once attached
/// it holds no task, which is most of what an idle channel would otherwise cost. A refused
/// upgrade is answered with a JSON error, like every other refusal.
struct PlatformConnection: ServerChildChannel, HTTPChannelHandler {
    enum Negotiated: Sendable {
        /// A channel socket, served by its handler; attaching it to its channel is what is left.
        case channel(attach: @Sendable () async -> Void)
        case http(NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>)
        case refused(NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>, PlatformError, origin: String?)
    }

    struct Value: ServerChildChannelValue {
        let negotiated: EventLoopFuture<Negotiated>
        let channel: any Channel
    }

    /// What the upgrade decided, kept for the rest of the connection's setup.
    private enum Admission {
        case none
        case admitted(ChannelAdmission)
        case refused(PlatformError, origin: String?)
    }

    let responder: HTTPChannelHandler.Responder
    let channels: ChannelEndpoint
    let configuration: PlatformConfiguration
    let connections: OpenConnections
    /// How long a kept-alive connection may wait for its next request.
    static let idleTimeout: Duration = .seconds(120)
    /// How long a new connection may take to send its first request head.
    static let headTimeout: Duration = .seconds(30)

    init(
        responder: @escaping HTTPChannelHandler.Responder, channels: ChannelEndpoint,
        configuration: PlatformConfiguration, connections: OpenConnections
    ) {
        self.responder = Self.redirectingLateUpgrades(responder)
        self.channels = channels
        self.configuration = configuration
        self.connections = connections
    }

    /// NIO keeps a connection's receive buffer for the connection's life, and a channel socket
    /// only ever reads keepalives: start at 512 bytes instead of NIO's 2 KB and grow with what
    /// arrives (a REST body doubles it read by read).
    static let receiveBuffers = AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 512, maximum: 65536)

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        connections.add(channel)
        return channel.eventLoop.makeCompletedFuture {
            try channel.syncOptions?.setOption(.recvAllocator, value: Self.receiveBuffers)
            let admission = NIOLoopBoundBox(Admission.none, eventLoop: channel.eventLoop)
            let channels = self.channels
            let handshake = NIOTypedWebSocketServerUpgrader<Negotiated>(
                shouldUpgrade: { channel, head in
                    let address = channel.remoteAddress?.ipAddress ?? "unknown"
                    let promise = channel.eventLoop.makePromise(of: Result<ChannelAdmission, PlatformError>.self)
                    promise.completeWithTask {
                        await channels.admitChannel(
                            target: head.uri, origins: head.headers["Origin"],
                            authorization: head.headers.first(name: "Authorization"), address: address)
                    }
                    return promise.futureResult.map { result -> HTTPHeaders? in
                        switch result {
                        case .success(let admitted):
                            admission.value = .admitted(admitted)
                            return [:]
                        case .failure(let error):
                            admission.value = .refused(error, origin: head.headers.first(name: "Origin"))
                            return nil
                        }
                    }
                },
                // Never called: ChannelSocketUpgrader makes the socket itself.
                upgradePipelineHandler: { channel, _ in
                    channel.eventLoop.makeFailedFuture(ChannelError.inappropriateOperationForState)
                })
            let upgrader = ChannelSocketUpgrader(handshake: handshake) { channel in
                channel.eventLoop.makeCompletedFuture {
                    guard case .admitted(let admitted) = admission.value else {
                        preconditionFailure("An upgrade goes ahead only once admitted")
                    }
                    return .channel(attach: try channels.openChannel(admitted, on: channel))
                }
            }
            var configuration = NIOUpgradableHTTPServerPipelineConfiguration<Negotiated>(
                upgradeConfiguration: .init(
                    upgraders: [upgrader],
                    notUpgradingCompletionHandler: { channel in
                        channel.eventLoop.makeCompletedFuture {
                            try channel.pipeline.syncOperations.addHandler(HTTP1ToHTTPServerCodec(secure: false))
                            try channel.pipeline.syncOperations.addHandler(
                                HTTPConnectionStateHandler(idleTimeout: Self.idleTimeout, logger: logger))
                            let http = try NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>(
                                wrappingChannelSynchronously: channel,
                                configuration: .init(isOutboundHalfClosureEnabled: true))
                            if case .refused(let error, let origin) = admission.value {
                                return .refused(http, error, origin: origin)
                            }
                            return .http(http)
                        }
                    }))
            // Hummingbird handles pipelining and parse errors itself, and HTTPTypes validates headers.
            configuration.enablePipelining = false
            configuration.enableErrorHandling = false
            configuration.enableResponseHeaderValidation = false
            let negotiated = try channel.pipeline.syncOperations.configureUpgradableHTTPServerPipeline(
                configuration: configuration)
            let upgrading = try channel.pipeline.syncOperations.context(
                handlerType: NIOTypedHTTPServerUpgradeHandler<Negotiated>.self)
            try channel.pipeline.syncOperations.addHandler(
                RequestScreen(
                    headTimeout: .init(Self.headTimeout), bodyTimeout: .init(self.configuration.bodyTimeout)),
                position: .before(upgrading.handler))
            return Value(negotiated: negotiated, channel: channel)
        }
    }

    func handle(value: Value, logger: Logger) async {
        do {
            switch try await value.negotiated.get() {
            case .http(let http):
                await handleHTTP(asyncChannel: http, logger: logger)
            case .refused(let http, let error, let origin):
                await Self.refuse(http, error, origin: origin)
            case .channel(let attach):
                await attach()
            }
        } catch let error as ChannelError where error == .inputClosed {
            // The client left before sending a request.
        } catch {
            logger.debug("Connection setup failed", metadata: ["error": "\(error)"])
        }
    }

    /// Answers a refused upgrade and closes the connection.
    private static func refuse(
        _ http: NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>, _ error: PlatformError, origin: String?
    ) async {
        let (head, body) = refusal(error, origin: origin)
        try? await http.executeThenClose { _, outbound in
            try await outbound.write(contentsOf: [.head(head), .body(body), .end(nil)])
        }
    }

    /// A refusal's response, `{"statusCode":N,"reason":"…"}`, ending the connection; `origin`
    /// is the request's `Origin`, when it got that far.
    static func refusal(_ error: PlatformError, origin: String?) -> (HTTPResponse, ByteBuffer) {
        let document = StatusDocument(statusCode: error.code.rawValue, reason: error.reason)
        let body = ByteBuffer(bytes: (try? WireJSON.bytes(document)) ?? [])
        let head = HTTPResponse(
            status: .init(code: error.code.httpStatus),
            headerFields: [
                .contentType: "application/json", .contentLength: String(body.readableBytes), .connection: "close",
                .accessControlAllowOrigin: CrossOrigin.allowOrigin(for: origin), .vary: "Origin",
            ])
        return (head, body)
    }

    /// What NIO's WebSocket upgrader takes up (RFC 6455 §4.2.1): `websocket` among the protocols,
    /// one key, version 13.
    static func isWebSocketHandshake(upgrade: [String], keys: [String], versions: [String]) -> Bool {
        let protocols = upgrade.flatMap { $0.split(separator: ",") }.map {
            $0.trimmingCharacters(in: .whitespaces).lowercased()
        }
        return protocols.contains("websocket") && keys.count == 1 && !keys[0].contains(",") && versions == ["13"]
    }

    /// A WebSocket upgrade is only recognised as a connection's first request. One that comes
    /// later on a kept-alive connection is redirected to the same target with the connection
    /// closed (``RequestScreen`` ends it after a `Connection: close` answer), so the client
    /// retries it on a fresh one. (An incomplete handshake is a plain request wherever it comes.)
    private static func redirectingLateUpgrades(_ responder: @escaping HTTPChannelHandler.Responder)
        -> HTTPChannelHandler.Responder
    {
        { request, writer, channel in
            let headers = request.headers
            guard
                isWebSocketHandshake(
                    upgrade: headers[values: .upgrade], keys: headers[values: .secWebSocketKey],
                    versions: headers[values: .secWebSocketVersion])
            else {
                try await responder(request, writer, channel)
                return
            }
            let target = request.uri.query.map { "\(request.uri.path)?\($0)" } ?? request.uri.path
            try await writer.writeResponse(
                HTTPResponse(status: .temporaryRedirect, headerFields: [.connection: "close", .location: target]))
        }
    }
}

/// NIO's WebSocket handshake (checking the request, answering with `Sec-WebSocket-Accept`), and
/// then the channel socket alone in the connection's pipeline: NIO's upgrader would first add its
/// frame encoder, decoder and error handler, which ``ChannelSocketHandler`` does without.
struct ChannelSocketUpgrader: NIOTypedHTTPServerProtocolUpgrader {
    typealias UpgradeResult = PlatformConnection.Negotiated

    let handshake: NIOTypedWebSocketServerUpgrader<UpgradeResult>
    /// Makes the upgraded connection a channel socket.
    let open: @Sendable (any Channel) -> EventLoopFuture<UpgradeResult>

    var supportedProtocol: String { handshake.supportedProtocol }
    var requiredUpgradeHeaders: [String] { handshake.requiredUpgradeHeaders }

    func buildUpgradeResponse(
        channel: any Channel, upgradeRequest: HTTPRequestHead, initialResponseHeaders: HTTPHeaders
    )
        -> EventLoopFuture<HTTPHeaders>
    {
        handshake.buildUpgradeResponse(
            channel: channel, upgradeRequest: upgradeRequest, initialResponseHeaders: initialResponseHeaders)
    }

    func upgrade(channel: any Channel, upgradeRequest: HTTPRequestHead) -> EventLoopFuture<UpgradeResult> {
        open(channel)
    }
}

/// A channel upgrade the platform accepted.
struct ChannelAdmission: Sendable {
    var channelID: String
    /// `lastEventId=N` in the channel query.
    var lastEventID: UInt64?
}

/// The connections a node has accepted and not yet closed, so that a node that stopped leaves
/// none open in a process that goes on (an app embedding it, a test): one accepted as the
/// listener closed, or still negotiating when the shutdown grace ran out, is closed when the
/// node's run ends.
final class OpenConnections: Sendable {
    private let open = Mutex<[ObjectIdentifier: any Channel]>([:])

    func add(_ channel: any Channel) {
        let id = ObjectIdentifier(channel)
        open.withLock { $0[id] = channel }
        channel.closeFuture.whenComplete { [weak self] _ in
            _ = self?.open.withLock { $0.removeValue(forKey: id) }
        }
    }

    /// Closes the connections still open; returns how many there were.
    func closeAll() -> Int {
        let left = open.withLock { open in
            defer { open = [:] }
            return Array(open.values)
        }
        for channel in left { channel.close(promise: nil) }
        return left.count
    }
}
