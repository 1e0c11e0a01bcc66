import NIOCore

/// Gives a WebSocket frame a deadline once its first bytes arrive, as an HTTP body has: a client
/// that trickles a frame, or starts one and stops, is not heard (being heard takes a whole frame),
/// so without it only the sweeper's silence allowance would end the socket, and every byte would
/// be held in the decoder meanwhile.
///
/// It sits before the frame decoder and reads the bytes' framing only (``FrameBoundary``); when
/// the deadline passes it sends ``Expired`` up the pipeline, for the channel socket to close.
final class FrameDeadline: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    /// A frame begun more than the timeout ago is still not whole.
    struct Expired: Sendable {}

    private let timeout: TimeAmount
    private var boundary = FrameBoundary()
    private var deadline: Scheduled<Void>?

    init(timeout: TimeAmount) {
        self.timeout = timeout
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = unwrapInboundIn(data)
        let completed = boundary.consume(bytes.readableBytesView)
        if !boundary.isInsideFrame {
            deadline?.cancel()
            deadline = nil
        } else if deadline == nil || completed > 0 {
            // A frame began in these bytes: its time starts now.
            deadline?.cancel()
            let bound = context.loopBound
            deadline = context.eventLoop.scheduleTask(in: timeout) {
                bound.value.fireUserInboundEventTriggered(Expired())
            }
        }
        context.fireChannelRead(data)
    }

    func channelInactive(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
    }
}

/// Where a stream of WebSocket bytes stands: between frames or inside one (RFC 6455 §5.2). Only
/// lengths are read; what the frames say is the decoder's business.
struct FrameBoundary: Equatable {
    private enum Position: Equatable {
        /// The header bytes read so far (at most 14).
        case header([UInt8])
        /// Payload bytes still to come.
        case payload(UInt64)
    }

    private var position = Position.header([])

    var isInsideFrame: Bool { position != .header([]) }

    /// Reads `bytes`; returns how many frames they completed.
    @discardableResult
    mutating func consume(_ bytes: ByteBufferView) -> Int {
        var completed = 0
        var index = bytes.startIndex
        while index < bytes.endIndex {
            switch position {
            case .payload(let remaining):
                let available = UInt64(bytes.endIndex - index)
                let taken = min(remaining, available)
                index += Int(taken)
                if taken == remaining {
                    position = .header([])
                    completed += 1
                } else {
                    position = .payload(remaining - taken)
                }
            case .header(var header):
                header.append(bytes[index])
                index += 1
                guard let length = Self.payloadLength(header) else {
                    position = .header(header)
                    continue
                }
                if length == 0 {
                    position = .header([])
                    completed += 1
                } else {
                    position = .payload(length)
                }
            }
        }
        return completed
    }

    /// The payload length once `header` is whole, nil while more of it is to come.
    private static func payloadLength(_ header: [UInt8]) -> UInt64? {
        guard header.count >= 2 else { return nil }
        let short = header[1] & 0x7F
        let lengthBytes = short == 126 ? 2 : short == 127 ? 8 : 0
        let maskBytes = header[1] & 0x80 != 0 ? 4 : 0
        guard header.count == 2 + lengthBytes + maskBytes else { return nil }
        guard lengthBytes > 0 else { return UInt64(short) }
        return header[2..<(2 + lengthBytes)].reduce(0) { $0 << 8 | UInt64($1) }
    }
}
