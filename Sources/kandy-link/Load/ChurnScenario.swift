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

        func validate() throws {
            guard workers > 0, duration > 0 else { throw ValidationError("--workers and --duration must be positive.") }
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
            await withTaskGroup(of: Void.self) { group in
                for worker in 0..<workers {
                    group.addTask {
                        let user = setup.plan.users[worker]
                        let node = worker % setup.plan.nodes.count
                        var http: WireConnection?
                        while clock.now < deadline {
                            let begun = clock.now
                            do {
                                if http == nil { http = try await client.connect(node: node) }
                                let session = try await client.subscribe(user, services: ["IM"], over: http!)
                                let socket = try await client.connect(node: node)
                                try await socket.upgrade(session.channel, onText: { _ in }, onClose: {})
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
            }
            try report.publish(json: load.json)
            if let first { print("  first error: \(first)") }
        }
    }
}
