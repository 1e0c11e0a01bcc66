import Foundation
import KandyLinkProtocol
import KandyLinkTesting
import Testing

@testable import KandyLink

/// Two SDK clients on a real platform: presence and instant messages end to end.
@Suite(.timeLimit(.minutes(1))) struct PresenceAndMessagingTests {
    @Test func aWatcherSeesPresenceChangesUntilItStopsWatching() async throws {
        let pair = try await Pair()
        let (alice, bob) = (pair.alice, pair.bob)

        // The answer and the first notification race: which comes first is not defined.
        let watching = bob.recorder.collect(2) { [.presenceSubscribe, .presenceChange].contains($0.name) }
        try await bob.kandy.presence.subscribe([PlatformFixture.alice])
        let first = await watching.value()
        #expect(first.contains(.presenceSubscribe([PlatformFixture.alice])))
        // The current presence comes at once: alice has not published, so she is offline.
        #expect(first.contains(.presenceChange(UserPresence(userId: PlatformFixture.alice, state: .offline))))

        let change = bob.recorder.collect(1) { $0.name == .presenceChange }
        try await alice.kandy.presence.update(.open, activity: .onThePhone, note: "café ☕️")
        #expect(
            await alice.next(.presenceSelfChange)
                == .presenceSelfChange(PresenceState(status: .open, activity: .onThePhone, note: "café ☕️")))
        let expected = UserPresence(
            userId: PlatformFixture.alice, state: PresenceState(status: .open, activity: .onThePhone, note: "café ☕️"))
        #expect(await change.value() == [.presenceChange(expected)])
        #expect(bob.kandy.presence.get(PlatformFixture.alice) == expected)
        #expect(bob.kandy.presence.getAll() == [expected])

        try await bob.kandy.presence.unsubscribe([PlatformFixture.alice])
        #expect(await bob.next(.presenceUnsubscribe) == .presenceUnsubscribe([PlatformFixture.alice]))
        let after = bob.recorder.collect(1) { [.presenceChange, .messagesChange].contains($0.name) }
        try await alice.kandy.presence.update(.closed, activity: .away)
        try await alice.kandy.messages.send(to: PlatformFixture.bob, text: "marker")
        // What bob hears next is the message, not alice's presence.
        let next = await after.value().first
        guard case .messagesChange(let message)? = next else {
            Issue.record("expected the message, got \(String(describing: next))")
            return
        }
        #expect(message.text == "marker")
        #expect(bob.kandy.presence.get(PlatformFixture.alice)?.status == .open)
        try await pair.stop()
    }

    @Test func aMessageArrivesExactlyOnceWithItsSenderTextAndTime() async throws {
        let pair = try await Pair()
        let (alice, bob) = (pair.alice, pair.bob)
        let text = "Hej Bob! Zürich → 東京 👩🏽‍💻🚀 \"quoted\"\n2nd line"

        let sent = try await alice.kandy.messages.send(to: PlatformFixture.bob, text: text)
        #expect(
            sent.direction == .outgoing && sent.sender == PlatformFixture.alice && sent.recipient == PlatformFixture.bob
        )
        #expect(await alice.next(.messagesChange) == .messagesChange(sent))

        guard case .messagesChange(let received)? = await bob.next(.messagesChange) else {
            Issue.record("bob received nothing")
            return
        }
        #expect(received.id == sent.id)
        #expect(received.text == text)
        #expect(received.sender == PlatformFixture.alice)
        #expect(received.recipient == PlatformFixture.bob)
        #expect(received.direction == .incoming)
        #expect(received.timestamp == pair.rig.fixture.clock.now().truncatedToMilliseconds)

        // Another message, then count: the first came once.
        try await alice.kandy.messages.send(to: "sip:" + PlatformFixture.bob, text: "second")
        _ = await bob.next(.messagesChange)
        let incoming = bob.recorder.all.compactMap { event -> InstantMessage? in
            if case .messagesChange(let message) = event { message } else { nil }
        }
        #expect(incoming.map(\.text) == [text, "second"])
        #expect(bob.kandy.messages.conversation(with: PlatformFixture.alice).map(\.text) == [text, "second"])
        #expect(
            alice.kandy.messages.conversation(with: PlatformFixture.bob).map(\.direction) == [.outgoing, .outgoing])
        #expect(bob.kandy.messages.peers() == [PlatformFixture.alice])
        try await pair.stop()
    }

    @Test func aUserNotSubscribedToIMReceivesNoMessages() async throws {
        let pair = try await Pair(bobServices: ["call", "Presence"])
        let (alice, bob) = (pair.alice, pair.bob)
        // Refused, not accepted and never delivered.
        await #expect(throws: KandyError.self) {
            try await alice.kandy.messages.send(to: PlatformFixture.bob, text: "bob takes no IM")
        }
        #expect(alice.kandy.getConnection().error == nil)
        let refused = alice.recorder.all.compactMap { event -> KandyError? in
            if case .messagesError(let error) = event { error } else { nil }
        }
        #expect(refused.map(\.statusCode) == [StatusCode.recipientUnavailable.rawValue])
        try await bob.kandy.presence.subscribe([PlatformFixture.alice])
        // The presence answer to the watch comes after the message would have: nothing came.
        _ = await bob.next(.presenceChange)
        #expect(!bob.recorder.all.contains { $0.name == .messagesChange })
        #expect(bob.kandy.messages.peers().isEmpty)
        try await pair.stop()
    }

    @Test func fetchAnswersWithoutWatching() async throws {
        let pair = try await Pair()
        try await pair.alice.kandy.presence.update(.open, activity: .busy)
        let fetched = try await pair.bob.kandy.presence.fetch([PlatformFixture.alice])
        #expect(fetched == [UserPresence(userId: PlatformFixture.alice, state: .init(status: .open, activity: .busy))])
        #expect(await pair.bob.next(.presenceChange) == .presenceChange(fetched[0]))
        try await pair.stop()
    }

    @Test func failuresAreErrorsAndEvents() async throws {
        let pair = try await Pair()
        let alice = pair.alice

        struct Case {
            var run: @Sendable (Kandy) async throws -> Void
            var event: KandyEvent.Name
            var code: KandyError.Code
            var statusCode: Int?
        }
        let cases: [Case] = [
            .init(
                run: { try await $0.presence.update("away", activity: .idle) }, event: .presenceError,
                code: .invalidPresenceStatus),
            .init(
                run: { try await $0.presence.update(.open, activity: "sleeping") }, event: .presenceError,
                code: .invalidPresenceActivity),
            .init(
                run: {
                    try await $0.presence.update(.open, activity: .idle, note: String(repeating: "n", count: 2000))
                },
                event: .presenceError, code: .presenceFailure, statusCode: StatusCode.invalidField.rawValue),
            .init(
                run: { try await $0.presence.subscribe(["nobody@example.com"]) }, event: .presenceError,
                code: .presenceFailure, statusCode: StatusCode.userNotFound.rawValue),
            .init(
                run: { _ = try await $0.presence.fetch([]) }, event: .presenceError, code: .presenceFailure,
                statusCode: StatusCode.invalidField.rawValue),
            .init(
                run: { try await $0.messages.send(to: "nobody@example.com", text: "hi") }, event: .messagesError,
                code: .sendMessageFailure, statusCode: StatusCode.userNotFound.rawValue),
            .init(
                run: { try await $0.messages.send(to: PlatformFixture.bob, text: String(repeating: "ü", count: 6000)) },
                event: .messagesError, code: .sendMessageFailure, statusCode: StatusCode.messageTooLarge.rawValue),
            .init(
                run: { try await $0.messages.send(to: "", text: "hi") }, event: .messagesError,
                code: .invalidDestination),
        ]
        for entry in cases {
            func reported() -> [KandyError] {
                alice.recorder.all.compactMap { event in
                    switch event {
                    case .presenceError(let error) where entry.event == .presenceError: error
                    case .messagesError(let error) where entry.event == .messagesError: error
                    default: nil
                    }
                }
            }
            let before = reported()
            do {
                try await entry.run(alice.kandy)
                Issue.record("no error for \(entry.code)")
            } catch let error as KandyError {
                #expect(error.code == entry.code)
                #expect(error.statusCode == entry.statusCode, "\(error)")
                // Each failure is also its event, emitted once.
                #expect(reported() == before + [error])
            }
        }
        // Before credentials there is nothing to send as.
        let stranger = try pair.rig.client()
        await #expect(throws: KandyError.self) { try await stranger.messages.send(to: PlatformFixture.bob, text: "hi") }
        await stranger.destroy()
        try await pair.stop()
    }
}

