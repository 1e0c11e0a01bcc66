import Foundation
import KandyLinkProtocol
import KandyLinkTesting
import NIOCore
import NIOEmbedded
import NIOPosix
import NIOSSL
import Testing

@testable import KandyLinkServer

/// The WebSocket notification channel (spec §4).
@Suite(.timeLimit(.minutes(1))) struct ChannelTests {
    @Test(arguments: ["", "?", "?access_token=tok%2Fen%2B1%3D", "?token=tok%2Fen%2B1%3D"])
    func acceptsEveryQueryTheClientSends(query: String) async throws {
        try await TestPlatform.with { test in
            let response = try await test.subscribe()
            let channel = try await test.openChannel(
                try #require(response.subscriptionParams).notificationChannel, query: query)
            channel.close()
            _ = try await channel.drain()
        }
    }

    @Test func keepalivesAreNeverAnswered() async throws {
        try await TestPlatform.with { test in
            let response = try await test.subscribe()
            let channel = try await test.openChannel(try #require(response.subscriptionParams).notificationChannel)
            for _ in 0..<3 { channel.send(KeepaliveMessage.text) }
            channel.close()
            let (messages, close) = try await channel.drain()
            #expect(messages.isEmpty)
            #expect(close?.closeCode == .normalClosure)
        }
    }

    @Test func refusesUnknownEndedAndForeignChannels() async throws {
        try await TestPlatform.with { test in
            let response = try await test.subscribe()
            let path = try #require(response.subscriptionParams).notificationChannel
            let unknown = LinkPath.channel(user: TestPlatform.alice, channelID: "AAAAAAAAAAAAAAAAAAAAAA")
            let foreign = path.replacingOccurrences(of: "alice@example.com", with: "bob@example.com")
            for refused in [unknown, foreign, "/rest/version/1/user/../websocket/x", "/elsewhere"] {
                await #expect(throws: (any Error).self, "\(refused)") { try await test.openChannel(refused) }
            }
            #expect(try await test.request(.DELETE, try #require(response.subscription)).status == 200)
            await #expect(throws: (any Error).self) { try await test.openChannel(path) }
            // A plain GET of the channel path explains itself.
            let plain = try await test.request(.GET, path)
            #expect(plain.status == 426)
            #expect(plain.statusDocument?.statusCode == StatusCode.upgradeRequired.rawValue)
        }
    }

    @Test func credentialsOnAnUpgradeMustBeTheChannelOwners() async throws {
        try await TestPlatform.with { test in
            let path = try #require(try await test.subscribe().subscriptionParams).notificationChannel
            let upgrade = [
                ("Connection", "Upgrade"), ("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13"),
                ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ]
            let bob = CredentialHeader.basic(login: TestPlatform.bob, password: TestPlatform.password)
            let bobToken = try await test.platform.accounts.token(for: TestPlatform.bob).token
            let aliceToken = try await test.platform.accounts.token(for: TestPlatform.alice).token
            // (credential, query, expected status): another user's credentials are refused, whatever
            // carries them; the owner's, none, or ones that do not verify leave the path as the capability.
            let cases: [(CredentialHeader?, String, Int)] = [
                (bob, "", 403),
                (nil, "?access_token=" + LinkPath.encode(bobToken), 403),
                (nil, "?token=" + LinkPath.encode(bobToken), 403),
                (.basic(login: TestPlatform.alice, password: TestPlatform.password), "", 101),
                (nil, "?access_token=" + LinkPath.encode(aliceToken), 101),
                (nil, "?token=not-a-token", 101),
                (nil, "?", 101),
            ]
            for (credential, query, status) in cases {
                let reply = try await test.request(
                    .GET, path + query, credential: credential, headers: upgrade, client: test.unredirected)
                #expect(reply.status == status, "\(query) \(String(describing: credential))")
                if status == 403 {
                    #expect(reply.statusDocument?.statusCode == StatusCode.forbiddenUser.rawValue)
                }
            }
        }
    }

    @Test func channelIDsAre128RandomBits() {
        // 16 bytes from the system's CSPRNG, base64url without padding: 22 characters.
        let ids = (0..<1000).map { _ in RandomIdentifier.make() }
        #expect(Set(ids).count == ids.count)
        #expect(ids.allSatisfy { $0.count == 22 && LinkRoute.isIdentifier(Substring($0)) })
    }

    @Test func aRefusedUpgradeIsAnsweredWithAJSONError() async throws {
        try await TestPlatform.with(configure: { $0.allowedOrigins = ["https://app.example.org"] }) { test in
            let path = try #require(try await test.subscribe().subscriptionParams).notificationChannel
            let unknown = LinkPath.channel(user: TestPlatform.alice, channelID: "AAAAAAAAAAAAAAAAAAAAAA")
            let upgrade = [
                ("Connection", "Upgrade"), ("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13"),
                ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ]
            let cases: [(path: String, origin: String, code: StatusCode)] = [
                (unknown, "https://app.example.org", .subscriptionNotFound),
                ("/elsewhere", "https://app.example.org", .notFound),
                (path, "https://evil.example", .forbiddenUser),
            ]
            let client = test.unredirected
            for (target, origin, code) in cases {
                // Each on a fresh connection (a refusal closes it): an upgrade is only recognised as
                // a connection's first request.
                let reply = try await test.request(
                    .GET, target, credential: nil, headers: upgrade + [("Origin", origin)], client: client)
                #expect(reply.status == code.httpStatus, "\(target)")
                #expect(reply.statusDocument?.statusCode == code.rawValue, "\(target): \(reply.text)")
                #expect(reply.headers["Connection"] == ["close"])
                // The page learns why: the same CORS rule as every other answer.
                #expect(reply.headers["Access-Control-Allow-Origin"] == [origin], "\(target)")
            }
            // Later on a kept-alive connection, it is sent to a fresh one.
            #expect(try await test.request(.GET, "/health", client: client).status == 200)
            let late = try await test.request(.GET, path, credential: nil, headers: upgrade, client: client)
            #expect(late.status == 307)
            #expect(late.headers["Location"] == [path])
            // …and that connection ends (the exchange returns only once it has).
            let handshake = upgrade.map { "\($0.0): \($0.1)\r\n" }.joined()
            let output = try await test.exchange(
                "GET /health HTTP/1.1\r\nHost: localhost\r\n\r\nGET \(path) HTTP/1.1\r\nHost: localhost\r\n\(handshake)\r\n"
            )
            #expect(TestPlatform.responses(in: output).map { $0.prefix(4) } == ["200 ", "307 "], "\(output)")
            // The channel itself is still there for the allowed page.
            let channel = try await test.openChannel(path, origin: "https://app.example.org")
            channel.close()
            _ = try await channel.drain()
        }
    }

    @Test func anUpgradeNotTakenUpIsAnsweredAsAPlainRequest() async throws {
        try await TestPlatform.with { test in
            let path = try #require(try await test.subscribe().subscriptionParams).notificationChannel
            // Each the first request on its connection (a refusal or 426 closes it, and the client
            // keeps its own pool). Without `Connection: Upgrade`, which the HTTP client would take
            // as its own upgrade: the platform looks at `Upgrade` alone.
            let h2c = try await test.request(
                .GET, "/health", credential: nil, headers: [("Upgrade", "h2c"), ("HTTP2-Settings", "AAMAAABk")],
                client: test.unredirected)
            #expect(h2c.status == 200)
            #expect(h2c.statusDocument?.statusCode == 0)
            // A WebSocket handshake without its key or version is not one.
            for missing in ["Sec-WebSocket-Key", "Sec-WebSocket-Version"] {
                let headers = [
                    ("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13"),
                    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                ].filter { $0.0 != missing }
                let reply = try await test.request(
                    .GET, path, credential: nil, headers: headers, client: test.unredirected)
                #expect(reply.status == 426, "without \(missing)")
                #expect(reply.statusDocument?.statusCode == StatusCode.upgradeRequired.rawValue, "without \(missing)")
            }
        }
    }

    @Test func anOriginAllowListRefusesOtherPages() async throws {
        try await TestPlatform.with(configure: { $0.allowedOrigins = ["https://app.example.org"] }) { test in
            let path = try #require(try await test.subscribe().subscriptionParams).notificationChannel
            await #expect(throws: (any Error).self) { try await test.openChannel(path, origin: "https://evil.example") }
            // Without a page origin (WSClient sends only its own wss:// one) a client is not a
            // browser page the list protects.
            for origin in ["https://app.example.org", nil] {
                let channel = try await test.openChannel(path, origin: origin)
                channel.close()
                _ = try await channel.drain()
            }
        }
    }

    @Test func aReconnectReplacesTheOldSocket() async throws {
        try await TestPlatform.with { test in
            let response = try await test.subscribe()
            let path = try #require(response.subscriptionParams).notificationChannel
            let old = try await test.openChannel(path)
            let new = try await test.openChannel(path, query: "?")
            let (oldMessages, oldClose) = try await old.drain()
            #expect(oldMessages.isEmpty)
            #expect(oldClose?.closeCode == .policyViolation)
            #expect(test.platform.hub.count == 1)

            // What the platform sends now reaches the new socket.
            let gone = try await test.platform.delivery.notification { .gone(eventId: $0) }
            #expect(
                try await test.platform.hub.deliver(
                    gone.text, eventID: gone.eventID, to: String(path.split(separator: "/").last!),
                    now: test.clock.now()) == .sent)
            let text = try #require(await new.next())
            #expect(
                try WireJSON.decode(NotificationDocument.self, from: Data(text.utf8)).notificationMessage.eventType
                    == .gone)
            new.close()
            _ = try await new.drain()
        }
    }

    @Test func aSilentSocketIsClosedButTheSubscriptionLivesOn() async throws {
        try await TestPlatform.with { test in
            let response = try await test.subscribe()
            let path = try #require(response.subscriptionParams).notificationChannel
            let channel = try await test.openChannel(path)

            test.clock.advance(by: 100)
            await test.platform.sweep()
            #expect(test.platform.hub.count == 1)  // exactly at the allowance: still open
            test.clock.advance(by: 1)
            await test.platform.sweep()
            let (messages, close) = try await channel.drain()
            #expect(messages.isEmpty)
            #expect(close?.closeCode == .goingAway)
            // Still subscribed: the client may reconnect.
            let again = try await test.openChannel(path, query: "?")
            again.close()
            _ = try await again.drain()
        }
    }

    /// A client that reconnects at once when its node starts stopping is refused (503), not
    /// upgraded by a node that will not serve it (and that would then wait for it to leave).
    @Test func aSocketReconnectingWhileTheNodeStopsIsRefused() async throws {
        try await TestPlatform.with { test in
            let path = try #require(try await test.subscribe().subscriptionParams).notificationChannel
            let first = try await test.openChannel(path)
            test.platform.hub.closeAll(reason: "Platform shutting down")
            #expect(try await first.drain().close?.closeCode == .goingAway)

            await #expect(throws: (any Error).self) {
                let again = try await TestChannel.open(
                    url: "wss://127.0.0.1:\(test.port)\(path)?", tls: test.tls, origin: nil)
                again.close()
                _ = try await again.drain()
            }
            #expect(test.platform.hub.count == 0)
        }
    }

    @Test func keepalivesKeepASocketOpenPastTheAllowance() async throws {
        try await TestPlatform.with { test in
            let response = try await test.subscribe()
            let path = try #require(response.subscriptionParams).notificationChannel
            let channelID = String(try #require(path.split(separator: "/").last))
            let channel = try await test.openChannel(path)

            test.clock.advance(by: 60)
            let sent = test.clock.now().milliseconds
            channel.send(KeepaliveMessage.text)
            let heard = await test.platform.waitUntil { test.platform.hub.lastSeen(channelID: channelID) == sent }
            #expect(heard)
            test.clock.advance(by: 60)  // past the allowance since opening, not since the keepalive
            await test.platform.sweep()
            #expect(test.platform.hub.count == 1)
            channel.close()
            let (messages, close) = try await channel.drain()
            #expect(messages.isEmpty)
            #expect(close?.closeCode == .normalClosure)
        }
    }

    @Test func oversizedFramesCloseTheSocketNotThePlatform() async throws {
        try await TestPlatform.with(configure: { $0.maxFrameBytes = 1024 }) { test in
            let response = try await test.subscribe()
            let path = try #require(response.subscriptionParams).notificationChannel
            let channel = try await test.openChannel(path)
            channel.send(String(repeating: "x", count: 4096))
            let (_, close) = try await channel.drain()
            #expect(close?.closeCode == .messageTooLarge)
            let again = try await test.openChannel(path)
            again.close()
            _ = try await again.drain()
        }
    }

    @Test func shutdownClosesSocketsWithACloseFrameAndKeepsSubscriptions() async throws {
        try await TestPlatform.with { test in
            let response = try await test.subscribe()
            let channel = try await test.openChannel(try #require(response.subscriptionParams).notificationChannel)
            try await test.stopPlatform()
            #expect(try await channel.drain().close?.closeCode == .goingAway)
            let store = try SQLiteStore(path: test.databasePath)
            #expect(
                try await store.subscriptions(of: [TestPlatform.alice], now: test.clock.now()).map(\.username) == [
                    TestPlatform.alice
                ])
        }
    }

    /// A channel's connection, once closed, leaves nothing behind. Its socket and its handler hold
    /// each other; when neither let go, every session cost a node its connection (~3 KB) for good.
    @Test func aClosedConnectionLeavesNothingBehind() async throws {
        try await TestPlatform.with { test in
            let path = try #require(try await test.subscribe().subscriptionParams).notificationChannel
            let socket = try await Self.openAndClose(channelID: test.channelID(path), on: test.platform)
            #expect(socket.value == nil)
        }
    }

    struct WeakSocket: Sendable { weak var value: NotificationHub.Socket? }

    /// Opens and closes a channel socket on a connection of the test's own, gone when this
    /// returns: nothing outside the platform holds the socket then.
    private static func openAndClose(channelID: String, on platform: Platform) async throws -> WeakSocket {
        let connection = NIOAsyncTestingChannel()
        try await connection.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1))
        let attach = try await connection.testingEventLoop.executeInContext {
            try platform.channels.openChannel(ChannelAdmission(channelID: channelID, lastEventID: nil), on: connection)
        }
        await attach()
        let socket = WeakSocket(value: platform.hub.socket(channelID))
        #expect(socket.value != nil)
        try await connection.close()
        await connection.testingEventLoop.run()
        #expect(platform.openChannelCount == 0)
        return socket
    }
}

