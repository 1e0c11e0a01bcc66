import Foundation
import KandyLinkProtocol
import Synchronization

/// The platform's subscriptions: the rules of subscribe, refresh, unsubscribe, `forceLogOut`
/// and expiry, held in memory for fast lookups and written through to the store, which is what a
/// restart reloads.
///
/// Mutations run under one lock together with their store write, so a user's session count can
/// never be overtaken by a concurrent subscribe. Sockets are not touched here: callers act on
/// what each operation returns (who was evicted or expired).
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

    private struct State {
        var byID: [String: SubscriptionRecord] = [:]
        var idByChannel: [String: String] = [:]
        /// Each user's subscription ids, oldest first.
        var idsByUser: [String: [String]] = [:]

        mutating func insert(_ record: SubscriptionRecord) {
            byID[record.id] = record
            idByChannel[record.channelID] = record.id
            idsByUser[record.username, default: []].append(record.id)
        }

        @discardableResult
        mutating func remove(_ id: String) -> SubscriptionRecord? {
            guard let record = byID.removeValue(forKey: id) else { return nil }
            idByChannel[record.channelID] = nil
            idsByUser[record.username]?.removeAll { $0 == id }
            if idsByUser[record.username]?.isEmpty == true { idsByUser[record.username] = nil }
            return record
        }
    }

    let policy: Policy
    private let store: any PlatformStore
    private let state = Mutex(State())

    init(store: any PlatformStore, policy: Policy) throws {
        self.store = store
        self.policy = policy
        let records = try store.subscriptions()
        state.withLock { state in
            for record in records { state.insert(record) }
        }
    }

    var count: Int { state.withLock { $0.byID.count } }

    /// The live subscription whose channel this is.
    func subscription(channelID: String, now: Date) -> SubscriptionRecord? {
        state.withLock { state in
            state.idByChannel[channelID].flatMap { state.byID[$0] }.flatMap { $0.expiresAt > now ? $0 : nil }
        }
    }

    /// The channels of `user`'s live subscriptions that were granted `service`: where its
    /// notifications go.
    func channels(of user: String, granting service: ServiceName, now: Date) -> [String] {
        state.withLock { state in
            guard let ids = state.idsByUser[user] else { return [] }
            return ids.compactMap { id in
                guard let record = state.byID[id], record.expiresAt > now,
                    record.services.contains(where: { ServiceName($0).denotes(service) })
                else { return nil }
                return record.channelID
            }
        }
    }

    /// Whether `user` holds a live subscription.
    func isOnline(_ user: String, now: Date) -> Bool {
        state.withLock { state in
            (state.idsByUser[user] ?? []).contains { state.byID[$0].map { $0.expiresAt > now } ?? false }
        }
    }

    /// Creates a subscription. At the session limit, `forceLogOut` evicts the user's oldest
    /// sessions (returned, for `gone`); without it the request is refused.
    func subscribe(user: String, services: [ServiceName], expires: Int?, forceLogOut: Bool, now: Date)
        throws(PlatformError) -> (created: SubscriptionRecord, evicted: [SubscriptionRecord])
    {
        let granted = try Self.grant(services)
        let lifetime = policy.grant(expires)
        let record = SubscriptionRecord(
            id: RandomIdentifier.make(), username: user, channelID: RandomIdentifier.make(),
            services: granted.map(\.rawValue), expires: lifetime, expiresAt: now + TimeInterval(lifetime),
            createdAt: now)
        return try state.withLock { state throws(PlatformError) in
            let live = (state.idsByUser[user] ?? []).compactMap { state.byID[$0] }.filter { $0.expiresAt > now }
            let excess = live.count + 1 - policy.maxSessionsPerUser
            var evicted: [SubscriptionRecord] = []
            if excess > 0 {
                guard forceLogOut else {
                    throw PlatformError(
                        .sessionLimitReached,
                        "\(user) already holds \(live.count) session(s), the limit; subscribe with forceLogOut to end the oldest."
                    )
                }
                evicted = Array(live.prefix(excess))
            }
            do {
                try store.insertSubscription(record, evicting: evicted.map(\.id))
            } catch {
                throw PlatformError(.internalError, "The subscription could not be stored.")
            }
            for old in evicted { state.remove(old.id) }
            state.insert(record)
            return (record, evicted)
        }
    }

    /// Refreshes a subscription and replaces its services (the periodic PUT sends the same ones).
    func refresh(user: String, id: String, services: [ServiceName], expires: Int?, now: Date)
        throws(PlatformError) -> SubscriptionRecord
    {
        let granted = try Self.grant(services)
        return try state.withLock { state throws(PlatformError) in
            guard var record = state.byID[id], record.username == user, record.expiresAt > now else {
                throw PlatformError(
                    .subscriptionNotFound, "No subscription \(id) for \(user): unknown, expired or ended.")
            }
            record.services = granted.map(\.rawValue)
            record.expires = policy.grant(expires)
            record.expiresAt = now + TimeInterval(record.expires)
            do {
                try store.updateSubscription(record)
            } catch {
                throw PlatformError(.internalError, "The subscription could not be stored.")
            }
            state.byID[id] = record
            return record
        }
    }

    /// Ends a subscription at the client's request.
    func unsubscribe(user: String, id: String, now: Date) throws(PlatformError) -> SubscriptionRecord {
        try state.withLock { state throws(PlatformError) in
            guard let record = state.byID[id], record.username == user, record.expiresAt > now else {
                throw PlatformError(
                    .subscriptionNotFound, "No subscription \(id) for \(user): unknown, expired or ended.")
            }
            do {
                try store.deleteSubscriptions([id])
            } catch {
                throw PlatformError(.internalError, "The subscription could not be removed.")
            }
            state.remove(id)
            return record
        }
    }

    /// Removes and returns every subscription whose lifetime ran out.
    func expire(now: Date) throws -> [SubscriptionRecord] {
        try state.withLock { state in
            let expired = state.byID.values.filter { $0.expiresAt <= now }
            guard !expired.isEmpty else { return [] }
            try store.deleteSubscriptions(expired.map(\.id))
            for record in expired { state.remove(record.id) }
            return expired
        }
    }

    /// Drops a removed user's subscriptions from memory (the store already cascaded).
    func forget(user: String) -> [SubscriptionRecord] {
        state.withLock { state in
            (state.idsByUser[user] ?? []).compactMap { state.remove($0) }
        }
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
