import Foundation
import KandyLinkProtocol
import KandyLinkTesting
import Testing

@testable import KandyLinkServer

/// No notification lost while a socket is down or the platform restarts: real HTTPS sends, real
/// channel sockets, the real store.
@Suite(.timeLimit(.minutes(2))) struct QueuedDeliveryTests {
    @Test func aThousandMessagesSentWhileTheSocketIsDownArriveInOrderOnce() async throws {
        try await TestPlatform.with { test in
            let (path, first) = try await test.openBobsChannel()
            try await test.dropSocket(first, path: path)

            try await test.sendNumbered(0..<1000)
            #expect(try await test.platform.store.queued(channelID: test.channelID(path)).count == 1000)

            let again = try await test.openChannel(path, query: "?")
            try await test.sendNumbered(1000..<1001)  // live, after the queued ones
            let received = try await again.notifications(1001)
            #expect(received.map { $0.imnotificationParams?.msgText } == (0..<1001).map { "\($0)" })
            #expect(received.map(\.eventId) == received.map(\.eventId).sorted { UInt64($0)! < UInt64($1)! })
            #expect(Set(received.map(\.eventId)).count == 1001)
            // Delivered: no longer kept.
            #expect(try await test.platform.store.queued(channelID: test.channelID(path)).isEmpty)
            again.close()
        }
    }

    @Test func aRestartKeepsTheQueue() async throws {
        try await TestPlatform.with { test in
            let (path, first) = try await test.openBobsChannel()
            try await test.dropSocket(first, path: path)
            try await test.sendNumbered(0..<500)
            try await test.restart()
            try await test.sendNumbered(500..<1000)

            let again = try await test.openChannel(path, query: "?")
            let received = try await again.notifications(1000)
            #expect(received.map { $0.imnotificationParams?.msgText } == (0..<1000).map { "\($0)" })
            // Ids keep increasing across the restart.
            #expect(received.map { UInt64($0.eventId)! } == received.map { UInt64($0.eventId)! }.sorted())
            again.close()
        }
    }

    @Test func anOverflowIsOneMissedNotificationThenTheNewest() async throws {
        try await TestPlatform.with(configure: { $0.maxQueuedNotifications = 100 }) { test in
            let (path, first) = try await test.openBobsChannel()
            try await test.dropSocket(first, path: path)
            try await test.sendNumbered(0..<150)

            let again = try await test.openChannel(path, query: "?")
            let received = try await again.notifications(101)
            #expect(received.first?.eventType == .missedNotifications)
            #expect(received.first?.missedNotificationsParams?.count == 50)
            #expect(received.dropFirst().map { $0.imnotificationParams?.msgText } == (50..<150).map { "\($0)" })
            #expect(UInt64(received[0].eventId)! < UInt64(received[1].eventId)!)
            again.close()
        }
    }

    /// What was written to a socket that then proved dead, beyond the 99 the window keeps, is
    /// not replayed: a reconnect that may lack it is told how many with a `missed` marker (the
    /// marker and the window: the 100 ids Kandy.js remembers).
    @Test func writtenButForgottenBeforeAReconnectIsAMissedNotification() async throws {
        try await TestPlatform.with { test in
            let (path, first) = try await test.openBobsChannel()
            try await test.sendNumbered(0..<150)
            let written = try await first.notifications(150)

            // A reconnect that says nothing of what it has (Kandy.js's): told of the 51 first.
            let again = try await test.openChannel(path, query: "?")
            let replayed = try await again.notifications(100)
            #expect(replayed.first?.eventType == .missedNotifications)
            #expect(replayed.first?.missedNotificationsParams?.count == 51)
            #expect(replayed.first?.eventId == written[50].eventId)
            #expect(replayed.dropFirst().map { $0.imnotificationParams?.msgText } == (51..<150).map { "\($0)" })

            // One that had them all: nothing missed, nothing replayed but what follows.
            try await test.sendNumbered(150..<260)
            let had = try await again.notifications(110)
            let third = try await test.openChannel(path, query: "?lastEventId=\(had[20].eventId)")
            try await test.sendNumbered(260..<261)
            let after = try await third.notifications(90)
            #expect(after.map { $0.imnotificationParams?.msgText } == (171..<261).map { "\($0)" })

            // Heard from long enough after them, the client had them: no marker any more.
            try await test.sendNumbered(261..<400)
            _ = try await third.notifications(139)
            test.clock.advance(by: 31)
            third.send(#"{"type":"keepalive"}"#)
            let now = test.clock.now().milliseconds
            _ = await test.platform.waitUntil { test.platform.hub.lastSeen(channelID: test.channelID(path)) == now }
            await test.platform.sweep()
            let fourth = try await test.openChannel(path, query: "?")
            try await test.sendNumbered(400..<401)
            let last = try await fourth.nextNotification()
            #expect(last.eventType != .missedNotifications)
            #expect(last.imnotificationParams?.msgText == "400")
            fourth.close()
        }
    }

    @Test func aReconnectWithLastEventIdGetsOnlyWhatFollows() async throws {
        try await TestPlatform.with { test in
            let (path, first) = try await test.openBobsChannel()
            try await test.sendNumbered(0..<10)
            let seen = try await first.notifications(10)
            // The client had up to #6 when its socket died unnoticed; a new socket replaces it.
            let again = try await test.openChannel(path, query: "?lastEventId=\(seen[6].eventId)")
            let replayed = try await again.notifications(3)
            #expect(replayed.map(\.eventId) == seen[7...].map(\.eventId))
            again.close()
        }
    }

    @Test func anEndedSubscriptionTakesItsQueueWithIt() async throws {
        try await TestPlatform.with { test in
            let bob = try await test.subscribe(user: TestPlatform.bob)
            let path = try #require(bob.subscriptionParams).notificationChannel
            try await test.sendNumbered(0..<5)
            #expect(try await test.platform.store.queued(channelID: test.channelID(path)).count == 5)
            let deleted = try await test.request(
                .DELETE, try #require(bob.subscription),
                credential: .basic(login: TestPlatform.bob, password: TestPlatform.password))
            #expect(deleted.status == 200)
            #expect(try await test.platform.store.queued(channelID: test.channelID(path)).isEmpty)
        }
    }
}

extension TestPlatform {
    func channelID(_ path: String) -> String { String(path.split(separator: "/").last ?? "") }

    /// bob subscribed, with his channel open.
    func openBobsChannel() async throws -> (path: String, channel: TestChannel) {
        let bob = try await subscribe(user: Self.bob)
        let path = try #require(bob.subscriptionParams).notificationChannel
        return (path, try await openChannel(path))
    }

    /// Closes the socket from the client side and waits until the platform has let go of it.
    func dropSocket(_ channel: TestChannel, path: String) async throws {
        channel.close()
        _ = try await channel.drain()
        let id = channelID(path)
        guard await platform.waitUntil({ !platform.hub.hasSocket(id) }) else { throw TestFailure("the socket stayed") }
    }

    /// alice sends bob messages whose texts are the numbers, one after the other.
    func sendNumbered(_ numbers: Range<Int>) async throws {
        for number in numbers {
            let reply = try await sendMessage("\(number)", from: Self.alice, to: Self.bob)
            guard reply.status == 200 else { throw TestFailure("send \(number): \(reply.text)") }
        }
    }
}

extension TestChannel {
    func notifications(_ count: Int) async throws -> [NotificationMessage] {
        var received: [NotificationMessage] = []
        for _ in 0..<count { received.append(try await nextNotification()) }
        return received
    }
}
