import ArgumentParser
import Foundation
import KandyLinkProtocol
import NIOCore
import Synchronization

extension Bench {
    /// Notifications delivered to many open channels: rate, loss and latency.
    struct Fanout: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Deliver --rate notifications/s to --subscribers open channels for --duration s.",
            discussion: """
                With --via im, a sender posts instant messages to the subscribers in turn (one REST \
                request per notification). With --via presence, every subscriber watches one \
                publisher, whose presence updates reach them all (one request per --subscribers \
                notifications). Each carries its send time; latency is from the start of the \
                request to the frame's arrival. With --ladder the rate grows by --step until p99 \
                passes --p99-bound or a notification is lost, and the highest passing rate is reported.
                """)

        enum Route: String, ExpressibleByArgument, CaseIterable {
            case im, presence
        }

        @OptionGroup var load: LoadOptions
        @Option(help: "Users with an open channel.") var subscribers = 1000
        @Option(help: "Notifications per second to deliver (the first rate with --ladder).") var rate = 10_000.0
        @Option(help: "Seconds each rate runs.") var duration = 10
        @Option(help: "im (one request per notification) or presence (one request per --subscribers).")
        var via = Route.im
        @Option(help: "Keep-alive connections the sender uses, one request in flight on each.") var connections = 32
        @Flag(help: "Raise the rate step by step; report the highest with no loss and p99 under --p99-bound.")
        var ladder = false
        @Option(help: "Milliseconds p99 latency must stay under, with --ladder.") var p99Bound = 10.0
        @Option(help: "Factor between ladder rates.") var step = 1.5
        @Option(help: "Highest rate to try with --ladder.") var maxRate = 1_000_000.0

        func validate() throws {
            guard subscribers > 0, rate > 0, duration > 0, connections > 0, step > 1 else {
                throw ValidationError("--subscribers, --rate, --duration, --connections must be positive; --step > 1.")
            }
            if via == .presence, rate < Double(subscribers) / Double(duration) {
                throw ValidationError("--rate is too low for one presence update to --subscribers within --duration.")
            }
        }

        static let sender = "bench-sender"
        static let publisher = "bench-publisher"

        func run() async throws {
            try await LoadSetup.with(load, users: subscribers, extraUsers: [Self.sender, Self.publisher]) { setup in
                try await LoadClient.using(setup.plan, threads: load.threads) { try await measure(setup, $0) }
            }
        }

        private func measure(_ setup: LoadSetup, _ client: LoadClient) async throws {
            let tally = Arrivals()
            let users = Array(setup.plan.users.prefix(subscribers))
            let (sender, publisher) = (setup.plan.users[subscribers], setup.plan.users[subscribers + 1])
            var sockets: [WireConnection] = []
            for (index, user) in users.enumerated() {
                let node = index % setup.plan.nodes.count
                let http = try await client.connect(node: node)
                let session = try await client.subscribe(user, services: ["IM", "Presence"], over: http)
                if via == .presence {
                    try await client.post(
                        PresenceWatcherRequestDocument(
                            presenceWatcherRequest: .init(userList: [publisher.name], action: .watch)),
                        to: LinkPath.presenceWatcher(user: user.name), as: user, over: http)
                }
                await http.close()
                let socket = try await client.connect(node: node)
                try await socket.upgrade(session.channel, onMessage: { tally.arrived($0) }, onClose: {})
                sockets.append(socket)
            }
            try await Task.sleep(for: .milliseconds(500))
            tally.reset(sends: 0, copies: 0)  // presence subscriptions bring the current state

            var steps: [BenchReport] = []
            var current = rate
            while true {
                let step = try await run(
                    rate: current, setup: setup, client: client, users: users, sender: sender, publisher: publisher,
                    tally: tally)
                steps.append(step)
                guard ladder else { break }
                if !passes(step) || current * self.step > maxRate { break }
                current *= self.step
            }
            for socket in sockets { await socket.close() }

            guard ladder else {
                try steps[0].publish(json: load.json)
                return
            }
            var report = BenchReport(scenario: "fanout ladder")
            let passing = steps.filter(passes)
            report.add("highest passing rate", passing.last?.value("target rate") ?? 0, "/s")
            report.add("delivered/s at it", passing.last?.value("delivered/s") ?? 0, "/s")
            report.add("p99 at it", passing.last?.value("latency p99") ?? 0, "ms")
            report.add("p99 bound", p99Bound, "ms")
            for step in steps {
                report.add(
                    String(format: "rate %.0f: delivered/s", step.value("target rate") ?? 0),
                    step.value("delivered/s") ?? 0, "/s")
                report.add(
                    String(format: "rate %.0f: p99 / lost", step.value("target rate") ?? 0),
                    step.value("latency p99") ?? 0, "ms / \(Int(step.value("lost") ?? 0)) lost")
            }
            report.steps = steps
            try report.publish(json: load.json)
        }

        /// A ladder step passes with nothing lost, no failed send and p99 under the bound.
        private func passes(_ step: BenchReport) -> Bool {
            step.value("lost") == 0 && step.value("send errors") == 0
                && (step.value("latency p99") ?? .infinity) < p99Bound
        }

        /// One rate, for --duration seconds.
        private func run(
            rate: Double, setup: LoadSetup, client: LoadClient, users: [LoadPlan.User], sender: LoadPlan.User,
            publisher: LoadPlan.User, tally: Arrivals
        ) async throws -> BenchReport {
            let copies = via == .im ? 1 : users.count
            let sendRate = rate / Double(copies)
            let sends = max(1, Int(sendRate * Double(duration)))
            tally.reset(sends: sends, copies: copies)
            let errors = Failures()
            let lanes = min(connections, sends)
            let before = setup.readings()
            let pacer = Pacer(rate: sendRate)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for lane in 0..<lanes {
                    group.addTask {
                        var http = try await client.connect(node: lane % setup.plan.nodes.count)
                        for sequence in stride(from: lane, to: sends, by: lanes) {
                            try await pacer.wait(for: sequence)
                            let stamp = "~KL\(sequence):\(monotonicNanoseconds())~"
                            do {
                                switch via {
                                case .im:
                                    let to = users[sequence % users.count].name
                                    try await client.post(
                                        InstantMessageRequestDocument(imRequest: .init(toUrl: to, message: stamp)),
                                        to: LinkPath.instantMessage(user: sender.name), as: sender, over: http)
                                case .presence:
                                    try await client.post(
                                        PresenceRequestDocument(
                                            presenceRequest: .init(status: .open, activity: .active, note: stamp)),
                                        to: LinkPath.presence(user: publisher.name), as: publisher, over: http)
                                }
                            } catch {
                                errors.record(error)
                                await http.close()
                                http = try await client.connect(node: lane % setup.plan.nodes.count)
                            }
                        }
                        await http.close()
                    }
                }
                try await group.waitForAll()
            }
            let sent = Bench.seconds(pacer.start.duration(to: pacer.clock.now))
            try await tally.settle(expecting: sends * copies)
            let after = setup.readings()
            let result = tally.result()
            let (errorCount, firstError) = (errors.count, errors.first)

            var report = BenchReport(scenario: "fanout via \(via.rawValue), \(users.count) subscribers")
            report.add("target rate", rate, "/s")
            report.add("notifications expected", Double(sends * copies))
            report.add("delivered", Double(result.delivered))
            report.add("lost", Double(sends * copies - result.delivered))
            report.add("duplicates", Double(result.duplicates))
            report.add("send errors", Double(errorCount))
            report.add("delivered/s", Double(result.delivered) / max(result.lastArrival - result.firstSend, 1e-9), "/s")
            report.add("sending took", sent, "s")
            report.add("latency p50", result.latencies.at(0.5), "ms")
            report.add("latency p99", result.latencies.at(0.99), "ms")
            report.add("latency max", result.latencies.max, "ms")
            if !before.isEmpty {
                report.add("nodes CPU", ProcessReading.cpuSeconds(from: before, to: after) / sent * 100, "% of a core")
            }
            if let firstError { print("  first send error: \(firstError)") }
            return report
        }
    }
}

