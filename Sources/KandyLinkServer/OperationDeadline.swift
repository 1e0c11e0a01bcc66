import NIOCore
import NIOPosix
import Synchronization

/// A store operation that did not finish in time: its caller was answered and the operation left
/// to end by itself (it is cancelled, if it listens).
public struct OperationTimedOut: Error, CustomStringConvertible {
    public var description: String { "The database did not answer in time." }
}

/// Gives up on work that takes longer than a deadline. PostgreSQL clients can wait forever on a
/// connection the server has just ended, or in a pool queue until its circuit breaker opens a
/// minute later; a request (and the channel turn it may hold) is answered rather than held that
/// long. The work runs as a task of its own so that the caller can leave it behind: that task is
/// cancelled when the deadline passes, and ends at the latest when the store closes its pool.
struct OperationDeadline: Sendable {
    let limit: TimeAmount

    @discardableResult
    func run<T: Sendable>(_ work: @escaping @Sendable () async throws -> T) async throws -> T {
        let outcome = Outcome<T>()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                outcome.start(continuation)
                let task = Task {
                    do {
                        outcome.finish(.success(try await work()))
                    } catch {
                        outcome.finish(.failure(error))
                    }
                }
                let timer = MultiThreadedEventLoopGroup.singleton.any().scheduleTask(in: limit) {
                    if outcome.finish(.failure(OperationTimedOut())) { task.cancel() }
                }
                outcome.whenFinished(task: task, timer: timer)
            }
        } onCancel: {
            outcome.cancel()
        }
    }

    /// Whoever finishes first resumes the caller; the others find it done.
    private final class Outcome<T: Sendable>: Sendable {
        private struct State {
            var continuation: CheckedContinuation<T, any Error>?
            var task: Task<Void, Never>?
            var timer: Scheduled<Void>?
            var finished = false
            var cancelled = false
        }

        private let state = Mutex(State())

        func start(_ continuation: CheckedContinuation<T, any Error>) {
            state.withLock { $0.continuation = continuation }
        }

        /// Records the task and timer; either may have finished already.
        func whenFinished(task: Task<Void, Never>, timer: Scheduled<Void>) {
            let (done, cancelled) = state.withLock { state in
                state.task = task
                state.timer = timer
                return (state.finished, state.cancelled)
            }
            if done { timer.cancel() }
            if cancelled { task.cancel() }
        }

        @discardableResult
        func finish(_ result: Result<T, any Error>) -> Bool {
            let (continuation, timer) = state.withLock {
                state -> (CheckedContinuation<T, any Error>?, Scheduled<Void>?) in
                guard !state.finished else { return (nil, nil) }
                state.finished = true
                defer { state.continuation = nil }
                return (state.continuation, state.timer)
            }
            guard let continuation else { return false }
            timer?.cancel()
            continuation.resume(with: result)
            return true
        }

        func cancel() {
            let task = state.withLock { state in
                state.cancelled = true
                return state.task
            }
            task?.cancel()
        }
    }
}
