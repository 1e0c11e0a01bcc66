import Foundation
import KandyLinkProtocol
import KandyLinkTesting
import NIOHTTP1
import Testing

@testable import KandyLinkServer

/// Call signalling over real HTTPS and real channel sockets, as two Kandy.js clients exchange it
/// (call-protocol.md): each flow, each refusal, several devices, expiry, a restart and two nodes.
@Suite(.timeLimit(.minutes(1))) struct CallTests {
    static let carol = "carol@example.com"
    /// An offer as a browser writes one: CRLF lines, quotes and non-ASCII, relayed byte for byte.
    static let offer =
        "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n"
        + "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=sendrecv\r\na=x-note:\"ünïcode\" \\ /\r\n"
    static let answer =
        "v=0\r\no=- 99 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendrecv\r\n"
    static let hold = offer.replacingOccurrences(of: "a=sendrecv", with: "a=inactive")

    /// No grace for the caller: the tests that are not about it need not move the clock.
    static let noGrace: @Sendable (inout PlatformConfiguration) -> Void = { $0.callerNotificationGrace = 0 }

    @Test func aCallRingsIsAnsweredHeldUnheldAndHungUp() async throws {
        try await TestPlatform.with(configure: Self.noGrace) { test in
            let alice = try await test.openSession(TestPlatform.alice)
            let bob = try await test.openSession(TestPlatform.bob)

            let started = try await test.startCall(from: TestPlatform.alice, to: TestPlatform.bob)
            #expect(started.status == 200)
            let id = try #require(try started.decode(CallControlResponseDocument.self).callControlResponse.sessionData)
            #expect(LinkRoute.isIdentifier(Substring(id)))

            let incoming = try await bob.nextNotification()
            #expect(incoming.eventType == .call)
            #expect(incoming.sessionParams == SessionParams(sessionData: id, sdp: Self.offer))
            #expect(
                incoming.callNotificationParams
                    == CallNotificationParams(
                        callerName: TestPlatform.alice, callerDisplayNumber: "sip:" + TestPlatform.alice,
                        calleeDisplayNumber: "sip:" + TestPlatform.bob))

            #expect(try await test.callUpdate("ringing", id, by: TestPlatform.bob).status == 200)
            let ringing = try await alice.nextNotification()
            #expect(ringing.eventType == .ringing)
            #expect(ringing.sessionParams?.sessionData == id)
            #expect(ringing.callNotificationParams?.remoteDisplayNumber == "sip:" + TestPlatform.bob)
            #expect(try await test.callState(id, of: TestPlatform.alice).state == "RINGING")

            #expect(try await test.callUpdate("callAnswer", id, sdp: Self.answer, by: TestPlatform.bob).status == 200)
            let answered = try await alice.nextNotification()
            #expect(answered.eventType == .respondCallUpdate)
            #expect(answered.sessionParams == SessionParams(sessionData: id, sdp: Self.answer))
            #expect(try await test.callState(id, of: TestPlatform.bob).state == "ANSWERED")

            // Hold and unhold: an offer relayed to the other side, its answer relayed back.
            for offer in [Self.hold, Self.offer] {
                #expect(
                    try await test.callUpdate("startCallUpdate", id, sdp: offer, by: TestPlatform.alice).status == 200)
                let update = try await bob.nextNotification()
                #expect(update.eventType == .startCallUpdate && update.sessionParams?.sdp == offer)
                #expect(
                    try await test.callUpdate("respondCallUpdate", id, sdp: Self.answer, by: TestPlatform.bob).status
                        == 200)
                let response = try await alice.nextNotification()
                #expect(response.eventType == .respondCallUpdate && response.sessionParams?.sdp == Self.answer)
            }
            for user in [TestPlatform.alice, TestPlatform.bob] {
                #expect(try await test.callUpdate("audit", id, by: user).status == 200)
            }

            let hangUp = try await test.endCall(id, by: TestPlatform.bob)
            #expect(hangUp.status == 200)
            let end = try await alice.nextNotification()
            #expect(end.eventType == .callEnd)
            #expect(
                end.sessionParams
                    == SessionParams(sessionData: id, statusCode: 0, reasonText: "Call ended by the remote party"))
            // The session is gone: an audit is what makes a client that missed its callEnd end too.
            let audit = try await test.callUpdate("audit", id, by: TestPlatform.alice)
            #expect(audit.status == 404)
            #expect(audit.callStatus == 42)
            #expect(try await test.platform.store.callCount() == 0)

            let metrics = try await test.request(.GET, "/metrics", credential: nil).text
            #expect(metrics.contains("kandylink_calls_started_total 1"))
            #expect(metrics.contains("kandylink_calls_answered_total 1"))
            #expect(metrics.contains("kandylink_calls_active 0"))
            #expect(metrics.contains("kandylink_call_setup_seconds_count 1"))
            alice.close()
            bob.close()
        }
    }

    @Test func callerNotificationsWaitForTheGraceInOrder() async throws {
        try await TestPlatform.with { test in
            let alice = try await test.openSession(TestPlatform.alice)
            let bob = try await test.openSession(TestPlatform.bob)
            let id = try await test.callID(from: TestPlatform.alice, to: TestPlatform.bob)
            _ = try await bob.nextNotification()
            #expect(try await test.callUpdate("ringing", id, by: TestPlatform.bob).status == 200)
            #expect(try await test.callUpdate("callAnswer", id, sdp: Self.answer, by: TestPlatform.bob).status == 200)
            // Sent after both, received before them: ringing and the answer are held.
            _ = try await test.sendMessage("meanwhile", from: TestPlatform.bob, to: TestPlatform.alice)
            #expect(try await alice.nextNotification().eventType == .im)

            test.clock.advance(by: 1)
            let held = [try await alice.nextNotification(), try await alice.nextNotification()]
            #expect(held.map(\.eventType) == [.ringing, .respondCallUpdate])
            #expect(held.allSatisfy { $0.sessionParams?.sessionData == id })
            // Past the grace, nothing waits.
            #expect(try await test.endCall(id, by: TestPlatform.bob).status == 200)
            #expect(try await alice.nextNotification().eventType == .callEnd)
            alice.close()
            bob.close()
        }
    }

    @Test func rejectEndsTheCallForTheCallerAsDeclined() async throws {
        try await TestPlatform.with(configure: Self.noGrace) { test in
            let alice = try await test.openSession(TestPlatform.alice)
            let bob = try await test.openSession(TestPlatform.bob)
            let id = try await test.callID(from: TestPlatform.alice, to: TestPlatform.bob)
            _ = try await bob.nextNotification()
            let rejected = try await test.reject(id, by: TestPlatform.bob)
            #expect(rejected.status == 200)
            #expect(try rejected.decode(CallDispositionResponseDocument.self).callDispositionResponse.statusCode == 0)
            let end = try await alice.nextNotification()
            #expect(end.eventType == .callEnd)
            #expect(end.sessionParams == SessionParams(sessionData: id, statusCode: 603, reasonText: "Declined"))
            #expect(try await test.platform.store.callCount() == 0)
            alice.close()
            bob.close()
        }
    }

    @Test func theCallerEndingAnUnansweredCallCancelsItForTheCallee() async throws {
        try await TestPlatform.with(configure: Self.noGrace) { test in
            let alice = try await test.openSession(TestPlatform.alice)
            let bob = try await test.openSession(TestPlatform.bob)
            let id = try await test.callID(from: TestPlatform.alice, to: TestPlatform.bob)
            _ = try await bob.nextNotification()
            #expect(try await test.endCall(id, by: TestPlatform.alice).status == 200)
            let cancel = try await bob.nextNotification()
            #expect(cancel.eventType == .callCancel && cancel.sessionParams == SessionParams(sessionData: id))
            // The callee ending a ringing call is a decline, like reject.
            let second = try await test.callID(from: TestPlatform.alice, to: TestPlatform.bob)
            _ = try await bob.nextNotification()
            #expect(try await test.endCall(second, by: TestPlatform.bob).status == 200)
            let declined = try await alice.nextNotification()
            #expect(declined.eventType == .callEnd && declined.sessionParams?.statusCode == 603)
            alice.close()
            bob.close()
        }
    }

    @Test func anUnansweredCallEndsAfterTheRingTimeout() async throws {
        try await TestPlatform.with(configure: Self.noGrace) { test in
            let alice = try await test.openSession(TestPlatform.alice)
            let bob = try await test.openSession(TestPlatform.bob)
            let id = try await test.callID(from: TestPlatform.alice, to: TestPlatform.bob)
            _ = try await bob.nextNotification()
            test.clock.advance(by: 59)
            await test.platform.sweep()
            #expect(try await test.platform.store.callCount() == 1)
            test.clock.advance(by: 1)
            await test.platform.sweep()
            let end = try await alice.nextNotification()
            #expect(end.eventType == .callEnd)
            #expect(end.sessionParams == SessionParams(sessionData: id, statusCode: 408, reasonText: "No answer"))
            #expect(try await bob.nextNotification().eventType == .callCancel)
            #expect(try await test.platform.store.callCount() == 0)
            alice.close()
            bob.close()
        }
    }

    @Test func asecondOfferWhileTheOtherSidesIsOutIsGlare() async throws {
        try await TestPlatform.with(configure: Self.noGrace) { test in
            let alice = try await test.openSession(TestPlatform.alice)
            let bob = try await test.openSession(TestPlatform.bob)
            let id = try await test.answeredCall(alice: alice, bob: bob)
            #expect(
                try await test.callUpdate("startCallUpdate", id, sdp: Self.hold, by: TestPlatform.alice).status == 200)
            _ = try await bob.nextNotification()
            let glare = try await test.callUpdate("startCallUpdate", id, sdp: Self.hold, by: TestPlatform.bob)
            #expect(glare.status == 409)
            #expect(glare.callStatus == 491)
            // The first offer is still answered as usual, and then bob may offer.
            #expect(
                try await test.callUpdate("respondCallUpdate", id, sdp: Self.answer, by: TestPlatform.bob).status == 200
            )
            #expect(try await alice.nextNotification().eventType == .respondCallUpdate)
            #expect(
                try await test.callUpdate("startCallUpdate", id, sdp: Self.hold, by: TestPlatform.bob).status == 200)
            #expect(try await alice.nextNotification().eventType == .startCallUpdate)
            alice.close()
            bob.close()
        }
    }

    @Test func aPartyWhoseCallSessionEndsLeavesTheCall() async throws {
        try await TestPlatform.with(configure: Self.noGrace) { test in
            let alice = try await test.openSession(TestPlatform.alice)
            let bobSession = try await test.subscribe(user: TestPlatform.bob)
            let bob = try await test.openChannel(try #require(bobSession.subscriptionParams).notificationChannel)
            let id = try await test.answeredCall(alice: alice, bob: bob)
            let gone = try await test.request(
                .DELETE, try #require(bobSession.subscription),
                credential: .basic(login: TestPlatform.bob, password: TestPlatform.password))
            #expect(gone.status == 200)
            let end = try await alice.nextNotification()
            #expect(end.eventType == .callEnd)
            #expect(end.sessionParams?.sessionData == id && end.sessionParams?.statusCode == 480)
            #expect(try await test.platform.store.callCount() == 0)

            // A caller whose subscription expires before the answer: the callee stops ringing.
            let bobAgain = try await test.openSession(TestPlatform.bob)
            // (alice's new, short session logs her first one out.)
            _ = try await test.subscribe(user: TestPlatform.alice, expires: 60)
            _ = try await test.callID(from: TestPlatform.alice, to: TestPlatform.bob)
            _ = try await bobAgain.nextNotification()
            test.clock.advance(by: 61)
            await test.platform.sweep()
            #expect(try await bobAgain.nextNotification().eventType == .callCancel)
            alice.close()
            bob.close()
            bobAgain.close()
        }
    }

    @Test func everyDeviceOfTheCalleeRingsAndStopsWhenOneAnswers() async throws {
        try await TestPlatform.with(configure: {
            $0.callerNotificationGrace = 0
            $0.maxSessionsPerUser = 2
        }) { test in
            let alice = try await test.openSession(TestPlatform.alice)
            let phone = try await test.openSession(TestPlatform.bob)
            let laptop = try await test.openSession(TestPlatform.bob)
            let id = try await test.callID(from: TestPlatform.alice, to: TestPlatform.bob)
            #expect(try await phone.nextNotification().eventType == .call)
            #expect(try await laptop.nextNotification().eventType == .call)
            #expect(try await test.callUpdate("callAnswer", id, sdp: Self.answer, by: TestPlatform.bob).status == 200)
            #expect(try await phone.nextNotification().eventType == .callCancel)
            #expect(try await laptop.nextNotification().eventType == .callCancel)
            #expect(try await alice.nextNotification().eventType == .respondCallUpdate)
            alice.close()
            phone.close()
            laptop.close()
        }
    }

    @Test func refusedCallsChangeNothing() async throws {
        try await TestPlatform.with(
            users: [TestPlatform.alice, TestPlatform.bob, Self.carol],
            configure: {
                $0.callerNotificationGrace = 0
                $0.maxSDPBytes = 2048
            }
        ) { test in
            let alice = try await test.openSession(TestPlatform.alice)
            let bob = try await test.openSession(TestPlatform.bob)
            let carol = try await test.openSession(Self.carol, services: ["Presence", "IM"])
            struct Case {
                var name: String
                var body: String
                var user = TestPlatform.alice
                var status: Int
                var code: Int
            }
            func start(_ to: String, sdp: String = Self.offer, type: String = "callStart") -> String {
                Self.body(["type": type, "to": to, "from": "sip:" + TestPlatform.alice, "sdp": sdp])
            }
            let cases = [
                Case(name: "unknown callee", body: start("sip:nobody@example.com"), status: 404, code: 404),
                Case(name: "callee without call", body: start("sip:" + Self.carol), status: 409, code: 480),
                Case(name: "yourself", body: start("sip:" + TestPlatform.alice), status: 400, code: 11),
                Case(
                    name: "no sdp", body: Self.body(["type": "callStart", "to": "sip:" + TestPlatform.bob]),
                    status: 400,
                    code: 11),
                Case(
                    name: "oversized sdp",
                    body: start("sip:" + TestPlatform.bob, sdp: String(repeating: "a", count: 3000)),
                    status: 400, code: 11),
                Case(
                    name: "unknown type", body: start("sip:" + TestPlatform.bob, type: "teleport"), status: 400,
                    code: 11),
                Case(name: "join", body: start("sip:" + TestPlatform.bob, type: "join"), status: 400, code: 11),
                Case(name: "not JSON", body: "{callControlRequest:", status: 400, code: 10),
                Case(name: "no envelope", body: #"{"type":"callStart"}"#, status: 400, code: 10),
                Case(
                    name: "caller without call",
                    body: Self.body(["type": "callStart", "to": "sip:" + TestPlatform.bob, "sdp": "v=0"]),
                    user: Self.carol, status: 409, code: 45),
            ]
            for item in cases {
                let reply = try await test.request(
                    .POST, LinkPath.callControl(user: item.user), body: item.body,
                    credential: .basic(login: item.user, password: TestPlatform.password))
                #expect(reply.status == item.status, "\(item.name): \(reply.text)")
                #expect(reply.callStatus == item.code, "\(item.name): \(reply.text)")
                #expect(reply.headers["Access-Control-Allow-Origin"].first != nil, "\(item.name)")
            }
            // Another user's path is refused in the call envelope too.
            let foreign = try await test.request(
                .POST, LinkPath.callControl(user: TestPlatform.bob), body: start("sip:" + Self.carol))
            #expect(foreign.status == 403 && foreign.callStatus == StatusCode.forbiddenUser.rawValue)
            #expect(try await test.platform.store.callCount() == 0)

            // Busy: bob is in a call with alice; carol, now subscribed to call, cannot reach him.
            let id = try await test.callID(from: TestPlatform.alice, to: TestPlatform.bob)
            _ = try await bob.nextNotification()
            _ = try await test.subscribe(user: Self.carol)
            let busy = try await test.startCall(from: Self.carol, to: TestPlatform.bob)
            #expect(busy.status == 409 && busy.callStatus == 486)

            // Requests on the session that its state or its parties do not allow.
            let session: [(String, String?, String, Int, Int)] = [
                ("ringing", nil, TestPlatform.alice, 409, 46),  // the caller does not ring
                ("respondCallUpdate", Self.answer, TestPlatform.alice, 409, 46),  // nothing to answer
                ("startCallUpdate", Self.hold, TestPlatform.bob, 409, 46),  // not answered yet
                ("callAnswer", nil, TestPlatform.bob, 400, 11),  // an answer without SDP
                ("callAnswer", Self.answer, TestPlatform.alice, 409, 46),  // the caller does not answer
                ("transfer", nil, TestPlatform.bob, 400, 11),
                ("audit", nil, Self.carol, 404, 42),  // not carol's call
            ]
            for (type, sdp, user, status, code) in session {
                let reply = try await test.callUpdate(type, id, sdp: sdp, by: user)
                #expect(reply.status == status && reply.callStatus == code, "\(type) by \(user): \(reply.text)")
            }
            let foreignState = try await test.callState(id, of: Self.carol)
            #expect(foreignState.status == 404 && foreignState.code == 47)
            let foreignEnd = try await test.endCall(id, by: Self.carol)
            #expect(foreignEnd.status == 404 && foreignEnd.callStatus == 42)
            let callerRejects = try await test.reject(id, by: TestPlatform.alice)
            #expect(callerRejects.status == 409 && callerRejects.callStatus == 46)
            #expect(try await test.platform.store.callCount() == 1)

            // Ended: every request on it is 404/42.
            #expect(try await test.endCall(id, by: TestPlatform.alice).status == 200)
            #expect(try await bob.nextNotification().eventType == .callCancel)
            let late = try await test.callUpdate("callAnswer", id, sdp: Self.answer, by: TestPlatform.bob)
            #expect(late.status == 404 && late.callStatus == 42)
            #expect(try await test.endCall(id, by: TestPlatform.alice).status == 404)
            alice.close()
            bob.close()
            carol.close()
        }
    }

    @Test func aCallOutlivesARestartOfThePlatform() async throws {
        try await TestPlatform.with(configure: Self.noGrace) { test in
            let aliceSession = try await test.subscribe(user: TestPlatform.alice)
            let bobSession = try await test.subscribe(user: TestPlatform.bob)
            let alicePath = try #require(aliceSession.subscriptionParams).notificationChannel
            let bobPath = try #require(bobSession.subscriptionParams).notificationChannel
            let alice = try await test.openChannel(alicePath)
            let bob = try await test.openChannel(bobPath)
            let id = try await test.answeredCall(alice: alice, bob: bob)

            // The old sockets are closed by the shutdown; new ones reach the new platform.
            try await test.restart()
            let aliceAgain = try await test.openChannel(alicePath)
            let bobAgain = try await test.openChannel(bobPath)
            #expect(
                try await test.callUpdate("startCallUpdate", id, sdp: Self.hold, by: TestPlatform.alice).status == 200)
            #expect(try await bobAgain.nextNotification().eventType == .startCallUpdate)
            #expect(
                try await test.callUpdate("respondCallUpdate", id, sdp: Self.answer, by: TestPlatform.bob).status == 200
            )
            #expect(try await aliceAgain.nextNotification().eventType == .respondCallUpdate)
            #expect(try await test.endCall(id, by: TestPlatform.alice).status == 200)
            #expect(try await bobAgain.nextNotification().eventType == .callEnd)
            aliceAgain.close()
            bobAgain.close()
        }
    }

    @Test(.enabled(if: TestDatabase.isAvailable))
    func aCallBetweenTwoNodesIsSignalledWhicheverNodeTakesARequest() async throws {
        let database = try await TestDatabase.create()
        try await withCleanup {
            let shared: @Sendable (inout PlatformConfiguration) -> Void = {
                $0.database = database.url
                $0.callerNotificationGrace = 0
            }
            try await TestPlatform.with(configure: shared) { one in
                try await TestPlatform.with(users: [], configure: shared) { two in
                    let aliceSession = try await one.subscribe(user: TestPlatform.alice)
                    let bobSession = try await two.subscribe(user: TestPlatform.bob)
                    let alice = try await one.openChannel(
                        try #require(aliceSession.subscriptionParams).notificationChannel)
                    let bob = try await two.openChannel(try #require(bobSession.subscriptionParams).notificationChannel)

                    let id = try await one.callID(from: TestPlatform.alice, to: TestPlatform.bob)
                    #expect(try await bob.nextNotification().sessionParams?.sdp == Self.offer)
                    #expect(try await two.callUpdate("ringing", id, by: TestPlatform.bob).status == 200)
                    #expect(try await alice.nextNotification().eventType == .ringing)
                    #expect(
                        try await one.callUpdate("callAnswer", id, sdp: Self.answer, by: TestPlatform.bob).status == 200
                    )
                    #expect(try await alice.nextNotification().sessionParams?.sdp == Self.answer)
                    // alice hangs up through bob's node; bob hears it on his.
                    #expect(try await two.endCall(id, by: TestPlatform.alice).status == 200)
                    let end = try await bob.nextNotification()
                    #expect(end.eventType == .callEnd && end.sessionParams?.sessionData == id)
                    alice.close()
                    bob.close()
                }
            }
        } cleanup: {
            await database.drop()
        }
    }

    static func body(_ request: [String: String]) -> String {
        let data = try! JSONSerialization.data(withJSONObject: ["callControlRequest": request])
        return String(decoding: data, as: UTF8.self)
    }
}

