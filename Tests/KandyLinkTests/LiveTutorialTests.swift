import Foundation
import KandyLinkProtocol
import KandyLinkServer
import KandyLinkTesting
import Synchronization
import Testing

@testable import KandyLink

/// A platform plus SDK clients/// The SDK against a real platform on an ephemeral port: the tutorial, end to end.
@Suite struct LiveTutorialTests {
    @Test(.timeLimit(.minutes(1))) func theTutorialFlowWithItsEventsInOrder() async throws {
        try await Rig.with { rig in
            let kandy = try rig.client()
            let recorder = Recorder(kandy)
            let alice = PlatformFixture.alice

            try await kandy.setCredentials(username: alice, password: PlatformFixture.password)
            #expect(kandy.getUserInfo().username == alice)
            try await kandy.services.subscribe(["call", "Presence", "IM"], forceLogOut: true)
            #expect(kandy.services.getSubscriptions().subscribed == ["call", "Presence", "IM"])
            #expect(kandy.getConnection() == ConnectionInfo(isConnected: true, isPending: false, error: nil))
            #expect(kandy.connection.getSocketState()?.connected == true)
            #expect(await rig.fixture.platform.waitUntil { rig.fixture.platform.openChannelCount == 1 })
            #expect(
                recorder.names == [
                    "auth:change", "subscription:change", "ws:change", "ws:change", "subscription:change",
                ])

            // Granted 60 s: the refresh PUT goes at 30 s.
            rig.advance(seconds: 29)
            rig.advance(seconds: 1)
            let resub = await recorder.next { $0.name == .subscriptionResub }
            #expect(resub == .subscriptionResub(.init(attemptNum: 1, isFailure: false)))
            // …and the platform's expiry moved: 59 s later it is still there, refreshed again.
            rig.advance(seconds: 59)
            await rig.fixture.platform.sweep()
            #expect(try await rig.fixture.platform.subscriptionCount() == 1)
            let second = await recorder.next { $0.name == .subscriptionResub }
            #expect(second == .subscriptionResub(.init(attemptNum: 1, isFailure: false)))

            try await kandy.services.unsubscribe(["call", "Presence", "IM"])
            #expect(kandy.services.getSubscriptions().subscribed.isEmpty)
            #expect(kandy.getConnection().isConnected == false)
            #expect(Array(recorder.names.suffix(3)) == ["subscription:change", "ws:change", "subscription:change"])
            #expect(try await rig.fixture.platform.subscriptionCount() == 0)

            await kandy.destroy()
            #expect(kandy.isDestroyed)
            await #expect(throws: KandyError.self) { try await kandy.setCredentials(username: alice, password: "x") }
            await #expect(throws: KandyError.self) { try await kandy.services.subscribe(["call"]) }
        }
    }

    /// A channel the platform closes is closed for the SDK once the close handshake is over, not
    /// once TLS has said goodbye too: after a server closes first, WSClient's TLS waits out its
    /// shutdown timeout (5 s by default; here an hour, so a close reported only then never is).
    @Test(.timeLimit(.minutes(1))) func aCloseFromThePlatformIsSeenAtTheEndOfTheHandshake() async throws {
        try await Rig.with { rig in
            var tls = try Kandy.makeTLS(.init(trustedCertificateFiles: [rig.fixture.certificatePath]))
            tls.shutdownTimeout = .hours(1)
            let kandy = try rig.client(
                websocket: WSClientTransport(
                    tls: tls, serverName: "localhost", pingInterval: .seconds(30),
                    openTimeout: KandyConfiguration.Connectivity().openTimeout))
            let recorder = Recorder(kandy)
            try await kandy.setCredentials(username: PlatformFixture.alice, password: PlatformFixture.password)
            try await kandy.services.subscribe(["call", "Presence", "IM"], forceLogOut: true)
            #expect(kandy.connection.getSocketState()?.connected == true)

            // Shutting down, the platform closes every channel with a close frame.
            try await rig.fixture.stopPlatform()
            _ = await recorder.next { $0.name == .wsChange && kandy.connection.getSocketState()?.connected != true }
            #expect(kandy.connection.getSocketState()?.connected != true)
            await kandy.destroy()
        }
    }

    @Test(.timeLimit(.minutes(1))) func aWrongPasswordIsASubscriptionErrorWithTheKandyCode() async throws {
        try await Rig.with { rig in
            let kandy = try rig.client()
            let recorder = Recorder(kandy)
            try await kandy.setCredentials(username: PlatformFixture.alice, password: "wrong")
            do {
                try await kandy.services.subscribe(["call", "Presence", "IM"], forceLogOut: true)
                Issue.record("subscribed with a wrong password")
            } catch let error as KandyError {
                #expect(error.code == .subscribeFailure)
                #expect(error.code.rawValue == "authentication:4")
                #expect(error.statusCode == StatusCode.invalidCredentials.rawValue)
                #expect(error.message.contains("Code: 21"))
                #expect(error.message.contains("Wrong username or password"))
            }
            guard case .subscriptionError(let reported)? = recorder.all.last else {
                Issue.record("no subscription:error")
                return
            }
            #expect(reported.code == .subscribeFailure)
            #expect(kandy.getConnection().error?.code == .subscribeFailure)
            // Good credentials clear it, as in Kandy.js.
            try await kandy.setCredentials(username: PlatformFixture.alice, password: PlatformFixture.password)
            #expect(kandy.getConnection().error == nil)
            await kandy.destroy()
        }
    }

    @Test(.timeLimit(.minutes(1))) func aSecondLoginWithForceLogOutEndsTheFirst() async throws {
        try await Rig.with { rig in
            let first = try rig.client()
            let second = try rig.client()
            let recorder = Recorder(first)
            try await first.setCredentials(username: PlatformFixture.alice, password: PlatformFixture.password)
            try await first.services.subscribe(["call", "Presence", "IM"], forceLogOut: true)
            try await second.setCredentials(username: PlatformFixture.alice, password: PlatformFixture.password)
            try await second.services.subscribe(["call", "Presence", "IM"], forceLogOut: true)

            let change = await recorder.next { $0.name == .authChange && $0 != .authChange(.init()) }
            #expect(change == .authChange(.init(forced: true, reason: .gone)))
            #expect(recorder.all.contains(.subscriptionChange(.init(reason: .gone))))
            #expect(
                recorder.all.contains {
                    if case .notificationReceived(let message) = $0 { message.eventType == .gone } else { false }
                })
            #expect(first.getUserInfo().username == nil)
            #expect(first.services.getSubscriptions().subscribed.isEmpty)
            #expect(second.services.getSubscriptions().subscribed == ["call", "Presence", "IM"])
            await first.destroy()
            await second.destroy()
        }
    }

    @Test(.timeLimit(.minutes(1))) func afterAPlatformRestartTheClientReconnectsAndKeepsRefreshing() async throws {
        try await Rig.with { rig in
            let backoff = KandyConfiguration.Backoff(limit: 0, delay: .seconds(1), multiplier: 2, maxDelay: .seconds(8))
            let socket = try rig.watchedSocket()
            let kandy = try rig.client(backoff: backoff, websocket: socket)
            let recorder = Recorder(kandy)
            try await kandy.setCredentials(username: PlatformFixture.alice, password: PlatformFixture.password)
            try await kandy.services.subscribe(["call", "Presence", "IM"], forceLogOut: true)
            #expect(await socket.nextAttempt() == .opened)

            try await rig.fixture.restart(samePort: true)
            // The loss is noticed from the close itself; retries follow the backoff on the test clock.
            _ = await recorder.next { $0 == .wsChange }
            #expect(await rig.retryUntilOpen(socket, backoff: backoff))
            let reopened = await recorder.next {
                $0 == .wsChange && kandy.connection.getSocketState()?.connected == true
            }
            #expect(reopened != nil)
            #expect(await rig.fixture.platform.waitUntil { rig.fixture.platform.openChannelCount == 1 })

            rig.advance(seconds: 30)
            let resub = await recorder.next { $0.name == .subscriptionResub }
            #expect(resub == .subscriptionResub(.init(attemptNum: 1, isFailure: false)))
            #expect(!recorder.all.contains(.subscriptionChange(.init(reason: .lostConnection))))
            await kandy.destroy()
        }
    }

    @Test(.timeLimit(.minutes(1))) func iceServersCarryThePlatformsTURNCredentials() async throws {
        try await Rig.with(configure: { $0.turn = .init(secret: "s3cret") }) { rig in
            let turn = KandyConfiguration.IceServer(url: "turns:turn.example.com:443")
            let stun = KandyConfiguration.IceServer(url: "stun:stun.example.com:3478")
            let kandy = try rig.client(call: .init(serverTurnCredentials: true, iceServers: [turn, stun]))
            let recorder = Recorder(kandy)
            #expect(kandy.iceServers == [turn, stun])  // nothing issued yet
            try await kandy.setCredentials(username: PlatformFixture.alice, password: PlatformFixture.password)
            try await kandy.services.subscribe(["call"], forceLogOut: true)
            let issued = try #require(kandy.services.current()?.turnCredentials)
            #expect(issued.username == "1800086400:alice@example.com")
            #expect(
                kandy.iceServers == [
                    .init(url: "turns:turn.example.com:443", username: issued.username, credential: issued.password),
                    stun,
                ])
            // A refresh brings credentials issued later; they replace the old ones.
            rig.advance(seconds: 30)
            let refreshed = await recorder.next { $0.name == .subscriptionResub }
            #expect(refreshed == .subscriptionResub(.init(attemptNum: 1, isFailure: false)))
            #expect(kandy.services.current()?.turnCredentials != issued)
            #expect(kandy.iceServers.first?.username == "1800086430:alice@example.com")

            let own = try rig.client(call: .init(serverTurnCredentials: false, iceServers: [turn]))
            #expect(own.iceServers == [turn])
            await own.destroy()
            await kandy.destroy()
        }
    }

    @Test(.timeLimit(.minutes(1))) func aRefreshOfASubscriptionThePlatformNoLongerHasEndsIt() async throws {
        try await Rig.with { rig in
            let kandy = try rig.client()
            let recorder = Recorder(kandy)
            try await kandy.setCredentials(username: PlatformFixture.alice, password: PlatformFixture.password)
            try await kandy.services.subscribe(["call"], forceLogOut: true)
            // The subscription disappears on the platform without a `gone` reaching the client.
            let http = AsyncHTTPTransport(
                tls: try Kandy.makeTLS(.init(trustedCertificateFiles: [rig.fixture.certificatePath])))
            let url = try #require(kandy.services.current()?.url)
            let deleted = try await http.send(
                HTTPRequestSpec(
                    method: "DELETE", url: "https://127.0.0.1:\(rig.fixture.port)\(url)",
                    headers: [
                        "Authorization": CredentialHeader.basic(
                            login: PlatformFixture.alice, password: PlatformFixture.password
                        )
                        .field.value
                    ]))
            await http.shutdown()
            #expect(deleted.status == 200)

            rig.advance(seconds: 30)
            let ended = await recorder.next { $0 == .subscriptionChange(.init(reason: .gone)) }
            #expect(ended != nil)
            guard case .subscriptionResub(let resub)? = recorder.all.first(where: { $0.name == .subscriptionResub })
            else {
                Issue.record("no subscription:resub")
                return
            }
            #expect(resub.isFailure && resub.error?.statusCode == 39)
            // Credentials are forgotten with the `auth:change` that follows `subscription:change`.
            let forgotten = await recorder.next { $0.name == .authChange && $0 != .authChange(.init()) }
            #expect(forgotten == .authChange(.init(forced: true, reason: .gone)))
            #expect(kandy.getUserInfo().username == nil)
            await kandy.destroy()
        }
    }

    @Test(.timeLimit(.minutes(1))) func destroyClosesTheSocketAndFinishesTheEvents() async throws {
        try await Rig.with { rig in
            let kandy = try rig.client()
            let events = kandy.events
            try await kandy.setCredentials(username: PlatformFixture.alice, password: PlatformFixture.password)
            try await kandy.services.subscribe(["call"], forceLogOut: true)
            // Both waits' closures stay outside #expect: Swift 6.3 gives a closure inside a macro's
            // argument the same name as the next one after it in the same closure, and both then run
            // the first one's body (scripts/closure-collisions.py finds that).
            let opened = await rig.fixture.platform.waitUntil { rig.fixture.platform.openChannelCount == 1 }
            #expect(opened)
            #expect(rig.clock.sleeperCount >= 1)  // keepalive and refresh alarms
            await kandy.destroy()
            var seen: [KandyEvent.Name] = []
            for await event in events { seen.append(event.name) }  // ends: the stream was finished
            #expect(seen.first == .authChange)
            let closed = await rig.fixture.platform.waitUntil { rig.fixture.platform.openChannelCount == 0 }
            #expect(closed)
            // Every timer was cancelled by destroy: nothing sleeps on the clock any more.
            #expect(rig.clock.sleeperCount == 0)
        }
    }
}

