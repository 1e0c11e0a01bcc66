import Foundation
import KandyLinkProtocol
import NIOHTTP1
import Testing

@testable import KandyLinkServer

/// Every malformed, oversized, unauthorised or out-of-order request gets a clear JSON error
/// with CORS headers, and the platform goes on serving with its data intact.
@Suite(.timeLimit(.minutes(1))) struct BadInputTests {
    @Test func malformedRequestsGetJSONErrors() async throws {
        try await TestPlatform.with(configure: { $0.maxBodyBytes = 1024 }) { test in
            let established = try await test.subscribe()
            let subscriptions = LinkPath.subscriptions(user: TestPlatform.alice)
            let origin = ("Origin", "https://app.example.org")

            struct Case {
                var method: TestPlatform.Reply.Method
                var path: String
                var body: String?
                var status: Int
                var code: StatusCode
                var reasonContains: String
            }
            let cases: [Case] = [
                .init(
                    method: .POST, path: subscriptions, body: "{not json", status: 400, code: .malformedRequest,
                    reasonContains: "not valid JSON"),
                .init(
                    method: .POST, path: subscriptions, body: nil, status: 400, code: .malformedRequest,
                    reasonContains: "empty"),
                .init(
                    method: .POST, path: subscriptions, body: "[1,2]", status: 400, code: .malformedRequest,
                    reasonContains: "object"),
                .init(
                    method: .POST, path: subscriptions,
                    body: #"{"subscribeRequest":{"expires":"soon","service":["call"]}}"#, status: 400,
                    code: .malformedRequest, reasonContains: "subscribeRequest.expires must be a number"),
                .init(
                    method: .POST, path: subscriptions, body: #"{"subscribeRequest":{"service":[1]}}"#, status: 400,
                    code: .malformedRequest, reasonContains: "service[0] must be a string"),
                .init(
                    method: .POST, path: subscriptions,
                    body: #"{"subscribeRequest":{"service":["call"],"forceLogOut":true}}"#, status: 400,
                    code: .malformedRequest, reasonContains: "forceLogOut"),
                .init(
                    method: .POST, path: subscriptions,
                    body: #"{"subscribeRequest":{"service":["call"],"expires":-5}}"#, status: 400, code: .invalidField,
                    reasonContains: "expires"),
                .init(
                    method: .POST, path: subscriptions, body: #"{"subscribeRequest":{"service":[]}}"#, status: 400,
                    code: .noGrantableService, reasonContains: "empty"),
                .init(
                    method: .POST, path: subscriptions, body: String(repeating: " ", count: 2048) + "{}", status: 413,
                    code: .bodyTooLarge, reasonContains: "1024"),
                .init(
                    method: .PUT, path: LinkPath.subscription(user: TestPlatform.alice, id: "nope"),
                    body: TestPlatform.refreshBody(), status: 404, code: .subscriptionNotFound, reasonContains: "nope"),
                .init(
                    method: .DELETE, path: LinkPath.subscription(user: TestPlatform.alice, id: "nope"), body: nil,
                    status: 404, code: .subscriptionNotFound, reasonContains: "nope"),
                .init(
                    method: .GET, path: subscriptions, body: nil, status: 405, code: .methodNotAllowed,
                    reasonContains: "POST"),
                .init(
                    method: .POST, path: LinkPath.subscription(user: TestPlatform.alice, id: "x"), body: "{}",
                    status: 405, code: .methodNotAllowed, reasonContains: "PUT, DELETE"),
                .init(
                    method: .POST, path: "/rest/version/1/user/../subscription", body: "{}", status: 400,
                    code: .invalidPath, reasonContains: "username"),
                .init(
                    method: .POST, path: "/rest/version/1/user/%2e%2e%2fetc/subscription", body: "{}", status: 400,
                    code: .invalidPath, reasonContains: "username"),
                .init(
                    method: .POST, path: "/rest/version/1/user/" + String(repeating: "a", count: 300) + "/subscription",
                    body: "{}", status: 400, code: .invalidPath, reasonContains: "too long"),
                .init(
                    method: .POST, path: "/rest/version/9/user/a/subscription", body: "{}", status: 404,
                    code: .notFound, reasonContains: "version"),
                .init(
                    method: .GET, path: "/nothing/here", body: nil, status: 404, code: .notFound,
                    reasonContains: "/nothing/here"),
            ]
            for testCase in cases {
                let reply = try await test.request(
                    testCase.method, testCase.path, body: testCase.body, headers: [origin])
                let label = "\(testCase.method) \(testCase.path.prefix(60)) \(testCase.body?.prefix(60) ?? "")"
                #expect(reply.status == testCase.status, "\(label)")
                #expect(reply.headers.first(name: "Content-Type") == "application/json", "\(label)")
                #expect(
                    reply.headers.first(name: "Access-Control-Allow-Origin") == "https://app.example.org", "\(label)")
                let code = reply.subscribeResponse?.statusCode ?? reply.statusDocument?.statusCode
                let reason = reply.subscribeResponse?.reason ?? reply.statusDocument?.reason ?? ""
                #expect(code == testCase.code.rawValue, "\(label): \(reply.text)")
                #expect(reason.contains(testCase.reasonContains), "\(label): \(reason)")
            }

            // Still serving, and the established subscription is untouched.
            let refreshed = try await test.request(
                .PUT, try #require(established.subscription), body: TestPlatform.refreshBody())
            #expect(refreshed.status == 200)
            #expect(try await test.platform.subscriptionCount() == 1)
        }
    }

    @Test func bytesThatAreNotHTTPGetAJSONErrorAfterTheResponsesBeforeThem() async throws {
        try await TestPlatform.with { test in
            let health = "GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n"
            let oversized = "GET /health HTTP/1.1\r\nX-Big: \(String(repeating: "a", count: 100_000))\r\n\r\n"
            // (sent on one connection, answers expected before the error's)
            let cases: [(input: String, before: Int)] = [
                ("GARBAGE\r\n\r\n", 0),
                (health + "GARBAGE\r\n\r\n", 1),
                (health + health + "\u{1}\u{2}\u{3}\r\n\r\n", 2),
                (health + oversized, 1),
            ]
            for (input, before) in cases {
                let label = "\(before) request(s), then \(input.suffix(12).debugDescription)"
                let output = try await test.exchange(input)
                let responses = TestPlatform.responses(in: output)
                #expect(responses.count == before + 1, "\(label): \(output.prefix(300))")
                #expect(responses.dropLast().allSatisfy { $0.hasPrefix("200 ") }, "\(label)")
                let last = try #require(responses.last, "\(label)")
                #expect(last.hasPrefix("400 "), "\(label)")
                #expect(last.lowercased().contains("content-type: application/json"), "\(label)")
                let body = try #require(last.components(separatedBy: "\r\n\r\n").last)
                let document = try? WireJSON.decode(StatusDocument.self, from: Data(body.utf8))
                #expect(document?.statusCode == StatusCode.malformedRequest.rawValue, "\(label): \(last)")
            }
            // A broken chunk inside a body is answered by the body's reader.
            let subscriptions = LinkPath.subscriptions(user: TestPlatform.alice)
            let output = try await test.exchange(
                "POST \(subscriptions) HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n"
                    + TestPlatform.aliceAuthorization + "\r\n\r\nZZ\r\n")
            #expect(output.hasPrefix("HTTP/1.1 400 "), "\(output.prefix(300))")
            #expect(TestPlatform.responses(in: output).count == 1, "\(output.prefix(600))")
            #expect(output.contains("\"statusCode\":\(StatusCode.malformedRequest.rawValue)"), "\(output.suffix(300))")
        }
    }

    /// A body refused as too large is not read to the end: the answer says `Connection: close`
    /// and the platform closes the connection (the exchange returns only once it does). So does
    /// the answer to an HTTP/1.0 request.
    @Test func anAnswerThatEndsTheConnectionCloses() async throws {
        try await TestPlatform.with(configure: { $0.maxBodyBytes = 1024 }) { test in
            let subscriptions = LinkPath.subscriptions(user: TestPlatform.alice)
            let basic = TestPlatform.aliceAuthorization
            let chunk = String(repeating: "x", count: 1000)
            let cases: [(input: String, status: String, code: StatusCode)] = [
                (
                    "POST \(subscriptions) HTTP/1.1\r\nHost: localhost\r\n\(basic)\r\n"
                        + "Content-Length: 99999999999\r\n\r\n{", "413", .bodyTooLarge
                ),
                (
                    "POST \(subscriptions) HTTP/1.1\r\nHost: localhost\r\n\(basic)\r\n"
                        + "Transfer-Encoding: chunked\r\n\r\n3e8\r\n\(chunk)\r\n3e8\r\n\(chunk)\r\n", "413",
                    .bodyTooLarge
                ),
                ("GET /health HTTP/1.0\r\n\r\n", "200", .success),
            ]
            for (input, status, code) in cases {
                let output = try await test.exchange(input)
                let label = "\(input.prefix(40).debugDescription)"
                #expect(output.hasPrefix("HTTP/1.1 \(status) "), "\(label): \(output.prefix(200))")
                #expect(output.contains("\"statusCode\":\(code.rawValue)"), "\(label): \(output.suffix(200))")
                if status != "200" { #expect(output.lowercased().contains("connection: close"), "\(label)") }
            }
        }
    }

    /// A body that stops short is answered once its time is up, and the connection ends.
    @Test func aBodyThatDoesNotArriveInTimeIsAnswered() async throws {
        try await TestPlatform.with(configure: { $0.bodyTimeout = .milliseconds(300) }) { test in
            let basic = TestPlatform.aliceAuthorization
            let output = try await test.exchange(
                "POST \(LinkPath.subscriptions(user: TestPlatform.alice)) HTTP/1.1\r\nHost: localhost\r\n\(basic)\r\n"
                    + "Content-Length: 50\r\n\r\n{\"subscribeRequest\"")
            #expect(output.hasPrefix("HTTP/1.1 408 "), "\(output.prefix(200))")
            #expect(output.lowercased().contains("connection: close"))
            #expect(output.contains("\"statusCode\":\(StatusCode.bodyTimedOut.rawValue)"), "\(output.suffix(200))")
            #expect(try await test.platform.subscriptionCount() == 0)
        }
    }

    @Test func preflightAndCORS() async throws {
        try await TestPlatform.with { test in
            let preflight = try await test.request(
                .OPTIONS, LinkPath.subscriptions(user: TestPlatform.alice), credential: nil,
                headers: [
                    ("Origin", "http://localhost:3000"), ("Access-Control-Request-Method", "POST"),
                    ("Access-Control-Request-Headers", "authorization,content-type,x-cpaas-agent"),
                ])
            #expect(preflight.status == 204)
            #expect(preflight.headers.first(name: "Access-Control-Allow-Origin") == "http://localhost:3000")
            let methods = preflight.headers.first(name: "Access-Control-Allow-Methods") ?? ""
            for method in ["GET", "POST", "PUT", "DELETE"] { #expect(methods.contains(method)) }
            let allowed = (preflight.headers.first(name: "Access-Control-Allow-Headers") ?? "").lowercased()
            for header in ["authorization", "content-type", "x-cpaas-agent", "x-token"] {
                #expect(allowed.contains(header))
            }

            // Without an Origin, any origin is allowed.
            let plain = try await test.request(
                .POST, LinkPath.subscriptions(user: TestPlatform.alice), body: "{}", credential: nil)
            #expect(plain.headers.first(name: "Access-Control-Allow-Origin") == "*")
        }
    }

    @Test func metricsAndHealth() async throws {
        try await TestPlatform.with { test in
            let response = try await test.subscribe()
            let channel = try await test.openChannel(try #require(response.subscriptionParams).notificationChannel)
            _ = try await test.request(
                .POST, LinkPath.subscriptions(user: TestPlatform.alice), body: "{", credential: nil)
            let metrics = try await test.request(.GET, "/metrics", credential: nil)
            #expect(metrics.status == 200)
            #expect(metrics.text.contains("kandylink_subscriptions 1"))
            #expect(metrics.text.contains("kandylink_open_channels 1"))
            #expect(metrics.text.contains(#"kandylink_http_requests_total{status="200"}"#))
            #expect(metrics.text.contains(#"kandylink_http_requests_total{status="401"} 1"#))
            let health = try await test.request(.GET, "/health", credential: nil)
            #expect(health.statusDocument?.statusCode == 0)
            channel.close()
            _ = try await channel.drain()
        }
    }
}

extension TestPlatform.Reply {
    typealias Method = NIOHTTP1.HTTPMethod
}
