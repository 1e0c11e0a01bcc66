import Foundation
import Synchronization

/// Wall-clock time for the platform. Subscription expiry is wall-clock (it must survive a
/// restart), so this is a `Date` source rather than a monotonic `Clock`; tests inject
/// ``ManualPlatformClock`` and advance it instead of sleeping.
public protocol PlatformClock: Sendable {
    func now() -> Date
}

public struct SystemPlatformClock: PlatformClock {
    public init() {}
    public func now() -> Date { Date() }
}

/// A clock that moves only when told to.
public final class ManualPlatformClock: PlatformClock {
    private let current: Mutex<Date>

    public init(_ start: Date = Date(timeIntervalSince1970: 1_800_000_000)) {
        current = Mutex(start)
    }

    public func now() -> Date { current.withLock { $0 } }

    public func advance(by seconds: TimeInterval) {
        current.withLock { $0 += seconds }
    }
}
