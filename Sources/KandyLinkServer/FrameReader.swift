import NIOCore
import NIOWebSocket

/// Reads the WebSocket frames a client sends (RFC 6455 §5.2) out of the bytes its connection
/// delivers, for ``ChannelSocketHandler``.
///
/// Bytes are held only while a frame is unfinished, so an idle socket holds none: NIO's frame
/// decoder, with its handler and their buffers, kept about half a kilobyte for every channel for
/// its whole life. Only the framing is read here; what a frame may say is ``FrameRules``'.
struct FrameReader {
    enum Next: Equatable {
        case frame(WebSocketFrame)
        /// What is held is at most the start of a frame.
        case needMore
        /// The frame under way is longer than allowed: the client is failed on reading its length,
        /// before any of its payload is held.
        case tooLarge
    }

    let maxFrameSize: Int
    private var held: ByteBuffer?

    init(maxFrameSize: Int) {
        self.maxFrameSize = maxFrameSize
    }

    /// Whether a frame has begun and is not yet whole.
    var isInsideFrame: Bool { held != nil }

    mutating func append(_ bytes: ByteBuffer) {
        guard bytes.readableBytes > 0 else { return }
        if held == nil {
            held = bytes
        } else {
            var bytes = bytes
            held!.writeBuffer(&bytes)
        }
    }

    /// The next whole frame among the bytes held, if there is one.
    mutating func next() -> Next {
        guard var bytes = held else { return .needMore }
        let start = bytes.readerIndex
        guard let first = bytes.getInteger(at: start, as: UInt8.self),
            let second = bytes.getInteger(at: start + 1, as: UInt8.self)
        else { return .needMore }
        var header = 2
        let length: UInt64
        switch second & 0x7F {
        case 126:
            guard let extended = bytes.getInteger(at: start + 2, as: UInt16.self) else { return .needMore }
            header += 2
            length = UInt64(extended)
        case 127:
            guard let extended = bytes.getInteger(at: start + 2, as: UInt64.self) else { return .needMore }
            header += 8
            length = extended
        case let short:
            length = UInt64(short)
        }
        guard length <= UInt64(maxFrameSize) else { return .tooLarge }
        let masked = second & 0x80 != 0
        if masked { header += 4 }
        // Nil until the whole payload is held.
        guard let data = bytes.getSlice(at: start + header, length: Int(length)) else { return .needMore }
        let maskKey = masked ? bytes.getBytes(at: start + header - 4, length: 4).flatMap(WebSocketMaskingKey.init) : nil
        bytes.moveReaderIndex(forwardBy: header + Int(length))
        held = bytes.readableBytes > 0 ? bytes : nil
        return .frame(
            WebSocketFrame(
                fin: first & 0x80 != 0, rsv1: first & 0x40 != 0, rsv2: first & 0x20 != 0, rsv3: first & 0x10 != 0,
                // Four bits are always an opcode NIO can name; FrameRules refuses the reserved ones.
                opcode: WebSocketOpcode(encodedWebSocketOpcode: first & 0x0F)!, maskKey: maskKey, data: data))
    }

    /// Lets go of what is held: nothing more will be read.
    mutating func discard() {
        held = nil
    }
}
