import ArgumentParser
import Foundation
import NIOPosix

extension Bench {
    /// Many idle channels: what one session costs a node in memory, and what idling costs in CPU.
    struct Channels: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Open --count sessions (subscribe + channel) at --rate, hold them idle, measure the nodes.",
            discussion: """
                Each user subscribes to call, Presence and IM (POST over a shared keep-alive \
                connection) and opens its channel on a connection of its own, then sends the \
                protocol keepalive every 30 s. The channels are held by worker processes of at most \
                --per-process channels each (the open-files limit). The nodes' resident memory is \
                read before and after, and their CPU over --idle seconds of idling.
                """)

        @OptionGroup var load: LoadOptions
        @Option(help: "Sessions to open.") var count = 10_000
        @Option(help: "Sessions started per second, all workers together.") var rate = 2_000.0
        @Option(help: "Seconds to measure CPU while the channels idle.") var idle = 30
        @Option(help: "Channels per worker process.") var perProcess = 18_000

        func validate() throws {
            guard count > 0, rate > 0, idle > 0, perProcess > 0 else {
                throw ValidationError("--count, --rate, --idle and --per-process must be positive.")
            }
        }

        func run() async throws {
            try await LoadSetup.with(load, users: count) { try await measure($0) }
        }

        private func measure(_ setup: LoadSetup) async throws {
            try await Task.sleep(for: .seconds(1))  // let the nodes settle after start
            let before = setup.readings()
            let workerCount = (count + perProcess - 1) / perProcess
            var workers: [ChannelsWorkerProcess] = []
            defer { for worker in workers { worker.stop() } }
            for index in 0..<workerCount {
                let first = index * perProcess
                workers.append(
                    try ChannelsWorkerProcess.start(
                        plan: setup.planPath, first: first, count: min(perProcess, count - first),
                        rate: rate / Double(workerCount), threads: load.threads))
            }
            var opened = 0
            var failed = 0
            var slowest = 0.0
            var firstError: String?
            for index in workers.indices {
                let report = try await workers[index].opened()
                opened += report.opened
                failed += report.failed
                slowest = max(slowest, report.seconds)
                firstError = firstError ?? report.firstError
            }
            try await Task.sleep(for: .seconds(2))
            // Memory after opening, and the start of the idle CPU window.
            let after = setup.readings()
            let workersStart = workers.compactMap { ProcessReading.of($0.pid) }
            let machineStart = ProcessReading.machineJiffies()
            try await Task.sleep(for: .seconds(idle))
            let idleEnd = setup.readings()
            let workersEnd = workers.compactMap { ProcessReading.of($0.pid) }
            let machineEnd = ProcessReading.machineJiffies()
            var dropped = 0
            for index in workers.indices { dropped += try await workers[index].finish() }

            var report = BenchReport(scenario: "channels")
            report.add("sessions opened", Double(opened))
            report.add("sessions failed", Double(failed))
            report.add("sessions/s while opening", Double(opened) / max(slowest, 1e-9), "/s")
            report.add("channels closed while idle", Double(dropped))
            report.add("nodes", Double(setup.plan.nodes.count))
            report.add("worker processes", Double(workerCount))
            let perNode = Double(opened) / Double(max(setup.plan.nodes.count, 1))
            let several = before.count > 1
            for index in before.indices {
                let (start, opened, idled) = (before[index], after[index], idleEnd[index])
                let name = several ? "node \(index + 1) " : "node "
                report.add(name + "RSS before", Double(start.residentBytes) / 1_048_576, "MiB")
                report.add(name + "RSS after", Double(opened.residentBytes) / 1_048_576, "MiB")
                report.add(
                    name + "KB per channel", Double(opened.residentBytes - start.residentBytes) / 1024 / perNode, "KB")
                report.add(
                    name + "CPU while idle", (idled.cpuSeconds - opened.cpuSeconds) / Double(idle) * 100, "% of a core")
            }
            if several {
                let grown = zip(before, after).map { $1.residentBytes - $0.residentBytes }.reduce(0, +)
                report.add("nodes KB per channel", Double(grown) / 1024 / Double(max(opened, 1)), "KB")
                let nodesCPU = ProcessReading.cpuSeconds(from: after, to: idleEnd)
                report.add("nodes CPU while idle", nodesCPU / Double(idle) * 100, "% of a core")
            }
            let workersCPU = ProcessReading.cpuSeconds(from: workersStart, to: workersEnd)
            report.add("load workers CPU while idle", workersCPU / Double(idle) * 100, "% of a core")
            let busy = machineEnd.busy - machineStart.busy
            let total = machineEnd.total - machineStart.total
            report.add("machine CPU while idle", total > 0 ? busy / total * 100 : 0, "% of all cores")
            try report.publish(json: load.json)
            if let firstError { print("  first failure: \(firstError)") }
        }
    }

    /// A channels worker: opens its share of the sessions, reports, and holds them until its
    /// standard input closes.
    struct ChannelsWorker: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "channels-worker", abstract: "One process of `bench channels`.", shouldDisplay: false)

        @Option var plan: String
        @Option var first: Int
        @Option var count: Int
        @Option var rate: Double
        @Option var threads = 1

        struct Opened: Codable {
            var opened: Int
            var failed: Int
            var seconds: Double
            var firstError: String?
        }

        struct Finished: Codable {
            var dropped: Int
        }

        func run() async throws {
            try await LoadClient.using(try LoadPlan.read(from: plan), threads: threads) { try await hold($0) }
        }

        private func hold(_ client: LoadClient) async throws {
            let plan = client.plan
            let pools = plan.nodes.indices.map { node in
                ConnectionPool(size: 8) { try await client.connect(node: node) }
            }
            let dropped = Counter()
            let held = Counter()
            let failures = Failures()
            let pacer = Pacer(rate: rate)
            let (first, count) = (self.first, self.count)
            let lanes = min(count, 256)
            await withTaskGroup(of: Void.self) { group in
                for lane in 0..<lanes {
                    group.addTask {
                        for offset in stride(from: lane, to: count, by: lanes) {
                            try? await pacer.wait(for: offset)
                            let index = first + offset
                            let user = plan.users[index]
                            let node = index % plan.nodes.count
                            do {
                                let session = try await pools[node].with { http in
                                    try await client.subscribe(user, services: ["call", "Presence", "IM"], over: http)
                                }
                                let socket = try await client.connect(node: node)
                                try await socket.upgrade(
                                    session.channel, onMessage: { _ in }, onClose: { dropped.increment() })
                                socket.send(text: LoadClient.keepalive)
                                socket.channel.eventLoop.scheduleRepeatedTask(
                                    initialDelay: .seconds(30), delay: .seconds(30)
                                ) { _ in socket.send(text: LoadClient.keepalive) }
                                held.increment()
                            } catch {
                                failures.record(error)
                            }
                        }
                    }
                }
            }
            let seconds = Bench.seconds(pacer.start.duration(to: pacer.clock.now))
            let (failed, firstError) = (failures.count, failures.first)
            let opened = held.count
            let droppedWhileOpening = dropped.count
            Self.say(Opened(opened: opened, failed: failed, seconds: seconds, firstError: firstError))

            // Hold until the coordinator closes our standard input.
            _ = try? await NIOThreadPool.singleton.runIfActive { FileHandle.standardInput.readDataToEndOfFile() }
            Self.say(Finished(dropped: dropped.count - droppedWhileOpening))
            Foundation.exit(0)  // the sockets close with the process
        }

        static func say<T: Encodable>(_ value: T) {
            let line = (try? JSONEncoder().encode(value)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
            print(line)
            fflush(nil)
        }
    }
}

