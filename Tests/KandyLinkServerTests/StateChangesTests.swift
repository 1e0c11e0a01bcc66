import NIOCore
import Testing

@testable import KandyLinkServer

/// Waiting for a node's state to change: woken by a change, at a deadline, or by cancellation,
/// and never left waiting for a change that came before it started.
struct StateChangesTests {
    /// A limit no run reaches: the waits below end by what the test does.
    static let far = NIODeadline.now() + .hours(1)

    @Test func aChangeBeforeTheWaitIsNotMissed() async {
        let changes = StateChanges()
        let seen = changes.generation
        changes.signal()
        await changes.wait(after: seen, until: Self.far)
        #expect(changes.generation == seen + 1)
    }

    @Test func aChangeWakesEveryWaiter() async {
        let changes = StateChanges()
        let seen = changes.generation
        async let first: Void = changes.wait(after: seen, until: Self.far)
        async let second: Void = changes.wait(after: seen, until: Self.far)
        // Whether they are waiting yet or not, the signal reaches them.
        changes.signal()
        _ = await (first, second)
    }

    @Test func theDeadlineEndsAWaitWithoutAChange() async {
        let changes = StateChanges()
        let seen = changes.generation
        await changes.wait(after: seen, until: .now() + .milliseconds(10))
        #expect(changes.generation == seen)
    }

    @Test func cancellationEndsAWait() async {
        let changes = StateChanges()
        let seen = changes.generation
        let waiter = Task { await changes.wait(after: seen, until: Self.far) }
        waiter.cancel()
        await waiter.value
        #expect(changes.generation == seen)
    }
}
