import Foundation
import KandyLinkTesting
import Logging
import Synchronization
import Testing

@testable import KandyLinkServer

/// How nodes sharing a PostgreSQL store tell each other about channels.
@Suite(.timeLimit(.minutes(1))) struct NodeSignalTests {
    @Test func payloadsRoundTripAndSplitUnderTheNotifyLimit() {
        let channels = (0..<1000).map { "channel-\($0)-" + String(repeating: "x", count: 16) }
        for signal in [NodeSignal.queued(channels), .ended(["a"]), .unsubscribed(["b", "c"]), .attached(["d"])] {
            let payloads = PostgresStore.payloads(signal, from: "node1")
            #expect(payloads.allSatisfy { $0.utf8.count <= PostgresStore.maxPayloadBytes })
            let back = payloads.compactMap { PostgresStore.signal(from: $0, except: "node2") }
            #expect(back.flatMap(\.channels) == signal.channels)
            // Each part is the same kind of signal.
            #expect(back.allSatisfy { $0 == NodeSignal.from(signal, $0.channels) })
            // A node ignores its own.
            #expect(payloads.compactMap { PostgresStore.signal(from: $0, except: "node1") }.isEmpty)
        }
        #expect(PostgresStore.payloads(.queued(channels), from: "n").count > 1)
        #expect(PostgresStore.payloads(.queued([]), from: "n").isEmpty)
        #expect(PostgresStore.signal(from: "n1 nonsense c1", except: "n2") == nil)
        #expect(PostgresStore.signal(from: "", except: "n2") == nil)
    }

    @Test(.enabled(if: TestDatabase.isAvailable)) func signalsReachTheOtherNodesAndALostListenerResumes() async throws {
        let database = try await TestDatabase.create()
        let logger = Logger(label: "signal-test")
        let one = try await PostgresStore(url: database.url, logger: logger)
        let two = try await PostgresStore(url: database.url, logger: logger)
        let heardByOne = Heard(one.signals())
        let heardByTwo = Heard(two.signals())
        try await withCleanup {
            // LISTEN is set up in the background: signal until the other side hears.
            var attempt = 0
            while heardByTwo.signals.isEmpty && attempt < 200 {
                attempt += 1
                try await one.signal(.queued(["c\(attempt)"]))
                _ = await eventually(within: .milliseconds(50)) { !heardByTwo.signals.isEmpty }
            }
            #expect(heardByTwo.signals.first?.channels.first?.hasPrefix("c") == true)
            try await two.signal(.ended(["e1"]))
            #expect(await eventually { heardByOne.signals.contains(.ended(["e1"])) })
            // Nobody hears their own.
            #expect(heardByOne.signals.allSatisfy { $0 == .ended(["e1"]) })
            #expect(!heardByTwo.signals.contains(.ended(["e1"])))

            // Two's listening connection is cut: listening again, it says it may have missed some.
            try await database.terminateListeners()
            #expect(await eventually { heardByTwo.signals.contains(.resume) })
            try await one.signal(.queued(["after"]))
            #expect(await eventually { heardByTwo.signals.contains(.queued(["after"])) })
        } cleanup: {
            await one.close()
            await two.close()
            await database.drop()
        }
    }

    /// Collects what a signal stream delivers.
    final class Heard: Sendable {
        private final class Box: Sendable {
            let heard = Mutex<[NodeSignal]>([])
        }

        private let box = Box()
        private let task: Task<Void, Never>

        init(_ stream: AsyncStream<NodeSignal>) {
            let box = box
            task = Task {
                for await signal in stream { box.heard.withLock { $0.append(signal) } }
            }
        }

        deinit { task.cancel() }

        var signals: [NodeSignal] { box.heard.withLock { $0 } }
    }
}

extension NodeSignal {
    /// The same kind of signal with other channels.
    static func from(_ kind: NodeSignal, _ channels: [String]) -> NodeSignal {
        switch kind {
        case .queued: .queued(channels)
        case .ended: .ended(channels)
        case .unsubscribed: .unsubscribed(channels)
        case .attached: .attached(channels)
        case .resume: .resume
        }
    }
}
