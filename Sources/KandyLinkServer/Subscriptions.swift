import Foundation
import KandyLinkProtocol
import Synchronization

/// The platform's subscriptions: the rules of subscribe, refresh, unsubscribe, `forceLogOut`
/// and expiry. The store holds them, so every node sharing it sees the same subscriptions: a
/// channel id works on any node, and the session limit holds across nodes.
///
/// Sockets are not touched here: callers act on what each operation returns (who was evicted
/// or expired).
///
/// A node that has the store to itself remembers each user's live subscriptions once read: every
/// notification needs its recipients' channels, and every change to them passes through here.
/// With a shared store another node may change them at any time, so each read goes to the store.
final class Subscriptions: Sendable {
    struct Policy: Sendable {
        var maxSessionsPerUser: Int
        var minExpires: Int
        var maxExpires: Int

        /// Clamps a requested lifetime; no request means the longest.
        func grant(_ requested: Int?) -> Int {
            min(max(requested ?? maxExpires, minExpires), maxExpires)
        }
    }

    let policy: Policy
    private let store: any PlatformStore
    private let remembered = Mutex(Remembered())
    private let remembers: Bool

    /// Users' subscriptions as last read. `generation` moves on every change, so that a read
    /// which overlapped a change does not store what it saw.
    private struct Remembered {
        var users: [String: [StoredSubscription]] = [:]
        var generation: UInt64 = 0
        static let capacity = 200_000
    }

    init(store: any PlatformStore, policy: Policy) {
        self.store = store
        self.policy = policy
        remembers = !store.isShared
    }

    /// Forgets what was read of `users`: their subscriptions changed.
    private func changed(_ users: some Sequence<String>) {
        guard remembers else { return }
        remembered.withLock { remembered in
            remembered.generation &+= 1
            for user in users { remembered.users[user] = nil }
        }
    }

    func count(now: Date) async throws -> Int { try await store.subscriptionCount(now: now) }

    /// The live subscription whose channel this is.
    func subscription(channelID: String, now: Date) async throws -> StoredSubscription? {
        try await store.subscription(channelID: channelID, now: now)
    }

    /// The channels of `users`' live subscriptions that were granted `service`: where its
    /// notifications go.
    func channels(of users: [String], granting service: ServiceName, now: Date) async throws -> [String] {
        // Picked where they are remembered: under fan-out, copying each record only to keep its
        // channel id was a twentieth of a delivery's cost.
        try await live(of: users, now: now) { Self.grants($0, service) ? $0.channelID : nil }
    }

    /// The live subscriptions of `users`.
    func live(of users: [String], now: Date) async throws -> [StoredSubscription] {
        try await live(of: users, now: now) { $0 }
    }

    /// What `pick` takes of each live subscription of `users`.
    private func live<T>(of users: [String], now: Date, _ pick: (StoredSubscription) -> T?) async throws -> [T] {
        guard !users.isEmpty else { return [] }
        guard remembers else { return try await store.subscriptions(of: users, now: now).compactMap(pick) }
        var picked: [T] = []
        var unknown: [String] = []
        let generation = remembered.withLock { remembered in
            for user in users {
                if let known = remembered.users[user] {
                    for record in known where record.expiresAt > now {
                        if let value = pick(record) { picked.append(value) }
                    }
                } else {
                    unknown.append(user)
                }
            }
            return remembered.generation
        }
        guard !unknown.isEmpty else { return picked }
        let read = try await store.subscriptions(of: unknown, now: now)
        remembered.withLock { remembered in
            guard remembered.generation == generation else { return }
            if remembered.users.count + unknown.count > Remembered.capacity { remembered.users = [:] }
            for user in unknown { remembered.users[user] = [] }
            for record in read { remembered.users[record.username, default: []].append(record) }
        }
        return picked + read.compactMap(pick)
    }

