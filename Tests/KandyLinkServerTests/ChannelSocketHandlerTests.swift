import NIOCore
import NIOEmbedded
import NIOWebSocket
import Synchronization
import Testing

@testable import KandyLinkServer

/// A channel socket's WebSocket handling (RFC 6455 §5.5, §7), on an embedded channel whose event
/// loop's clock the test advances.
@Suite struct ChannelSocketHandlerTests {
    enum Step {
        /// A frame from the client, masked unless said otherwise.
        case client(WebSocketOpcode, String = "", masked: Bool = true)
        /// A frame from the client arriving in pieces of these sizes (the rest in a last one).
        case clientInPieces(WebSocketOpcode, String, sizes: [Int])
        /// Frames from the client arriving in one read.
        case clientTogether([(WebSocketOpcode, String)])
        /// The client's close frame with this code.
        case clientClose(Int)
        /// The hub writes a notification.
        case notify(String)
        /// The hub closes the socket.
        case close(WebSocketErrorCode, String)
        case quiesce
        /// The client ends its side of the TCP connection.
        case clientHalfClose
        case advance(milliseconds: Int64)
    }

    /// A frame the handler wrote: opcode and payload (a close's as "code reason").
    struct Written: Equatable, CustomStringConvertible {
        var opcode: WebSocketOpcode
        var payload: String
        var description: String { "\(opcode) \(payload)" }
    }

    static let cases: [(name: String, steps: [Step], written: [Written], open: Bool, heard: Int)] = [
        ("a keepalive is heard, never answered", [.client(.text, "{\"type\":\"keepalive\"}")], [], true, 1),
        (
            "a ping is answered with its payload", [.client(.ping, "abc")], [.init(opcode: .pong, payload: "abc")],
            true, 1
        ),
        ("a pong is only heard", [.client(.pong, "x")], [], true, 1),
        ("notifications go out while open", [.notify("n1"), .notify("n2")], [.text("n1"), .text("n2")], true, 0),
        (
            "an unmasked frame is a protocol error", [.client(.text, "x", masked: false)],
            [.close(1002, "Frames from a client must be masked")], false, 1
        ),
        ("the client's close is echoed and ends the connection", [.clientClose(1000)], [.close(1000, "")], false, 1),
        (
            "a close code outside the allowed ranges is a protocol error", [.clientClose(999)],
            [.close(1002, "Close code 999 may not be sent")],
            false, 1
        ),
        (
            "nothing is written after our close", [.close(.policyViolation, "Replaced"), .notify("late")],
            [.close(1008, "Replaced")], true, 0
        ),
        (
            "our close ends the connection when the client answers",
            [.close(.goingAway, "bye"), .clientClose(1001), .notify("late")], [.close(1001, "bye")], false, 1
        ),
        (
            "our close waits 5 s for the client's answer",
            [.close(.normalClosure, "ended"), .advance(milliseconds: 4999)],
            [.close(1000, "ended")], true, 0
        ),
        (
            "and then ends the connection anyway", [.close(.normalClosure, "ended"), .advance(milliseconds: 5000)],
            [.close(1000, "ended")], false, 0
        ),
        (
            "a second close is not sent", [.close(.goingAway, "a"), .close(.normalClosure, "b")], [.close(1001, "a")],
            true, 0
        ),
        ("shutdown closes with going away", [.quiesce], [.close(1001, "Platform shutting down")], true, 0),
        ("a client that ends its side of the connection is gone", [.clientHalfClose], [], false, 0),
        (
            "a frame is read once whole, however it is cut", [.clientInPieces(.ping, "abc", sizes: [1, 1, 4, 2])],
            [.init(opcode: .pong, payload: "abc")], true, 1
        ),
        (
            "frames arriving together are each read", [.clientTogether([(.ping, "a"), (.text, "k"), (.ping, "b")])],
            [.init(opcode: .pong, payload: "a"), .init(opcode: .pong, payload: "b")], true, 3
        ),
        (
            "a frame over the limit fails the connection on its length alone",
            [.clientInPieces(.text, String(repeating: "x", count: 5000), sizes: [4])],
            [.close(1009, "A frame is at most 4096 bytes")], false, 0
        ),
        (
            "what follows the client's close is not read",
            [.clientTogether([(.connectionClose, ""), (.ping, "late")])], [.close(1000, "")], false, 1
        ),
    ]

