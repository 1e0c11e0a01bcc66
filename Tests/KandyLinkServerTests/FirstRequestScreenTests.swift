import Foundation
import KandyLinkProtocol
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing

@testable import KandyLinkServer

/// What a connection's first request meets before NIO's upgrade handler, on an embedded channel
/// whose event loop's clock the test advances.
@Suite struct FirstRequestScreenTests {
    static let handshake =
        "Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"

    /// (request bytes, the Upgrade header passed on — nil: no head passed on)
    static let heads: [(name: String, request: String, upgrade: [String]?)] = [
        ("a plain request passes", "GET /health HTTP/1.1\r\nHost: x\r\n\r\n", []),
        (
            "a complete WebSocket handshake keeps its Upgrade", "GET /c HTTP/1.1\r\nHost: x\r\n\(handshake)\r\n",
            ["websocket"]
        ),
        (
            "an h2c upgrade becomes a plain request",
            "GET /health HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABk\r\n\r\n", []
        ),
        (
            "a handshake without its key becomes a plain request",
            "GET /c HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n", []
        ),
        (
            "a handshake of another version becomes a plain request",
            "GET /c HTTP/1.1\r\nHost: x\r\n\(handshake.replacingOccurrences(of: ": 13", with: ": 8"))\r\n", []
        ),
    ]

    @Test(arguments: heads)
    func screensTheFirstHead(name: String, request: String, upgrade: [String]?) throws {
        let rig = try Rig()
        try rig.channel.writeInbound(ByteBuffer(string: request))
        let head = try #require(try rig.channel.readInbound(as: HTTPServerRequestPart.self), "\(name)")
        guard case .head(let received) = head else {
            Issue.record("\(name): not a head first")
            return
        }
        #expect(received.headers["upgrade"] == upgrade, "\(name)")
        // Its work done, the screen is gone, and so is its deadline.
        #expect(throws: (any Error).self) {
            try rig.channel.pipeline.syncOperations.handler(type: FirstRequestScreen.self)
        }
        rig.loop.advanceTime(by: .seconds(60))
        #expect(rig.channel.isActive, "\(name)")
    }

    @Test(arguments: [
        "GARBAGE\r\n\r\n", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: \(String(repeating: "a", count: 100_000))\r\n\r\n",
    ])
    func bytesThatAreNotHTTPGetAJSONError(request: String) throws {
        let rig = try Rig()
        // Answered here: the parse error goes no further.
        try rig.channel.writeInbound(ByteBuffer(string: request))
        rig.loop.run()
        var written = ByteBuffer()
        while var part = try rig.channel.readOutbound(as: ByteBuffer.self) { written.writeBuffer(&part) }
        let response = String(buffer: written)
        #expect(response.hasPrefix("HTTP/1.1 400 "))
        #expect(response.contains("connection: close") || response.contains("Connection: close"))
        let body = try #require(response.components(separatedBy: "\r\n\r\n").last)
        let document = try WireJSON.decode(StatusDocument.self, from: Data(body.utf8))
        #expect(document.statusCode == StatusCode.malformedRequest.rawValue)
        #expect(!rig.channel.isActive)
    }

    @Test func aConnectionSilentPastTheDeadlineIsClosed() throws {
        let rig = try Rig()
        try rig.channel.writeInbound(ByteBuffer(string: "GET /health HTTP/1.1\r\n"))  // half a head
        rig.loop.advanceTime(by: .milliseconds(29_999))
        #expect(rig.channel.isActive)
        rig.loop.advanceTime(by: .milliseconds(1))
        #expect(!rig.channel.isActive)
    }

    /// HTTP/1.1 codec and the screen on an embedded, connected channel.
    struct Rig {
        let loop = EmbeddedEventLoop()
        let channel: EmbeddedChannel

        init() throws {
            channel = EmbeddedChannel(loop: loop)
            try channel.pipeline.syncOperations.addHandler(HTTPResponseEncoder())
            try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(HTTPRequestDecoder()))
            try channel.pipeline.syncOperations.addHandler(FirstRequestScreen(headTimeout: .seconds(30)))
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        }
    }
}