    /// The channels of those of `records` that were granted `service`.
    static func channels(of records: [StoredSubscription], granting service: ServiceName) -> [String] {
        records.compactMap { grants($0, service) ? $0.channelID : nil }
    }

    private static func grants(_ record: StoredSubscription, _ service: ServiceName) -> Bool {
        record.services.contains { ServiceName($0).denotes(service) }
    }

    /// Creates a subscription. At the session limit, `forceLogOut` evicts the user's oldest
    /// sessions (returned, for `gone`); without it the request is refused.
    func subscribe(user: String, services: [ServiceName], expires: Int?, forceLogOut: Bool, now: Date)
        async throws(PlatformError) -> (created: StoredSubscription, evicted: [StoredSubscription])
    {
        let granted = try Self.grant(services)
        let lifetime = policy.grant(expires)
        let record = StoredSubscription(
            id: RandomIdentifier.make(), username: user, channelID: RandomIdentifier.make(),
            services: granted.map(\.rawValue), expires: lifetime, expiresAt: now + TimeInterval(lifetime),
            createdAt: now)
        let limit = policy.maxSessionsPerUser
        do {
            let evicted = try await store.insertSubscription(record, now: now) { live in
                let excess = live + 1 - limit
                guard excess > 0 else { return 0 }
                guard forceLogOut else {
                    throw PlatformError(
                        .sessionLimitReached,
                        "\(user) already holds \(live) session(s), the limit; subscribe with forceLogOut to end the oldest."
                    )
                }
                return excess
            }
            changed([user])
            return (record, evicted)
        } catch let error as PlatformError {
            throw error
        } catch {
            changed([user])  // whether it was stored is unknown
            throw PlatformError.store("The subscription could not be stored.", error)
        }
    }

    /// Refreshes a subscription and replaces its services (the periodic PUT sends the same ones).
    func refresh(user: String, id: String, services: [ServiceName], expires: Int?, now: Date)
        async throws(PlatformError) -> StoredSubscription
    {
        let granted = try Self.grant(services)
        let record: StoredSubscription?
        defer { changed([user]) }
        do {
            record = try await store.refreshSubscription(
                id: id, of: user, services: granted.map(\.rawValue), expires: policy.grant(expires), now: now)
        } catch {
            throw PlatformError.store("The subscription could not be stored.", error)
        }
        guard let record else { throw Self.notFound(id, user) }
        return record
    }

    /// Ends a subscription at the client's request.
    func unsubscribe(user: String, id: String, now: Date) async throws(PlatformError) -> StoredSubscription {
        let record: StoredSubscription?
        defer { changed([user]) }
        do {
            record = try await store.deleteSubscription(id: id, of: user, now: now)
        } catch {
            throw PlatformError.store("The subscription could not be removed.", error)
        }
        guard let record else { throw Self.notFound(id, user) }
        return record
    }

    /// Removes and returns every subscription whose lifetime ran out; with several nodes, each
    /// expired subscription is returned to one of them only.
    func expire(now: Date) async throws -> [StoredSubscription] {
        let expired = try await store.deleteExpiredSubscriptions(now: now)
        if !expired.isEmpty { changed(expired.map(\.username)) }
        return expired
    }

    private static func notFound(_ id: String, _ user: String) -> PlatformError {
        PlatformError(.subscriptionNotFound, "No subscription \(id) for \(user): unknown, expired or ended.")
    }

    /// The granted services: known names, in the client's spelling, without duplicates.
    static func grant(_ requested: [ServiceName]) throws(PlatformError) -> [ServiceName] {
        var granted: [ServiceName] = []
        for name in requested where name.canonical != nil && !granted.contains(where: { $0.denotes(name) }) {
            granted.append(name)
        }
        guard !granted.isEmpty else {
            throw PlatformError(
                .noGrantableService,
                "None of the requested services can be granted; this platform offers "
                    + ServiceName.grantable.map(\.rawValue).joined(separator: ", ") + ".")
        }
        return granted
    }
}