/// Alice and bob, each logged in and subscribed on one platform.
struct Pair {
    struct Client {
        let kandy: Kandy
        let recorder: Recorder

        func next(_ name: KandyEvent.Name) async -> KandyEvent? {
            await recorder.next { $0.name == name }
        }
    }

    let rig: Rig
    let alice: Client
    let bob: Client

    init(bobServices: [String] = ["call", "Presence", "IM"]) async throws {
        let rig = try await Rig()
        self.rig = rig
        alice = try await Self.login(rig, PlatformFixture.alice, ["call", "Presence", "IM"])
        bob = try await Self.login(rig, PlatformFixture.bob, bobServices)
    }

    static func login(
        _ rig: Rig, _ user: String, _ services: [String] = ["call", "Presence", "IM"],
        call: KandyConfiguration.Call = .init()
    ) async throws -> Client {
        let kandy = try rig.client(call: call)
        let recorder = Recorder(kandy)
        try await kandy.setCredentials(username: user, password: PlatformFixture.password)
        try await kandy.services.subscribe(services, forceLogOut: true)
        return Client(kandy: kandy, recorder: recorder)
    }

    func stop() async throws {
        await alice.kandy.destroy()
        await bob.kandy.destroy()
        try await rig.fixture.stop()
    }
}

extension Date {
    var truncatedToMilliseconds: Date {
        Date(timeIntervalSince1970: (timeIntervalSince1970 * 1000).rounded(.down) / 1000)
    }
}