/// A ``Bench/ChannelsWorker`` process, seen from the coordinator.
struct ChannelsWorkerProcess {
    let pid: Int32
    private let process: Process
    private let input: Pipe
    private var lines: AsyncStream<String>.AsyncIterator

    private init(process: Process, input: Pipe, lines: AsyncStream<String>) {
        self.process = process
        self.pid = process.processIdentifier
        self.input = input
        self.lines = lines.makeAsyncIterator()
    }

    static func start(plan: String, first: Int, count: Int, rate: Double, threads: Int) throws -> ChannelsWorkerProcess
    {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: CommandLine.executablePath)
        process.arguments = [
            "bench", "channels-worker", "--plan", plan, "--first", "\(first)", "--count", "\(count)", "--rate",
            "\(rate)",
            "--threads", "\(threads)",
        ]
        let input = Pipe()
        let output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = FileHandle.standardError
        let lines = output.lines()
        try process.run()
        return ChannelsWorkerProcess(process: process, input: input, lines: lines)
    }

    mutating func opened() async throws -> Bench.ChannelsWorker.Opened {
        guard let line = await lines.next() else { throw CommandFailure("a channels worker ended early") }
        return try JSONDecoder().decode(Bench.ChannelsWorker.Opened.self, from: Data(line.utf8))
    }

    /// Tells the worker to end, and returns how many of its channels closed while idle.
    mutating func finish() async throws -> Int {
        try input.fileHandleForWriting.close()
        guard let line = await lines.next() else { throw CommandFailure("a channels worker ended early") }
        return try JSONDecoder().decode(Bench.ChannelsWorker.Finished.self, from: Data(line.utf8)).dropped
    }

    func stop() {
        if process.isRunning { process.terminate() }
    }
}
