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
            try await withThrowingDiscardingTaskGroup { listening in
                listening.addTask { await one.listen {} }
                listening.addTask { await two.listen {} }
                try await Self.exchange(one, heardByOne, two, heardByTwo, database: database)
                listening.cancelAll()
            }
        } cleanup: {
            await one.close()
            await two.close()
            await database.drop()
        }
    }

    private static func exchange(
        _ one: PostgresStore, _ heardByOne: Heard, _ two: PostgresStore, _ heardByTwo: Heard, database: TestDatabase
    ) async throws {
        // LISTEN connects in the background: each store says when it listens.
        #expect(await one.listenerChanges.until(within: .seconds(30)) { one.isListening })
        #expect(await two.listenerChanges.until(within: .seconds(30)) { two.isListening })
        try await one.signal(.queued(["c1"]))
        #expect(await heardByTwo.until { $0.contains(.queued(["c1"])) })
        try await two.signal(.ended(["e1"]))
        #expect(await heardByOne.until { $0.contains(.ended(["e1"])) })
        // Nobody hears their own.
        #expect(heardByOne.signals.filter { $0 != .resume } == [.ended(["e1"])])
        #expect(heardByTwo.signals.filter { $0 != .resume } == [.queued(["c1"])])

        // Two's listening connection is cut: listening again, it says it may have missed some.
        try await database.terminateListeners()
        #expect(await heardByTwo.until { $0.contains(.resume) })
        try await one.signal(.queued(["after"]))
        #expect(await heardByTwo.until { $0.contains(.queued(["after"])) })
    }

    /// Collects what a signal stream delivers.
    final class Heard: Sendable {
        private final class Box: Sendable {
            let heard = Mutex<[NodeSignal]>([])
            let changes = StateChanges()
        }

        private let box = Box()
        private let task: Task<Void, Never>

        init(_ stream: AsyncStream<NodeSignal>) {
            let box = box
            task = Task {
                for await signal in stream {
                    box.heard.withLock { $0.append(signal) }
                    box.changes.signal()
                }
            }
        }

        deinit { task.cancel() }

        var signals: [NodeSignal] { box.heard.withLock { $0 } }

        /// Waits until what was heard satisfies `condition`, for at most `limit`.
        func until(within limit: Duration = .seconds(30), _ condition: ([NodeSignal]) -> Bool) async -> Bool {
            await box.changes.until(within: limit) { condition(signals) }
        }
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
