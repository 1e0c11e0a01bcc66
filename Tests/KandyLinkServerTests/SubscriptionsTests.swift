import Foundation
import KandyLinkProtocol
import Testing

@testable import KandyLinkServer

/// Where notifications go follows every change to a user's subscriptions, whether the node
/// remembers them (a store of its own) or reads them each time (a shared store).
@Suite struct SubscriptionsTests {
    enum Step {
        case subscribe([ServiceName])
        case refresh(index: Int, [ServiceName])
        case unsubscribe(index: Int)
        case expire(after: TimeInterval)
        case read(at: TimeInterval)
    }

    /// Each step, then the indices (in subscribe order) of alice's subscriptions that get IM.
    static let steps: [(Step, [Int])] = [
        (.read(at: 0), []),
        (.subscribe(["IM"]), [0]),
        (.subscribe(["call"]), [0]),
        (.subscribe(["IM", "Presence"]), [0, 2]),
        (.refresh(index: 1, ["IM"]), [0, 1, 2]),
        (.refresh(index: 0, ["call"]), [1, 2]),
        (.unsubscribe(index: 2), [1]),
        (.read(at: 59), [1]),
        // Past its lifetime a subscription is not a destination, even before the sweeper runs.
        (.read(at: 61), []),
        (.expire(after: 61), []),
        (.subscribe(["IM"]), [3]),
    ]

    @Test(arguments: StoreContractTests.StoreKind.available) func destinationsFollowEveryChange(
        kind: StoreContractTests.StoreKind
    ) async throws {
        try await kind.seeded { store in
            let subscriptions = Subscriptions(
                store: store, policy: .init(maxSessionsPerUser: 10, minExpires: 60, maxExpires: 60))
            let start = StoreContractTests.now
            var now = start
            var created: [StoredSubscription] = []
            for (number, (step, expected)) in Self.steps.enumerated() {
                switch step {
                case .subscribe(let services):
                    let (record, _) = try await subscriptions.subscribe(
                        user: "alice", services: services, expires: 60, forceLogOut: false, now: now)
                    created.append(record)
                case .refresh(let index, let services):
                    _ = try await subscriptions.refresh(
                        user: "alice", id: created[index].id, services: services, expires: 60, now: now)
                case .unsubscribe(let index):
                    _ = try await subscriptions.unsubscribe(user: "alice", id: created[index].id, now: now)
                case .expire(let after):
                    now = start + after
                    _ = try await subscriptions.expire(now: now)
                case .read(let at):
                    now = start + at
                }
                let channels = try await subscriptions.channels(of: ["alice"], granting: "IM", now: now)
                let wanted = expected.map { created[$0].channelID }
                #expect(Set(channels) == Set(wanted), "step \(number): \(step)")
            }
        }
    }
}
