import Foundation
import KandyLinkProtocol
import Testing

@testable import KandyLinkServer

/// The tutorial's REST flow against a real platform: subscribe, refresh, unsubscribe.
@Suite(.timeLimit(.minutes(1))) struct SubscriptionEndpointTests {
    @Test func subscribeRefreshUnsubscribe() async throws {
        try await TestPlatform.with { test in
            let subscribed = try await test.subscribe(services: ["call", "Presence", "IM"], expires: 3600)
            let params = try #require(subscribed.subscriptionParams)
            #expect(subscribed.statusCode == 0)
            #expect(params.service.map(\.rawValue) == ["call", "Presence", "IM"])
            #expect(params.expires == 3600)
            let subscription = try #require(subscribed.subscription)
            #expect(subscription.hasPrefix("/rest/version/1/user/alice@example.com/subscription/"))
            #expect(params.notificationChannel.hasPrefix("/rest/version/1/user/alice@example.com/websocket/"))
            #expect(params.localization == "English_US")
            #expect(params.notificationType == "WebSocket")

            let channel = try await test.openChannel(params.notificationChannel)

            let refreshed = try await test.request(.PUT, subscription, body: TestPlatform.refreshBody(expires: 3600))
            #expect(refreshed.status == 200)
            let record = try #require(refreshed.subscribeResponse)
            #expect(record.statusCode == 0)
            // The PUT answer is the full record (spec §6.4): later DELETEs go to its `subscription`.
            #expect(record.subscription == subscription)
            #expect(record.subscriptionParams?.notificationChannel == params.notificationChannel)

            let deleted = try await test.request(.DELETE, subscription)
            #expect(deleted.status == 200)  // never 204: Kandy.js crashes on it
            #expect(try deleted.decode(SubscribeResponseDocument.self).subscribeResponse.statusCode == 0)
            #expect(deleted.headers.first(name: "Content-Type") == "application/json")

            channel.close()
            _ = try await channel.drain()
            #expect(try await test.request(.PUT, subscription, body: TestPlatform.refreshBody()).status == 404)
            #expect(try await test.platform.subscriptionCount() == 0)
        }
    }

    @Test func serviceNamesAreEchoedAsSentAndUnknownOnesLeftOut() async throws {
        try await TestPlatform.with { test in
            let response = try await test.subscribe(services: ["CALL", "presence", "Fax", "IM", "im"])
            #expect(response.subscriptionParams?.service.map(\.rawValue) == ["CALL", "presence", "IM"])

            let nothing = try await test.request(
                .POST, LinkPath.subscriptions(user: TestPlatform.alice),
                body: TestPlatform.subscribeBody(services: ["Fax"]))
            #expect(nothing.status == 400)
            #expect(nothing.subscribeResponse?.statusCode == StatusCode.noGrantableService.rawValue)

            // A service update by PUT replaces the list, keeping the spelling.
            let subscription = try #require(response.subscription)
            let updated = try await test.request(
                .PUT, subscription, body: TestPlatform.refreshBody(services: ["presence"]))
            #expect(updated.subscribeResponse?.subscriptionParams?.service.map(\.rawValue) == ["presence"])
        }
    }

    @Test(arguments: [
        (nil as Int?, 3600),
        (30, 60),
        (60, 60),
        (600, 600),
        (86400, 3600),
    ])
    func expiryIsClampedAndGranted(requested: Int?, granted: Int) async throws {
        try await TestPlatform.with { test in
            let body =
                requested.map { TestPlatform.subscribeBody(expires: $0) }
                ?? #"{"subscribeRequest":{"service":["call"],"forceLogOut":"true"}}"#
            let reply = try await test.request(.POST, LinkPath.subscriptions(user: TestPlatform.alice), body: body)
            #expect(reply.subscribeResponse?.subscriptionParams?.expires == granted)
        }
    }

    @Test func configuredBoundsApply() async throws {
        try await TestPlatform.with(configure: {
            $0.minExpires = 5
            $0.maxExpires = 120
        }) { test in
            let short = try await test.subscribe(expires: 1)
            let long = try await test.subscribe(expires: 3600)
            #expect(short.subscriptionParams?.expires == 5)
            #expect(long.subscriptionParams?.expires == 120)
        }
    }

    @Test func unrefreshedSubscriptionEndsWithGone() async throws {
        // No keepalives are sent here: keep the idle-socket rule out of the way.
        try await TestPlatform.with(configure: { $0.keepaliveAllowance = 1000 }) { test in
            let response = try await test.subscribe(expires: 60)
            let channel = try await test.openChannel(try #require(response.subscriptionParams).notificationChannel)

            test.clock.advance(by: 59)
            await test.platform.sweep()
            // A refresh in time moves the end: 60 s from now.
            let refreshed = try await test.request(
                .PUT, try #require(response.subscription), body: TestPlatform.refreshBody(expires: 60))
            #expect(refreshed.status == 200)
            test.clock.advance(by: 59)
            await test.platform.sweep()
            #expect(try await test.platform.subscriptionCount() == 1)

            test.clock.advance(by: 2)
            await test.platform.sweep()
            let (messages, close) = try await channel.drain()
            let gone = try WireJSON.decode(NotificationDocument.self, from: Data(try #require(messages.first).utf8))
            #expect(gone.notificationMessage.eventType == .gone)
            #expect(!gone.notificationMessage.eventId.isEmpty)
            #expect(messages.count == 1)
            #expect(close?.closeCode == .normalClosure)

            let late = try await test.request(
                .PUT, try #require(response.subscription), body: TestPlatform.refreshBody())
            #expect(late.status == 404)
            #expect(late.subscribeResponse?.statusCode == StatusCode.subscriptionNotFound.rawValue)
        }
    }

    @Test func deleteClosesALingeringSocketAfterTheDelay() async throws {
        try await TestPlatform.with { test in
            let response = try await test.subscribe()
            let channel = try await test.openChannel(try #require(response.subscriptionParams).notificationChannel)
            #expect(try await test.request(.DELETE, try #require(response.subscription)).status == 200)
            await test.platform.sweep()
            #expect(test.platform.hub.count == 1)  // the client gets its chance to close first
            test.clock.advance(by: 1)
            await test.platform.sweep()
            let (messages, close) = try await channel.drain()
            #expect(messages.isEmpty)  // no gone: the client asked for this
            #expect(close?.closeCode == .normalClosure)
        }
    }

    @Test func subscriptionsSurviveARestart() async throws {
        try await TestPlatform.with { test in
            let response = try await test.subscribe(expires: 600)
            let channelPath = try #require(response.subscriptionParams).notificationChannel
            let first = try await test.openChannel(channelPath)
            try await test.restart()
            // The old socket was closed with a close frame on shutdown.
            #expect(try await first.drain().close?.closeCode == .goingAway)

            // The client reconnects to its channel (reconnect query: a bare "?") and refreshes.
            let again = try await test.openChannel(channelPath, query: "?")
            let refreshed = try await test.request(
                .PUT, try #require(response.subscription), body: TestPlatform.refreshBody(expires: 600))
            #expect(refreshed.status == 200)
            #expect(refreshed.subscribeResponse?.subscriptionParams?.notificationChannel == channelPath)
            again.close()
            _ = try await again.drain()
            // Expiry is wall-clock and survives the restart too.
            test.clock.advance(by: 601)
            await test.platform.sweep()
            #expect(
                try await test.request(.PUT, try #require(response.subscription), body: TestPlatform.refreshBody())
                    .status == 404)
        }
    }
}
