import Foundation

/// Growing delays after failed logins, per key (an account, or a client address).
///
/// A value type with time passed in, so its schedule is tested as a table. After `freeFailures`
/// failures in a row, each further failure blocks the key for
/// `min(baseDelay × 2^(failures − freeFailures − 1), maxDelay)`:
///
/// | failures (free = 3, base = 1 s) | 1–3 | 4 | 5 | 6 | 7 | … | 13+ |
/// |---|---|---|---|---|---|---|---|
/// | blocked for | 0 | 1 s | 2 s | 4 s | 8 s | … | 300 s (cap) |
///
/// A success clears the key; a key quiet for `forgetAfter` is forgotten.
public struct LoginThrottle: Sendable {
    public struct Policy: Sendable, Equatable {
        public var freeFailures: Int
        public var baseDelay: TimeInterval
        public var maxDelay: TimeInterval
        public var forgetAfter: TimeInterval

        public init(freeFailures: Int, baseDelay: TimeInterval, maxDelay: TimeInterval, forgetAfter: TimeInterval) {
            self.freeFailures = freeFailures
            self.baseDelay = baseDelay
            self.maxDelay = maxDelay
            self.forgetAfter = forgetAfter
        }

        public static let standard = Policy(freeFailures: 3, baseDelay: 1, maxDelay: 300, forgetAfter: 3600)

        func delay(afterFailures failures: Int) -> TimeInterval {
            let excess = failures - freeFailures
            guard excess > 0 else { return 0 }
            return min(baseDelay * pow(2, Double(min(excess - 1, 30))), maxDelay)
        }
    }

    struct Entry: Equatable {
        var failures: Int
        var lastFailure: Date
        var blockedUntil: Date
    }

    public let policy: Policy
    /// Bound on remembered keys, so a flood of addresses cannot grow memory without limit.
    let capacity: Int
    private(set) var entries: [String: Entry] = [:]

    public init(policy: Policy, capacity: Int = 100_000) {
        self.policy = policy
        self.capacity = capacity
    }

    /// Seconds until `key` may try again, or nil when it may try now.
    public func retryAfter(_ key: String, now: Date) -> TimeInterval? {
        guard let entry = entries[key], entry.blockedUntil > now else { return nil }
        return entry.blockedUntil.timeIntervalSince(now)
    }

    public mutating func recordFailure(_ key: String, now: Date) {
        var entry = entries[key] ?? Entry(failures: 0, lastFailure: now, blockedUntil: now)
        if now.timeIntervalSince(entry.lastFailure) > policy.forgetAfter { entry.failures = 0 }
        entry.failures += 1
        entry.lastFailure = now
        entry.blockedUntil = now.addingTimeInterval(policy.delay(afterFailures: entry.failures))
        if entries[key] == nil && entries.count >= capacity { forgetQuiet(now: now) }
        entries[key] = entry
    }

    public mutating func recordSuccess(_ key: String) {
        entries[key] = nil
    }

    private mutating func forgetQuiet(now: Date) {
        entries = entries.filter { now.timeIntervalSince($0.value.lastFailure) <= policy.forgetAfter }
        if entries.count >= capacity {
            // Still full of recent failures: drop the oldest half rather than refuse to track.
            let keep = entries.sorted { $0.value.lastFailure > $1.value.lastFailure }.prefix(capacity / 2)
            entries = Dictionary(uniqueKeysWithValues: keep.map { ($0.key, $0.value) })
        }
    }
}
