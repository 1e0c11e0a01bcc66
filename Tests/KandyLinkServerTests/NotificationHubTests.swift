import Foundation
import KandyLinkProtocol
import Logging
import NIOWebSocket
import Synchronization
import Testing

@testable import KandyLinkServer

/// The hub's rules on a real store, without network sockets: liveness, replacement, scheduled
/// close, the replay window and the stored queue.
@Suite(.timeLimit(.minutes(1))) struct NotificationHubTests {
    let start = Date(timeIntervalSince1970: 1_800_000_000)

    /// A channel's turns, one operation per row: what it returns, and whether a turn is then in
    /// progress. A turn ending hands over to the first in line, never to a later one.
    @Test func turnsPassInTheOrderTheyCame() {
        enum Step {
            case take, queue(Int), end
        }
        let table: [(step: Step, returns: String, busy: Bool)] = [
            (.take, "true", true),
            (.take, "false", true),
            (.queue(1), "false", true),
            (.queue(2), "false", true),
            (.end, "1", true),
            (.queue(3), "false", true),
            (.end, "2", true),
            (.end, "3", true),
            (.end, "nil", false),
            (.queue(4), "true", true),  // free: taken, not queued
            (.end, "nil", false),
        ]
        var turns = Turns<Int>()
        for (row, (step, returns, busy)) in table.enumerated() {
            let outcome: String
            switch step {
            case .take: outcome = "\(turns.take())"
            case .queue(let waiter): outcome = "\(turns.take(orQueue: waiter))"
            case .end: outcome = turns.end().map(String.init) ?? "nil"
            }
            #expect(outcome == returns, "row \(row): \(step)")
            #expect(turns.busy == busy, "row \(row): \(step)")
        }
        #expect(turns.isIdle)
    }

    @Test func keepaliveMovesTheIdleDeadline() async throws {
        let rig = try await HubRig()
        defer { withExtendedLifetime(rig) {} }
        let hub = rig.hub
        let (socket, outbox) = await hub.attach(channelID: "c1", lastEventID: nil, now: start)
        // (seconds since start when touched, seconds when swept, closed?)
        let table: [(touch: Double?, sweep: Double, closed: Bool)] = [
            (nil, 100, false),
            (90, 189, false),
            (nil, 190, false),
            (nil, 190.001, true),
        ]
        for row in table {
            if let touch = row.touch { socket.touch(start + touch) }
            let closed = hub.sweep(now: start + row.sweep, silentSince: start + row.sweep - 100)
            #expect(closed == (row.closed ? 1 : 0), "sweep at \(row.sweep)")
        }
        #expect(hub.count == 0)
        let items = await Self.drain(outbox)
        guard case .close(let code, _)? = items.last else {
            Issue.record("no close")
            return
        }
        #expect(code == .goingAway)
    }

    @Test func aNewSocketReplacesTheOldOneAndDetachOfTheOldIsHarmless() async throws {
        let rig = try await HubRig()
        defer { withExtendedLifetime(rig) {} }
        let hub = rig.hub
        let (old, oldOutbox) = await hub.attach(channelID: "c1", lastEventID: nil, now: start)
        let (new, _) = await hub.attach(channelID: "c1", lastEventID: nil, now: start)
        hub.detach(old)
        #expect(hub.count == 1)
        #expect(try await hub.deliver("hello", eventID: 1, to: "c1", now: start) == .sent)
        #expect(await Self.drain(oldOutbox).count == 1)  // only its close
        hub.detach(new)
        #expect(hub.count == 0)
        #expect(try await hub.deliver("hello", eventID: 2, to: "c1", now: start) == .queued)
    }

    @Test func closeSendsTheLastWordFirst() async throws {
        let rig = try await HubRig()
        defer { withExtendedLifetime(rig) {} }
        let hub = rig.hub
        let (_, outbox) = await hub.attach(channelID: "c1", lastEventID: nil, now: start)
        _ = try await hub.deliver("one", eventID: 1, to: "c1", now: start)
        await hub.close(channelID: "c1", sending: "gone", code: .normalClosure, reason: "bye")
        let items = await Self.drain(outbox)
        #expect(Self.texts(items) == ["one", "gone"])
        guard case .close? = items.last else {
            Issue.record("no close")
            return
        }
    }

    @Test func anUnsubscribedChannelIsForgottenWhicheverSideClosesFirst() async throws {
        let rig = try await HubRig()
        defer { withExtendedLifetime(rig) {} }
        let hub = rig.hub
        // The client closes first (Kandy.js's order), after notifications filled the replay window.
        let (first, _) = await hub.attach(channelID: "c1", lastEventID: nil, now: start)
        for id in 1...5 { _ = try await hub.deliver("n\(id)", eventID: UInt64(id), to: "c1", now: start) }
        await hub.scheduleClose(channelID: "c1", at: start + 1)
        hub.detach(first)
        #expect(hub.channelCount == 0)
        // The platform closes first, at the deadline.
        _ = await hub.attach(channelID: "c2", lastEventID: nil, now: start)
        _ = try await hub.deliver("n", eventID: 6, to: "c2", now: start)
        await hub.scheduleClose(channelID: "c2", at: start + 1)
        #expect(hub.sweep(now: start + 1, silentSince: start - 100) == 1)
        #expect(hub.channelCount == 0)
        // A socket that merely drops keeps its channel, to replay on reconnect.
        let (third, _) = await hub.attach(channelID: "c3", lastEventID: nil, now: start)
        _ = try await hub.deliver("n", eventID: 7, to: "c3", now: start)
        hub.detach(third)
        #expect(hub.channelCount == 1)
    }

    @Test func scheduledCloseHappensAtItsDeadline() async throws {
        let rig = try await HubRig()
        defer { withExtendedLifetime(rig) {} }
        let hub = rig.hub
        _ = await hub.attach(channelID: "c1", lastEventID: nil, now: start)
        await hub.scheduleClose(channelID: "c1", at: start + 1)
        #expect(hub.sweep(now: start + 0.5, silentSince: start - 100) == 0)
        #expect(hub.sweep(now: start + 1, silentSince: start - 100) == 1)
    }

    @Test func whatArrivesWhileDownIsQueuedThenWrittenFirstAndForgotten() async throws {
        let rig = try await HubRig()
        defer { withExtendedLifetime(rig) {} }
        let hub = rig.hub
        for id in UInt64(1)...3 {
            #expect(try await hub.deliver("n\(id)", eventID: id, to: "c1", now: start) == .queued)
        }
        #expect(try await rig.store.queued(channelID: "c1").map(\.eventID) == [1, 2, 3])
        let (socket, outbox) = await hub.attach(channelID: "c1", lastEventID: nil, now: start)
        #expect(try await hub.deliver("n4", eventID: 4, to: "c1", now: start) == .sent)
        #expect(try await rig.store.queued(channelID: "c1").isEmpty)
        await hub.close(channelID: "c1", code: .normalClosure, reason: "end")
        hub.detach(socket)
        #expect(Self.texts(await Self.drain(outbox)) == ["n1", "n2", "n3", "n4"])
    }

    /// (what the client says it has, what it is written on reconnect): the last socket was
    /// written 1–3, then 4–5 were queued.
    @Test(
        arguments: [
            (nil, ["n1", "n2", "n3", "n4", "n5"]),
            (2, ["n3", "n4", "n5"]),
            (3, ["n4", "n5"]),
            (5, []),
        ] as [(UInt64?, [String])])
    func aReconnectReplaysWhatTheClientMayNotHave(lastEventID: UInt64?, expected: [String]) async throws {
        let rig = try await HubRig()
        defer { withExtendedLifetime(rig) {} }
        let hub = rig.hub
        let (first, firstOutbox) = await hub.attach(channelID: "c1", lastEventID: nil, now: start)
        for id in UInt64(1)...3 { _ = try await hub.deliver("n\(id)", eventID: id, to: "c1", now: start) }
        hub.detach(first)
        first.close(.goingAway, "dropped")
        _ = await Self.drain(firstOutbox)
        for id in UInt64(4)...5 {
            #expect(try await hub.deliver("n\(id)", eventID: id, to: "c1", now: start) == .queued)
        }
        let (_, outbox) = await hub.attach(channelID: "c1", lastEventID: lastEventID, now: start)
        await hub.close(channelID: "c1", code: .normalClosure, reason: "end")
        #expect(Self.texts(await Self.drain(outbox)) == expected)
    }

    @Test func theReplayWindowFitsKandyJSsDuplicateCacheAndForgetsWhatTheClientOutlived() async throws {
        let rig = try await HubRig()
        defer { withExtendedLifetime(rig) {} }
        let hub = rig.hub
        let (socket, _) = await hub.attach(channelID: "c1", lastEventID: nil, now: start)
        for id in UInt64(1)...150 { _ = try await hub.deliver("n\(id)", eventID: id, to: "c1", now: start) }
        let (second, secondOutbox) = await hub.attach(channelID: "c1", lastEventID: nil, now: start)
        hub.detach(socket)
        // The replacing socket is told the first 51 may be missed, then gets the newest 99: with
        // the marker, the 100 ids Kandy.js remembers, so it drops them all as duplicates.
        // (`scripts/kandyjs-replay.py` shows it in Chromium.)
        #expect(hub.count == 1)

        // The client is heard from 31 s after they were written: they arrived.
        second.touch(start + 31)
        #expect(hub.sweep(now: start + 31, silentSince: start - 100) == 0)
        let (_, third) = await hub.attach(channelID: "c1", lastEventID: nil, now: start + 31)
        await hub.close(channelID: "c1", code: .normalClosure, reason: "end")
        let replayed = Self.texts(await Self.drain(secondOutbox))
        let marker = try WireJSON.decode(NotificationDocument.self, from: Data((replayed.first ?? "").utf8))
        #expect(marker.notificationMessage.missedNotificationsParams?.count == 51)
        #expect(marker.notificationMessage.eventId == "51")
        #expect(replayed.dropFirst().elementsEqual((52...150).map { "n\($0)" }))
        #expect(replayed.count == 100)
        #expect(Self.texts(await Self.drain(third)).isEmpty)
    }

    /// (count bound, bytes bound, queued texts, what the reconnect gets)
    @Test(arguments: [
        (3, 1 << 20, ["a", "b", "c", "d", "e"], ["missed 2 @2", "c", "d", "e"]),
        (100, 10, ["aaaa", "bbbb", "cccc", "dddd"], ["missed 2 @2", "cccc", "dddd"]),
        (1, 1 << 20, ["a", "b", "c"], ["missed 2 @2", "c"]),
        (10, 1 << 20, ["a", "b"], ["a", "b"]),
    ])
    func aFullQueueDropsTheOldestBehindOneMarker(count: Int, bytes: Int, queued: [String], expected: [String])
        async throws
    {
        let rig = try await HubRig(bound: QueueBound(count: count, bytes: bytes))
        defer { withExtendedLifetime(rig) {} }
        let hub = rig.hub
        for (index, text) in queued.enumerated() {
            _ = try await hub.deliver(text, eventID: UInt64(index + 1), to: "c1", now: start)
        }
        let (_, outbox) = await hub.attach(channelID: "c1", lastEventID: nil, now: start)
        await hub.close(channelID: "c1", code: .normalClosure, reason: "end")
        let texts = Self.texts(await Self.drain(outbox)).map { text in
            guard let message = try? WireJSON.decode(NotificationDocument.self, from: Data(text.utf8)) else {
                return text
            }
            let missed = message.notificationMessage
            return "missed \(missed.missedNotificationsParams?.count ?? -1) @\(missed.eventId)"
        }
        #expect(texts == expected)
    }

    /// Ids are drawn before the channel is locked: one that finds a later id already written or
    /// queued is given a fresh one, so a channel's ids always increase in the order it gets them.
    @Test func aLateIdIsRestampedSoEachChannelsIdsIncrease() async throws {
        let rig = try await HubRig(restamps: [(9, "n9"), (10, "n10")])
        defer { withExtendedLifetime(rig) {} }
        let hub = rig.hub
        #expect(try await hub.deliver("n6", eventID: 6, to: "c1", now: start) == .queued)
        #expect(try await hub.deliver("n5", eventID: 5, to: "c1", now: start) == .queued)
        #expect(try await rig.store.queued(channelID: "c1").map(\.text) == ["n6", "n9"])

        let (_, outbox) = await hub.attach(channelID: "c1", lastEventID: nil, now: start)
        #expect(try await hub.deliver("n8", eventID: 8, to: "c1", now: start) == .sent)
        #expect(try await hub.deliver("n11", eventID: 11, to: "c1", now: start) == .sent)
        await hub.close(channelID: "c1", code: .normalClosure, reason: "end")
        #expect(Self.texts(await Self.drain(outbox)) == ["n6", "n9", "n10", "n11"])
    }

    /// The platform's restamp: the same notification under a fresh id, whatever the order of the
    /// fields in its text.
    @Test func aRestampedNotificationIsTheSameUnderAFreshId() async throws {
        let rig = try await HubRig()
        defer { withExtendedLifetime(rig) {} }
        let events = EventSequence(store: rig.store)
        let message = NotificationMessage.instantMessage(eventId: "3", from: "bob@x", text: "hi", time: 5)
        let current = try WireJSON.text(NotificationDocument(notificationMessage: message))
        let reordered =
            #"{"notificationMessage":{"imnotificationParams":{"msgText":"hi","primaryContact":"sip:bob@x","time":5},"eventType":"IM","eventId":"3"}}"#
        var ids: [UInt64] = []
        for text in [current, reordered] {
            let (eventID, restamped) = try await Platform.restamp(text, events: events)
            var expected = message
            expected.eventId = String(eventID)
            let decoded = try WireJSON.decode(NotificationDocument.self, from: Data(restamped.utf8))
            #expect(decoded.notificationMessage == expected)
            ids.append(eventID)
        }
        #expect(ids[1] > ids[0])
    }

    /// One notification to channels in every state at once: each gets what it would alone.
    @Test func oneNotificationToManyChannels() async throws {
        let rig = try await HubRig()
        defer { withExtendedLifetime(rig) {} }
        for (id, channel) in [("s2", "c2"), ("s3", "c3")] {
            _ = try await rig.store.insertSubscription(
                StoredSubscription(
                    id: id, username: "u", channelID: channel, services: ["IM"], expires: 60,
                    expiresAt: Date() + 60, createdAt: Date()),
                now: Date()
            ) { _ in 0 }
        }
        let (socket, outbox) = await rig.hub.attach(channelID: "c1", lastEventID: nil, now: start)
        _ = try await rig.store.deleteSubscription(id: "s3", of: "u", now: Date())
        // c1 has a socket here, c2 none (its client is away), c3's subscription has ended.
        let outcome = try await rig.hub.deliver("n1", eventID: 1, to: ["c1", "c2", "c3"], now: start)
        #expect(outcome.sent == 1)
        #expect(outcome.queued == ["c2"])
        #expect(try await rig.store.queued(channelID: "c2").map(\.eventID) == [1])
        #expect(try await rig.store.queued(channelID: "c3").isEmpty)
        #expect(!rig.hub.hasSocket("c3") && rig.hub.channelCount == 2)
        socket.close(.normalClosure, "done")
        #expect(Self.texts(await Self.drain(outbox)) == ["n1"])
    }

    /// A channel taken for an attach is not forgotten before the attach has its turn: here another
    /// node takes the client meanwhile (which forgets an idle channel), then the attach goes on.
    @Test func aChannelTakenForAnAttachStaysUntilTheAttachHasItsTurn() async throws {
        let rig = try await HubRig()
        defer { withExtendedLifetime(rig) {} }
        let channel = rig.hub.reserve("c1")
        rig.hub.release(channelID: "c1")
        #expect(rig.hub.channelCount == 1)
        let (socket, outbox) = NotificationHub.socket(channelID: "c1", now: start)
        await rig.hub.attach(socket, to: channel, lastEventID: nil, now: start)
        #expect(try await rig.hub.deliver("n1", eventID: 1, to: "c1", now: start) == .sent)
        socket.close(.normalClosure, "done")
        #expect(Self.texts(await Self.drain(outbox)) == ["n1"])
        // Its turn over, the reservation is redeemed: once the socket goes, the channel can too.
        rig.hub.detach(socket)
        rig.hub.release(channelID: "c1")
        #expect(rig.hub.channelCount == 0)
    }

    @Test func notificationsForAnEndedSubscriptionAreDropped() async throws {
        let rig = try await HubRig()
        defer { withExtendedLifetime(rig) {} }
        _ = try await rig.store.deleteSubscription(id: "s1", of: "u", now: Date())
        #expect(try await rig.hub.deliver("late", eventID: 1, to: "c1", now: start) == .dropped)
    }

    static func drain(_ outbox: AsyncStream<NotificationHub.Outbound>) async -> [NotificationHub.Outbound] {
        var items: [NotificationHub.Outbound] = []
        for await item in outbox { items.append(item) }
        return items
    }

    static func texts(_ items: [NotificationHub.Outbound]) -> [String] {
        items.compactMap { if case .text(let text) = $0 { text } else { nil } }
    }
}