/// A platform plus SDK clients sharing its wall clock and a test clock for their timers.
final class Rig: Sendable {
    let fixture: PlatformFixture
    let clock = TestClock()

    init(configure: @escaping @Sendable (inout PlatformConfiguration) -> Void = { _ in }) async throws {
        fixture = try await PlatformFixture(configure: configure)
    }

    /// A rig for `body`, its platform stopped afterwards whether `body` returns or throws.
    static func with(
        configure: @escaping @Sendable (inout PlatformConfiguration) -> Void = { _ in },
        _ body: (Rig) async throws -> Void
    ) async throws {
        let rig = try await Rig(configure: configure)
        try await withCleanup {
            try await body(rig)
        } cleanup: {
            try? await rig.fixture.stop()
        }
    }

    func client(
        expires: Int = 60, backoff: KandyConfiguration.Backoff = .init(), call: KandyConfiguration.Call = .init(),
        websocket: (any WebSocketTransport)? = nil
    ) throws -> Kandy {
        let port = fixture.port
        let wallClock = fixture.clock
        return try Kandy.create(
            KandyConfiguration(
                authentication: .init(server: .init(base: "127.0.0.1", port: port)),
                subscription: .init(websocket: .init(server: "127.0.0.1", port: port), expires: expires),
                call: call,
                connectivity: .init(reconnect: backoff),
                tls: .init(trustedCertificateFiles: [fixture.certificatePath])),
            websocket: websocket, clock: clock, now: { wallClock.now() }, random: { 0 })
    }

