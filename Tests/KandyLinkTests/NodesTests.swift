import Foundation
import KandyLinkServer
import KandyLinkTesting
import Logging
import Testing

@testable import KandyLink

/// Two `kandy-link serve` processes on one PostgreSQL database behave as one platform: SDK
/// clients on different nodes see each other's presence and messages, forceLogOut on one node
/// ends a session held on the other, and a client whose node dies carries on through another.
@Suite(.enabled(if: TestDatabase.isAvailable), .serialized, .timeLimit(.minutes(2)))
struct NodesTests {
    @Test func presenceAndMessagesCrossNodes() async throws {
        try await Cluster.with { cluster in
            let alice = try await cluster.session(PlatformFixture.alice, on: cluster.a.port)
            let bob = try await cluster.session(PlatformFixture.bob, on: cluster.b.port)

            let watching = bob.recorder.collect(1) { $0.name == .presenceSubscribe }
            try await bob.kandy.presence.subscribe([PlatformFixture.alice])
            _ = await watching.value()
            let change = bob.recorder.collect(1) {
                if case .presenceChange(let presence) = $0 { presence.status == .open } else { false }
            }
            try await alice.kandy.presence.update(.open, activity: .busy, note: "on node A")
            let seen = await change.value()
            #expect(
                seen == [
                    .presenceChange(
                        UserPresence(
                            userId: PlatformFixture.alice,
                            state: PresenceState(status: .open, activity: .busy, note: "on node A")))
                ])

            let toBob = bob.recorder.collect(1) { $0.name == .messagesChange }
            let sent = try await alice.kandy.messages.send(to: PlatformFixture.bob, text: "A → B")
            guard case .messagesChange(let received)? = await toBob.value().first else {
                Issue.record("bob received nothing")
                return
            }
            #expect(received.text == "A → B" && received.sender == PlatformFixture.alice && received.id == sent.id)

            let toAlice = alice.recorder.collect(1) {
                if case .messagesChange(let message) = $0 { message.direction == .incoming } else { false }
            }
            try await bob.kandy.messages.send(to: PlatformFixture.alice, text: "B → A")
            guard case .messagesChange(let reply)? = await toAlice.value().first else {
                Issue.record("alice received nothing")
                return
            }
            #expect(reply.text == "B → A" && reply.sender == PlatformFixture.bob)
            await alice.kandy.destroy()
            await bob.kandy.destroy()
        }
    }

    @Test func forceLogOutOnOneNodeEndsTheSessionHeldOnTheOther() async throws {
        try await Cluster.with { cluster in
            let first = try await cluster.session(PlatformFixture.alice, on: cluster.a.port)
            let ended = first.recorder.collect(1) { $0 == .subscriptionChange(.init(reason: .gone)) }
            let second = try await cluster.session(PlatformFixture.alice, on: cluster.b.port)
            #expect(await ended.value() == [.subscriptionChange(.init(reason: .gone))])
            #expect(first.kandy.services.current() == nil)
            #expect(second.kandy.services.current() != nil)
            await first.kandy.destroy()
            await second.kandy.destroy()
        }
    }

    @Test func aClientWhoseNodeDiesCarriesOnThroughAnother() async throws {
        try await Cluster.with { cluster in
            // The client reaches the nodes through a load balancer; node A answers first.
            let balancer = try await TCPRelay(backends: [cluster.a.port, cluster.b.port])
            let carol = try await cluster.session(PlatformFixture.alice, on: balancer.port)
            let bob = try await cluster.session(PlatformFixture.bob, on: cluster.b.port)
            let channel = try #require(carol.kandy.services.current()?.channelPath)

            await cluster.a.kill()
            // Sent while alice has no socket anywhere: kept in PostgreSQL for her channel.
            let arrived = carol.recorder.collect(2) { $0.name == .messagesChange }
            try await bob.kandy.messages.send(to: PlatformFixture.alice, text: "while you were away")
            try await bob.kandy.messages.send(to: PlatformFixture.alice, text: "and after")
            let texts = await arrived.value().compactMap { event -> String? in
                if case .messagesChange(let message) = event { message.text } else { nil }
            }
            #expect(texts == ["while you were away", "and after"])
            // Same subscription, same channel, now on node B; and it is still renewed there (an
            // update is the refresh's PUT).
            #expect(carol.kandy.services.current()?.channelPath == channel)
            try await carol.kandy.services.subscribe(["call", "Presence", "IM"])
            #expect(carol.kandy.services.current()?.channelPath == channel)
            await carol.kandy.destroy()
            await bob.kandy.destroy()
            await balancer.close()
        }
    }

    @Test func aNodeKilledUnderLoadLosesNothingItAcknowledged() async throws {
        try await Cluster.with { cluster in
            let balancer = try await TCPRelay(backends: [cluster.a.port, cluster.b.port])
            let carol = try await cluster.session(PlatformFixture.alice, on: balancer.port)
            let bob = try await cluster.session(PlatformFixture.bob, on: cluster.b.port)
            let count = 300
            let incoming: @Sendable (KandyEvent) -> Bool = {
                if case .messagesChange(let message) = $0 { message.direction == .incoming } else { false }
            }
            let all = carol.recorder.collect(count, where: incoming)
            let aThird = carol.recorder.collect(count / 3, where: incoming)
            // bob sends without pause; node A, which holds carol's socket, dies a third of the way in.
            let sending = Task {
                for number in 0..<count {
                    try await bob.kandy.messages.send(to: PlatformFixture.alice, text: "\(number)")
                }
            }
            _ = await aThird.value()
            await cluster.a.kill()
            try await sending.value
            let texts = await all.value().compactMap { event -> String? in
                if case .messagesChange(let message) = event { message.text } else { nil }
            }
            // Every send bob was told succeeded reaches carol once, in order, through node B.
            #expect(texts == (0..<count).map { "\($0)" })
            await carol.kandy.destroy()
            await bob.kandy.destroy()
            await balancer.close()
        }
    }
}

