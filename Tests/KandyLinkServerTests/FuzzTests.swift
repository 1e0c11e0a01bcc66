import Foundation
import KandyLinkProtocol
import NIOCore
import Synchronization
import Testing

@testable import KandyLinkServer

/// Seeded fuzzing of a real node over real sockets: mutated REST requests and WebSocket frames.
/// Whatever arrives, the node answers every request it can read with its JSON error or a success,
/// never a 5xx, never silence; it fails a broken channel socket with the close code RFC 6455 names
/// and keeps a sound one serving. The budget is ``FuzzBudget``; a failure names the seed and case.
@Suite(.timeLimit(.minutes(5))) struct FuzzTests {
    // MARK: REST

    @Test func mutatedRequestsAreAnsweredWithJSON() async throws {
        let budget = FuzzBudget.current
        try await TestPlatform.with(configure: Self.plaintext) { test in
            let subscription = try await test.subscribe()
            let corpus = Self.requests(subscription: subscription.subscription ?? "/none")
            var random = SeededGenerator(seed: budget.seed)
            let deadline = ContinuousClock.now + .seconds(budget.seconds)
            var run = 0
            for number in 0..<budget.cases where ContinuousClock.now < deadline {
                run += 1
                var input = Mutation.apply(
                    Int.random(in: 0...3, using: &random), to: corpus.randomElement(using: &random)!, using: &random)
                // Half the time after a request answered on the same connection: a parser's state
                // after a first request is where errors went unanswered.
                if Bool.random(using: &random) { input = corpus[0] + input }
                let connection = try await RawConnection.open(port: test.port)
                let received = try await connection.exchange(input, finish: true, limit: .seconds(10))
                let problems = Self.check(input: input, received: received)
                #expect(problems.isEmpty, "case \(number) of \(budget): \(problems)\nsent: \(Self.printable(input))")
                if !problems.isEmpty { break }
            }
            #expect(run > 0)
            // And the node serves as before.
            #expect(try await test.request(.GET, "/health", credential: nil).status == 200)
        }
    }

    static let plaintext: @Sendable (inout PlatformConfiguration) -> Void = {
        $0.transportSecurity = .plaintext
        $0.frameTimeout = .seconds(1)
    }

    /// Valid requests to start from, each complete and kept alive.
    static func requests(subscription: String) -> [[UInt8]] {
        let alice = TestPlatform.alice
        let authorization = TestPlatform.aliceAuthorization
        func request(_ method: String, _ path: String, body: String? = nil, extra: String = "") -> [UInt8] {
            var head = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\n\(authorization)\r\n\(extra)"
            if let body {
                head += "Content-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
            } else {
                head += "\r\n"
            }
            return Array(head.utf8)
        }
        return [
            request("GET", "/health"),
            request("POST", LinkPath.subscriptions(user: alice), body: TestPlatform.subscribeBody(forceLogOut: false)),
            request("PUT", subscription, body: TestPlatform.refreshBody()),
            request("DELETE", subscription + "-not"),
            request(
                "POST", LinkPath.presence(user: alice),
                body: #"{"presenceRequest":{"status":"open","activity":"available","note":"fuzz"}}"#),
            request(
                "POST", LinkPath.instantMessage(user: alice),
                body: #"{"imRequest":{"toUrl":"\#(TestPlatform.bob)","type":"A2","message":"hi","charset":"UTF-8"}}"#),
            request(
                "POST", LinkPath.presenceWatcher(user: alice),
                body: #"{"presenceWatcherRequest":{"userList":["\#(TestPlatform.bob)"],"action":"get"}}"#),
            request("GET", LinkPath.addressBook(user: alice)),
            request(
                "POST", LinkPath.contacts(user: alice),
                body: #"{"addressBookRequest":{"entry":{"nickname":"fuzz","primaryContact":"b@example.com"}}}"#),
            request("GET", LinkPath.directory(user: alice) + "?criteria=al&criteriaType=5&startIndex=0&count=5"),
            request("GET", LinkPath.logHistory(user: alice) + "?startIndex=0&count=10"),
            request("GET", LinkPath.userProfileData(user: alice)),
            request(
                "POST", LinkPath.callControl(user: alice),
                body: #"{"callMeRequest":{"to":"\#(TestPlatform.bob)","sdp":"v=0\r\n"}}"#),
            request(
                "OPTIONS", LinkPath.subscriptions(user: alice),
                extra: "Origin: https://app.example\r\nAccess-Control-Request-Method: POST\r\n"),
            request(
                "GET", LinkPath.channel(user: alice, channelID: "AAAAAAAAAAAAAAAAAAAAAA"),
                extra:
                    "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            ),
            request("CONNECT", "127.0.0.1:443"),
            request("GET", "/health", extra: "Transfer-Encoding: chunked\r\n"),
            request("GET", "/health", extra: "Transfer-Encoding: gzip\r\n"),
            request("GET", "/health", extra: "Host: two.example\r\n"),
            Array("GET /health HTTP/1.1\r\n\r\n".utf8),
            request(
                "GET", "/health",
                extra: "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    + "Sec-WebSocket-Version: 13\r\nContent-Length: 2\r\n\r\n{}"),
        ]
    }

    /// What is wrong with the node's answer to `input`: each response a success or a JSON error
    /// with a `statusCode` and no 5xx; at least one response when a request head arrived; the
    /// connection ended once the client had ended its side.
    static func check(input: [UInt8], received: RawConnection.Received) -> [String] {
        var problems: [String] = []
        if !received.closed { problems.append("the connection was neither closed nor answered within 10 s") }
        let responses = HTTPResponseReader.responses(in: received.bytes)
        if responses.isEmpty, hasRequestHead(input) {
            problems.append("no answer to a request head (received: \(printable(received.bytes)))")
        }
        for response in responses {
            if response.status >= 500 { problems.append("answered \(response.status)") }
            guard response.status >= 400 else { continue }
            if !isJSONError(response.body) {
                problems.append("answered \(response.status) without a JSON error: \(printable(received.bytes))")
            }
        }
        return problems
    }

    /// Whether the input holds a head, something other than blank lines ended by an empty line.
    static func hasRequestHead(_ input: [UInt8]) -> Bool {
        let text = String(decoding: input, as: UTF8.self)
        guard let end = text.range(of: "\r\n\r\n") ?? text.range(of: "\n\n") else { return false }
        return text[..<end.lowerBound].contains { !$0.isWhitespace }
    }

    /// `{"statusCode":…}`, or an endpoint's envelope around it.
    static func isJSONError(_ body: [UInt8]) -> Bool {
        guard let object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any] else { return false }
        if object["statusCode"] is Int { return true }
        return object.values.contains { ($0 as? [String: Any])?["statusCode"] is Int }
    }

    static func printable(_ bytes: [UInt8]) -> String {
        String(
            String(decoding: bytes.prefix(600), as: UTF8.self).unicodeScalars.map { scalar in
                scalar.value < 0x20 && scalar != "\n" || scalar.value == 0x7F
                    ? "\\x\(String(scalar.value, radix: 16))" : String(scalar)
            }.joined())
    }

    // MARK: WebSocket frames

    /// A frame a client sends, and what RFC 6455 makes of it.
    struct ClientFrame {
        var fin = true
        var rsv: UInt8 = 0
        var opcode: UInt8
        var payload: [UInt8]
        var masked = true
        /// The close code the node must fail the connection with, nil if the frame is sound.
        var violation: UInt16?

        func bytes(using random: inout SeededGenerator) -> [UInt8] {
            var bytes: [UInt8] = [(fin ? 0x80 : 0) | rsv << 4 | opcode]
            let mask: UInt8 = masked ? 0x80 : 0
            switch payload.count {
            case ..<126: bytes.append(mask | UInt8(payload.count))
            case ..<65536: bytes += [mask | 126, UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)]
            default: bytes += [mask | 127] + (0..<8).reversed().map { UInt8((payload.count >> ($0 * 8)) & 0xFF) }
            }
            guard masked else { return bytes + payload }
            let key = (0..<4).map { _ in UInt8.random(in: 0...255, using: &random) }
            return bytes + key + payload.enumerated().map { $0.element ^ key[$0.offset % 4] }
        }
    }

    /// Sound frames, the way a client's traffic goes.
    static func soundFrames(using random: inout SeededGenerator) -> [ClientFrame] {
        switch Int.random(in: 0..<5, using: &random) {
        case 0: [ClientFrame(opcode: 1, payload: Array(#"{"type":"keepalive"}"#.utf8))]
        case 1: [ClientFrame(opcode: 9, payload: Array("ping".utf8))]
        case 2: [ClientFrame(opcode: 10, payload: [])]
        case 3:
            // "é" split between fragments: valid once whole.
            [
                ClientFrame(fin: false, opcode: 1, payload: [0x61, 0xC3]),
                ClientFrame(opcode: 0, payload: [0xA9, 0x62]),
            ]
        default:
            [ClientFrame(opcode: 2, payload: (0..<Int.random(in: 0...300, using: &random)).map { UInt8($0 & 0xFF) })]
        }
    }

    /// One frame (or pair) that breaks RFC 6455, with the close code it must draw.
    static func brokenFrames(using random: inout SeededGenerator) -> [ClientFrame] {
        switch Int.random(in: 0..<11, using: &random) {
        case 0: [ClientFrame(opcode: 1, payload: [0x61, 0xFF, 0x62], violation: 1007)]
        case 1:
            [
                ClientFrame(fin: false, opcode: 1, payload: [0x61, 0xE2, 0x82]),
                ClientFrame(opcode: 0, payload: [0x28], violation: 1007),
            ]
        case 2: [ClientFrame(rsv: UInt8.random(in: 1...7, using: &random), opcode: 1, payload: [0x61], violation: 1002)]
        case 3: [ClientFrame(opcode: 0, payload: [0x61], violation: 1002)]
        case 4:
            [
                ClientFrame(fin: false, opcode: 1, payload: [0x61]),
                ClientFrame(opcode: 1, payload: [0x62], violation: 1002),
            ]
        case 5: [ClientFrame(fin: false, opcode: 9, payload: [0x61], violation: 1002)]
        case 6: [ClientFrame(opcode: 9, payload: [UInt8](repeating: 0x61, count: 126), violation: 1002)]
        case 7: [ClientFrame(opcode: 1, payload: [0x61], masked: false, violation: 1002)]
        case 8: [ClientFrame(opcode: 8, payload: [0x03, 0xE4], violation: 1002)]  // 996: not a code to send
        case 9: [ClientFrame(opcode: 8, payload: [0x03, 0xE8, 0xC0, 0xAF], violation: 1007)]
        default: [ClientFrame(opcode: UInt8.random(in: 3...7, using: &random), payload: [], violation: 1002)]
        }
    }

    @Test func channelSocketsFailBrokenFramesAndServeSoundOnes() async throws {
        let budget = FuzzBudget.current
        try await TestPlatform.with(configure: Self.plaintext) { test in
            let path = try #require(try await test.subscribe().subscriptionParams).notificationChannel
            var random = SeededGenerator(seed: budget.seed &+ 1)
            let deadline = ContinuousClock.now + .seconds(budget.seconds)
            var run = 0
            for number in 0..<(budget.cases / 6) where ContinuousClock.now < deadline {
                run += 1
                var frames: [ClientFrame] = []
                for _ in 0..<Int.random(in: 0...4, using: &random) { frames += Self.soundFrames(using: &random) }
                let breaks = Int.random(in: 0..<3, using: &random) == 0
                if breaks { frames += Self.brokenFrames(using: &random) }
                for _ in 0..<Int.random(in: 0...2, using: &random) { frames += Self.soundFrames(using: &random) }
                var bytes = frames.flatMap { $0.bytes(using: &random) }
                // Now and then, byte-level damage on top: then only the general rules can be checked.
                let damaged = Int.random(in: 0..<4, using: &random) == 0
                if damaged { bytes = Mutation.apply(Int.random(in: 1...2, using: &random), to: bytes, using: &random) }
                let marker = "fuzz \(number)"
                bytes += ClientFrame(opcode: 9, payload: Array(marker.utf8)).bytes(using: &random)

                let outcome = try await Self.exchangeFrames(bytes, marker: marker, on: path, port: test.port)
                let expected = damaged ? nil : frames.lazy.compactMap(\.violation).first
                // Where the bytes end, by framing alone (whatever the limit, a frame's length says how far it goes).
                var reader = FrameReader(maxFrameSize: .max)
                reader.append(ByteBuffer(bytes: bytes))
                while case .frame = reader.next() {}
                let problems = Self.check(
                    outcome, marker: marker, expectedClose: expected, damaged: damaged,
                    endsInsideFrame: reader.isInsideFrame)
                #expect(
                    problems.isEmpty,
                    """
                    case \(number) of \(budget): \(problems)
                    frames sent: \(frames.map { "\($0.opcode)/\($0.payload.count)" }), damaged: \(damaged)
                    bytes: \(bytes.map { String($0, radix: 16) }.joined(separator: " "))
                    frames received: \(outcome.frames.map { "\($0.opcode)/\($0.payload.count)" }), \
                    closed: \(outcome.closed)
                    """)
                if !problems.isEmpty { break }
            }
            #expect(run > 0)
        }
    }

    struct FrameOutcome {
        var upgraded: Bool
        var frames: [(opcode: UInt8, payload: [UInt8])]
        var closed: Bool
    }

    /// Opens the channel with a raw upgrade, sends `bytes` straight after it, and reads until the
    /// marker's pong, or the node's close frame and the end of the connection, or 4 s.
    static func exchangeFrames(_ bytes: [UInt8], marker: String, on path: String, port: Int) async throws
        -> FrameOutcome
    {
        let upgrade = Array(
            ("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").utf8)
        let connection = try await RawConnection.open(port: port)
        let received = try await connection.exchange(upgrade + bytes, finish: false, limit: .seconds(4)) { received in
            // Enough once the marker's pong arrived: the socket is serving after what was sent.
            guard let head = HTTPResponseReader.headEnd(in: received) else { return false }
            return ServerFrames.parse(Array(received[head...])).contains {
                $0.opcode == 0xA && $0.payload.elementsEqual(marker.utf8)
            }
        }
        guard let head = HTTPResponseReader.headEnd(in: received.bytes) else {
            return FrameOutcome(upgraded: false, frames: [], closed: received.closed)
        }
        let upgraded = received.bytes.starts(with: Array("HTTP/1.1 101".utf8))
        return FrameOutcome(
            upgraded: upgraded, frames: ServerFrames.parse(Array(received.bytes[head...])), closed: received.closed)
    }

    /// - Parameter endsInsideFrame: the bytes sent end inside a frame (damage can make the
    ///   marker's ping part of an earlier frame, whole or not).
    static func check(
        _ outcome: FrameOutcome, marker: String, expectedClose: UInt16?, damaged: Bool, endsInsideFrame: Bool
    ) -> [String] {
        guard outcome.upgraded else { return ["the upgrade was not answered 101"] }
        let close = outcome.frames.first { $0.opcode == 0x8 }
        let code = close.map { $0.payload.count >= 2 ? UInt16($0.payload[0]) << 8 | UInt16($0.payload[1]) : 1005 }
        let pong = outcome.frames.contains { $0.opcode == 0xA && $0.payload == Array(marker.utf8) }
        var problems: [String] = []
        if let expectedClose {
            if code != expectedClose {
                problems.append("closed with \(code.map(String.init) ?? "nothing"), not \(expectedClose)")
            }
        } else if !damaged {
            if !pong { problems.append("no pong to the marker (close: \(code.map(String.init) ?? "none"))") }
        } else if !pong {
            // Damaged bytes: the socket answers the marker or fails the connection with a reason;
            // it may say nothing only if the marker became the end of a sound frame.
            guard let code else {
                return endsInsideFrame ? ["a frame left unfinished, and no close frame within 4 s"] : []
            }
            if ![1002, 1007, 1008, 1009].contains(code) { problems.append("closed with \(code)") }
        }
        if close != nil, !outcome.closed { problems.append("a close frame, and the connection left open") }
        return problems
    }
}

/// Responses in bytes a server wrote: status, and body by Content-Length or chunks.
enum HTTPResponseReader {
    struct Response {
        var status: Int
        var body: [UInt8]
    }

    /// The index just past the first head's blank line.
    static func headEnd(in bytes: [UInt8]) -> Int? {
        guard bytes.count >= 4 else { return nil }
        for index in 3..<bytes.count where bytes[(index - 3)...index].elementsEqual([13, 10, 13, 10]) {
            return index + 1
        }
        return nil
    }

    static func responses(in bytes: [UInt8]) -> [Response] {
        var responses: [Response] = []
        var rest = bytes[...]
        while let end = headEnd(in: Array(rest)) {
            let head = String(decoding: rest.prefix(end), as: UTF8.self)
            rest = rest.dropFirst(end)
            let lines = head.split(separator: "\r\n")
            guard let statusLine = lines.first, statusLine.hasPrefix("HTTP/1."),
                let status = Int(statusLine.split(separator: " ").dropFirst().first ?? "")
            else { break }
            var fields: [String: String] = [:]
            for line in lines.dropFirst() {
                guard let colon = line.firstIndex(of: ":") else { continue }
                fields[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(
                    in: .whitespaces)
            }
            if status == 101 {
                responses.append(Response(status: status, body: []))
                break  // WebSocket frames follow
            }
            var body: [UInt8] = []
            if status == 204 || status == 304 || (100..<200).contains(status) {
            } else if let length = fields["content-length"].flatMap({ Int($0) }) {
                body = Array(rest.prefix(length))
                rest = rest.dropFirst(length)
            } else if fields["transfer-encoding"]?.lowercased() == "chunked" {
                while let lineEnd = rest.firstRange(of: [13, 10]) {
                    let size = Int(String(decoding: rest[..<lineEnd.lowerBound], as: UTF8.self), radix: 16) ?? 0
                    rest = rest[lineEnd.upperBound...]
                    body += rest.prefix(size)
                    rest = rest.dropFirst(size + 2)
                    if size == 0 { break }
                }
            } else {
                body = Array(rest)
                rest = []
            }
            responses.append(Response(status: status, body: body))
        }
        return responses
    }
}

/// Frames a server wrote (unmasked), as far as they are whole.
enum ServerFrames {
    static func parse(_ bytes: [UInt8]) -> [(opcode: UInt8, payload: [UInt8])] {
        var frames: [(opcode: UInt8, payload: [UInt8])] = []
        var index = 0
        while bytes.count - index >= 2 {
            let opcode = bytes[index] & 0x0F
            var length = Int(bytes[index + 1] & 0x7F)
            var start = index + 2
            if length == 126 {
                guard bytes.count >= start + 2 else { break }
                length = Int(bytes[start]) << 8 | Int(bytes[start + 1])
                start += 2
            } else if length == 127 {
                guard bytes.count >= start + 8 else { break }
                length = bytes[start..<(start + 8)].reduce(0) { $0 << 8 | Int($1) }
                start += 8
            }
            guard bytes.count >= start + length else { break }
            frames.append((opcode, Array(bytes[start..<(start + length)])))
            index = start + length
        }
        return frames
    }
}