extension NotificationHub {
    /// Delivers to one channel: where the notification went.
    func deliver(_ text: String, eventID: UInt64, to channelID: String, now: Date) async throws -> Delivery {
        let outcome = try await deliver(text, eventID: eventID, to: [channelID], now: now)
        if outcome.sent == 1 { return .sent }
        return outcome.queued.isEmpty ? .dropped : .queued
    }

    /// What a socket's connection was asked to write.
    enum Outbound: Sendable {
        case text(String)
        case close(WebSocketErrorCode, String)
    }

    /// Attaches a socket whose connection is a stream: what it was asked to write, ending at its close.
    func attach(channelID: String, lastEventID: UInt64?, now: Date) async -> (Socket, AsyncStream<Outbound>) {
        let (socket, stream) = Self.socket(channelID: channelID, now: now)
        await attach(socket, lastEventID: lastEventID, now: now)
        return (socket, stream)
    }

    /// A socket whose connection is a stream, not attached.
    static func socket(channelID: String, now: Date) -> (Socket, AsyncStream<Outbound>) {
        let (stream, outbox) = AsyncStream.makeStream(of: Outbound.self)
        let socket = Socket(
            channelID: channelID,
            connection: .init(
                write: { outbox.yield(.text($0.text)) },
                close: { code, reason in
                    outbox.yield(.close(code, reason))
                    outbox.finish()
                }),
            now: now)
        return (socket, stream)
    }
}

