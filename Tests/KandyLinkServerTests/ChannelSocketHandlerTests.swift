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
            [.close(1002, "Frames from a client must be masked")], true, 1
        ),
        ("the client's close is echoed and ends the connection", [.clientClose(1000)], [.close(1000, "")], false, 1),
        (
            "a close code outside the allowed ranges is a protocol error", [.clientClose(999)], [.close(1002, "")],
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
    ]

    @Test(arguments: cases)
    func handles(
        name: String, steps: [Step], written expected: [Written], open: Bool, heard expectedHeard: Int
    ) throws {
        let heard = Atomic(0)
        let ended = Atomic(0)
        let loop = EmbeddedEventLoop()
        let channel = EmbeddedChannel(loop: loop)
        try channel.pipeline.syncOperations.addHandler(
            ChannelSocketHandler(
                closeTimeout: .seconds(5), logger: .init(label: "test"),
                heard: { heard.add(1, ordering: .relaxed) }, ended: { ended.add(1, ordering: .relaxed) }))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        let connection = ChannelSocketHandler.connection(to: channel)

        for step in steps {
            switch step {
            case .client(let opcode, let text, let masked):
                try channel.writeInbound(Self.frame(opcode, ByteBuffer(string: text), masked: masked))
            case .clientClose(let code):
                var data = ByteBuffer()
                data.write(webSocketErrorCode: WebSocketErrorCode(codeNumber: code))
                try channel.writeInbound(Self.frame(.connectionClose, data, masked: true))
            case .notify(let text):
                _ = connection.write(text, true)
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
        while let frame = try channel.readOutbound(as: WebSocketFrame.self) {
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

    private static func frame(_ opcode: WebSocketOpcode, _ data: ByteBuffer, masked: Bool) -> WebSocketFrame {
        guard masked else { return WebSocketFrame(fin: true, opcode: opcode, data: data) }
        let key: WebSocketMaskingKey = [0x12, 0x34, 0x56, 0x78]
        var data = data
        data.webSocketMask(key)
        return WebSocketFrame(fin: true, opcode: opcode, maskKey: key, data: data)
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
