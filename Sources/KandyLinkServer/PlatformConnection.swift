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
            let upgrader = NIOTypedWebSocketServerUpgrader<Negotiated>(
                maxFrameSize: configuration.maxFrameBytes,
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
                upgradePipelineHandler: { channel, _ in
                    channel.eventLoop.makeCompletedFuture {
                        guard case .admitted(let admitted) = admission.value else {
                            preconditionFailure("An upgrade goes ahead only once admitted")
                        }
                        return .channel(attach: try channels.openChannel(admitted, on: channel))
                    }
                })
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
        let body = ByteBuffer(bytes: (try? WireJSON.encode(document)) ?? Data())
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

/// Stands between a connection's HTTP/1.1 codec and the rest of its pipeline:
/// - the first request head must come within `headTimeout`, or the connection is closed (before
///   it, nothing else bounds how long a silent client holds a socket);
/// - NIO's upgrade handler sees an `Upgrade` header only on a complete WebSocket handshake. It
///   drops the request head of an upgrade it does not take up (an `h2c` request, a handshake
///   without its key), which left the client without an answer; such a request is passed on as
///   the plain request it also is;
/// - bytes that are not HTTP/1.1 between requests are answered with a JSON error once every
///   response before them is written, and the connection closed (HTTP/1.1 cannot resynchronise
///   after them). Inside a request's body the error goes on to whoever reads the body;
/// - a body must arrive within `bodyTimeout` of its first bytes: every part of it restarts
///   Hummingbird's idle timer, so a body trickled in byte by byte would otherwise hold the
///   connection indefinitely. Its reader is handed ``BodyTimedOut`` to answer, and what else
///   arrives is dropped;
/// - a response that says `Connection: close`, or answers a request that did not ask to keep
///   the connection (HTTP/1.0), ends it once written (RFC 9112 §9.6). Hummingbird only stops
///   reading after a request that says so, and would otherwise go on to read and discard, say,
///   the rest of a body refused as too large.
/// A WebSocket handshake ends the connection's HTTP, so the screen leaves with it.
final class RequestScreen: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    /// What a request's body reader meets when the body is too slow in coming.
    struct BodyTimedOut: Error {}

    private let headTimeout: TimeAmount
    private let bodyTimeout: TimeAmount
    private var deadline: Scheduled<Void>?
    private var bodyDeadline: Scheduled<Void>?
    /// Whether each request not yet answered asked to keep the connection, oldest first.
    private var keepAlive = CircularBuffer<Bool>()
    private var readingRequest = false
    /// Only the connection's first request can upgrade it.
    private var sawHead = false
    /// The response being written ends the connection.
    private var closing = false
    /// The parse error to answer once the responses before it are written.
    private var unanswered: (any Error)?
    /// The `Origin` of the request that `unanswered` answers, when its head was read.
    private var unansweredOrigin: String?
    private var bodyTimedOut = false
    /// A response to no request is being dropped.
    private var discarding = false

    init(headTimeout: TimeAmount, bodyTimeout: TimeAmount) {
        self.headTimeout = headTimeout
        self.bodyTimeout = bodyTimeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let bound = context.loopBound
        deadline = context.eventLoop.scheduleTask(in: headTimeout) { bound.value.close(promise: nil) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
        bodyDeadline?.cancel()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard unanswered == nil, !bodyTimedOut else { return }
        switch unwrapInboundIn(data) {
        case .head(var head):
            let first = !sawHead
            sawHead = true
            deadline?.cancel()
            deadline = nil
            if let refusal = Self.refusal(of: head) {
                // Answered in turn, then the connection ends; its body, if any, is not read.
                unanswered = refusal
                unansweredOrigin = head.headers.first(name: "origin")
                if keepAlive.isEmpty { answer(refusal, context: context) }
                return
            }
            keepAlive.append(head.isKeepAlive)
            readingRequest = true
            let headers = head.headers
            if headers.contains(name: "upgrade") {
                // A handshake has no body (RFC 6455 §4.1): one with a body is the plain request it also is.
                let hasBody =
                    headers.contains(name: "transfer-encoding")
                    || headers["content-length"].contains { Int($0).map { $0 > 0 } ?? true }
                guard
                    !hasBody,
                    PlatformConnection.isWebSocketHandshake(
                        upgrade: headers["upgrade"], keys: headers["sec-websocket-key"],
                        versions: headers["sec-websocket-version"])
                else {
                    head.headers.remove(name: "upgrade")
                    context.fireChannelRead(wrapInboundOut(.head(head)))
                    return
                }
                // The first request upgrades the connection; a later one is redirected.
                context.fireChannelRead(data)
                if first { context.pipeline.syncOperations.removeHandler(context: context, promise: nil) }
                return
            }
            context.fireChannelRead(wrapInboundOut(.head(head)))
        case .body:
            if bodyDeadline == nil {
                let screen = NIOLoopBound(self, eventLoop: context.eventLoop)
                let bound = context.loopBound
                bodyDeadline = context.eventLoop.scheduleTask(in: bodyTimeout) {
                    screen.value.timeOutBody(context: bound.value)
                }
            }
            context.fireChannelRead(data)
        case .end:
            readingRequest = false
            bodyDeadline?.cancel()
            bodyDeadline = nil
            context.fireChannelRead(data)
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let part = unwrapOutboundIn(data)
        if case .head = part, keepAlive.isEmpty { discarding = true }
        guard !discarding else {
            // A response to no request: Hummingbird's bare 400 for a parse error met while it
            // read, to discard it, the body of a request already answered (cut short, broken).
            // There is nothing left to answer; the connection ends.
            promise?.succeed()
            if case .end = part { context.close(promise: nil) }
            return
        }
        switch part {
        case .head(let head):
            if head.headers[canonicalForm: "connection"].contains(where: { $0.lowercased() == "close" }) {
                closing = true
            }
            context.write(data, promise: promise)
        case .body:
            context.write(data, promise: promise)
        case .end:
            let keptAlive = keepAlive.popFirst() ?? true
            guard closing || !keptAlive else {
                context.write(data, promise: promise)
                if let unanswered, keepAlive.isEmpty { answer(unanswered, context: context) }
                return
            }
            // What follows on this connection goes unanswered, a parse error included.
            unanswered = nil
            let written = context.writeAndFlush(data)
            if let promise { written.cascade(to: promise) }
            close(after: written, context: context)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard error is HTTPParserError, !readingRequest, unanswered == nil else {
            context.fireErrorCaught(error)
            return
        }
        unanswered = error
        if keepAlive.isEmpty { answer(error, context: context) }
    }

    private func timeOutBody(context: ChannelHandlerContext) {
        bodyDeadline = nil
        guard readingRequest else { return }
        readingRequest = false
        bodyTimedOut = true
        context.fireErrorCaught(BodyTimedOut())
    }

    /// What the screen refuses itself: an HTTP/1.1 request without exactly one Host (RFC 9112
    /// §3.2), and CONNECT (this is no proxy; Hummingbird would answer it 200 and then nothing).
    static func refusal(of head: HTTPRequestHead) -> PlatformError? {
        if head.method == .CONNECT {
            return PlatformError(.methodNotAllowed, "CONNECT is not served: this platform is not a proxy.")
        }
        if head.version.major == 1 && head.version.minor >= 1 && head.headers["host"].count != 1 {
            return PlatformError(.malformedRequest, "An HTTP/1.1 request names its Host exactly once.")
        }
        return nil
    }

    private func answer(_ error: any Error, context: ChannelHandlerContext) {
        let (head, body) = PlatformConnection.refusal(
            error as? PlatformError
                ?? PlatformError(
                    .malformedRequest, "The request is not valid HTTP/1.1 (\(error)), or its head is too large."),
            origin: error is PlatformError ? unansweredOrigin : nil)
        // Written as bytes past NIO's response encoder, which would drop the JSON body of any
        // answer to a CONNECT (it knows the request's method, not that this answer refuses it).
        guard let encoder = try? context.pipeline.syncOperations.context(handlerType: HTTPResponseEncoder.self) else {
            context.write(wrapOutboundOut(.head(HTTPResponseHead(head))), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
            return close(after: context.writeAndFlush(wrapOutboundOut(.end(nil))), context: context)
        }
        var bytes = context.channel.allocator.buffer(capacity: 256 + body.readableBytes)
        bytes.writeString("HTTP/1.1 \(head.status.code) \(head.status.reasonPhrase)\r\n")
        for field in head.headerFields { bytes.writeString("\(field.name): \(field.value)\r\n") }
        bytes.writeString("\r\n")
        bytes.writeImmutableBuffer(body)
        close(after: encoder.writeAndFlush(NIOAny(bytes)), context: context)
    }

    /// Closes the connection once the response's end is written.
    private func close(after written: EventLoopFuture<Void>, context: ChannelHandlerContext) {
        let bound = context.loopBound
        written.whenComplete { _ in bound.value.close(promise: nil) }
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