extension TestPlatform {
    func startCall(from caller: String, to callee: String, sdp: String = CallTests.offer) async throws -> Reply {
        try await request(
            .POST, LinkPath.callControl(user: caller),
            body: CallTests.body(["type": "callStart", "to": "sip:" + callee, "sdp": sdp, "from": "sip:" + caller]),
            credential: .basic(login: caller, password: Self.password))
    }

    func callID(from caller: String, to callee: String) async throws -> String {
        let reply = try await startCall(from: caller, to: callee)
        guard reply.status == 200,
            let id = try reply.decode(CallControlResponseDocument.self).callControlResponse.sessionData
        else { throw TestFailure("callStart answered \(reply.status): \(reply.text)") }
        return id
    }

    func callUpdate(_ type: String, _ id: String, sdp: String? = nil, by user: String) async throws -> Reply {
        var request = ["type": type]
        request["sdp"] = sdp
        return try await self.request(
            .PUT, LinkPath.callSession(user: user, id: id), body: CallTests.body(request),
            credential: .basic(login: user, password: Self.password))
    }

    func callState(_ id: String, of user: String) async throws -> (status: Int, state: String?, code: Int) {
        let reply = try await request(
            .GET, LinkPath.callSession(user: user, id: id), credential: .basic(login: user, password: Self.password))
        let response = try reply.decode(CallControlResponseDocument.self).callControlResponse
        return (reply.status, response.state, response.statusCode)
    }

