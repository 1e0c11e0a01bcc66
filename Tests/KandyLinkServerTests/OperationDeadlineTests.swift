import NIOCore
import Testing

@testable import KandyLinkServer

/// The deadline on store operations: the caller is answered by the work or by the deadline,
/// whichever comes first, and work left behind is cancelled.
struct OperationDeadlineTests {
    struct Failure: Error, Equatable {}

    @Test func workThatFinishesIsAnsweredWithItsResult() async throws {
        // A limit no run reaches, however busy the machine.
        let deadline = OperationDeadline(limit: .seconds(3600))
        #expect(try await deadline.run { 42 } == 42)
        await #expect(throws: Failure.self) { try await deadline.run { () async throws -> Int in throw Failure() } }
    }

    @Test func workThatNeverFinishesIsLeftBehindAndCancelled() async throws {
        let (cancelled, observe) = AsyncStream.makeStream(of: Void.self)
        let deadline = OperationDeadline(limit: .milliseconds(50))
        await #expect(throws: OperationTimedOut.self) {
            try await deadline.run { () async throws -> Int in
                // Waits until cancelled, as a lease queued in a pool does.
                let (never, _) = AsyncStream.makeStream(of: Void.self)
                for await _ in never {}
                observe.finish()
                return 0
            }
        }
        for await _ in cancelled {}
        #expect(isDatabaseUnavailability(OperationTimedOut()), "answered 503")
    }

    @Test func aCancelledCallerCancelsTheWork() async throws {
        let (started, start) = AsyncStream.makeStream(of: Void.self)
        let (cancelled, observe) = AsyncStream.makeStream(of: Void.self)
        let slow = OperationDeadline(limit: .seconds(3600))
        let caller = Task {
            try await slow.run { () async throws -> Int in
                start.finish()
                let (never, _) = AsyncStream.makeStream(of: Void.self)
                for await _ in never {}
                observe.finish()
                throw CancellationError()
            }
        }
        for await _ in started {}
        caller.cancel()
        for await _ in cancelled {}
        await #expect(throws: CancellationError.self) { try await caller.value }
    }
}
