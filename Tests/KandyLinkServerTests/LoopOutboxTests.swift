import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Synchronization
import Testing

@testable import KandyLinkServer

@Suite struct LoopOutboxTests {
    /// An entry: who sent it and its place in that sender's sequence.
    struct Sent: Sendable, Equatable {
        var sender: Int
        var index: Int
    }

    /// Records what the outbox performs, on which thread, and tells a waiter once `count` have been.
    final class Record: Sendable {
        private let performed = Mutex<[Sent]>([])
        private let offLoop = Atomic(0)
        private let expected: Int
        let done: EventLoopPromise<[Sent]>

        init(expecting count: Int, on loop: any EventLoop) {
            expected = count
            done = loop.makePromise()
        }

        func perform(_ sent: Sent, on loop: any EventLoop) {
            if !loop.inEventLoop { offLoop.add(1, ordering: .relaxed) }
            let all = performed.withLock { performed in
                performed.append(sent)
                return performed.count == expected ? performed : nil
            }
            if let all { done.succeed(all) }
        }

        var performedOffLoop: Int { offLoop.load(ordering: .relaxed) }
        var soFar: [Sent] { performed.withLock { $0 } }
    }

    @Test func everySendersEntriesArePerformedOnTheLoopOnceEachInTheOrderSent() async throws {
        try await Self.withLoop { loop async throws in
            let (senders, each) = (8, 2_000)
            let record = Record(expecting: senders * each, on: loop)
            let outbox = LoopOutbox<Sent>(loop: loop) { record.perform($0, on: loop) }

            await withTaskGroup(of: Void.self) { tasks in
                for sender in 0..<senders {
                    tasks.addTask {
                        for index in 0..<each { outbox.send(Sent(sender: sender, index: index)) }
                    }
                }
            }
            let performed = try await record.done.futureResult.get()
            #expect(record.performedOffLoop == 0)
            for sender in 0..<senders {
                #expect(performed.filter { $0.sender == sender }.map(\.index) == Array(0..<each))
            }
        }
    }

    /// Entries sent while the loop is busy are performed together once it gets to the first of
    /// them: a task queued after the first send finds them all performed.
    @Test func entriesSentWhileTheLoopIsBusyArePerformedTogether() async throws {
        try await Self.withLoop { loop async throws in
            let record = Record(expecting: 100, on: loop)
            let outbox = LoopOutbox<Sent>(loop: loop) { record.perform($0, on: loop) }

            let held = ConditionLock(value: 0)
            loop.execute {
                held.lock(whenValue: 1); held.unlock()
            }
            outbox.send(Sent(sender: 0, index: 0))
            let seenByLaterTask = loop.submit { record.soFar.count }
            for index in 1..<100 { outbox.send(Sent(sender: 0, index: index)) }
            held.lock()
            held.unlock(withValue: 1)

            #expect(try await seenByLaterTask.get() == 100)
            #expect(try await record.done.futureResult.get().map(\.index) == Array(0..<100))
        }
    }

    @Test func anEntrySentOnTheLoopIsPerformedAtOnceWhenNothingWaits() async throws {
        try await Self.withLoop { loop async throws in
            let record = Record(expecting: 1, on: loop)
            let outbox = LoopOutbox<Sent>(loop: loop) { record.perform($0, on: loop) }

            let performedBeforeSendReturned = try await loop.submit {
                outbox.send(Sent(sender: 0, index: 0))
                return record.soFar.count
            }.get()
            #expect(performedBeforeSendReturned == 1)
        }
    }

    /// One sent on the loop while others wait goes after them: a socket's close never overtakes
    /// its notifications.
    @Test func anEntrySentOnTheLoopWhileOthersWaitGoesAfterThem() async throws {
        try await Self.withLoop { loop async throws in
            let record = Record(expecting: 4, on: loop)
            let itself = Mutex<LoopOutbox<Sent>?>(nil)
            let outbox = LoopOutbox<Sent>(loop: loop) { sent in
                record.perform(sent, on: loop)
                // Performing the first sends another on the loop, mid-batch.
                if sent.index == 0 { itself.withLock { $0 }?.send(Sent(sender: 1, index: 3)) }
            }
            itself.withLock { $0 = outbox }

            let held = ConditionLock(value: 0)
            loop.execute {
                held.lock(whenValue: 1); held.unlock()
            }
            for index in 0..<3 { outbox.send(Sent(sender: 0, index: index)) }
            held.lock()
            held.unlock(withValue: 1)

            #expect(try await record.done.futureResult.get().map(\.index) == [0, 1, 2, 3])
        }
    }

    /// Runs `body` with an event loop of its own, shut down after.
    private static func withLoop(_ body: (any EventLoop) async throws -> Void) async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        do {
            try await body(group.next())
        } catch {
            try await group.shutdownGracefully()
            throw error
        }
        try await group.shutdownGracefully()
    }
}
