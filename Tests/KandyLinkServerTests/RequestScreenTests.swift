import Foundation
import KandyLinkProtocol
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing

@testable import KandyLinkServer

/// What a connection's requests meet between its HTTP/1.1 codec and the rest of its pipeline, on
/// an embedded channel whose event loop's clock the test advances.
@Suite struct RequestScreenTests {
    static let handshake =
        "Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"

    /// (request bytes, the Upgrade header passed on, whether the screen stays for later requests)
    static let heads: [(name: String, request: String, upgrade: [String], stays: Bool)] = [
        ("a plain request passes", "GET /health HTTP/1.1\r\nHost: x\r\n\r\n", [], true),
        (
            "a complete WebSocket handshake keeps its Upgrade, and ends the screen's work",
            "GET /c HTTP/1.1\r\nHost: x\r\n\(handshake)\r\n", ["websocket"], false
        ),
        (
            "an h2c upgrade becomes a plain request",
            "GET /health HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABk\r\n\r\n", [], true
        ),
        (
            "a handshake without its key becomes a plain request",
            "GET /c HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n", [], true
        ),
        (
            "a handshake of another version becomes a plain request",
            "GET /c HTTP/1.1\r\nHost: x\r\n\(handshake.replacingOccurrences(of: ": 13", with: ": 8"))\r\n", [], true
        ),
        (
            "a handshake with a body becomes a plain request",
            "GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\(handshake)\r\n{}", [], true
        ),
        (
            "so does one with a chunked body",
            "GET /health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\(handshake)\r\n0\r\n\r\n", [], true
        ),
        ("an HTTP/1.0 request needs no Host", "GET /health HTTP/1.0\r\n\r\n", [], true),
    ]

