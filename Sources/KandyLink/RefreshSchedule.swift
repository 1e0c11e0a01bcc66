import Foundation

/// When to refresh a subscription with PUT (spec §6.1, with the client's faults fixed).
///
/// The wait after a success is half the *granted* lifetime; after each failure it halves again,
/// never below a floor (30 s, as Kandy.js): `max(floor, expires / 2^attempt × (1 − jitter × r))`.
/// The due time is wall-clock, and the machine is asked again on every keepalive tick, so a
/// device that slept past it refreshes as soon as it wakes.
///
/// | granted 60 s, r = 0 | success | failure 1 | failure 2 |
/// |---|---|---|---|
/// | next PUT after | 30 s | 30 s (floor) | 30 s |
///
/// | granted 3600 s, r = 0 | success | failure 1 | failure 2 | failure 3 |
/// |---|---|---|---|---|
/// | next PUT after | 1800 s | 900 s | 450 s | 225 s |
struct RefreshSchedule: Equatable, Sendable {
    /// Shortest wait between refreshes.
    var floor: TimeInterval = 30
    /// Fraction of the wait that jitter may take off, so many clients do not refresh in step.
    static let jitter = 0.1

    private(set) var expires: Int = 0
    /// 1 after a success; grows with each failure in a row.
    private(set) var attempt = 1
    private(set) var dueAt: Date?
    private(set) var inFlight = false

    init(floor: TimeInterval = 30) { self.floor = floor }

    func wait(expires: Int, attempt: Int, random r: Double) -> TimeInterval {
        let halved = Double(expires) / pow(2, Double(attempt)) * (1 - Self.jitter * r)
        return max(floor, halved)
    }

    /// After a subscribe or service update: refresh at half of `expires`. Returns when.
    @discardableResult
    mutating func arm(expires: Int, now: Date, random r: Double) -> Date {
        self.expires = expires
        attempt = 1
        inFlight = false
        let due = now + wait(expires: expires, attempt: 1, random: r)
        dueAt = due
        return due
    }

    /// True when a PUT should go now; it is then in flight until ``succeeded`` or ``failed``.
    mutating func check(now: Date) -> Bool {
        guard let dueAt, !inFlight, now >= dueAt else { return false }
        inFlight = true
        return true
    }

    /// The attempt number the PUT in flight reports, and when the re-armed schedule is due.
    mutating func succeeded(now: Date, random r: Double) -> (attempt: Int, dueAt: Date) {
        let reported = attempt
        return (reported, arm(expires: expires, now: now, random: r))
    }

    mutating func failed(now: Date, random r: Double) -> (attempt: Int, dueAt: Date) {
        let reported = attempt
        attempt += 1
        inFlight = false
        let due = now + wait(expires: expires, attempt: attempt, random: r)
        dueAt = due
        return (reported, due)
    }

    mutating func cancel() {
        dueAt = nil
        inFlight = false
        attempt = 1
    }
}