    static let maxFrameSize = 4096

    @Test(arguments: cases)
    func handles(_ scenario: (name: String, steps: [Step], written: [Written], open: Bool, heard: Int)) throws {
        let (name, steps, expected, open, expectedHeard) = scenario
        let heard = Atomic(0)
        let ended = Atomic(0)
        let loop = EmbeddedEventLoop()
        let channel = EmbeddedChannel(loop: loop)
        let handler = ChannelSocketHandler(
            maxFrameSize: Self.maxFrameSize, frameTimeout: .seconds(30), closeTimeout: .seconds(5),
            logger: .init(label: "test"), heard: { heard.add(1, ordering: .relaxed) },
            ended: { ended.add(1, ordering: .relaxed) })
        try channel.pipeline.syncOperations.addHandler(handler)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        let connection = ChannelSocketHandler.connection(
            handler: NIOLoopBoundBox(handler, eventLoop: channel.eventLoop),
            outbox: LoopOutbox(loop: loop, perform: ChannelSocketHandler.Outgoing.perform))

        for step in steps {
            switch step {
            case .client(let opcode, let text, let masked):
                try channel.writeInbound(
                    try Self.nioEncoded(Self.frame(opcode, ByteBuffer(string: text), masked: masked)))
            case .clientInPieces(let opcode, let text, let sizes):
                var bytes = try Self.nioEncoded(Self.frame(opcode, ByteBuffer(string: text), masked: true))
                for size in sizes {
                    guard let piece = bytes.readSlice(length: min(size, bytes.readableBytes)) else { break }
                    try channel.writeInbound(piece)
                }
                if bytes.readableBytes > 0 { try channel.writeInbound(bytes) }
            case .clientTogether(let frames):
                var bytes = ByteBuffer()
                for (opcode, text) in frames {
                    var frame = try Self.nioEncoded(Self.frame(opcode, ByteBuffer(string: text), masked: true))
                    bytes.writeBuffer(&frame)
                }
                try channel.writeInbound(bytes)
            case .clientClose(let code):
                var data = ByteBuffer()
                data.write(webSocketErrorCode: WebSocketErrorCode(codeNumber: code))
                try channel.writeInbound(try Self.nioEncoded(Self.frame(.connectionClose, data, masked: true)))
            case .notify(let text):
                connection.write(NotificationHub.Frame(text))
            case .close(let code, let reason):
                connection.close(code, reason)
            case .quiesce:
                channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
            case .clientHalfClose:
                channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
            case .advance(let milliseconds):
                loop.advanceTime(by: .milliseconds(milliseconds))
            }
            loop.run()
        }

        var written: [Written] = []
        for frame in try Self.decodeWritten(channel) {
            #expect(frame.maskKey == nil, "a server never masks")
            var data = frame.data
            if frame.opcode == .connectionClose, let code = data.readInteger(as: UInt16.self) {
                written.append(.close(Int(code), String(buffer: data)))
            } else {
                written.append(Written(opcode: frame.opcode, payload: String(buffer: data)))
            }
        }
        #expect(written == expected, "\(name)")
        #expect(channel.isActive == open, "\(name)")
        #expect(ended.load(ordering: .relaxed) == (open ? 0 : 1), "\(name)")
        #expect(heard.load(ordering: .relaxed) == expectedHeard, "\(name)")
        if open { _ = try? channel.finish() }
    }