    /// Heads the screen answers itself, with a JSON error, before anything reads them.
    static let refused: [(name: String, request: String, status: Int, code: StatusCode)] = [
        ("no Host", "GET /health HTTP/1.1\r\n\r\n", 400, .malformedRequest),
        ("two Hosts", "GET /health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, .malformedRequest),
        ("CONNECT", "CONNECT /health HTTP/1.1\r\nHost: x\r\n\r\n", 405, .methodNotAllowed),
        (
            "CONNECT to an authority", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com\r\n\r\n", 405,
            .methodNotAllowed
        ),
    ]

    @Test(arguments: refused)
    func answersWhatItRefuses(name: String, request: String, status: Int, code: StatusCode) throws {
        let rig = try Rig()
        try rig.channel.writeInbound(ByteBuffer(string: request))
        rig.loop.run()
        #expect(try rig.channel.readInbound(as: HTTPServerRequestPart.self) == nil, "\(name): passed on")
        let response = try #require(TestPlatform.responses(in: rig.written()).first, "\(name)")
        #expect(response.hasPrefix("\(status) "), "\(name): \(response)")
        let body = try #require(response.components(separatedBy: "\r\n\r\n").last)
        #expect(try WireJSON.decode(StatusDocument.self, from: Data(body.utf8)).statusCode == code.rawValue, "\(name)")
        #expect(response.lowercased().contains("access-control-allow-origin: *"), "\(name): \(response)")
        #expect(!rig.channel.isActive, "\(name)")
    }

    @Test func aRefusalEchoesThePagesOrigin() throws {
        let rig = try Rig()
        try rig.channel.writeInbound(
            ByteBuffer(string: "CONNECT /health HTTP/1.1\r\nHost: x\r\nOrigin: https://app.example.org\r\n\r\n"))
        rig.loop.run()
        let response = try #require(TestPlatform.responses(in: rig.written()).first)
        #expect(response.hasPrefix("405 "))
        #expect(response.lowercased().contains("access-control-allow-origin: https://app.example.org"), "\(response)")
    }

    @Test(arguments: heads)
    func screensTheFirstHead(name: String, request: String, upgrade: [String], stays: Bool) throws {
        let rig = try Rig()
        try rig.channel.writeInbound(ByteBuffer(string: request))
        let head = try #require(try rig.channel.readInbound(as: HTTPServerRequestPart.self), "\(name)")
        guard case .head(let received) = head else {
            Issue.record("\(name): not a head first")
            return
        }
        #expect(received.headers["upgrade"] == upgrade, "\(name)")
        let screen = try? rig.channel.pipeline.syncOperations.handler(type: RequestScreen.self)
        #expect((screen != nil) == stays, "\(name)")
        // The head came: its deadline is gone.
        rig.loop.advanceTime(by: .seconds(60))
        #expect(rig.channel.isActive, "\(name)")
    }

    @Test func aLaterHandshakeKeepsItsUpgradeAndTheScreen() throws {
        let rig = try Rig()
        try rig.channel.writeInbound(ByteBuffer(string: Self.get))
        try rig.respond()
        _ = rig.written()
        while try rig.channel.readInbound(as: HTTPServerRequestPart.self) != nil {}
        try rig.channel.writeInbound(ByteBuffer(string: "GET /c HTTP/1.1\r\nHost: x\r\n\(Self.handshake)\r\n"))
        guard case .head(let received)? = try rig.channel.readInbound(as: HTTPServerRequestPart.self) else {
            Issue.record("no head passed on")
            return
        }
        // Passed on as it is, for the responder to redirect; the screen stays for what follows.
        #expect(received.headers["upgrade"] == ["websocket"])
        #expect((try? rig.channel.pipeline.syncOperations.handler(type: RequestScreen.self)) != nil)
    }

    static let oversized = "GET / HTTP/1.1\r\nHost: x\r\nX-Big: \(String(repeating: "a", count: 100_000))\r\n\r\n"
    static let get = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"

    /// Bytes that are not HTTP/1.1: (sent and answered first, then sent, requests in it answered
    /// before the error is, whether the error goes on to the body's reader instead)
    static let malformed: [(name: String, answered: String?, input: String, pending: Int, passedOn: Bool)] = [
        ("garbage as the first request", nil, "GARBAGE\r\n\r\n", 0, false),
        ("an oversized head as the first request", nil, oversized, 0, false),
        ("garbage after an answered request", get, "GARBAGE\r\n\r\n", 0, false),
        ("an oversized head after an answered request", get, oversized, 0, false),
        ("garbage behind a request still being answered", nil, get + "GARBAGE\r\n\r\n", 1, false),
        ("garbage behind two pipelined requests", nil, get + get + "GARBAGE\r\n\r\n", 2, false),
        (
            "a broken chunk inside a body goes to the body's reader", nil,
            "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n", 0, true
        ),
    ]

    @Test(arguments: malformed)
    func bytesThatAreNotHTTPGetAJSONErrorInTurn(
        name: String, answered: String?, input: String, pending: Int, passedOn: Bool
    ) throws {
        let rig = try Rig()
        if let answered {
            try rig.channel.writeInbound(ByteBuffer(string: answered))
            try rig.respond()
        }
        // An error that reaches the end of the embedded pipeline is thrown here.
        let reached = Result { try rig.channel.writeInbound(ByteBuffer(string: input)) }
        rig.loop.run()
        if passedOn {
            #expect(throws: HTTPParserError.self, "\(name)") { try reached.get() }
            #expect(rig.written().isEmpty, "\(name)")
            #expect(rig.channel.isActive, "\(name)")
            return
        }
        #expect(throws: Never.self, "\(name)") { try reached.get() }
        var output = rig.written()
        for _ in 0..<pending {
            // Nothing answers the error while a response before it is still to come.
            #expect(!output.contains("400"), "\(name)")
            #expect(rig.channel.isActive, "\(name)")
            try rig.respond()
            output += rig.written()
        }
        let responses = TestPlatform.responses(in: output)
        #expect(responses.count == pending + (answered == nil ? 0 : 1) + 1, "\(name)")
        #expect(responses.dropLast().allSatisfy { $0.hasPrefix("204 ") }, "\(name)")
        let last = try #require(responses.last)
        #expect(last.hasPrefix("400 "), "\(name)")
        #expect(last.lowercased().contains("connection: close"), "\(name)")
        let body = try #require(last.components(separatedBy: "\r\n\r\n").last)
        let document = try WireJSON.decode(StatusDocument.self, from: Data(body.utf8))
        #expect(document.statusCode == StatusCode.malformedRequest.rawValue, "\(name)")
        #expect(!rig.channel.isActive, "\(name)")
    }

    /// (request, the response's headers, whether the connection ends once it is written)
    static let endings: [(name: String, request: String, response: HTTPHeaders, ends: Bool)] = [
        ("an HTTP/1.1 request keeps the connection", get, [:], false),
        ("a response that says Connection: close ends it", get, ["Connection": "close"], true),
        ("so does one that says it among others", get, ["Connection": "Upgrade, Close"], true),
        (
            "a request that says Connection: close ends it", "GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            [:], true
        ),
        ("an HTTP/1.0 request ends it", "GET /a HTTP/1.0\r\n\r\n", [:], true),
        (
            "an HTTP/1.0 request asking for keep-alive keeps it", "GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
            [:], false
        ),
    ]

    @Test(arguments: endings)
    func aResponseEndsTheConnectionWhenEitherSideSaysSo(
        name: String, request: String, response: HTTPHeaders, ends: Bool
    ) throws {
        let rig = try Rig()
        try rig.channel.writeInbound(ByteBuffer(string: request))
        try rig.respond(headers: response)
        #expect(rig.written().hasPrefix("HTTP/1.1 204 "), "\(name)")
        #expect(rig.channel.isActive == !ends, "\(name)")
    }

    @Test func aClosingResponseLeavesTheRequestsBehindItUnanswered() throws {
        let rig = try Rig()
        try rig.channel.writeInbound(ByteBuffer(string: Self.get + Self.get + "GARBAGE\r\n\r\n"))
        try rig.respond(headers: ["Connection": "close"])
        let output = rig.written()
        #expect(TestPlatform.responses(in: output).count == 1, "\(output)")
        #expect(!rig.channel.isActive)
    }

    static let post = "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\n"

    /// (what arrives at 0, then after each wait in milliseconds, whether the body times out)
    static let bodies: [(name: String, first: String, later: [(wait: Int64, bytes: String)], timesOut: Bool)] = [
        ("a request without a body has no body deadline", get, [(60_000, "")], false),
        ("a body that ends in time", post + "abc", [(29_999, "def")], false),
        ("a body still short at the deadline", post + "abc", [(30_000, "")], true),
        (
            "a body trickled in is timed from its first bytes", post + "a",
            [(10_000, "b"), (10_000, "c"), (10_000, "d")], true
        ),
        ("the deadline is per body", post + "abcdef" + post + "abc", [(20_000, "def"), (20_000, "")], false),
    ]

    @Test(arguments: bodies)
    func aBodyMustArriveWithinItsDeadline(
        name: String, first: String, later: [(wait: Int64, bytes: String)], timesOut: Bool
    ) throws {
        let rig = try Rig()
        var reached: [Result<Void, any Error>] = [Result { try rig.channel.writeInbound(ByteBuffer(string: first)) }]
        for (wait, bytes) in later {
            rig.loop.advanceTime(by: .milliseconds(wait))
            reached.append(Result { try rig.channel.throwIfErrorCaught() })
            if !bytes.isEmpty { reached.append(Result { try rig.channel.writeInbound(ByteBuffer(string: bytes)) }) }
        }
        let errors = reached.compactMap { result -> (any Error)? in
            guard case .failure(let error) = result else { return nil }
            return error
        }
        #expect(errors.count == (timesOut ? 1 : 0), "\(name): \(errors)")
        #expect(errors.allSatisfy { $0 is RequestScreen.BodyTimedOut }, "\(name): \(errors)")
        var parts: [HTTPServerRequestPart] = []
        while let part = try rig.channel.readInbound(as: HTTPServerRequestPart.self) { parts.append(part) }
        // A timed-out body's reader gets nothing more after the error, its end included.
        if case .end? = parts.last { #expect(!timesOut, "\(name)") } else { #expect(timesOut, "\(name)") }
    }

    @Test func aConnectionSilentPastTheDeadlineIsClosed() throws {
        let rig = try Rig()
        try rig.channel.writeInbound(ByteBuffer(string: "GET /health HTTP/1.1\r\n"))  // half a head
        rig.loop.advanceTime(by: .milliseconds(29_999))
        #expect(rig.channel.isActive)
        rig.loop.advanceTime(by: .milliseconds(1))
        #expect(!rig.channel.isActive)
    }

    /// HTTP/1.1 codec and the screen on an embedded, connected channel; the test plays the
    /// responder.
    struct Rig {
        let loop = EmbeddedEventLoop()
        let channel: EmbeddedChannel

        init() throws {
            channel = EmbeddedChannel(loop: loop)
            // As the platform's pipeline pairs them: the encoder knows each request's method.
            try channel.pipeline.syncOperations.configureHTTPServerPipeline(
                withPipeliningAssistance: false, withErrorHandling: false)
            try channel.pipeline.syncOperations.addHandler(
                RequestScreen(headTimeout: .seconds(30), bodyTimeout: .seconds(30)))
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        }

        /// Answers the oldest request not yet answered, as the responder would.
        func respond(headers: HTTPHeaders = [:]) throws {
            let head = HTTPResponseHead(version: .http1_1, status: .noContent, headers: headers)
            try channel.writeOutbound(HTTPServerResponsePart.head(head))
            try channel.writeOutbound(HTTPServerResponsePart.end(nil))
            loop.run()
        }

        /// What was written to the client since the last look.
        func written() -> String {
            var bytes = ByteBuffer()
            while var part = try? channel.readOutbound(as: ByteBuffer.self) { bytes.writeBuffer(&part) }
            return String(buffer: bytes)
        }
    }
}
