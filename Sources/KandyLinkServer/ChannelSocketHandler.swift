import Logging
import NIOCore
import NIOWebSocket

/// Serves one notification channel's WebSocket on its connection's event loop, with no task of
/// its own: an idle channel costs its connection and this handler.
///
/// Every frame from the client says it is there (keepalives, spec §4.3; pongs); pings are
/// answered; the close handshake of RFC 6455 §7 is run both ways. Notifications reach it through
/// ``NotificationHub/Connection`` and its event loop's ``LoopOutbox``, already encoded, and so
/// does a close: nothing is written after the close frame.
///
/// It reads and writes the connection's bytes itself (``FrameReader``), with no frame codec in
/// the pipeline: a connection's handlers cost memory for as long as the channel is open. A frame
/// too long, or begun and not finished within the frame timeout, fails the connection.
final class ChannelSocketHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private enum State {
        case open
        /// Our close frame is sent; the client's is awaited until the deadline.
        case closing(Scheduled<Void>)
        /// Both close frames are sent; the client ends the connection, or the deadline does.
        case ending(Scheduled<Void>)
        case closed
    }

    private var state = State.open
    private var reader: FrameReader
    private var rules = FrameRules()
    /// When the frame under way must be whole: a client that trickles a frame, or starts one and
    /// stops, is not heard (being heard takes a whole frame), so without it only the sweeper's
    /// silence allowance would end the socket.
    private var frameDeadline: Scheduled<Void>?
    private let frameTimeout: TimeAmount
    private let heard: @Sendable () -> Void
    private let writable: @Sendable (Bool) -> Void
    private let ended: @Sendable () -> Void
    private let closeTimeout: TimeAmount
    private let logger: Logger

    /// - Parameters:
    ///   - maxFrameSize: the longest frame a client may send, in bytes.
    ///   - frameTimeout: how long a frame may take to arrive once its first bytes have.
    ///   - heard: the client was heard from (any frame).
    ///   - writable: the connection's backlog crossed a watermark: whether it is below the high one.
    ///   - ended: the connection is gone.
    init(
        maxFrameSize: Int, frameTimeout: TimeAmount, closeTimeout: TimeAmount, logger: Logger,
        heard: @escaping @Sendable () -> Void, writable: @escaping @Sendable (Bool) -> Void = { _ in },
        ended: @escaping @Sendable () -> Void
    ) {
        self.reader = FrameReader(maxFrameSize: maxFrameSize)
        self.frameTimeout = frameTimeout
        self.closeTimeout = closeTimeout
        self.logger = logger
        self.heard = heard
        self.writable = writable
        self.ended = ended
    }

    /// A notification or close on its way to a handler through its event loop's outbox.
    struct Outgoing: Sendable {
        enum Item: Sendable {
            case frame(ByteBuffer)
            case close(WebSocketErrorCode, String)
        }
        /// The connection's handler, once made.
        let handler: NIOLoopBoundBox<ChannelSocketHandler?>
        let item: Item

        /// Run on the handler's event loop.
        static func perform(_ outgoing: Outgoing) {
            switch outgoing.item {
            case .frame(let bytes): outgoing.handler.value?.send(bytes)
            case .close(let code, let reason): outgoing.handler.value?.close(code, reason)
            }
        }
    }

    /// What the hub writes through: notifications and closes reach the handler through its event
    /// loop's outbox, from whichever thread sends them, in the order sent. `handler` is this
    /// connection's handler, set once it is made.
    static func connection(handler: NIOLoopBoundBox<ChannelSocketHandler?>, outbox: LoopOutbox<Outgoing>)
        -> NotificationHub.Connection
    {
        NotificationHub.Connection(
            write: { frame in outbox.send(Outgoing(handler: handler, item: .frame(frame.encoded))) },
            close: { code, reason in outbox.send(Outgoing(handler: handler, item: .close(code, reason))) })
    }

    /// A server's text frame (unmasked, RFC 6455 §5.2), header and payload in one buffer.
    static func textFrame(_ text: String, allocator: ByteBufferAllocator) -> ByteBuffer {
        frame(.text, length: text.utf8.count, allocator: allocator) { $0.writeString(text) }
    }

    /// A server's control frame (unmasked, whole): its payload is at most 125 bytes.
    static func controlFrame(_ opcode: WebSocketOpcode, payload: ByteBuffer, allocator: ByteBufferAllocator)
        -> ByteBuffer
    {
        var payload = payload
        return frame(opcode, length: payload.readableBytes, allocator: allocator) { $0.writeBuffer(&payload) }
    }

    private static func frame(
        _ opcode: WebSocketOpcode, length: Int, allocator: ByteBufferAllocator, payload: (inout ByteBuffer) -> Void
    ) -> ByteBuffer {
        var frame = allocator.buffer(capacity: length + 10)
        frame.writeInteger(0x80 | UInt8(webSocketOpcode: opcode))  // FIN
        if length < 126 {
            frame.writeInteger(UInt8(length))
        } else if length <= UInt16.max {
            frame.writeInteger(UInt8(126))
            frame.writeInteger(UInt16(length))
        } else {
            frame.writeInteger(UInt8(127))
            frame.writeInteger(UInt64(length))
        }
        payload(&frame)
        return frame
    }

    private var context: ChannelHandlerContext?

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        stopFrameTimer()
    }

    /// Writes a notification, unless our close frame has gone out.
    func send(_ notification: ByteBuffer) {
        guard case .open = state, let context else { return }
        context.writeAndFlush(wrapOutboundOut(notification), promise: nil)
    }

    // MARK: From the client

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // Once both close frames are out (or the connection failed), what else comes is not read.
        switch state {
        case .ending, .closed: return
        case .open, .closing: break
        }
        reader.append(unwrapInboundIn(data))
        var completed = 0
        reading: while true {
            switch reader.next() {
            case .frame(let frame):
                completed += 1
                heard()
                received(frame, context: context)
                // Once the connection is ending (its bytes let go of), nothing more is read.
                switch state {
                case .open, .closing: continue reading
                case .ending, .closed: break reading
                }
            case .needMore:
                break reading
            case .tooLarge:
                fail(
                    context: context, code: .messageTooLarge,
                    reason: "A frame is at most \(reader.maxFrameSize) bytes")
                break reading
            }
        }
        timeFrame(completed: completed, context: context)
    }

    /// Starts the frame timeout when a frame begins, and stops it when none is under way.
    private func timeFrame(completed: Int, context: ChannelHandlerContext) {
        guard reader.isInsideFrame else { return stopFrameTimer() }
        // A frame that began in these bytes gets its time from now; one still under way keeps
        // its own (bytes that do not finish it do not extend it).
        guard frameDeadline == nil || completed > 0 else { return }
        frameDeadline?.cancel()
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        let bound = context.loopBound
        frameDeadline = context.eventLoop.scheduleTask(in: frameTimeout) {
            handler.value.frameTimedOut(context: bound.value)
        }
    }

    private func stopFrameTimer() {
        frameDeadline?.cancel()
        frameDeadline = nil
    }

    private func frameTimedOut(context: ChannelHandlerContext) {
        frameDeadline = nil
        fail(context: context, code: .policyViolation, reason: "A frame was begun and not finished in time")
    }

    private func received(_ frame: WebSocketFrame, context: ChannelHandlerContext) {
        // RFC 6455 §5.1: a server closes the connection on an unmasked frame.
        guard frame.maskKey != nil else {
            fail(context: context, code: .protocolError, reason: "Frames from a client must be masked")
            return
        }
        if let (code, reason) = rules.check(frame) {
            fail(context: context, code: code, reason: reason)
            return
        }
        switch frame.opcode {
        case .text, .binary, .continuation, .pong:
            break  // keepalives: being heard is all they say
        case .ping:
            guard frame.fin, case .open = state else { return }
            let pong = Self.controlFrame(.pong, payload: frame.unmaskedData, allocator: context.channel.allocator)
            context.writeAndFlush(wrapOutboundOut(pong), promise: nil)
        case .connectionClose:
            receivedClose(context: context, frame: frame)
        default:
            fail(context: context, code: .protocolError, reason: "Unknown opcode")
        }
    }

    private func receivedClose(context: ChannelHandlerContext, frame: WebSocketFrame) {
        switch state {
        case .open:
            // Echo their code (RFC 6455 §5.5.1), then the server ends the TCP connection (§7.1.1).
            // (FrameRules has refused close frames with an invalid code or reason.)
            let closeFrame = Self.closeFrame(code: .normalClosure, reason: "", allocator: context.channel.allocator)
            context.writeAndFlush(wrapOutboundOut(closeFrame), promise: nil)
            end(context: context, deadline: scheduleDeadline(context: context))
        case .closing(let deadline):
            end(context: context, deadline: deadline)
        case .ending, .closed:
            break
        }
    }

    /// Fails the connection (RFC 6455 §7.1.7) for a frame that breaks the protocol: a close frame
    /// with `code`, then the end of our side at once. Nothing more the client sends is read, so
    /// waiting for its close frame would only keep a misbehaving client connected.
    private func fail(context: ChannelHandlerContext, code: WebSocketErrorCode, reason: String) {
        switch state {
        case .open:
            let frame = Self.closeFrame(code: code, reason: reason, allocator: context.channel.allocator)
            context.writeAndFlush(wrapOutboundOut(frame), promise: nil)
            end(context: context, deadline: scheduleDeadline(context: context))
        case .closing(let deadline):
            end(context: context, deadline: deadline)
        case .ending, .closed:
            break
        }
    }

    /// The handshake is done: the server ends the TCP connection (RFC 6455 §7.1.1). Closing our
    /// side lets TLS send its close_notify and the client close at once; a full close would
    /// instead wait for the client's close_notify, which it sends only when the server has closed.
    private func end(context: ChannelHandlerContext, deadline: Scheduled<Void>) {
        state = .ending(deadline)
        reader.discard()
        let bound = context.loopBound
        let halfClosed = context.eventLoop.makePromise(of: Void.self)
        halfClosed.futureResult.whenFailure { _ in bound.value.close(promise: nil) }
        context.close(mode: .output, promise: halfClosed)
    }

    /// Closes the connection if the client has not ended it by then.
    private func scheduleDeadline(context: ChannelHandlerContext) -> Scheduled<Void> {
        let bound = context.loopBound
        return context.eventLoop.scheduleTask(in: closeTimeout) { bound.value.close(promise: nil) }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        writable(context.channel.isWritable)
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        stopFrameTimer()
        reader.discard()
        switch state {
        case .closing(let deadline), .ending(let deadline): deadline.cancel()
        case .open, .closed: break
        }
        state = .closed
        ended()
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        switch event {
        case is ChannelShouldQuiesceEvent:
            close(context: context, code: .goingAway, reason: "Platform shutting down")
        case ChannelEvent.inputClosed:
            // The client ended its side (the server allows half-closure): it will send nothing
            // more, keepalives included, so the socket is over.
            context.close(promise: nil)
        default:
            break
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        state = .closed
        logger.debug("Channel socket failed", metadata: ["error": "\(error)"])
        context.close(promise: nil)
    }

    // MARK: To the client

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard case .open = state else {
            promise?.fail(ChannelError.outputClosed)
            return
        }
        context.write(data, promise: promise)
    }

    /// Closes the socket with a close frame, unless ours has gone out.
    func close(_ code: WebSocketErrorCode, _ reason: String) {
        guard let context else { return }
        close(context: context, code: code, reason: reason)
    }

    /// Sends our close frame and waits a while for the client's.
    private func close(context: ChannelHandlerContext, code: WebSocketErrorCode, reason: String) {
        guard case .open = state else { return }
        let frame = Self.closeFrame(code: code, reason: reason, allocator: context.channel.allocator)
        context.writeAndFlush(wrapOutboundOut(frame), promise: nil)
        state = .closing(scheduleDeadline(context: context))
    }

    private static func closeFrame(code: WebSocketErrorCode, reason: String, allocator: ByteBufferAllocator)
        -> ByteBuffer
    {
        // A control frame's payload is at most 125 bytes: the code and 123 of reason.
        var reason = reason
        while reason.utf8.count > 123 { reason.removeLast() }
        var data = allocator.buffer(capacity: 2 + reason.utf8.count)
        data.write(webSocketErrorCode: code)
        data.writeString(reason)
        return controlFrame(.connectionClose, payload: data, allocator: allocator)
    }
}