    /// The hub reads writability from its socket: the handler must report each watermark crossed.
    @Test func reportsTheBacklogCrossingItsWatermarks() throws {
        let seen = Mutex<[Bool]>([])
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(
            ChannelSocketHandler(
                maxFrameSize: Self.maxFrameSize, frameTimeout: .seconds(30), closeTimeout: .seconds(5),
                logger: .init(label: "test"), heard: {},
                writable: { writable in seen.withLock { $0.append(writable) } },
                ended: {}))
        for writable in [false, true] {
            channel.isWritable = writable
            channel.pipeline.fireChannelWritabilityChanged()
        }
        #expect(seen.withLock { $0 } == [false, true])
        _ = try channel.finish()
    }

    /// A frame's bytes as NIO's encoder writes them (masked, when it has a key, as a client's).
    static func nioEncoded(_ frame: WebSocketFrame) throws -> ByteBuffer {
        let channel = EmbeddedChannel(handler: WebSocketFrameEncoder())
        try channel.writeOutbound(frame)
        var bytes = ByteBuffer()
        while var part = try channel.readOutbound(as: ByteBuffer.self) { bytes.writeBuffer(&part) }
        _ = try channel.finish()
        return bytes
    }

    /// The bytes written, read back as a client reads server frames (unmasked, RFC 6455 §5.2).
    static func decodeWritten(_ channel: EmbeddedChannel) throws -> [WebSocketFrame] {
        var bytes = ByteBuffer()
        while var part = try channel.readOutbound(as: ByteBuffer.self) { bytes.writeBuffer(&part) }
        var frames: [WebSocketFrame] = []
        while let first = bytes.readInteger(as: UInt8.self), let second = bytes.readInteger(as: UInt8.self) {
            #expect(second & 0x80 == 0, "a server never masks")
            var length = Int(second & 0x7F)
            if length == 126, let extended = bytes.readInteger(as: UInt16.self) {
                length = Int(extended)
            } else if length == 127, let extended = bytes.readInteger(as: UInt64.self) {
                length = Int(extended)
            }
            guard let data = bytes.readSlice(length: length) else { throw TestFailure("a frame cut short") }
            let opcode = try #require(WebSocketOpcode(encodedWebSocketOpcode: first & 0x0F))
            frames.append(WebSocketFrame(fin: first & 0x80 != 0, opcode: opcode, data: data))
        }
        #expect(bytes.readableBytes == 0, "whole frames only")
        return frames
    }

    /// A notification the handler encodes is byte for byte what NIO's encoder makes of it, at
    /// each length encoding's edges.
    @Test(arguments: [0, 1, 125, 126, 65_535, 65_536, 70_000])
    func encodesTextFramesAsNIODoes(length: Int) throws {
        let text = String(repeating: "é", count: length / 2) + String(repeating: "a", count: length % 2)
        let channel = EmbeddedChannel(handler: WebSocketFrameEncoder())
        try channel.writeOutbound(
            WebSocketFrame(fin: true, opcode: .text, data: channel.allocator.buffer(string: text)))
        var expected = ByteBuffer()
        while var part = try channel.readOutbound(as: ByteBuffer.self) { expected.writeBuffer(&part) }
        #expect(ChannelSocketHandler.textFrame(text, allocator: channel.allocator) == expected)
        _ = try channel.finish()
    }

    /// So are the control frames it answers with.
    @Test(arguments: [WebSocketOpcode.pong, .connectionClose], [0, 2, 125])
    func encodesControlFramesAsNIODoes(opcode: WebSocketOpcode, length: Int) throws {
        let payload = ByteBuffer(bytes: (0..<length).map { UInt8($0 & 0xFF) })
        let expected = try Self.nioEncoded(WebSocketFrame(fin: true, opcode: opcode, data: payload))
        #expect(ChannelSocketHandler.controlFrame(opcode, payload: payload, allocator: .init()) == expected)
    }

    /// A whole frame with `data` as its payload, to be masked as a client's by NIO's encoder.
    static func frame(_ opcode: WebSocketOpcode, _ data: ByteBuffer, masked: Bool) -> WebSocketFrame {
        WebSocketFrame(fin: true, opcode: opcode, maskKey: masked ? [0x12, 0x34, 0x56, 0x78] : nil, data: data)
    }
}