/// Stamped notifications as they arrive on the subscribers' channels.
final class Arrivals: Sendable {
    private struct State {
        var seen: [UInt32] = []
        var copies = 1
        var latencies: [Double] = []
        var delivered = 0
        var duplicates = 0
        var firstSend = UInt64.max
        var lastArrival: UInt64 = 0
    }

    private let state = Mutex(State())

    func reset(sends: Int, copies: Int) {
        state.withLock { state in
            state = State()
            state.seen = Array(repeating: 0, count: sends)
            state.copies = copies
            state.latencies.reserveCapacity(sends * copies)
        }
    }

    var count: Int { state.withLock { $0.delivered } }

    /// Waits for the stragglers: until `expected` have arrived, or nothing more for a second.
    func settle(expecting expected: Int) async throws {
        var (last, quiet) = (count, 0)
        while count < expected, quiet < 100 {
            try await Task.sleep(for: .milliseconds(10))
            let now = count
            (quiet, last) = (now == last ? quiet + 1 : 0, now)
        }
    }

    /// Reads `~KL<sequence>:<sent ns>~` out of a frame.
    func arrived(_ frame: ByteBuffer) {
        let now = monotonicNanoseconds()
        let bytes = frame.readableBytesView
        guard let marker = bytes.firstRange(of: Self.marker)?.lowerBound else { return }
        var index = marker + 3
        var sequence = 0
        var sent: UInt64 = 0
        while index < bytes.endIndex, let digit = Self.digit(bytes[index]) {
            sequence = sequence * 10 + digit
            index += 1
        }
        guard index < bytes.endIndex, bytes[index] == UInt8(ascii: ":") else { return }
        index += 1
        while index < bytes.endIndex, let digit = Self.digit(bytes[index]) {
            sent = sent * 10 + UInt64(digit)
            index += 1
        }
        state.withLock { state in
            guard state.seen.indices.contains(sequence) else { return }
            guard Int(state.seen[sequence]) < state.copies else {
                state.duplicates += 1
                return
            }
            state.seen[sequence] += 1
            state.delivered += 1
            state.latencies.append(Double(now &- sent) / 1e6)
            state.firstSend = min(state.firstSend, sent)
            state.lastArrival = max(state.lastArrival, now)
        }
    }

    struct Result {
        var delivered: Int
        var duplicates: Int
        var latencies: Percentiles
        /// Seconds on the monotonic clock.
        var firstSend: Double
        var lastArrival: Double
    }

    func result() -> Result {
        state.withLock { state in
            Result(
                delivered: state.delivered, duplicates: state.duplicates, latencies: Percentiles(state.latencies),
                firstSend: Double(state.firstSend == .max ? 0 : state.firstSend) / 1e9,
                lastArrival: Double(state.lastArrival) / 1e9)
        }
    }

    private static let marker = Array("~KL".utf8)

    private static func digit(_ byte: UInt8) -> Int? {
        byte >= 48 && byte <= 57 ? Int(byte - 48) : nil
    }
}