/// Two nodes on a database of their own, alice and bob as users, one certificate for both (as
/// behind one name).
private struct Cluster {
    let a: PlatformNode
    let b: PlatformNode
    let certificate: DevelopmentCertificate.Files

    static func with(_ body: (Cluster) async throws -> Void) async throws {
        let database = try await TestDatabase.create()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("nodes-\(UUID().uuidString)")
        var nodes: [PlatformNode] = []
        try await withCleanup {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            let certificate = try DevelopmentCertificate.loadOrCreate(in: directory)
            // Users are added through the platform's own accounts, before any node starts.
            let store = try await PostgresStore(url: database.url, logger: Logger(label: "nodes-test"))
            try await withCleanup {
                var configuration = PlatformConfiguration()
                configuration.passwordCost = 4
                let accounts = try await Accounts(store: store, configuration: configuration)
                for user in [PlatformFixture.alice, PlatformFixture.bob] {
                    try await accounts.add(username: user, password: PlatformFixture.password)
                }
            } cleanup: {
                await store.close()
            }
            nodes.append(try await PlatformNode.start(database: database.url, certificate: certificate))
            nodes.append(try await PlatformNode.start(database: database.url, certificate: certificate))
            try await body(Cluster(a: nodes[0], b: nodes[1], certificate: certificate))
        } cleanup: {
            for node in nodes { await node.stop() }
            await database.drop()
            try? FileManager.default.removeItem(at: directory)
        }
    }

    /// A client logged in as `user` through `port`, subscribed to call, Presence and IM.
    func session(_ user: String, on port: Int) async throws -> (kandy: Kandy, recorder: Recorder) {
        let kandy = try Kandy.create(
            KandyConfiguration(
                authentication: .init(server: .init(base: "127.0.0.1", port: port)),
                subscription: .init(websocket: .init(server: "127.0.0.1", port: port), expires: 60),
                connectivity: .init(
                    reconnect: .init(limit: 0, delay: .milliseconds(200), maxDelay: .seconds(1), jitter: 0)),
                tls: .init(trustedCertificateFiles: [certificate.chainPath])))
        let recorder = Recorder(kandy)
        try await kandy.setCredentials(username: user, password: PlatformFixture.password)
        try await kandy.services.subscribe(["call", "Presence", "IM"], forceLogOut: true)
        return (kandy, recorder)
    }
}
