import Foundation
import KandyLinkProtocol
import KandyLinkTesting
import NIOCore
import NIOHTTP1
import Testing

@testable import KandyLinkServer

/// Presence and instant messages over real HTTPS and real channel sockets.
@Suite(.timeLimit(.minutes(1))) struct PresenceAndMessageTests {
    @Test func aPresenceUpdateReachesTheWatcherInTheShapeKandyJSReads() async throws {
        try await TestPlatform.with { test in
            let bob = try await test.openSession(TestPlatform.bob)
            try await test.watch([TestPlatform.alice], by: TestPlatform.bob)
            // Watching answers with the current presence at once: alice never published.
            let initial = try await bob.nextNotification()
            #expect(initial.eventType == .presenceWatcher)
            #expect(
                initial.presenceWatcherNotificationParams
                    == PresenceNotificationParams(name: TestPlatform.alice, state: .offline))

            let update = try await test.updatePresence(
                of: TestPlatform.alice, #"{"presenceRequest":{"status":"open","activity":"lunch","note":"back at 2"}}"#)
            #expect(update.status == 200)
            #expect(try update.decode(PresenceResponseDocument.self).presenceResponse.statusCode == 0)

            let text = try #require(await bob.next())
            let object = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
            let message = try #require(object["notificationMessage"] as? [String: Any])
            #expect(message["eventType"] as? String == "presenceWatcher")
            #expect((message["eventId"] as? String)?.isEmpty == false)
            let params = try #require(message["presenceWatcherNotificationParams"] as? [String: String])
            #expect(
                params == ["name": TestPlatform.alice, "status": "open", "activity": "lunch", "note": "back at 2"])
            bob.close()
        }
    }

    @Test func stopwatchStopsTheNotifications() async throws {
        try await TestPlatform.with { test in
            let bob = try await test.openSession(TestPlatform.bob)
            try await test.watch([TestPlatform.alice], by: TestPlatform.bob)
            _ = try await bob.nextNotification()
            let stopped = try await test.watch([TestPlatform.alice], by: TestPlatform.bob, action: "stopwatch")
            // Kandy.js reports presence:unsubscribe with the userIds it finds at the top level.
            #expect(
                try stopped.decode(PresenceWatcherResponseDocument.self).presentityUserId == [TestPlatform.alice])
            _ = try await test.updatePresence(
                of: TestPlatform.alice, #"{"presenceRequest":{"status":"open","activity":"busy"}}"#)
            // The next notification bob gets is the IM sent after the update: no presence came between.
            _ = try await test.sendMessage("after", from: TestPlatform.alice, to: TestPlatform.bob)
            let next = try await bob.nextNotification()
            #expect(next.eventType == .im)
            #expect(try await test.platform.store.watchers(of: TestPlatform.alice).isEmpty)
            bob.close()
        }
    }

    @Test func getAnswersWithTopLevelPresenceContacts() async throws {
        try await TestPlatform.with(users: [TestPlatform.alice, TestPlatform.bob, "carol@example.com"]) { test in
            _ = try await test.updatePresence(
                of: TestPlatform.alice, #"{"presenceRequest":{"status":"open","activity":"on-the-phone","note":"x"}}"#)
            let reply = try await test.watch(
                [TestPlatform.alice, "carol@example.com"], by: TestPlatform.bob, action: "get")
            let object = try #require(try JSONSerialization.jsonObject(with: reply.body) as? [String: Any])
            let contacts = try #require(object["presenceContact"] as? [[String: Any]])
            #expect(contacts.count == 2)
            #expect(contacts.first?["presentityUserId"] as? String == TestPlatform.alice)
            let person = try #require(
                (contacts.first?["presence"] as? [String: Any])?["person"] as? [String: [String: String]])
            #expect(person["activities"] == ["activityValue": "on-the-phone", "other": "x"])
            #expect(person["overriding-willingness"] == ["overridingWillingnessValue": "open"])

            let document = try reply.decode(PresenceWatcherResponseDocument.self)
            #expect(
                document.presenceContact?.map(\.state) == [
                    PresenceState(status: .open, activity: .onThePhone, note: "x"), .offline,
                ])
            // get does not start watching.
            #expect(try await test.platform.store.watchers(of: TestPlatform.alice).isEmpty)
        }
    }

    @Test func anInstantMessageArrivesOnceWithItsSenderAndText() async throws {
        try await TestPlatform.with { test in
            let alice = try await test.openSession(TestPlatform.alice)
            let text = "Grüße, Алиса! 👋🏽 \"quoted\" \\ / <tag> 漢字"
            let reply = try await test.sendMessage(text, from: TestPlatform.bob, to: TestPlatform.alice)
            #expect(reply.status == 200)
            let messageID = try #require(try reply.decode(InstantMessageResponseDocument.self).imResponse.messageId)

            let received = try await alice.nextNotification()
            #expect(received.eventType == .im)
            #expect(received.eventId == messageID)
            #expect(received.imnotificationParams?.msgText == text)
            #expect(received.imnotificationParams?.primaryContact == "sip:" + TestPlatform.bob)
            #expect(received.imnotificationParams?.sender == TestPlatform.bob)

            // Exactly once: the next thing on the socket is the second message.
            _ = try await test.sendMessage("two", from: TestPlatform.bob, to: "sip:" + TestPlatform.alice)
            let second = try await alice.nextNotification()
            #expect(second.imnotificationParams?.msgText == "two")
            #expect(second.eventId != received.eventId)
            alice.close()
        }
    }

    @Test func onlySubscribedServicesReceiveTheirNotifications() async throws {
        try await TestPlatform.with { test in
            let alice = try await test.openSession(TestPlatform.alice, services: ["call", "Presence"])
            let refused = try await test.sendMessage(
                "not for a session without IM", from: TestPlatform.bob, to: TestPlatform.alice)
            #expect(refused.status == 404)
            #expect(
                try refused.decode(InstantMessageResponseDocument.self).imResponse.statusCode
                    == StatusCode.recipientUnavailable.rawValue)
            try await test.watch([TestPlatform.bob], by: TestPlatform.alice)
            let first = try await alice.nextNotification()
            #expect(first.eventType == .presenceWatcher)
            alice.close()

            let bob = try await test.openSession(TestPlatform.bob, services: ["call", "IM"])
            try await test.watch([TestPlatform.alice], by: TestPlatform.bob)
            _ = try await test.sendMessage("hi", from: TestPlatform.alice, to: TestPlatform.bob)
            #expect(try await bob.nextNotification().eventType == .im)
            bob.close()
        }
    }

    @Test func watchersSeeTheLastSessionEnd() async throws {
        try await TestPlatform.with { test in
            let bob = try await test.openSession(TestPlatform.bob)
            let alice = try await test.subscribe(user: TestPlatform.alice)
            try await test.watch([TestPlatform.alice], by: TestPlatform.bob)
            _ = try await bob.nextNotification()
            _ = try await test.updatePresence(
                of: TestPlatform.alice, #"{"presenceRequest":{"status":"open","activity":"active"}}"#)
            #expect(try await bob.nextNotification().presenceWatcherNotificationParams?.status == .open)

            let deleted = try await test.request(.DELETE, try #require(alice.subscription))
            #expect(deleted.status == 200)
            let offline = try await bob.nextNotification()
            #expect(
                offline.presenceWatcherNotificationParams
                    == PresenceNotificationParams(name: TestPlatform.alice, state: .offline))
            bob.close()
        }
    }

    @Test func presenceAndWatchListsSurviveARestart() async throws {
        try await TestPlatform.with { test in
            try await test.watch([TestPlatform.alice], by: TestPlatform.bob)
            _ = try await test.updatePresence(
                of: TestPlatform.alice, #"{"presenceRequest":{"status":"open","activity":"away","note":"walk"}}"#)
            try await test.restart()

            let reply = try await test.watch([TestPlatform.alice], by: TestPlatform.bob, action: "get")
            #expect(
                try reply.decode(PresenceWatcherResponseDocument.self).presenceContact?.first?.state
                    == PresenceState(status: .open, activity: .away, note: "walk"))
            let bob = try await test.openSession(TestPlatform.bob)
            _ = try await test.updatePresence(
                of: TestPlatform.alice, #"{"presenceRequest":{"status":"closed","activity":"vacation"}}"#)
            #expect(try await bob.nextNotification().presenceWatcherNotificationParams?.activity == .vacation)
            bob.close()
        }
    }

    @Test func everyErrorPathHasItsStatusCodeInItsEnvelope() async throws {
        try await TestPlatform.with(configure: { $0.maxUserListCount = 3 }) { test in
            let alice = TestPlatform.alice
            let presence = LinkPath.presence(user: alice)
            let watcher = LinkPath.presenceWatcher(user: alice)
            let im = LinkPath.instantMessage(user: alice)
            func imBody(_ to: String, _ text: String, charset: String = "UTF-8") -> String {
                String(
                    decoding: try! WireJSON.encode(
                        InstantMessageRequestDocument(imRequest: .init(toUrl: to, message: text, charset: charset))),
                    as: UTF8.self)
            }
            struct Case {
                var method: HTTPMethod = .POST
                var path: String
                var body: String?
                var credential: CredentialHeader? = .basic(login: TestPlatform.alice, password: TestPlatform.password)
                var status: Int
                var code: StatusCode
                var reasonContains: String
            }
            let cases: [Case] = [
                .init(
                    path: presence, body: #"{"presenceRequest":{"status":"away","activity":"idle"}}"#, status: 400,
                    code: .invalidField, reasonContains: "status"),
                .init(
                    path: presence, body: #"{"presenceRequest":{"status":"open","activity":"sleeping"}}"#, status: 400,
                    code: .invalidField, reasonContains: "activity"),
                .init(
                    path: presence,
                    body:
                        #"{"presenceRequest":{"status":"open","activity":"idle","note":"\#(String(repeating: "n", count: 1025))"}}"#,
                    status: 400, code: .invalidField, reasonContains: "note"),
                .init(
                    path: presence, body: #"{"presenceRequest":{"status":"open"}}"#, status: 400,
                    code: .malformedRequest, reasonContains: "activity"),
                .init(path: presence, body: "{", status: 400, code: .malformedRequest, reasonContains: "JSON"),
                .init(
                    path: LinkPath.presence(user: TestPlatform.bob),
                    body: #"{"presenceRequest":{"status":"open","activity":"idle"}}"#, status: 403,
                    code: .forbiddenUser, reasonContains: "another user"),
                .init(
                    path: presence, body: #"{"presenceRequest":{"status":"open","activity":"idle"}}"#, credential: nil,
                    status: 401, code: .authenticationRequired, reasonContains: "Authorization"),
                .init(
                    path: presence, body: #"{"presenceRequest":{"status":"open","activity":"idle"}}"#,
                    credential: .basic(login: alice, password: "nope"), status: 401, code: .invalidCredentials,
                    reasonContains: "Wrong username"),
                .init(method: .GET, path: presence, status: 405, code: .methodNotAllowed, reasonContains: "POST"),
                .init(
                    path: watcher,
                    body: #"{"presenceWatcherRequest":{"userList":["nobody@example.com"],"action":"watch"}}"#,
                    status: 404, code: .userNotFound, reasonContains: "nobody@example.com"),
                .init(
                    path: watcher,
                    body: #"{"presenceWatcherRequest":{"userList":["nobody@example.com"],"action":"get"}}"#,
                    status: 404, code: .userNotFound, reasonContains: "nobody"),
                .init(
                    path: watcher, body: #"{"presenceWatcherRequest":{"userList":[],"action":"watch"}}"#, status: 400,
                    code: .invalidField, reasonContains: "empty"),
                .init(
                    path: watcher, body: #"{"presenceWatcherRequest":{"userList":["a","b","c","d"],"action":"watch"}}"#,
                    status: 400, code: .invalidField, reasonContains: "at most 3"),
                .init(
                    path: watcher, body: #"{"presenceWatcherRequest":{"userList":["../x"],"action":"get"}}"#,
                    status: 400, code: .invalidField, reasonContains: "malformed"),
                .init(
                    path: watcher,
                    body: #"{"presenceWatcherRequest":{"userList":["bob@example.com"],"action":"follow"}}"#,
                    status: 400, code: .malformedRequest, reasonContains: "action"),
                .init(
                    path: im, body: imBody("nobody@example.com", "hi"), status: 404, code: .userNotFound,
                    reasonContains: "nobody@example.com"),
                .init(
                    path: im, body: imBody(TestPlatform.bob, "bob has no session"), status: 404,
                    code: .recipientUnavailable, reasonContains: "no session subscribed to IM"),
                .init(
                    path: im, body: imBody(TestPlatform.bob, String(repeating: "é", count: 5001)), status: 413,
                    code: .messageTooLarge, reasonContains: "10000"),
                .init(
                    path: im, body: imBody(TestPlatform.bob, String(repeating: "x", count: 17 * 1024)), status: 413,
                    code: .bodyTooLarge, reasonContains: "bytes"),
                .init(
                    path: im, body: imBody(TestPlatform.bob, ""), status: 400, code: .invalidField,
                    reasonContains: "empty"),
                .init(
                    path: im, body: imBody(TestPlatform.bob, "hi", charset: "ISO-8859-1"), status: 400,
                    code: .invalidField, reasonContains: "UTF-8"),
                .init(path: im, body: imBody("", "hi"), status: 400, code: .invalidField, reasonContains: "toUrl"),
                .init(
                    path: LinkPath.instantMessage(user: TestPlatform.bob), body: imBody(alice, "spoof"), status: 403,
                    code: .forbiddenUser, reasonContains: "another user"),
                .init(
                    method: .PUT, path: im, body: imBody(TestPlatform.bob, "hi"), status: 405, code: .methodNotAllowed,
                    reasonContains: "POST"),
            ]
            for entry in cases {
                let reply = try await test.request(
                    entry.method, entry.path, body: entry.body, credential: entry.credential)
                #expect(reply.status == entry.status, "\(entry.path) \(entry.body ?? "")")
                #expect(reply.headers.first(name: "Content-Type") == "application/json")
                #expect(reply.headers.first(name: "Access-Control-Allow-Origin") != nil)
                let status: ResponseStatus? =
                    switch LinkRoute.resource(of: entry.path) {
                    case "presence": try? reply.decode(PresenceResponseDocument.self).presenceResponse
                    case "presenceWatcher":
                        try? reply.decode(PresenceWatcherResponseDocument.self).presenceWatcherResponse
                    default:
                        (try? reply.decode(InstantMessageResponseDocument.self).imResponse).map {
                            ResponseStatus(statusCode: $0.statusCode, reason: $0.reason)
                        }
                    }
                #expect(status?.statusCode == entry.code.rawValue, "\(entry.path) \(reply.text)")
                #expect(status?.reason?.contains(entry.reasonContains) == true, "\(reply.text)")
            }
            // Nothing was stored by the refused requests.
            #expect(try await test.platform.store.presence(of: [alice, TestPlatform.bob]).isEmpty)
            #expect(try await test.platform.store.watchers(of: TestPlatform.bob).isEmpty)
        }
    }

    @Test func aWatchListIsBounded() async throws {
        try await TestPlatform.with(
            users: [TestPlatform.alice, TestPlatform.bob, "carol@example.com"], configure: { $0.maxWatchedUsers = 1 }
        ) { test in
            try await test.watch([TestPlatform.bob], by: TestPlatform.alice)
            let refused = try await test.watch(["carol@example.com"], by: TestPlatform.alice, expect: 400)
            #expect(
                try refused.decode(PresenceWatcherResponseDocument.self).presenceWatcherResponse.reason?.contains(
                    "at most 1") == true)
            #expect(try await test.platform.store.watchers(of: "carol@example.com").isEmpty)
            #expect(try await test.platform.store.watchers(of: TestPlatform.bob) == [TestPlatform.alice])
        }
    }
}