/// A client that opens its channel and then stops reading costs the node a bounded backlog.
@Suite(.timeLimit(.minutes(1))) struct SlowConsumerTests {
    @Test func aSocketThatStopsReadingIsClosedAndWhatFollowsIsQueued() async throws {
        try await TestPlatform.with(configure: { $0.maxChannelBacklogBytes = 64 << 10 }) { test in
            let session = try await test.subscribe(user: TestPlatform.alice)
            let path = try #require(session.subscriptionParams).notificationChannel
            try await test.withStalledChannel(path) {
                #expect(test.platform.openChannelCount == 1)
                // 9 kB messages until the node gives up on the socket; kernel buffers hold a few MB.
                let text = String(repeating: "x", count: 9_000)
                var sent = 0
                while test.platform.openChannelCount == 1 && sent < 5_000 {
                    let reply = try await test.sendMessage(text, from: TestPlatform.bob, to: TestPlatform.alice)
                    #expect(reply.status == 200)
                    sent += 1
                }
                #expect(test.platform.openChannelCount == 0, "still open after \(sent) messages")
            }
            // The message the full backlog refused, and what follows, are queued for the reconnect.
            _ = try await test.sendMessage("after the stall", from: TestPlatform.bob, to: TestPlatform.alice)
            let queued = try await test.platform.store.queued(channelID: String(path.split(separator: "/").last!))
            #expect(queued.count == 2)
            let channel = try await test.openChannel(path)
            var last: NotificationMessage?
            while let message = try? await channel.nextNotification() {
                last = message
                if message.imnotificationParams?.msgText == "after the stall" { break }
            }
            #expect(last?.imnotificationParams?.msgText == "after the stall")
            channel.close()
        }
    }
}

extension TestPlatform {
    /// Runs `body` while a TLS connection that upgraded `path` to a channel reads nothing more: a
    /// small receive buffer, and no demand for what arrives.
    func withStalledChannel(_ path: String, _ body: () async throws -> Void) async throws {
        let tls = self.tls
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(.socketOption(.so_rcvbuf), value: 4096)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    let handler = try NIOSSLClientHandler(
                        context: try NIOSSLContext(configuration: tls), serverHostname: "localhost")
                    try channel.pipeline.syncOperations.addHandler(handler)
                    return try NIOAsyncChannel<ByteBuffer, ByteBuffer>(
                        wrappingChannelSynchronously: channel,
                        configuration: .init(backPressureStrategy: .init(lowWatermark: 1, highWatermark: 1)))
                }
            }
        try await channel.executeThenClose { inbound, outbound in
            try await outbound.write(
                ByteBuffer(
                    string: "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"))
            var received = inbound.makeAsyncIterator()
            guard let answer = try await received.next(), String(buffer: answer).hasPrefix("HTTP/1.1 101") else {
                throw TestFailure("the upgrade was refused")
            }
            _ = await platform.waitUntil { platform.openChannelCount == 1 }
            try await body()
        }
    }
}
