import ArgumentParser
import Foundation
import KandyLinkServer
import NIOCore

extension PeerServer.Kind: ExpressibleByArgument {}

extension Bench {
    /// The platform measured side by side with the peers, by one generator in one run.
    struct Compare: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The platform against nginx + nchan and mosquitto: the same load, measured in one run.",
            discussion: """
                Each server is started here (the platform as `kandy-link serve`, the peers from their \
                Debian packages, one worker process each) and driven in turn by this process: \
                sessions set up and torn down by --workers clients for --duration s; --rate messages/s \
                to --subscribers channels in turn; --fanout-rate publishes/s each reaching --fanout \
                channels; and --idle channels held open. Each figure is the server's own CPU time \
                (user + system, all its processes) per operation, and its resident memory per idle \
                channel; the last table gives ours over each peer's. With --pin the servers run on \
                CPU 0 and this generator on CPU 1, so CPU figures are per server core and the \
                generator does not compete with the server. The platform's own floor, CPU per GET \
                /health at the same rate, is measured alongside.
                """)

        @Flag(help: "Run the servers on CPU 0 and this generator on CPU 1 (taskset).") var pin = false
        @Flag(help: "TLS on every server (the development certificate), handshakes included.") var tls = false
        @Option(help: "Seconds each measurement runs.") var duration = 5
        @Option(help: "Clients setting sessions up and down at once.") var workers = 16
        @Option(help: "Channels that messages go to, in turn.") var subscribers = 100
        @Option(help: "Messages per second, one request (or PUBLISH) each.") var rate = 2000.0
        @Option(help: "Channels one fan-out publish reaches.") var fanout = 1000
        @Option(help: "Fan-out publishes per second.") var fanoutRate = 20.0
        @Option(help: "Channels held open for the memory figure.") var idle = 2000
        @Option(help: "Publishing connections, one request in flight on each.") var lanes = 16
        @Option(help: "A peer to measure: nchan or mosquitto; repeat. Default: both.") var peer: [PeerServer.Kind] = []
        @Option(
            help: """
                Times to run the whole comparison, each with fresh servers: the last table then gives \
                each ratio's median over the rounds, and its range.
                """)
        var rounds = 1
        @Option(help: ArgumentHelp("Also write the result as JSON to this file.", valueName: "file")) var json: String?

        func validate() throws {
            guard duration > 0, workers > 0, subscribers > 0, rate > 0, fanout > 0, fanoutRate > 0, idle > 0, lanes > 0,
                rounds > 0
            else { throw ValidationError("Every count, rate and duration must be positive.") }
            guard !pin || ProcessInfo.processInfo.activeProcessorCount >= 2 else {
                throw ValidationError("--pin needs two CPUs.")
            }
        }

        func run() async throws {
            let peers = peer.isEmpty ? PeerServer.Kind.allCases : peer
            for kind in peers where !PeerServer.isInstalled(kind) {
                throw CommandFailure("\(kind.title) is not installed: apt-get install \(kind.packages)")
            }
            if pin { try Self.pinThisProcess(to: 1) }
            ProcessReading.raiseOpenFilesLimit()
            var comparisons: [BenchReport] = []
            for round in 1...rounds {
                if rounds > 1 { print("round \(round) of \(rounds)\n") }
                comparisons.append(try await compare(peers))
            }
            guard rounds > 1 else { return try comparisons[0].publish(json: json) }
            var summary = Self.medians(of: comparisons)
            summary.steps = comparisons
            try summary.publish(json: json)
        }

        /// One round: the platform and each peer, started afresh and measured in turn; ours over
        /// theirs, with each server's figures as its steps.
        private func compare(_ peers: [PeerServer.Kind]) async throws -> BenchReport {
            var options = try LoadOptions.parse(tls ? [] : ["--plaintext"])
            options.cpu = pin ? 0 : nil
            let users = max(workers, subscribers, fanout, idle)
            return try await LoadSetup.with(options, users: users, extraUsers: [Fanout.publisher]) { setup in
                var reports: [BenchReport] = []
                try await LoadClient.using(setup.plan, threads: 1) { client in
                    reports.append(try await measure(PlatformContender(setup: setup, client: client)))
                }
                let files =
                    tls
                    ? PeerServer.TLSFiles(
                        chain: setup.directory.appendingPathComponent(DevelopmentCertificate.chainFileName).path,
                        key: setup.directory.appendingPathComponent(DevelopmentCertificate.keyFileName).path) : nil
                for kind in peers {
                    let server = try await PeerServer.start(kind, in: setup.directory, tls: files, cpu: pin ? 0 : nil)
                    let plan = LoadPlan(
                        nodes: [.init(host: "127.0.0.1", port: server.port)], secure: tls, trust: setup.plan.trust,
                        users: [])
                    try await withCleanup {
                        try await LoadClient.using(plan, threads: 1) { client in
                            switch kind {
                            case .nchan:
                                reports.append(try await measure(NchanContender(server: server, client: client)))
                            case .mosquitto:
                                reports.append(try await measure(MosquittoContender(server: server, client: client)))
                            }
                        }
                    } cleanup: {
                        await server.stop()
                    }
                }
                for report in reports { print(report.table + "\n") }
                var comparison = ratios(reports)
                comparison.steps = reports
                return comparison
            }
        }

        /// Each ratio's median over the rounds (the mean of the middle two for an even count), its
        /// lowest and its highest: on a noisy machine one run can mislead by a fifth.
        static func medians(of rounds: [BenchReport]) -> BenchReport {
            var summary = BenchReport(
                scenario: rounds[0].scenario.replacingOccurrences(
                    of: "measured together", with: "median of \(rounds.count) rounds"))
            var seen = Set<String>()
            // In order of first appearance: a round may lack a ratio (a peer's CPU under a tick).
            for row in rounds.flatMap(\.rows) where seen.insert(row.name).inserted {
                let values = rounds.compactMap { $0.value(row.name) }.sorted()
                let middle = values.count / 2
                let median = values.count % 2 == 1 ? values[middle] : (values[middle - 1] + values[middle]) / 2
                summary.add(row.name, median, row.unit)
                summary.add("\(row.name), lowest", values[0], row.unit)
                summary.add("\(row.name), highest", values[values.count - 1], row.unit)
            }
            return summary
        }

        /// Ours over each peer's, figure by figure, and ours per message over ours per GET /health.
        private func ratios(_ reports: [BenchReport]) -> BenchReport {
            var comparison = BenchReport(
                scenario: "kandy-link / peer, measured together (\(tls ? "TLS" : "plaintext")\(pin ? ", pinned" : ""))")
            guard let ours = reports.first else { return comparison }
            for peer in reports.dropFirst() {
                for name in Self.compared {
                    // A figure under the clock tick (10 ms of CPU) or the page size reads 0: no ratio then.
                    guard let mine = ours.value(name), let theirs = peer.value(name), mine > 0, theirs > 0 else {
                        continue
                    }
                    comparison.add("\(name): kandy-link / \(peer.scenario)", mine / theirs, "×")
                }
            }
            if let message = ours.value(Self.cpuPerMessage), let floor = ours.value(Self.cpuPerHealth), floor > 0 {
                comparison.add("\(Self.cpuPerMessage) / \(Self.cpuPerHealth)", message / floor, "×")
            }
            return comparison
        }

        static let cpuPerCycle = "CPU per session set up and torn down"
        static let cpuPerMessage = "CPU per message"
        static let cpuPerDelivery = "CPU per fan-out delivery"
        static let memoryPerChannel = "memory per idle channel"
        static let cpuPerHealth = "CPU per GET /health"
        static let compared = [cpuPerCycle, cpuPerMessage, cpuPerDelivery, memoryPerChannel]

        private func measure(_ server: some Contender) async throws -> BenchReport {
            var report = BenchReport(scenario: server.title)
            // Memory first, while the server has allocated for nothing else that it could reuse.
            try await idleChannels(server, into: &report)
            try await cycles(server, into: &report)
            try await messages(server, into: &report)
            if let platform = server as? PlatformContender { try await floor(platform, into: &report) }
            try await fanOut(server, into: &report)
            return report
        }

        /// Sessions set up and torn down by `workers` clients, each as fast as it can.
        private func cycles(_ server: some Contender, into report: inout BenchReport) async throws {
            let clock = ContinuousClock()
            let deadline = clock.now + .seconds(duration)
            let (done, failures) = (Counter(), Failures())
            let before = cpu(server)
            let started = clock.now
            await withTaskGroup(of: Void.self) { group in
                for worker in 0..<workers {
                    group.addTask {
                        var http: WireConnection?
                        while clock.now < deadline {
                            do {
                                if http == nil { http = try await server.client.connect(node: 0) }
                                try await server.cycle(worker, over: http!)
                                done.increment()
                            } catch {
                                failures.record(error)
                                await http?.close()
                                http = nil
                            }
                        }
                        await http?.close()
                    }
                }
            }
            let elapsed = Bench.seconds(started.duration(to: clock.now))
            let used = cpu(server) - before
            report.add("sessions/s", Double(done.count) / elapsed, "/s")
            report.add("session errors", Double(failures.count))
            report.add(Self.cpuPerCycle, used / Double(max(done.count, 1)) * 1e6, "µs")
            report.add("server CPU while setting up sessions", used / elapsed * 100, "% of a core")
            if let first = failures.first { print("  \(server.title): first session error: \(first)") }
        }

        /// `rate` messages/s to `subscribers` channels in turn.
        private func messages(_ server: some Contender, into report: inout BenchReport) async throws {
            let tally = Arrivals()
            let sockets = try await openChannels(server, count: subscribers) { index in
                (.channel(index), { tally.arrived($0) })
            }
            let sends = Int(rate * Double(duration))
            tally.reset(sends: sends, copies: 1)
            let (used, sendErrors) = try await paced(server, sends: sends, rate: rate, tally: tally, copies: 1) {
                sequence, text, connection in
                try await server.publish(text, to: .channel(sequence % subscribers), over: connection)
            }
            for socket in sockets { await socket.close() }
            let result = tally.result()
            report.add("messages sent", Double(sends))
            report.add("messages lost", Double(sends - result.delivered))
            report.add("message send errors", Double(sendErrors))
            report.add(Self.cpuPerMessage, used / Double(max(result.delivered, 1)) * 1e6, "µs")
            report.add("message latency p50", result.latencies.at(0.5), "ms")
            report.add("message latency p99", result.latencies.at(0.99), "ms")
        }

        /// The same rate of GET /health on the same connections: what the HTTP stack alone costs.
        private func floor(_ server: PlatformContender, into report: inout BenchReport) async throws {
            let sends = Int(rate * Double(duration))
            let answered = Counter()
            let (used, errors) = try await paced(server, sends: sends, rate: rate, tally: nil, copies: 1) {
                _, _, connection in
                try await server.health(over: connection)
                answered.increment()
            }
            report.add(Self.cpuPerHealth, used / Double(max(answered.count, 1)) * 1e6, "µs")
            report.add("GET /health errors", Double(errors))
        }

        /// `fanoutRate` publishes/s, each to `fanout` channels.
        private func fanOut(_ server: some Contender, into report: inout BenchReport) async throws {
            let tally = Arrivals()
            let sockets = try await openChannels(server, count: fanout) { _ in (.fanout, { tally.arrived($0) }) }
            let sends = max(1, Int(fanoutRate * Double(duration)))
            tally.reset(sends: sends, copies: fanout)
            let (used, errors) = try await paced(server, sends: sends, rate: fanoutRate, tally: tally, copies: fanout) {
                _, text, connection in
                try await server.publish(text, to: .fanout, over: connection)
            }
            for socket in sockets { await socket.close() }
            let result = tally.result()
            report.add("fan-out deliveries", Double(result.delivered))
            report.add("fan-out lost", Double(sends * fanout - result.delivered))
            report.add("fan-out send errors", Double(errors))
            report.add(Self.cpuPerDelivery, used / Double(max(result.delivered, 1)) * 1e6, "µs")
            report.add("fan-out latency p99 (last of \(fanout))", result.latencies.at(0.99), "ms")
        }

        /// Resident memory per open, idle channel.
        private func idleChannels(_ server: some Contender, into report: inout BenchReport) async throws {
            let before = resident(server)
            let sockets = try await openChannels(server, count: idle) { index in (.channel(index), { _ in }) }
            try await Task.sleep(for: .seconds(1))  // let the server settle what the opening allocated
            let after = resident(server)
            for socket in sockets { await socket.close() }
            report.add(Self.memoryPerChannel, Double(after - before) / Double(idle) / 1024, "KB")
        }

        /// Opens `count` channels, `lanes` at a time.
        private func openChannels(
            _ server: some Contender, count: Int,
            _ destination: @escaping @Sendable (Int) -> (Destination, @Sendable (ByteBuffer) -> Void)
        ) async throws -> [WireConnection] {
            let opened = Gathered<WireConnection>()
            try await withThrowingTaskGroup(of: Void.self) { group in
                for lane in 0..<min(lanes, count) {
                    group.addTask {
                        let http = try await server.client.connect(node: 0)
                        for index in stride(from: lane, to: count, by: lanes) {
                            let (target, onMessage) = destination(index)
                            opened.append(try await server.open(target, index, over: http, onMessage: onMessage))
                        }
                        await http.close()
                    }
                }
                try await group.waitForAll()
            }
            return opened.all
        }

        /// Sends `sends` stamped requests at `rate`, over `lanes` connections, then waits for
        /// their `copies` arrivals each (or a second with none); returns the server CPU seconds
        /// used meanwhile and the sends that failed.
        private func paced(
            _ server: some Contender, sends: Int, rate: Double, tally: Arrivals?, copies: Int,
            _ send: @escaping @Sendable (Int, String, WireConnection) async throws -> Void
        ) async throws -> (Double, Int) {
            let errors = Failures()
            let before = cpu(server)
            let pacer = Pacer(rate: rate)
            let lanes = min(self.lanes, sends)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for lane in 0..<lanes {
                    group.addTask {
                        var connection = try await server.publisher()
                        for sequence in stride(from: lane, to: sends, by: lanes) {
                            try await pacer.wait(for: sequence)
                            do {
                                try await send(sequence, "~KL\(sequence):\(monotonicNanoseconds())~", connection)
                            } catch {
                                errors.record(error)
                                await connection.close()
                                connection = try await server.publisher()
                            }
                        }
                        await connection.close()
                    }
                }
                try await group.waitForAll()
            }
            try await tally?.settle(expecting: sends * copies)
            if let first = errors.first { print("  \(server.title): first send error: \(first)") }
            return (cpu(server) - before, errors.count)
        }

        private func cpu(_ server: some Contender) -> Double {
            server.pids.compactMap(ProcessReading.of).map(\.cpuSeconds).reduce(0, +)
        }

        private func resident(_ server: some Contender) -> Int {
            server.pids.compactMap(ProcessReading.of).map(\.residentBytes).reduce(0, +)
        }

        /// Every thread of this process onto `cpu`; threads started later inherit it.
        private static func pinThisProcess(to cpu: Int) throws {
            let taskset = Process()
            taskset.executableURL = URL(fileURLWithPath: "/usr/bin/taskset")
            taskset.arguments = ["-a", "-p", "-c", String(cpu), String(getpid())]
            taskset.standardOutput = FileHandle.nullDevice
            try taskset.run()
            taskset.waitUntilExit()
            guard taskset.terminationStatus == 0 else { throw CommandFailure("taskset could not pin the generator") }
        }
    }
}