extension TestPlatform {
    /// Subscribes `user` and opens their channel.
    func openSession(_ user: String, services: [String] = ["call", "Presence", "IM"]) async throws -> TestChannel {
        let response = try await subscribe(user: user, services: services)
        return try await openChannel(try #require(response.subscriptionParams).notificationChannel)
    }

    func updatePresence(of user: String, _ body: String) async throws -> Reply {
        try await request(
            .POST, LinkPath.presence(user: user), body: body, credential: .basic(login: user, password: Self.password))
    }

    @discardableResult
    func watch(_ users: [String], by watcher: String, action: String = "watch", expect: Int = 200) async throws
        -> Reply
    {
        let body =
            #"{"presenceWatcherRequest":{"userList":\#(String(decoding: try WireJSON.encode(users), as: UTF8.self)),"action":"\#(action)"}}"#
        let reply = try await request(
            .POST, LinkPath.presenceWatcher(user: watcher), body: body,
            credential: .basic(login: watcher, password: Self.password))
        guard reply.status == expect else { throw TestFailure("\(action) answered \(reply.status): \(reply.text)") }
        return reply
    }

    func sendMessage(_ text: String, from sender: String, to recipient: String, timeout: TimeAmount = .seconds(30))
        async throws -> Reply
    {
        let body = try WireJSON.encode(InstantMessageRequestDocument(imRequest: .init(toUrl: recipient, message: text)))
        return try await request(
            .POST, LinkPath.instantMessage(user: sender), body: String(decoding: body, as: UTF8.self),
            credential: .basic(login: sender, password: Self.password), timeout: timeout)
    }
}

extension TestChannel {
    /// The next notification on the socket, decoded.
    func nextNotification() async throws -> NotificationMessage {
        guard let text = await next() else { throw TestFailure("the channel closed") }
        return try WireJSON.decode(NotificationDocument.self, from: Data(text.utf8)).notificationMessage
    }
}