/// What RFC 6455 requires of the frames a client sends (§5.2, §5.4, §5.5, §7.4, §8.1), checked
/// one frame at a time: the first violation is returned as the close code and reason to fail the
/// connection with.
struct FrameRules: Equatable {
    /// A text message longer than this (its fragments together) is refused with 1009.
    static let maxMessageBytes = 64 << 10

    /// The fragmented message under way: whether it is text, and its bytes so far (text only,
    /// for the UTF-8 check at its end).
    private var message: (isText: Bool, bytes: [UInt8])?

    static func == (lhs: FrameRules, rhs: FrameRules) -> Bool {
        lhs.message?.isText == rhs.message?.isText && lhs.message?.bytes == rhs.message?.bytes
    }

    mutating func check(_ frame: WebSocketFrame) -> (WebSocketErrorCode, String)? {
        if frame.rsv1 || frame.rsv2 || frame.rsv3 {
            return (.protocolError, "RSV bits are set, but no extension was negotiated")
        }
        switch frame.opcode {
        case .connectionClose, .ping, .pong:
            guard frame.fin else { return (.protocolError, "A control frame must not be fragmented") }
            guard frame.length <= 125 else { return (.protocolError, "A control frame carries at most 125 bytes") }
            return frame.opcode == .connectionClose ? Self.checkClose(frame.unmaskedData) : nil
        case .text, .binary:
            guard message == nil else {
                return (.protocolError, "A new message began before the fragmented one ended")
            }
            let isText = frame.opcode == .text
            let bytes = isText ? Array(frame.unmaskedData.readableBytesView) : []
            if frame.fin { return isText ? Self.checkText(bytes) : nil }
            message = (isText, bytes)
            return nil
        case .continuation:
            guard var current = message else {
                return (.protocolError, "A continuation frame with no message to continue")
            }
            if current.isText { current.bytes += frame.unmaskedData.readableBytesView }
            guard current.bytes.count <= Self.maxMessageBytes else {
                return (.messageTooLarge, "A message is at most \(Self.maxMessageBytes) bytes")
            }
            message = frame.fin ? nil : current
            return frame.fin && current.isText ? Self.checkText(current.bytes) : nil
        default:
            return (.protocolError, "Unknown opcode")
        }
    }

    private static func checkText(_ bytes: [UInt8]) -> (WebSocketErrorCode, String)? {
        String(validating: bytes, as: UTF8.self) == nil ? (.dataInconsistentWithMessage, "Text must be UTF-8") : nil
    }

    /// A close frame is empty, or a valid code and a UTF-8 reason.
    private static func checkClose(_ payload: ByteBuffer) -> (WebSocketErrorCode, String)? {
        var payload = payload
        guard payload.readableBytes > 0 else { return nil }
        guard let code = payload.readInteger(as: UInt16.self) else {
            return (.protocolError, "A close frame's code takes two bytes")
        }
        guard (1000...1003).contains(code) || (1007...1011).contains(code) || (3000...4999).contains(code) else {
            return (.protocolError, "Close code \(code) may not be sent")
        }
        return checkText(Array(payload.readableBytesView)).map { _ in
            (.dataInconsistentWithMessage, "A close reason must be UTF-8")
        }
    }
}
