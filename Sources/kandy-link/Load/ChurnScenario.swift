import ArgumentParser
import Foundation
import KandyLinkProtocol

extension Bench {
    /// Sessions set up and torn down as fast as --workers clients can go: the cost of a login.
    struct Churn: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Subscribe → open channel → unsubscribe → close, in a loop on --workers users, for --duration s.",
            discussion: """
                Each worker is one user with a keep-alive connection for its REST requests; every \
                session opens its channel on a new connection (TLS handshake included), as a browser \
                does. Reports completed sessions per second, the time one takes, and errors.
                """)

        @OptionGroup var load: LoadOptions
        @Option(help: "Users churning at once.") var workers = 64
        @Option(help: "Seconds to run.") var duration = 10
        @Option(help: "Stop after this many sessions, if sooner than --duration.") var sessions: Int?
        @Option(help: "Instant messages each session sends itself and receives on its channel before it ends.")
        var messages = 0
        @Option(help: "Message text length, in bytes.") var size = 1000

        func validate() throws {
            guard workers > 0, duration > 0 else { throw ValidationError("--workers and --duration must be positive.") }
            guard messages >= 0, (1...10_000).contains(size), (sessions ?? 1) > 0 else {
                throw ValidationError("--messages must be 0 or more, --size 1…10000, --sessions positive.")
            }
        }

        func run() async throws {
            try await LoadSetup.with(load, users: workers) { setup in
                try await LoadClient.using(setup.plan, threads: load.threads) { try await churn(setup, $0) }
            }
        }

        private func churn(_ setup: LoadSetup, _ client: LoadClient) async throws {
            let clock = ContinuousClock()
            let deadline = clock.now + .seconds(duration)
            let sessions = Gathered<Double>()
            let failures = Failures()
            let before = setup.readings()
            let started = clock.now
            let begunSessions = Counter()
            let limit = self.sessions ?? .max
            let (messages, text) = (self.messages, String(repeating: "x", count: size))
            await withTaskGroup(of: Void.self) { group in
                for worker in 0..<workers {
                    group.addTask {
                        let user = setup.plan.users[worker]
                        let node = worker % setup.plan.nodes.count
                        var http: WireConnection?
                        while clock.now < deadline, begunSessions.increment() <= limit {
                            let begun = clock.now
                            do {
                                if http == nil { http = try await client.connect(node: node) }
                                let session = try await client.subscribe(user, services: ["IM"], over: http!)
                                let socket = try await client.connect(node: node)
                                let (arrivals, arrived) = AsyncStream.makeStream(of: Void.self)
                                try await socket.upgrade(
                                    session.channel,
                                    onMessage: { frame in
                                        if frame.readableBytesView.count > 100 { arrived.yield() }  // not a keepalive
                                    }, onClose: { arrived.finish() })
                                for _ in 0..<messages {
                                    try await client.post(
                                        InstantMessageRequestDocument(
                                            imRequest: .init(toUrl: user.name, message: text)),
                                        to: LinkPath.instantMessage(user: user.name), as: user, over: http!)
                                }
                                var received = 0
                                if messages > 0 {
                                    for await _ in arrivals {
                                        received += 1
                                        if received == messages { break }
                                    }
                                }
                                guard received == messages else {
                                    throw WireConnection.Failure.malformed(
                                        "the channel closed before its messages came")
                                }
                                try await client.unsubscribe(user, session, over: http!)
                                await socket.close()
                                let took = Bench.seconds(begun.duration(to: clock.now))
                                sessions.append(took)
                            } catch {
                                await http?.close()
                                http = nil
                                failures.record(error)
                            }
                        }
                        await http?.close()
                    }
                }
            }
            let elapsed = Bench.seconds(started.duration(to: clock.now))
            let after = setup.readings()
            let (completed, errors, first) = (sessions.count, failures.count, failures.first)
            let times = Percentiles(sessions.all)
            var report = BenchReport(scenario: "churn")
            report.add("sessions completed", Double(completed))
            report.add("sessions/s", Double(completed) / elapsed, "/s")
            report.add("errors", Double(errors))
            report.add("session p50", times.at(0.5) * 1000, "ms")
            report.add("session p99", times.at(0.99) * 1000, "ms")
            if !before.isEmpty {
                report.add(
                    "nodes CPU", ProcessReading.cpuSeconds(from: before, to: after) / elapsed * 100, "% of a core")
                let (rssBefore, rssAfter) = (
                    before.map(\.residentBytes).reduce(0, +), after.map(\.residentBytes).reduce(0, +)
                )
                report.add("nodes RSS before", Double(rssBefore) / 1_048_576, "MiB")
                report.add("nodes RSS after", Double(rssAfter) / 1_048_576, "MiB")
                if completed > 0 {
                    report.add(
                        "RSS growth per 1 000 sessions", Double(rssAfter - rssBefore) / 1024 / Double(completed) * 1000,
                        "KiB")
                }
            }
            try report.publish(json: load.json)
            if let first { print("  first error: \(first)") }
        }
    }
}
