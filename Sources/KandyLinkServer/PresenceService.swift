import Foundation
import KandyLinkProtocol
import Logging

/// Presence (spec §12.1): users publish their state, watchers are told of it on channels granted
/// `Presence`, and a user whose last session ends goes offline.
final class PresenceService: Sendable {
    private let store: any PlatformStore
    private let subscriptions: Subscriptions
    private let delivery: NotificationDelivery
    private let configuration: PlatformConfiguration
    private let clock: any PlatformClock
    private let logger: Logger

    init(
        store: any PlatformStore, subscriptions: Subscriptions, delivery: NotificationDelivery,
        configuration: PlatformConfiguration, clock: any PlatformClock, logger: Logger
    ) {
        self.store = store
        self.subscriptions = subscriptions
        self.delivery = delivery
        self.configuration = configuration
        self.clock = clock
        self.logger = logger
    }

    /// Publishes `user`'s presence and tells every watcher.
    func update(of user: String, to state: PresenceState) async throws(PlatformError) {
        var state = state
        guard state.status.isKnown else {
            throw PlatformError(
                .invalidField,
                "presenceRequest.status must be one of \(PresenceStatus.all.map(\.rawValue).joined(separator: ", ")).")
        }
        guard state.activity.isKnown else {
            throw PlatformError(
                .invalidField,
                "presenceRequest.activity must be one of "
                    + PresenceActivity.all.map(\.rawValue).joined(separator: ", ") + ".")
        }
        if state.note?.isEmpty == true { state.note = nil }
        if let note = state.note, note.utf8.count > configuration.maxNoteBytes {
            throw PlatformError(.invalidField, "presenceRequest.note is at most \(configuration.maxNoteBytes) bytes.")
        }
        try await storing("The presence could not be stored.", logger: logger) {
            try await store.setPresence(state, for: user, at: clock.now())
        }
        try await publish(state, of: user)
    }

    /// Acts on a watcher request; for `get`, returns the presences asked for.
    func watcher(_ request: PresenceWatcherRequest, by watcher: String) async throws(PlatformError)
        -> [PresenceContact]?
    {
        guard !request.userList.isEmpty else {
            throw PlatformError(.invalidField, "presenceWatcherRequest.userList is empty.")
        }
        guard request.userList.count <= configuration.maxUserListCount else {
            throw PlatformError(
                .invalidField, "presenceWatcherRequest.userList names at most \(configuration.maxUserListCount) users.")
        }
        var users: [String] = []
        for user in request.userList where !users.contains(user) { users.append(user) }
        guard users.allSatisfy(LinkRoute.isAcceptableUsername) else {
            throw PlatformError(.invalidField, "presenceWatcherRequest.userList holds a malformed username.")
        }
        if request.action == .stopwatch {
            try await storing("The watch list could not be stored.", logger: logger) {
                try await store.unwatch(users, by: watcher)
            }
            return nil
        }
        try await store.requireUsers(users, logger: logger)
        let known = try await storing("Presence could not be read.", logger: logger) {
            try await store.presence(of: users)
        }
        switch request.action {
        case .get:
            return users.map { PresenceContact(user: $0, state: known[$0] ?? .offline) }
        case .watch:
            let added = try await storing("The watch list could not be stored.", logger: logger) {
                try await store.watch(users, by: watcher, limit: configuration.maxWatchedUsers)
            }
            guard added else {
                throw PlatformError(
                    .invalidField, "A user may watch at most \(configuration.maxWatchedUsers) users.")
            }
            // As a SIP SUBSCRIBE is answered with a NOTIFY: the watcher learns the current state.
            let channels =
                (try? await subscriptions.channels(of: [watcher], granting: .presence, now: clock.now())) ?? []
            for user in users where !channels.isEmpty {
                _ = try? await delivery.deliver(toChannels: channels) {
                    .presence(eventId: $0, user: user, state: known[user] ?? .offline)
                }
            }
            return nil
        case .stopwatch:
            return nil
        }
    }

    /// A user's last session ended: watchers see them go offline (told once, by one node, if
    /// several end sessions of the user at once).
    func sessionsEnded(for user: String) async {
        do {
            guard try await store.setOfflineUnlessSubscribed(user, at: clock.now()) else { return }
            try await publish(.offline, of: user)
        } catch {
            logger.error("Presence could not be set offline", metadata: ["user": .string(user), "error": "\(error)"])
        }
    }

    private func publish(_ state: PresenceState, of user: String) async throws(PlatformError) {
        let watchers = try await storing("The watchers could not be read.", logger: logger) {
            try await store.watchers(of: user)
        }
        guard !watchers.isEmpty else { return }
        try await storing("The presence notification could not be made.", logger: logger) {
            try await delivery.deliver(to: watchers, service: .presence) {
                .presence(eventId: $0, user: user, state: state)
            }
        }
    }
}
