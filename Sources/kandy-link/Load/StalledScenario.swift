import ArgumentParser
import Foundation
import KandyLinkProtocol
import NIOCore

extension Bench {
    /// Clients that stop reading their channel while messages keep coming: what each costs a node.
    struct Stalled: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "What a channel whose client stops reading costs a node, and whether the node lets go of it.",
            discussion: """
                --consumers users subscribe, open their channels and stop reading them; a sender then \
                posts --messages instant messages of --size bytes to each, in turn. Reports the nodes' \
                resident memory before the channels, with them open, and after the messages, per \
                stalled consumer; then the consumers read again and the bench counts the channels the \
                node closed (1008, past its backlog bound) and the messages that arrived before that.
                """)

        @OptionGroup var load: LoadOptions
        @Option(help: "Clients that stop reading.") var consumers = 100
        @Option(help: "Messages sent to each.") var messages = 500
        @Option(help: "Message text length, in bytes.") var size = 8000

        static let sender = "bench-sender"

        func validate() throws {
            guard consumers > 0, messages > 0, (1...10_000).contains(size) else {
                throw ValidationError("--consumers and --messages must be positive, --size 1…10000.")
            }
        }

        func run() async throws {
            try await LoadSetup.with(load, users: consumers, extraUsers: [Self.sender]) { setup in
                try await LoadClient.using(setup.plan, threads: load.threads) { try await measure(setup, $0) }
            }
        }

        private func measure(_ setup: LoadSetup, _ client: LoadClient) async throws {
            let before = setup.readings()
            let users = Array(setup.plan.users.prefix(consumers))
            let sender = setup.plan.users[consumers]
            let arrived = Counter()
            let closed = Counter()
            var sockets: [WireConnection] = []
            for (index, user) in users.enumerated() {
                let node = index % setup.plan.nodes.count
                let http = try await client.connect(node: node)
                let session = try await client.subscribe(user, services: ["IM"], over: http)
                await http.close()
                let socket = try await client.connect(node: node)
                try await socket.upgrade(
                    session.channel, onMessage: { _ in arrived.increment() }, onClose: { closed.increment() })
                try await socket.channel.setOption(.autoRead, value: false).get()
                sockets.append(socket)
            }
            let open = setup.readings()

            let text = String(repeating: "x", count: size)
            let failures = Failures()
            var http = try await client.connect(node: 0)
            for _ in 0..<messages {
                for user in users {
                    do {
                        try await client.post(
                            InstantMessageRequestDocument(imRequest: .init(toUrl: user.name, message: text)),
                            to: LinkPath.instantMessage(user: sender.name), as: sender, over: http)
                    } catch {
                        failures.record(error)
                        await http.close()
                        http = try await client.connect(node: 0)
                    }
                }
            }
            await http.close()
            let sent = setup.readings()

            // Reading again: what the node wrote before it gave up, then its close (10 s at most,
            // for the channels it kept).
            let (ends, end) = AsyncStream.makeStream(of: Void.self)
            for socket in sockets {
                socket.channel.closeFuture.whenComplete { _ in end.yield() }
                try await socket.channel.setOption(.autoRead, value: true).get()
            }
            let giveUp = Task {
                try await Task.sleep(for: .seconds(10))
                end.finish()
            }
            var ended = 0
            for await _ in ends {
                ended += 1
                if ended == sockets.count { break }
            }
            giveUp.cancel()
            for socket in sockets { await socket.close() }

            let rss = { (readings: [ProcessReading]) in Double(readings.map(\.residentBytes).reduce(0, +)) / 1_048_576 }
            var report = BenchReport(scenario: "stalled")
            report.add("stalled consumers", Double(consumers))
            report.add("bytes sent to each", Double(messages * size) / 1_048_576, "MiB")
            report.add("send errors", Double(failures.count))
            if !before.isEmpty {
                report.add("nodes RSS before", rss(before), "MiB")
                report.add("nodes RSS, channels open", rss(open), "MiB")
                report.add("nodes RSS, messages sent", rss(sent), "MiB")
                report.add("RSS per stalled consumer", (rss(sent) - rss(open)) * 1024 / Double(consumers), "KiB")
            }
            report.add("channels the node closed", Double(closed.count))
            report.add("messages that arrived", Double(arrived.count))
            try report.publish(json: load.json)
            if let first = failures.first { print("  first error: \(first)") }
        }
    }
}