extension ChannelSocketHandlerTests.Written {
    static func text(_ text: String) -> Self { .init(opcode: .text, payload: text) }
    static func close(_ code: Int, _ reason: String) -> Self {
        .init(opcode: .connectionClose, payload: "\(code) \(reason)")
    }
}

extension ChannelSocketHandlerTests.Step: Sendable {}
extension ChannelSocketHandlerTests.Written: Sendable {}

/// RFC 6455's rules for client frames, as a table: frames in, the close (code) the first
/// violation gets, or none.
@Suite struct FrameRulesTests {
    struct Frame {
        var opcode: WebSocketOpcode
        var fin = true
        var bytes: [UInt8] = []
        var rsv1 = false

        var frame: WebSocketFrame {
            // Unmasked: the rules read unmaskedData, which is then the bytes as given.
            WebSocketFrame(fin: fin, rsv1: rsv1, opcode: opcode, data: ByteBuffer(bytes: bytes))
        }
    }

    static let invalidUTF8: [UInt8] = [0x68, 0xC3, 0x28]
    /// "é" split across two fragments: valid only together.
    static let splitE: ([UInt8], [UInt8]) = ([0x63, 0x61, 0x66, 0xC3], [0xA9])

    static func close(_ code: UInt16, _ reason: [UInt8] = []) -> [UInt8] {
        [UInt8(code >> 8), UInt8(code & 0xFF)] + reason
    }