    /// A real channel transport for `client(websocket:)` that reports each open attempt.
    func watchedSocket() throws -> WatchedWebSocket {
        let tls = try Kandy.makeTLS(.init(trustedCertificateFiles: [fixture.certificatePath]))
        return WatchedWebSocket(
            WSClientTransport(
                tls: tls, serverName: "localhost", pingInterval: .seconds(30),
                openTimeout: KandyConfiguration.Connectivity().openTimeout))
    }

    /// Plays a client's reconnect: after each failed open, once its retry alarm is armed, moves
    /// the clock to it. True once an open succeeds; false after `limit` failures.
    func retryUntilOpen(
        _ socket: WatchedWebSocket, backoff: KandyConfiguration.Backoff, limit: Int = 30
    ) async -> Bool {
        for failed in 1...limit {
            guard await socket.nextAttempt() == .failed else { return true }
            let wait = backoff.wait(afterAttempt: failed, random: 0)
            await clock.sleeper(at: clock.now.offset + wait)
            clock.advance(by: wait)
        }
        return false
    }

    /// Moves both the platform's wall clock and the clients' timers.
    func advance(seconds: Int) {
        fixture.clock.advance(by: TimeInterval(seconds))
        clock.advance(by: .seconds(seconds))
    }
}

/// Collects a client's events from the moment it is made.
final class Recorder: Sendable {
    private let recorded = Mutex<[KandyEvent]>([])
    private let stream: AsyncStream<KandyEvent>
    private let sink: AsyncStream<KandyEvent>.Continuation
    private let listeners = Mutex<[AsyncStream<KandyEvent>.Continuation]>([])

    init(_ kandy: Kandy) {
        (stream, sink) = AsyncStream.makeStream(of: KandyEvent.self)
        kandy.onAny { [self] event in record(event) }
    }

    private func record(_ event: KandyEvent) {
        recorded.withLock { $0.append(event) }
        sink.yield(event)
        for listener in listeners.withLock({ $0 }) { listener.yield(event) }
    }

    /// Every event from now on, apart from what ``next(where:)`` consumes.
    func events() -> AsyncStream<KandyEvent> {
        let (stream, continuation) = AsyncStream.makeStream(of: KandyEvent.self)
        listeners.withLock { $0.append(continuation) }
        return stream
    }

    var all: [KandyEvent] { recorded.withLock { $0 } }
    var names: [String] { all.map(\.name.rawValue) }

    /// Waits for the next event matching `predicate` (earlier ones are skipped).
    func next(where predicate: (KandyEvent) -> Bool) async -> KandyEvent? {
        for await event in stream where predicate(event) { return event }
        return nil
    }
}