/// A hub on a fresh SQLite store holding one subscription, `s1` with channel `c1`. The database
/// files go with the rig.
///
/// A restamp hands out the next of `restamps`; with none left it fails the test.
final class HubRig: Sendable {
    let store: SQLiteStore
    let hub: NotificationHub
    private let directory = FileManager.default.temporaryDirectory.appendingPathComponent("hub-\(UUID().uuidString)")

    init(bound: QueueBound = QueueBound(count: 10_000, bytes: 4 << 20), restamps: [(UInt64, String)] = []) async throws
    {
        store = try SQLiteStore(path: directory.appendingPathComponent("hub.sqlite").path)
        let now = Date()
        try await store.addUser(UserRecord(username: "u", passwordHash: "x", createdAt: now))
        _ = try await store.insertSubscription(
            StoredSubscription(
                id: "s1", username: "u", channelID: "c1", services: ["IM"], expires: 60, expiresAt: now + 60,
                createdAt: now),
            now: now
        ) { _ in 0 }
        let fresh = Mutex(restamps)
        hub = NotificationHub(
            store: store, policy: .init(queue: bound),
            restamp: { text in
                guard let next = fresh.withLock({ $0.isEmpty ? nil : $0.removeFirst() }) else {
                    throw TestFailure("\(text) was restamped")
                }
                return next
            }, logger: Logger(label: "hub-test"))
    }

    deinit { try? FileManager.default.removeItem(at: directory) }
}
