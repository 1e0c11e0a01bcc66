import ArgumentParser
import Foundation
import KandyLink
import KandyLinkServer
import Logging
import NIOSSL
import Synchronization
import WSClient

struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure the platform and the SDK.",
        discussion:
            "Build with -c release for numbers worth comparing: swift run -c release -Xswiftc -cross-module-optimization kandy-link bench connect",
        subcommands: [
            Compare.self, Channels.self, Churn.self, Fanout.self, Connect.self, InstantMessages.self, CatchUp.self,
            DirectorySearch.self, Stalled.self,
            ChannelsWorker.self,
        ])

    struct Connect: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "SDK connect time and memory per client, against an embedded platform on loopback or a --server node.",
            discussion: """
                Connect time is setCredentials → subscribed with the channel open (POST, then the \
                WebSocket upgrade over TLS), measured over --runs connects of one user (each followed, \
                unmeasured, by unsubscribe and destroy). Memory is the growth of this process's resident \
                set per --clients Kandy instances with credentials set.
                """)

        @Option(help: "Connects to time.") var runs = 200
        @Option(help: "Instances to create for the memory figure.") var clients = 1000
        @Option(help: ArgumentHelp("Also write the result as JSON to this file.", valueName: "file")) var json: String?
        @Option(
            help: ArgumentHelp(
                "A running node (https://HOST:PORT) instead of an embedded one, e.g. to time Kandy.js against the same node.",
                valueName: "url"))
        var server: String?
        @Option(help: ArgumentHelp("PEM certificate to trust for --server.", valueName: "file")) var trust: String?
        @Option(help: "The user to connect as, with --server.") var user: String?
        @Option(help: "That user's password, with --server (default: KANDY_LINK_PASSWORD).") var password: String?

        func validate() throws {
            guard runs > 0, clients > 0 else { throw ValidationError("--runs and --clients must be positive.") }
            if server != nil, user == nil || serverPassword == nil {
                throw ValidationError("--server needs --user and --password (or KANDY_LINK_PASSWORD).")
            }
        }

        private var serverPassword: String? {
            password ?? ProcessInfo.processInfo.environment["KANDY_LINK_PASSWORD"]
        }

        func run() async throws {
            if let server, let user, let password = serverPassword {
                try await measure(
                    address: try PlatformAddress(server), trust: trust.map { [$0] } ?? [], username: user,
                    password: password)
                return
            }
            try await EmbeddedPlatform.with(minExpires: 60) { embedded in
                try await measure(
                    address: try PlatformAddress("https://127.0.0.1:\(embedded.port)"),
                    trust: [embedded.certificatePath], username: EmbeddedPlatform.username, password: embedded.password)
            }
        }

        private func measure(address: PlatformAddress, trust: [String], username: String, password: String)
            async throws
        {
            let configuration = address.configuration(expires: 3600, trust: trust)
            let clock = ContinuousClock()
            var samples: [Duration] = []
            for run in 0...runs {
                try await Kandy.using(configuration) { kandy in
                    let started = clock.now
                    try await kandy.setCredentials(username: username, password: password)
                    try await kandy.services.subscribe(["call", "Presence", "IM"], forceLogOut: true)
                    let elapsed = started.duration(to: clock.now)
                    if run > 0 { samples.append(elapsed) }  // the first pays for bcrypt and TLS set-up
                    try await kandy.services.unsubscribe(["call", "Presence", "IM"])
                }
            }
            let before = ProcessReading.of(getpid())?.residentBytes ?? 0
            var instances: [Kandy] = []
            let after = try await withCleanup {
                for _ in 0..<clients {
                    let kandy = try Kandy.create(configuration)
                    instances.append(kandy)
                    try await kandy.setCredentials(username: username, password: password)
                }
                return ProcessReading.of(getpid())?.residentBytes ?? 0
            } cleanup: {
                for kandy in instances { await kandy.destroy() }
            }

            let times = Percentiles(samples.map { Bench.seconds($0) * 1000 })
            var report = BenchReport(scenario: "connect (setCredentials → subscribed, channel open)")
            report.add("runs", Double(samples.count))
            report.add("connect p50", times.at(0.5), "ms")
            report.add("connect p99", times.at(0.99), "ms")
            report.add("connect max", times.max, "ms")
            report.add("memory per client instance", Double(after - before) / Double(clients) / 1024, "KB")
            try report.publish(json: json)
        }
    }

    /// Instant messages from alice to bob through the platform: sent with the SDK over REST,
    /// received with the SDK over bob's channel.
    struct InstantMessages: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "im",
            abstract: "Instant message delivery between two SDK clients on an embedded platform: rate and latency.",
            discussion: """
                alice sends --messages messages to bob, keeping --window sends in flight. Latency is \
                from the start of alice's send to bob's messages:change event; the rate is messages \
                over the time from the first send to the last arrival. Both clients and the platform \
                run in this process, over TLS on loopback.
                """)

        @Option(help: "Messages to send.") var messages = 10_000
        @Option(help: "Sends in flight at once.") var window = 16
        @Option(help: "Message text length, in bytes.") var size = 64

        func validate() throws {
            guard messages > 0, window > 0, (8...10_000).contains(size) else {
                throw ValidationError("--messages and --window must be positive, --size 8…10000.")
            }
        }

        /// When each message was sent and when it arrived, by sequence number.
        private final class Timeline: Sendable {
            let clock = ContinuousClock()
            let sent: Mutex<[ContinuousClock.Instant?]>
            let arrived: Mutex<[ContinuousClock.Instant?]>
            let duplicates = Atomic(0)
            let failedSends = Atomic(0)
            let (done, finish) = AsyncStream.makeStream(of: Void.self)
            let remaining: Atomic<Int>

            init(count: Int) {
                sent = Mutex(Array(repeating: nil, count: count))
                arrived = Mutex(Array(repeating: nil, count: count))
                remaining = Atomic(count)
            }

            func received(_ text: Substring) {
                let now = clock.now
                guard let index = Int(text.prefix { $0 != " " }) else { return }
                let first = arrived.withLock { arrived in
                    guard arrived.indices.contains(index), arrived[index] == nil else { return false }
                    arrived[index] = now
                    return true
                }
                guard first else {
                    duplicates.add(1, ordering: .relaxed)
                    return
                }
                if remaining.subtract(1, ordering: .relaxed).newValue == 0 { finish.yield() }
            }
        }

        func run() async throws {
            try await EmbeddedPlatform.with(minExpires: 60) { embedded in
                let address = try PlatformAddress("https://127.0.0.1:\(embedded.port)")
                let configuration = address.configuration(expires: 3600, trust: [embedded.certificatePath])
                try await Kandy.using(configuration) { alice in
                    try await Kandy.using(configuration) { bob in
                        try await measure(alice: alice, bob: bob, password: embedded.password)
                    }
                }
            }
        }

        private func measure(alice: Kandy, bob: Kandy, password: String) async throws {
            for (kandy, user) in [(alice, EmbeddedPlatform.username), (bob, EmbeddedPlatform.peerUsername)] {
                try await kandy.setCredentials(username: user, password: password)
                try await kandy.services.subscribe(["IM"], forceLogOut: true)
            }
            let timeline = Timeline(count: messages)
            bob.on(.messagesChange) { event in
                if case .messagesChange(let message) = event, message.direction == .incoming {
                    timeline.received(message.text[...])
                }
            }
            let (messages, window, size) = (self.messages, self.window, self.size)
            let padding = String(repeating: "x", count: size)
            let started = timeline.clock.now
            try await withThrowingTaskGroup(of: Void.self) { group in
                for lane in 0..<min(window, messages) {
                    group.addTask {
                        for index in stride(from: lane, to: messages, by: window) {
                            let text = String("\(index) \(padding)".prefix(size))
                            timeline.sent.withLock { $0[index] = timeline.clock.now }
                            do {
                                try await alice.messages.send(to: EmbeddedPlatform.peerUsername, text: text)
                            } catch {
                                timeline.failedSends.add(1, ordering: .relaxed)
                            }
                        }
                    }
                }
                try await group.waitForAll()
            }
            let deadline = Task {
                try await Task.sleep(for: .seconds(10))
                timeline.finish.finish()
            }
            var iterator = timeline.done.makeAsyncIterator()
            await iterator.next()
            deadline.cancel()
            let ended = timeline.clock.now

            let sent = timeline.sent.withLock { $0 }
            let arrived = timeline.arrived.withLock { $0 }
            let latencies = zip(sent, arrived).compactMap { sent, arrived in
                sent.flatMap { start in arrived.map { start.duration(to: $0) } }
            }.sorted()
            let elapsed = started.duration(to: ended)
            let seconds = Bench.seconds(elapsed)
            print("instant messages alice → bob, \(messages) × \(size) B, window \(window):")
            print(
                String(
                    format: "  delivered %d (lost %d, duplicates %d, failed sends %d) in %.2f s: %.0f msgs/s",
                    latencies.count, messages - latencies.count, timeline.duplicates.load(ordering: .relaxed),
                    timeline.failedSends.load(ordering: .relaxed), seconds, Double(latencies.count) / seconds))
            if !latencies.isEmpty {
                let times = Percentiles(latencies.map { Bench.seconds($0) * 1000 })
                print(
                    String(
                        format: "  latency p50 %.2f ms   p99 %.2f ms   max %.2f ms", times.at(0.5), times.at(0.99),
                        times.max))
            }
        }
    }

    /// A reconnect's catch-up: how fast the notifications queued while a socket was down are
    /// delivered once it is back.
    struct CatchUp: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "catchup",
            abstract: "Delivery rate of queued notifications after a reconnect, on an embedded platform.",
            discussion: """
                bob subscribes and goes away without unsubscribing; alice sends him --messages \
                instant messages, which the platform queues in its store. Then a WebSocket client \
                opens bob's channel, and the time from the start of its connect to the last queued \
                message is measured.
                """)

        @Option(help: "Messages queued while bob is away.") var messages = 10_000
        @Option(help: "alice's sends in flight at once.") var window = 16

        func validate() throws {
            guard messages > 0, window > 0 else { throw ValidationError("--messages and --window must be positive.") }
        }

        func run() async throws {
            try await EmbeddedPlatform.with(minExpires: 60, maxQueuedNotifications: messages) { embedded in
                try await measure(on: embedded)
            }
        }

        private func measure(on embedded: EmbeddedPlatform) async throws {
            let address = try PlatformAddress("https://127.0.0.1:\(embedded.port)")
            let configuration = address.configuration(expires: 3600, trust: [embedded.certificatePath])

            // bob goes away without unsubscribing: the socket closes, the subscription stays.
            let channel = try await Kandy.using(configuration) { bob in
                try await bob.setCredentials(username: EmbeddedPlatform.peerUsername, password: embedded.password)
                try await bob.services.subscribe(["IM"], forceLogOut: true)
                guard let channel = bob.connection.getSocketState()?.url else {
                    throw CommandFailure("bob has no channel")
                }
                return channel
            }

            let (messages, window) = (self.messages, self.window)
            let queuing = ContinuousClock().now
            try await Kandy.using(configuration) { alice in
                try await alice.setCredentials(username: EmbeddedPlatform.username, password: embedded.password)
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for lane in 0..<min(window, messages) {
                        group.addTask {
                            for index in stride(from: lane, to: messages, by: window) {
                                try await alice.messages.send(to: EmbeddedPlatform.peerUsername, text: "\(index)")
                            }
                        }
                    }
                    try await group.waitForAll()
                }
            }
            let queued = queuing.duration(to: ContinuousClock().now)

            var tls = TLSConfiguration.makeClientConfiguration()
            tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(embedded.certificatePath))
            var logger = Logger(label: "kandy-link.bench")
            logger.logLevel = .critical
            let clock = ContinuousClock()
            let started = clock.now
            let tally = Mutex((received: 0, firstFrame: Duration?.none))
            _ = try await WebSocketClient.connect(
                url: channel + "?", configuration: .init(maxFrameSize: 1 << 20, sniHostname: "localhost"),
                tlsConfiguration: tls, logger: logger
            ) { inbound, outbound, _ in
                for try await message in inbound.messages(maxSize: 1 << 20) {
                    guard case .text = message else { continue }
                    let received = tally.withLock { tally in
                        if tally.firstFrame == nil { tally.firstFrame = started.duration(to: clock.now) }
                        tally.received += 1
                        return tally.received
                    }
                    if received == messages { break }
                }
                try await outbound.close(.normalClosure, reason: nil)
            }
            let (received, firstFrame) = tally.withLock { $0 }
            let elapsed = started.duration(to: clock.now)
            let seconds = Bench.seconds(elapsed)
            print("reconnect catch-up, \(messages) instant messages queued while the socket was down:")
            print(
                "  queued in \(Bench.milliseconds(queued)); first frame after \(Bench.milliseconds(firstFrame ?? .zero))"
                    + " (connect + TLS + upgrade + store read)")
            print(
                String(
                    format: "  delivered %d in %.3f s: %.0f notifications/s", received, seconds,
                    Double(received) / seconds))
        }
    }

    static func milliseconds(_ duration: Duration) -> String {
        String(format: "%.2f ms", seconds(duration) * 1000)
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }
}
