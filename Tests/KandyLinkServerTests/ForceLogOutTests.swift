import Foundation
import KandyLinkProtocol
import Testing

@testable import KandyLinkServer

@Suite(.timeLimit(.minutes(1))) struct ForceLogOutTests {
    @Test func forceLogOutEvictsTheOldestSessionWithGone() async throws {
        try await TestPlatform.with { test in
            let first = try await test.subscribe()
            let firstChannel = try await test.openChannel(try #require(first.subscriptionParams).notificationChannel)

            let second = try await test.subscribe(forceLogOut: true)
            #expect(second.subscription != first.subscription)

            let (messages, close) = try await firstChannel.drain()
            #expect(messages.count == 1)
            let gone = try WireJSON.decode(NotificationDocument.self, from: Data(messages[0].utf8))
            #expect(gone.notificationMessage.eventType == .gone)
            #expect(close != nil)

            let stale = try await test.request(.PUT, try #require(first.subscription), body: TestPlatform.refreshBody())
            #expect(stale.status == 404)
            #expect(
                try await test.request(.PUT, try #require(second.subscription), body: TestPlatform.refreshBody()).status
                    == 200)
            // The evicted channel cannot be reopened.
            await #expect(throws: (any Error).self) {
                try await test.openChannel(try #require(first.subscriptionParams).notificationChannel)
            }
        }
    }

    @Test func withoutForceLogOutTheLimitRefuses() async throws {
        try await TestPlatform.with { test in
            let first = try await test.subscribe()
            let refused = try await test.request(
                .POST, LinkPath.subscriptions(user: TestPlatform.alice),
                body: TestPlatform.subscribeBody(forceLogOut: false))
            #expect(refused.status == 409)
            #expect(refused.subscribeResponse?.statusCode == StatusCode.sessionLimitReached.rawValue)
            #expect(refused.subscribeResponse?.reason?.contains("forceLogOut") == true)
            #expect(
                try await test.request(.PUT, try #require(first.subscription), body: TestPlatform.refreshBody()).status
                    == 200)
            // Another user is not affected by alice's limit.
            _ = try await test.subscribe(user: TestPlatform.bob, forceLogOut: false)
        }
    }

    @Test func aHigherLimitEvictsOnlyBeyondIt() async throws {
        try await TestPlatform.with(configure: { $0.maxSessionsPerUser = 2 }) { test in
            let one = try await test.subscribe(forceLogOut: false)
            let two = try await test.subscribe(forceLogOut: false)
            let oneChannel = try await test.openChannel(try #require(one.subscriptionParams).notificationChannel)
            let twoChannel = try await test.openChannel(try #require(two.subscriptionParams).notificationChannel)
            _ = try await test.subscribe(forceLogOut: true)

            let (messages, _) = try await oneChannel.drain()
            let firstGone = try WireJSON.decode(NotificationDocument.self, from: Data(messages[0].utf8))
            #expect(firstGone.notificationMessage.eventType == .gone)
            #expect(
                try await test.request(.PUT, try #require(two.subscription), body: TestPlatform.refreshBody()).status
                    == 200)

            // The next forced login evicts the (now) oldest: session two. Its gone has a later id.
            _ = try await test.subscribe(forceLogOut: true)
            let (twoMessages, _) = try await twoChannel.drain()
            let secondGone = try WireJSON.decode(NotificationDocument.self, from: Data(twoMessages[0].utf8))
            #expect(UInt64(secondGone.notificationMessage.eventId)! > UInt64(firstGone.notificationMessage.eventId)!)
        }
    }

    @Test func expiredSessionsDoNotCountTowardsTheLimit() async throws {
        try await TestPlatform.with { test in
            _ = try await test.subscribe(expires: 60)
            test.clock.advance(by: 61)  // expired, though not swept yet
            _ = try await test.subscribe(forceLogOut: false)
        }
    }
}