    static let table: [(name: String, frames: [Frame], close: WebSocketErrorCode?)] = [
        ("a keepalive", [Frame(opcode: .text, bytes: Array(#"{"message_type":"ping"}"#.utf8))], nil),
        ("invalid UTF-8", [Frame(opcode: .text, bytes: invalidUTF8)], .dataInconsistentWithMessage),
        (
            "UTF-8 split across fragments",
            [Frame(opcode: .text, fin: false, bytes: splitE.0), Frame(opcode: .continuation, bytes: splitE.1)], nil
        ),
        (
            "invalid UTF-8 across fragments",
            [Frame(opcode: .text, fin: false, bytes: splitE.0), Frame(opcode: .continuation, bytes: [0x28])],
            .dataInconsistentWithMessage
        ),
        ("binary is not checked", [Frame(opcode: .binary, bytes: invalidUTF8)], nil),
        ("RSV1 without an extension", [Frame(opcode: .text, bytes: [0x61], rsv1: true)], .protocolError),
        ("a lone continuation", [Frame(opcode: .continuation, bytes: [0x61])], .protocolError),
        (
            "a new message inside a fragmented one",
            [Frame(opcode: .text, fin: false, bytes: [0x61]), Frame(opcode: .text, bytes: [0x62])], .protocolError
        ),
        (
            "a ping between fragments is fine",
            [
                Frame(opcode: .text, fin: false, bytes: [0x61]), Frame(opcode: .ping),
                Frame(opcode: .continuation, bytes: [0x62]),
            ], nil
        ),
        ("a fragmented ping", [Frame(opcode: .ping, fin: false)], .protocolError),
        ("a close with a valid code", [Frame(opcode: .connectionClose, bytes: close(1000, Array("bye".utf8)))], nil),
        ("an empty close", [Frame(opcode: .connectionClose)], nil),
        ("a close code one byte long", [Frame(opcode: .connectionClose, bytes: [0x03])], .protocolError),
        ("close code 1005 may not be sent", [Frame(opcode: .connectionClose, bytes: close(1005))], .protocolError),
        ("close code 2999", [Frame(opcode: .connectionClose, bytes: close(2999))], .protocolError),
        ("an application close code", [Frame(opcode: .connectionClose, bytes: close(4000))], nil),
        (
            "a close reason that is not UTF-8", [Frame(opcode: .connectionClose, bytes: close(1000, invalidUTF8))],
            .dataInconsistentWithMessage
        ),
        (
            "a message over 64 KiB",
            [Frame(opcode: .text, fin: false, bytes: Array(repeating: 0x61, count: 40_000))]
                + [Frame(opcode: .continuation, bytes: Array(repeating: 0x61, count: 40_000))], .messageTooLarge
        ),
    ]

    @Test(arguments: table.indices) func clientFrames(row: Int) {
        let (name, frames, expected) = Self.table[row]
        var rules = FrameRules()
        var verdict: (WebSocketErrorCode, String)?
        for frame in frames where verdict == nil { verdict = rules.check(frame.frame) }
        #expect(verdict?.0 == expected, "\(name): \(String(describing: verdict))")
    }
}

/// Frames read out of a client's bytes, where the stream stands between them, and the deadline a
/// begun frame gets.
@Suite struct FrameReaderTests {
    /// A masked client frame's bytes: header, extended length, key, payload.
    static func frame(payload: Int, opcode: UInt8 = 0x1) -> [UInt8] {
        var bytes: [UInt8] = [0x80 | opcode]
        switch payload {
        case ..<126: bytes.append(0x80 | UInt8(payload))
        case ..<65536: bytes += [0x80 | 126, UInt8(payload >> 8), UInt8(payload & 0xFF)]
        default: bytes += [0x80 | 127] + (0..<8).reversed().map { UInt8((payload >> ($0 * 8)) & 0xFF) }
        }
        return bytes + [1, 2, 3, 4] + [UInt8](repeating: 0x61 ^ 1, count: payload)
    }

    static let boundaries: [(name: String, chunks: [[UInt8]], completed: Int, inside: Bool)] = [
        ("nothing yet", [], 0, false),
        ("a whole empty frame", [frame(payload: 0)], 1, false),
        ("a whole short frame", [frame(payload: 5)], 1, false),
        ("a first header byte", [[0x81]], 0, true),
        ("a header without its key", [Array(frame(payload: 5).prefix(4))], 0, true),
        ("a frame but its last byte", [Array(frame(payload: 5).dropLast())], 0, true),
        ("a frame byte by byte", frame(payload: 3).map { [$0] }, 1, false),
        ("two frames in one read", [frame(payload: 2) + frame(payload: 0)], 2, false),
        ("a frame and the start of the next", [frame(payload: 2) + [0x81, 0x85]], 1, true),
        ("a 16-bit length", [frame(payload: 300)], 1, false),
        (
            "a 64-bit length, split in its length",
            [Array(frame(payload: 70_000).prefix(6)), Array(frame(payload: 70_000).dropFirst(6))], 1, false
        ),
        ("a 64-bit length, payload short by one", [Array(frame(payload: 70_000).dropLast())], 0, true),
    ]

    @Test(arguments: boundaries.indices) func boundary(row: Int) {
        let (name, chunks, completed, inside) = Self.boundaries[row]
        var reader = FrameReader(maxFrameSize: 1 << 20)
        var frames: [WebSocketFrame] = []
        for chunk in chunks {
            reader.append(ByteBuffer(bytes: chunk))
            while case .frame(let frame) = reader.next() { frames.append(frame) }
        }
        #expect(frames.count == completed, "\(name)")
        #expect(reader.isInsideFrame == inside, "\(name)")
    }

    /// What NIO's encoder makes of a frame, the reader reads back as that frame: every bit of the
    /// first byte, masked or not, at each length encoding's edges.
    @Test(arguments: [0, 1, 125, 126, 65_535, 65_536], [false, true])
    func readsWhatNIOEncodes(length: Int, masked: Bool) throws {
        let payload = ByteBuffer(bytes: (0..<length).map { UInt8(truncatingIfNeeded: $0 * 7) })
        let key: WebSocketMaskingKey? = masked ? [0x12, 0x34, 0x56, 0x78] : nil
        let frames = [
            WebSocketFrame(fin: true, opcode: .text, maskKey: key, data: payload),
            WebSocketFrame(fin: false, rsv1: true, opcode: .binary, maskKey: key, data: payload),
            WebSocketFrame(fin: true, rsv2: true, rsv3: true, opcode: .continuation, maskKey: key, data: payload),
            WebSocketFrame(
                fin: true, opcode: try #require(WebSocketOpcode(encodedWebSocketOpcode: 0xB)), maskKey: key,
                data: payload),
        ]
        var reader = FrameReader(maxFrameSize: 1 << 20)
        for frame in frames { reader.append(try ChannelSocketHandlerTests.nioEncoded(frame)) }
        for sent in frames {
            guard case .frame(let read) = reader.next() else {
                Issue.record("a frame was not read")
                return
            }
            #expect(
                [read.fin, read.rsv1, read.rsv2, read.rsv3] == [sent.fin, sent.rsv1, sent.rsv2, sent.rsv3]
                    && read.opcode == sent.opcode && read.maskKey == sent.maskKey)
            #expect(read.unmaskedData == payload)
        }
        #expect(reader.next() == .needMore)
        #expect(!reader.isInsideFrame)
    }

    /// A frame over the limit is refused as soon as its length is read, whichever encoding it
    /// has, before its payload is held; one of exactly the limit waits for its payload. (A 64-bit
    /// length with its top bit set is over any limit.)
    @Test(
        arguments: [
            ([0x81, 0x80 | 101], false), ([0x81, 0x80 | 126, 0x00, 101], false),
            ([0x81, 0x80 | 127, 0, 0, 0, 0, 0, 0, 0, 101], false),
            ([0x81, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 0], true),
        ] as [([UInt8], Bool)])
    func refusesAFrameOverTheLimitByItsHeader(header: [UInt8], overAnyLimit: Bool) {
        var reader = FrameReader(maxFrameSize: 100)
        reader.append(ByteBuffer(bytes: header))
        #expect(reader.next() == .tooLarge)
        var exact = FrameReader(maxFrameSize: 101)
        exact.append(ByteBuffer(bytes: header))
        #expect(exact.next() == (overAnyLimit ? .tooLarge : .needMore))
    }

    enum Step: Sendable {
        case bytes([UInt8])
        case advance(seconds: Int64)
    }

    static let deadlines: [(name: String, steps: [Step], closed: Bool)] = [
        ("a begun frame has 30 s", [.bytes([0x81, 0x85]), .advance(seconds: 29)], false),
        ("and is failed after them", [.bytes([0x81, 0x85]), .advance(seconds: 30)], true),
        (
            "bytes that do not finish it do not extend it",
            [.bytes([0x81]), .advance(seconds: 20), .bytes([0x85]), .advance(seconds: 10)], true
        ),
        (
            "a finished frame stops the clock",
            [
                .bytes([0x81]), .advance(seconds: 20), .bytes(Array(frame(payload: 5).dropFirst())),
                .advance(seconds: 60),
            ], false
        ),
        (
            "the next frame gets its own 30 s",
            [
                .bytes([0x81]), .advance(seconds: 20), .bytes(Array(frame(payload: 5).dropFirst()) + [0x81]),
                .advance(seconds: 29),
            ], false
        ),
        (
            "silence between frames is the sweeper's, not this", [.bytes(frame(payload: 5)), .advance(seconds: 120)],
            false
        ),
    ]

    @Test(arguments: deadlines.indices) func deadline(row: Int) throws {
        let (name, steps, closed) = Self.deadlines[row]
        let loop = EmbeddedEventLoop()
        let channel = EmbeddedChannel(loop: loop)
        try channel.pipeline.syncOperations.addHandler(
            ChannelSocketHandler(
                maxFrameSize: 1 << 20, frameTimeout: .seconds(30), closeTimeout: .seconds(5),
                logger: .init(label: "test"), heard: {}, ended: {}))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        for step in steps {
            switch step {
            case .bytes(let bytes): try channel.writeInbound(ByteBuffer(bytes: bytes))
            case .advance(let seconds): loop.advanceTime(by: .seconds(seconds))
            }
        }
        var codes: [UInt16] = []
        for var frame in try ChannelSocketHandlerTests.decodeWritten(channel) {
            if frame.opcode == .connectionClose, let code = frame.data.readInteger(as: UInt16.self) {
                codes.append(code)
            }
        }
        #expect(codes == (closed ? [1008] : []), "\(name)")
        _ = try? channel.finish()
    }
}
