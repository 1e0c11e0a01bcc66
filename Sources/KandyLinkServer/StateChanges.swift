import NIOCore
import NIOPosix
import Synchronization

/// Wakes whoever waits for a node's state to change (a socket attached, closed or heard from),
/// so that tests and tools wait for a condition rather than poll for it.
final class StateChanges: Sendable {
    private struct Waiters {
        var generation: UInt64 = 0
        var nextID: UInt64 = 0
        var waiting: [UInt64: CheckedContinuation<Void, Never>] = [:]
    }

    private let waiters = Mutex(Waiters())

    var generation: UInt64 { waiters.withLock { $0.generation } }

    /// Something changed: every waiter looks again.
    func signal() {
        let woken = waiters.withLock { waiters -> [CheckedContinuation<Void, Never>] in
            waiters.generation &+= 1
            guard !waiters.waiting.isEmpty else { return [] }
            defer { waiters.waiting = [:] }
            return Array(waiters.waiting.values)
        }
        for waiter in woken { waiter.resume() }
    }

    /// Returns true once `condition` holds, looked at again after every change; false if it
    /// still does not at the end of `limit`.
    func until(within limit: Duration, _ condition: () -> Bool) async -> Bool {
        let deadline = NIODeadline.now() + TimeAmount(limit)
        while true {
            let seen = generation
            if condition() { return true }
            guard NIODeadline.now() < deadline, !Task.isCancelled else { return false }
            await wait(after: seen, until: deadline)
        }
    }

    /// Returns after the first change past `generation`, at `deadline`, or when cancelled.
    func wait(after generation: UInt64, until deadline: NIODeadline) async {
        let id = waiters.withLock { waiters in
            defer { waiters.nextID &+= 1 }
            return waiters.nextID
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let now = waiters.withLock { waiters -> Bool in
                    guard waiters.generation == generation, !Task.isCancelled else { return true }
                    waiters.waiting[id] = continuation
                    return false
                }
                if now {
                    continuation.resume()
                    return
                }
                MultiThreadedEventLoopGroup.singleton.any().scheduleTask(deadline: deadline) { self.wake(id) }
            }
        } onCancel: {
            wake(id)
        }
    }

    private func wake(_ id: UInt64) {
        waiters.withLock { $0.waiting.removeValue(forKey: id) }?.resume()
    }
}