    func endCall(_ id: String, by user: String) async throws -> Reply {
        try await request(
            .DELETE, LinkPath.callSession(user: user, id: id), credential: .basic(login: user, password: Self.password))
    }

    func reject(_ id: String, by user: String) async throws -> Reply {
        let body = try WireJSON.encode(
            CallDispositionRequestDocument(callDispositionRequest: .init(action: "reject", sessionData: id)))
        return try await request(
            .POST, LinkPath.callDisposition(user: user), body: String(decoding: body, as: UTF8.self),
            credential: .basic(login: user, password: Self.password))
    }

    /// alice calls bob and bob answers; both sockets have had every notification of it.
    func answeredCall(alice: TestChannel, bob: TestChannel) async throws -> String {
        let id = try await callID(from: Self.alice, to: Self.bob)
        guard try await bob.nextNotification().eventType == .call else { throw TestFailure("no call for bob") }
        let answer = try await callUpdate("callAnswer", id, sdp: CallTests.answer, by: Self.bob)
        guard answer.status == 200, try await alice.nextNotification().eventType == .respondCallUpdate else {
            throw TestFailure("answer failed: \(answer.text)")
        }
        return id
    }
}

extension TestPlatform.Reply {
    /// The `statusCode` of a `callControlResponse` (errors of calldisposition use it too).
    var callStatus: Int? { try? decode(CallControlResponseDocument.self).callControlResponse.statusCode }
}
