import KandyLinkProtocol
import NIOCore
import NIOHTTP1

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
///
/// The rules are ``State``, a value; the handler classifies what passes and performs the
/// actions the state answers with.
final class RequestScreen: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    /// What a request's body reader meets when the body is too slow in coming.
    struct BodyTimedOut: Error {}

    private let headTimeout: TimeAmount
    private let bodyTimeout: TimeAmount
    private var state = State()
    private var headDeadline: Scheduled<Void>?
    private var bodyDeadline: Scheduled<Void>?

    init(headTimeout: TimeAmount, bodyTimeout: TimeAmount) {
        self.headTimeout = headTimeout
        self.bodyTimeout = bodyTimeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let bound = context.loopBound
        headDeadline = context.eventLoop.scheduleTask(in: headTimeout) { bound.value.close(promise: nil) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        headDeadline?.cancel()
        bodyDeadline?.cancel()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let action: State.Inbound
        var part = unwrapInboundIn(data)
        switch part {
        case .head(var head):
            headDeadline?.cancel()
            headDeadline = nil
            let kind = Self.kind(of: &head)
            part = .head(head)
            action = state.read(kind, keepAlive: head.isKeepAlive)
        case .body:
            action = state.readBody()
        case .end:
            action = state.readEnd()
        }
        switch action {
        case .pass:
            context.fireChannelRead(wrapInboundOut(part))
        case .passStartingBodyDeadline:
            let screen = NIOLoopBound(self, eventLoop: context.eventLoop)
            let bound = context.loopBound
            bodyDeadline = context.eventLoop.scheduleTask(in: bodyTimeout) {
                screen.value.bodyDeadlinePassed(context: bound.value)
            }
            context.fireChannelRead(wrapInboundOut(part))
        case .passStoppingBodyDeadline:
            bodyDeadline?.cancel()
            bodyDeadline = nil
            context.fireChannelRead(wrapInboundOut(part))
        case .passAndLeave:
            context.fireChannelRead(wrapInboundOut(part))
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        case .drop:
            break
        case .answer(let refusal):
            answer(refusal, context: context)
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let part = unwrapOutboundIn(data)
        let action: State.Outbound
        switch part {
        case .head(let head):
            action = state.writeHead(
                closing: head.headers[canonicalForm: "connection"].contains { $0.lowercased() == "close" })
        case .body:
            action = state.writeBody()
        case .end:
            action = state.writeEnd()
        }
        switch action {
        case .write:
            context.write(data, promise: promise)
        case .writeThenAnswer(let refusal):
            context.write(data, promise: promise)
            answer(refusal, context: context)
        case .writeAndClose:
            let written = context.writeAndFlush(data)
            if let promise { written.cascade(to: promise) }
            close(after: written, context: context)
        case .discard:
            promise?.succeed()
        case .discardAndClose:
            promise?.succeed()
            context.close(promise: nil)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard error is HTTPParserError else {
            context.fireErrorCaught(error)
            return
        }
        let refusal = State.Refusal(
            PlatformError(.malformedRequest, "The request is not valid HTTP/1.1 (\(error)), or its head is too large."))
        switch state.readError(refusal) {
        case .pass: context.fireErrorCaught(error)
        case .answer(let refusal): answer(refusal, context: context)
        default: break
        }
    }

    private func bodyDeadlinePassed(context: ChannelHandlerContext) {
        bodyDeadline = nil
        if state.bodyDeadlinePassed() { context.fireErrorCaught(BodyTimedOut()) }
    }

    /// What a request head is to the screen. An `Upgrade` header is left only on a complete
    /// WebSocket handshake without a body (RFC 6455 §4.1): anything else is the plain request it
    /// also is.
    static func kind(of head: inout HTTPRequestHead) -> State.Head {
        if let refusal = refusal(of: head) {
            return .refused(State.Refusal(refusal, origin: head.headers.first(name: "origin")))
        }
        let headers = head.headers
        guard headers.contains(name: "upgrade") else { return .request }
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
            return .request
        }
        return .handshake
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

    private func answer(_ refusal: State.Refusal, context: ChannelHandlerContext) {
        let (head, body) = PlatformConnection.refusal(refusal.error, origin: refusal.origin)
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

extension RequestScreen {
    /// What the screen knows of its connection: which requests are still to be answered, what it
    /// is reading, and whether the connection is to end. Each part read or written is one call
    /// that answers with the action to take.
    struct State {
        /// A refusal the screen answers itself: the error and the `Origin` of the request it
        /// answers, when its head was read.
        struct Refusal: Equatable {
            var error: PlatformError
            var origin: String?

            init(_ error: PlatformError, origin: String? = nil) {
                self.error = error
                self.origin = origin
            }
        }

        /// A request head, as the screen classified it.
        enum Head: Equatable {
            case request
            /// A complete WebSocket handshake.
            case handshake
            case refused(Refusal)
        }

        enum Reading: Equatable {
            /// Before the first request or between two.
            case betweenRequests
            /// Inside a request; `bodyStarted` once its body's first bytes came and its deadline runs.
            case request(bodyStarted: Bool)
            /// A refusal waits for the responses before it to be written; nothing more is read.
            case refused(Refusal)
            /// A body came too slowly; nothing more is read.
            case bodyTimedOut
            /// The connection is ending; nothing more is read or answered.
            case ended
        }

        /// What to do with a part read, or with a parse error.
        enum Inbound: Equatable {
            case pass
            /// Pass the body's first part on and start its deadline.
            case passStartingBodyDeadline
            /// Pass the request's end on and stop its body's deadline.
            case passStoppingBodyDeadline
            /// Pass the first request's WebSocket handshake on; the screen's work is done.
            case passAndLeave
            case drop
            /// Answer with the refusal and close the connection.
            case answer(Refusal)
        }

        /// What to do with a part of a response.
        enum Outbound: Equatable {
            case write
            /// Write the response's end, then answer the refusal that waited for it and close.
            case writeThenAnswer(Refusal)
            /// Write the response's end and close the connection once it is written.
            case writeAndClose
            /// A response to no request: dropped.
            case discard
            /// The end of a response to no request: dropped, and the connection closed.
            case discardAndClose
        }

        private var reading = Reading.betweenRequests
        /// Whether each request not yet answered asked to keep the connection, oldest first.
        private var keepAlive = CircularBuffer<Bool>()
        /// Only the connection's first request can upgrade it.
        private var sawHead = false
        /// The response being written ends the connection.
        private var closing = false
        /// A response to no request is being dropped.
        private var discarding = false

        mutating func read(_ head: Head, keepAlive askedToKeep: Bool) -> Inbound {
            switch reading {
            case .betweenRequests, .request: break
            case .refused, .bodyTimedOut, .ended: return .drop
            }
            let first = !sawHead
            sawHead = true
            switch head {
            case .refused(let refusal):
                // Answered in turn, then the connection ends; its body, if any, is not read.
                return refuse(refusal)
            case .request, .handshake:
                keepAlive.append(askedToKeep)
                reading = .request(bodyStarted: false)
                // The first request's handshake upgrades the connection; a later one is passed on
                // to be redirected.
                return head == .handshake && first ? .passAndLeave : .pass
            }
        }

        mutating func readBody() -> Inbound {
            switch reading {
            case .request(bodyStarted: false):
                reading = .request(bodyStarted: true)
                return .passStartingBodyDeadline
            case .request(bodyStarted: true): return .pass
            case .betweenRequests: return .pass
            case .refused, .bodyTimedOut, .ended: return .drop
            }
        }

        mutating func readEnd() -> Inbound {
            switch reading {
            case .request, .betweenRequests:
                reading = .betweenRequests
                return .passStoppingBodyDeadline
            case .refused, .bodyTimedOut, .ended: return .drop
            }
        }

        /// Bytes that are not HTTP/1.1: inside a request they go on to its body's reader; between
        /// requests they are answered in turn.
        mutating func readError(_ refusal: Refusal) -> Inbound {
            switch reading {
            case .request: return .pass
            case .betweenRequests: return refuse(refusal)
            case .refused, .bodyTimedOut, .ended: return .drop
            }
        }

        /// The body's deadline passed: whether its reader is to be told.
        mutating func bodyDeadlinePassed() -> Bool {
            guard case .request(bodyStarted: true) = reading else { return false }
            reading = .bodyTimedOut
            return true
        }

        mutating func writeHead(closing closes: Bool) -> Outbound {
            if keepAlive.isEmpty { discarding = true }
            guard !discarding else { return .discard }
            if closes { closing = true }
            return .write
        }

        mutating func writeBody() -> Outbound {
            discarding ? .discard : .write
        }

        mutating func writeEnd() -> Outbound {
            // A response to no request: Hummingbird's bare 400 for a parse error met while it
            // read, to discard it, the body of a request already answered (cut short, broken).
            // There is nothing left to answer; the connection ends.
            guard !discarding else { return .discardAndClose }
            let keptAlive = keepAlive.popFirst() ?? true
            guard closing || !keptAlive else {
                guard case .refused(let refusal) = reading, keepAlive.isEmpty else { return .write }
                reading = .ended
                return .writeThenAnswer(refusal)
            }
            // What follows on this connection goes unanswered, a parse error included.
            reading = .ended
            return .writeAndClose
        }

        private mutating func refuse(_ refusal: Refusal) -> Inbound {
            guard keepAlive.isEmpty else {
                reading = .refused(refusal)
                return .drop
            }
            reading = .ended
            return .answer(refusal)
        }
    }
}
