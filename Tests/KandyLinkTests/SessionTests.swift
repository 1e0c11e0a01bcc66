import Foundation
import KandyLinkProtocol
import Testing

@testable import KandyLink

/// The session driven through scripted transports: the test answers every request and opens or
/// fails every socket itself, and moves the clock, so races are played in the order chosen and
/// in milliseconds.
@Suite(.timeLimit(.minutes(1))) struct SessionTests {
    static let alice = Credentials.bearer(username: "alice", token: "t0k/en")
    static let channelPath = "/rest/version/1/user/alice/channel/c1"
    static let subscriptionPath = "/rest/version/1/user/alice/subscription/s1"

    /// A Kandy on scripted transports, a test clock and a wall clock that moves with it.
    struct Rig {
        let http = ScriptedHTTP()
        let websocket = ScriptedWebSocket()
        let clock = TestClock()
        let kandy: Kandy
        let recorder: Recorder

        init(backoff: KandyConfiguration.Backoff = .init(limit: 2)) throws {
            let clock = self.clock
            kandy = try Kandy.create(
                KandyConfiguration(
                    authentication: .init(server: .init(base: "link.test", port: 8443)),
                    subscription: .init(websocket: .init(server: "link.test", port: 8443), expires: 3600),
                    connectivity: .init(keepaliveInterval: .seconds(30), reconnect: backoff)),
                http: http, websocket: websocket, clock: clock,
                now: { Date(timeIntervalSince1970: 1_000_000 + clock.now.offset.seconds) }, random: { 0 })
            recorder = Recorder(kandy)
        }

        /// Subscribes alice and opens her channel; returns the open socket.
        func subscribed() async throws -> ScriptedWebSocket.Socket {
            try await kandy.setCredentials(SessionTests.alice)
            let subscribing = Task { try await kandy.services.subscribe(["call", "IM"], forceLogOut: true) }
            await http.next().answer(200, SessionTests.granted())
            let socket = await websocket.next().open()
            try await subscribing.value
            return socket
        }
    }

    static func granted(expires: Int = 3600) -> SubscribeResponseDocument {
        SubscribeResponseDocument(
            subscribeResponse: .init(
                statusCode: 0, subscription: subscriptionPath,
                subscriptionParams: .init(service: ["call", "IM"], notificationChannel: channelPath, expires: expires)))
    }

    static let accepted = SubscribeResponseDocument(subscribeResponse: .init(statusCode: 0))

    @Test func subscribeSendsThePostOpensTheChannelAndResolvesOnceItIsOpen() async throws {
        let rig = try Rig()
        try await rig.kandy.setCredentials(Self.alice)
        let subscribing = Task { try await rig.kandy.services.subscribe(["call", "IM"], forceLogOut: true) }

        let post = await rig.http.next()
        #expect(post.request.method == "POST")
        #expect(post.request.url == "https://link.test:8443" + LinkPath.subscriptions(user: "alice"))
        #expect(post.request.headers["Authorization"] == "Bearer t0k/en")
        let asked = post.body(as: SubscribeRequestDocument.self)?.subscribeRequest
        #expect(asked?.service.map(\.rawValue) == ["call", "IM"])
        #expect(asked?.forceLogOut == .true)
        #expect(asked?.expires == 3600)
        post.answer(200, Self.granted())

        let opening = await rig.websocket.next()
        #expect(opening.url == "wss://link.test:8443" + Self.channelPath + "?access_token=t0k%2Fen")
        #expect(rig.kandy.getConnection() == ConnectionInfo(isConnected: false, isPending: true, error: nil))
        let socket = opening.open()
        try await subscribing.value

        #expect(await socket.sent() == KeepaliveMessage.text)
        #expect(rig.kandy.getConnection() == ConnectionInfo(isConnected: true, isPending: false, error: nil))
        #expect(rig.kandy.services.getSubscriptions().subscribed == ["call", "IM"])
        #expect(
            rig.recorder.names == [
                "auth:change", "subscription:change", "ws:change", "ws:change", "subscription:change",
            ])
        await rig.kandy.destroy()
    }

    @Test func keepalivesGoOutOnTheClock() async throws {
        let rig = try Rig()
        let socket = try await rig.subscribed()
        #expect(await socket.sent() == KeepaliveMessage.text)
        for tick in 1...3 {
            await rig.clock.sleeper(at: .seconds(30 * tick))
            rig.clock.advance(by: .seconds(30))
            #expect(await socket.sent() == KeepaliveMessage.text)
        }
        await rig.kandy.destroy()
    }

    /// A refresh the platform fails is retried; one that finds no subscription (statusCode 39)
    /// ends it: `subscription:change {reason: gone}`, credentials forgotten, the socket closed.
    @Test func aFailedRefreshIsRetriedAndOneThatFindsNoSubscriptionEndsIt() async throws {
        let rig = try Rig()
        let socket = try await rig.subscribed()

        rig.clock.advance(by: .seconds(1800))
        let first = await rig.http.next()
        #expect(first.request.method == "PUT")
        #expect(first.request.url == "https://link.test:8443" + Self.subscriptionPath)
        first.answer(500, StatusDocument(statusCode: 42, reason: "busy"))
        let failed = await rig.recorder.next { $0.name == .subscriptionResub }
        guard case .subscriptionResub(let resub)? = failed else { Issue.record("no resub"); return }
        #expect(resub.attemptNum == 1 && resub.isFailure && resub.error?.statusCode == 42)
        #expect(rig.kandy.getConnection().isConnected, "a failed refresh leaves the subscription")

        // After a first failure the wait halves: 900 s.
        await rig.clock.sleeper(at: .seconds(2700))
        rig.clock.advance(by: .seconds(900))
        let second = await rig.http.next()
        #expect(second.request.method == "PUT")
        second.answer(
            404,
            SubscribeResponseDocument(
                subscribeResponse: .init(
                    statusCode: StatusCode.subscriptionNotFound.rawValue, reason: "No such subscription")))
        await socket.closedBySDK()
        let ended = await rig.recorder.next { $0.name == .subscriptionChange }
        #expect(ended == .subscriptionChange(.init(reason: .gone)))
        let forgotten = await rig.recorder.next { $0.name == .authChange }
        #expect(forgotten == .authChange(.init(forced: true, reason: .gone)))
        #expect(rig.kandy.getUserInfo().username == nil)
        await rig.kandy.destroy()
    }

    /// A socket the platform closes is reopened at once with the token and the newest eventId;
    /// what the platform replays from before the loss is not delivered twice.
    @Test func aLostChannelReopensFromTheNewestEventAndDropsReplays() async throws {
        let rig = try Rig()
        let socket = try await rig.subscribed()
        let messages = rig.recorder.events()
        socket.deliver(.instantMessage(eventId: "7", from: "bob", text: "one", time: nil))

        socket.closeFromPlatform()
        let reopening = await rig.websocket.next()
        #expect(reopening.url == "wss://link.test:8443" + Self.channelPath + "?token=t0k%2Fen&lastEventId=7")
        let replacement = reopening.open()
        replacement.deliver(.instantMessage(eventId: "7", from: "bob", text: "one", time: nil))
        replacement.deliver(.instantMessage(eventId: "8", from: "bob", text: "two", time: nil))

        var delivered: [String] = []
        for await event in messages {
            if case .messagesChange(let message) = event { delivered.append(message.text) }
            if delivered.count == 2 { break }
        }
        #expect(delivered == ["one", "two"])
        #expect(rig.kandy.messages.conversation(with: "bob").map(\.id) == ["7", "8"])
        await rig.kandy.destroy()
    }

    /// The subscription ends while its channel is reopening: the socket that opens late is
    /// closed, not adopted.
    @Test func aSocketThatOpensAfterItsSubscriptionEndedIsClosed() async throws {
        let rig = try Rig()
        let socket = try await rig.subscribed()
        socket.closeFromPlatform()
        let reopening = await rig.websocket.next()

        let unsubscribing = Task { try await rig.kandy.services.unsubscribe(["call", "IM"]) }
        let delete = await rig.http.next()
        #expect(delete.request.method == "DELETE")
        #expect(delete.request.url == "https://link.test:8443" + Self.subscriptionPath)
        delete.answer(200, Self.accepted)
        try await unsubscribing.value

        await reopening.open().closedBySDK()
        #expect(rig.kandy.getConnection().isConnected == false)
        await rig.kandy.destroy()
    }

    /// A channel that never opens: retried per the backoff, then the new subscription is deleted
    /// rather than left to expire, and subscribe fails.
    @Test func aChannelThatNeverOpensDeletesItsSubscription() async throws {
        let rig = try Rig(backoff: .init(limit: 2, delay: .seconds(5)))
        try await rig.kandy.setCredentials(Self.alice)
        let subscribing = Task { try await rig.kandy.services.subscribe(["call", "IM"], forceLogOut: true) }
        await rig.http.next().answer(200, Self.granted())
        await rig.websocket.next().fail()
        await rig.clock.sleeper(at: .seconds(5))
        rig.clock.advance(by: .seconds(5))
        await rig.websocket.next().fail()

        let delete = await rig.http.next()
        #expect(delete.request.method == "DELETE")
        #expect(delete.request.url == "https://link.test:8443" + Self.subscriptionPath)
        delete.answer(200, Self.accepted)
        let error = await #expect(throws: KandyError.self) { try await subscribing.value }
        #expect(error?.code == .connectFailure)
        await rig.kandy.destroy()
    }

    /// Destroy while the subscribe POST is out: subscribe fails at once with `destroyed`, without
    /// waiting for the answer; the events end and the transport is shut down.
    @Test func destroyWhileTheSubscribeIsOutEndsItAtOnce() async throws {
        let rig = try Rig()
        try await rig.kandy.setCredentials(Self.alice)
        let events = rig.kandy.events
        let subscribing = Task { try await rig.kandy.services.subscribe(["call", "IM"], forceLogOut: true) }
        let post = await rig.http.next()

        await rig.kandy.destroy()
        let error = await #expect(throws: KandyError.self) { try await subscribing.value }
        #expect(error?.code == .destroyed)
        #expect(rig.http.shutdownCount == 1)
        for await _ in events {}  // ends: nothing more is emitted

        #expect(rig.kandy.isDestroyed)
        post.answer(200, Self.granted())  // so that the request's task ends
    }

    /// Destroy while the channel is opening: the socket that opens afterwards is closed.
    @Test func destroyWhileTheChannelOpensClosesTheSocketThatOpensLate() async throws {
        let rig = try Rig()
        try await rig.kandy.setCredentials(Self.alice)
        let subscribing = Task { try await rig.kandy.services.subscribe(["call", "IM"], forceLogOut: true) }
        await rig.http.next().answer(200, Self.granted())
        let opening = await rig.websocket.next()

        await rig.kandy.destroy()
        let error = await #expect(throws: KandyError.self) { try await subscribing.value }
        #expect(error?.code == .destroyed)
        await opening.open().closedBySDK()
    }

    /// Only the newest socket's events are admitted: a late frame or close of one superseded by
    /// a reopen, or by a close of ours, is dropped.
    @Test func eventsOfASupersededSocketAreDropped() {
        struct Refusing: WebSocketTransport {
            func connect(
                url: String, onMessage: @escaping @Sendable (String) -> Void, onClose: @escaping @Sendable () -> Void
            ) async throws -> any WebSocketConnection { throw URLError(.cannotConnectToHost) }
        }
        var connector = ChannelConnector(websocket: Refusing())
        let first = connector.open("wss://h/c") { _, _ in }
        let second = connector.open("wss://h/c") { _, _ in }
        #expect(connector.admit(.closed, of: first) == nil)
        #expect(connector.admit(.text("late"), of: first) == nil)
        #expect(connector.admit(.text("now"), of: second) != nil)
        connector.disconnect()
        #expect(connector.admit(.closed, of: second) == nil)
    }

    @Test func channelURLs() {
        func url(_ query: ChannelMachine.Query, token: String?, onFirstOpen: Bool = true, last: UInt64? = nil) -> String
        {
            ChannelConnector.url(
                origin: "wss://h", path: "/c", query: query, token: token, tokenOnFirstOpen: onFirstOpen,
                lastEventID: last)
        }
        #expect(url(.firstOpen, token: "a b") == "wss://h/c?access_token=a%20b")
        #expect(url(.firstOpen, token: "t", onFirstOpen: false) == "wss://h/c")
        #expect(url(.firstOpen, token: nil) == "wss://h/c")
        #expect(url(.reconnect, token: "t", last: 9) == "wss://h/c?token=t&lastEventId=9")
        #expect(url(.reconnect, token: nil, last: 9) == "wss://h/c?lastEventId=9")
        #expect(url(.reconnect, token: nil) == "wss://h/c?")
    }
}
