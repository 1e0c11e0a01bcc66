import Foundation
import KandyLinkProtocol
import KandyLinkTesting
import Testing

@testable import KandyLink

/// Within a subscription, every notification reaches the SDK in order, once: across a dropped
/// socket, a platform restart and a full queue.
@Suite(.timeLimit(.minutes(2))) struct NoLossTests {
    @Test func aThousandMessagesAcrossADroppedSocketArriveInOrderOnce() async throws {
        try await Rig.with { rig in
            let alice = try await Self.login(rig, PlatformFixture.alice)
            let bob = try await Self.login(rig, PlatformFixture.bob)
            let bobMessages = bob.recorder.collect(1001) { $0.name == .messagesChange }
            try await alice.kandy.messages.send(to: PlatformFixture.bob, text: "before")

            // Both sockets go silent past the allowance: the platform closes them; the SDKs reconnect
            // at once, while alice is sending.
            rig.fixture.clock.advance(by: 101)
            await rig.fixture.platform.sweep()
            for number in 0..<1000 {
                try await alice.kandy.messages.send(to: PlatformFixture.bob, text: "\(number)")
            }
            let texts = await bobMessages.value().compactMap { event -> String? in
                if case .messagesChange(let message) = event { message.text } else { nil }
            }
            #expect(texts == ["before"] + (0..<1000).map { "\($0)" })
            #expect(bob.kandy.messages.conversation(with: PlatformFixture.alice).count == Messages.conversationLength)
            await alice.kandy.destroy()
            await bob.kandy.destroy()
        }
    }

    @Test func aRestartAndAFullQueueAreOneMissedSignalThenTheNewestInOrder() async throws {
        try await Rig.with(configure: { $0.maxQueuedNotifications = 100 }) { rig in
            let socket = try rig.watchedSocket()
            let bob = try await Self.login(rig, PlatformFixture.bob, websocket: socket)
            #expect(await socket.nextAttempt() == .opened)
            let port = rig.fixture.port
            let arrivals = bob.recorder.collect(101) { [.messagesChange, .notificationsMissed].contains($0.name) }

            // The platform stops; bob's reconnects fail and wait on the test clock.
            try await rig.fixture.stopPlatform()
            let lost = await bob.recorder.next { $0 == .wsChange && !bob.kandy.getConnection().isConnected }
            #expect(lost != nil)
            // Meanwhile the platform runs elsewhere and alice sends bob 150 messages.
            try await rig.fixture.restart(on: 0)
            let alice = try rig.client()
            try await alice.setCredentials(username: PlatformFixture.alice, password: PlatformFixture.password)
            for number in 0..<150 {
                try await alice.messages.send(to: PlatformFixture.bob, text: "\(number)")
            }
            await alice.destroy()
            // Back on bob's port; his retries come due.
            try await rig.fixture.restart(on: port)
            #expect(await rig.retryUntilOpen(socket, backoff: .init()))
            let events = await arrivals.value()
            #expect(events.first == .notificationsMissed(50))
            let texts = events.dropFirst().compactMap { event -> String? in
                if case .messagesChange(let message) = event { message.text } else { nil }
            }
            #expect(texts == (50..<150).map { "\($0)" })
            await bob.kandy.destroy()
        }
    }

    /// (eventIds as they arrive on one channel, which are new)
    @Test(arguments: [
        (["1", "2", "3"], [true, true, true]),
        (["5", "3", "5", "6"], [true, false, false, true]),
        (["a", "b", "a", "7", "b"], [true, true, false, true, false]),
    ])
    func duplicatesAreDroppedByEventId(ids: [String], new: [Bool]) {
        var received = ReceivedEvents()
        var outcomes: [Bool] = []
        for id in ids { outcomes.append(received.isNew(id, on: "/ch")) }
        #expect(outcomes == new)
    }

    @Test func aNewChannelStartsAfreshAndOnlyItsOwnIdIsSentBack() {
        var received = ReceivedEvents()
        let first = received.isNew("9", on: "/ch1")
        #expect(first)
        #expect(received.newest(on: "/ch1") == 9)
        // A lower id on another channel is new: the count starts again there.
        let other = received.isNew("3", on: "/ch2")
        #expect(other)
        #expect(received.newest(on: "/ch1") == nil)
        #expect(received.newest(on: "/ch2") == 3)
    }

    static func login(
        _ rig: Rig, _ user: String, websocket: (any WebSocketTransport)? = nil
    ) async throws -> Pair.Client {
        let kandy = try rig.client(expires: 3600, websocket: websocket)
        let recorder = Recorder(kandy)
        try await kandy.setCredentials(username: user, password: PlatformFixture.password)
        try await kandy.services.subscribe(["call", "Presence", "IM"], forceLogOut: true)
        return Pair.Client(kandy: kandy, recorder: recorder)
    }
}

extension Recorder {
    /// Starts collecting the next `count` events matching `predicate`, from now.
    func collect(_ count: Int, where predicate: @escaping @Sendable (KandyEvent) -> Bool) -> Collection {
        let stream = events()
        return Collection(
            task: Task {
                var matched: [KandyEvent] = []
                for await event in stream where predicate(event) {
                    matched.append(event)
                    if matched.count == count { break }
                }
                return matched
            })
    }

    /// Events being collected. Waiting for them ends when the waiting test is cancelled (its
    /// time limit), with what came so far.
    struct Collection: Sendable {
        let task: Task<[KandyEvent], Never>

        func value() async -> [KandyEvent] {
            await withTaskCancellationHandler {
                await task.value
            } onCancel: {
                task.cancel()
            }
        }
    }
}
