import Foundation

/// Sleeps on an injected clock. The deadline is taken when the alarm is set, not when its task
/// first runs, so a test clock advanced right after an action still fires it.
struct AlarmClock: Sendable {
    let wait: @Sendable (Duration) -> @Sendable () async throws -> Void

    init(_ clock: any Clock<Duration>) {
        func make<C: Clock<Duration>>(_ clock: C) -> @Sendable (Duration) -> @Sendable () async throws -> Void {
            { delay in
                let deadline = clock.now.advanced(by: delay)
                return { try await clock.sleep(until: deadline, tolerance: nil) }
            }
        }
        wait = make(clock)
    }
}
