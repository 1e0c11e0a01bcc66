import Foundation
import KandyLinkProtocol

/// Presence and instant messages (spec §12.1–§12.2): what the REST endpoints do once the request
/// is authenticated and decoded. Notifications go only to channels whose subscription was granted
/// the service (`Presence` or `IM`).
extension Platform {
    // MARK: Delivery

    /// Sends one notification, encoded once, to every live channel of `users` granted `service`;
    /// a channel without a socket here queues it. Returns its eventId and how many sockets here took it.
    @discardableResult
    func deliver(to users: [String], service: ServiceName, _ make: (String) -> NotificationMessage) async throws
        -> (eventID: UInt64, sockets: Int)
    {
        try await deliver(
            toChannels: subscriptions.channels(of: users, granting: service, now: clock.now()), make)
    }

    /// Sends one notification, encoded once, to these channels. Those whose socket is not here
    /// queue it, and the other nodes are told: the one holding the socket writes it.
    @discardableResult
    func deliver(toChannels channelIDs: [String], _ make: (String) -> NotificationMessage) async throws -> (
        eventID: UInt64, sockets: Int
    ) {
        let (eventID, text) = try await notification(make)
        let now = clock.now()
        var sockets = 0
        var queued: [String] = []
        for channelID in channelIDs {
            switch try await hub.deliver(text, eventID: eventID, to: channelID, now: now) {
            case .sent: sockets += 1
            case .queued: queued.append(channelID)
            case .dropped: break
            }
        }
        metrics.notificationsSent.increment(by: Int64(sockets))
        metrics.notificationsQueued.increment(by: Int64(queued.count))
        await signal(.queued(queued))
        return (eventID, sockets)
    }

    // MARK: Presence

    /// Publishes `user`'s presence and tells every watcher.
    func updatePresence(of user: String, to state: PresenceState) async throws(PlatformError) {
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
        try await storing("The presence could not be stored.") {
            try await store.setPresence(state, for: user, at: clock.now())
        }
        try await publish(state, of: user)
    }

    /// Acts on a watcher request; for `get`, returns the presences asked for.
    func presenceWatcher(_ request: PresenceWatcherRequest, by watcher: String) async throws(PlatformError)
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
            try await storing("The watch list could not be stored.") { try await store.unwatch(users, by: watcher) }
            return nil
        }
        try await requireUsers(users)
        let known = try await storing("Presence could not be read.") { try await store.presence(of: users) }
        switch request.action {
        case .get:
            return users.map { PresenceContact(user: $0, state: known[$0] ?? .offline) }
        case .watch:
            let added = try await storing("The watch list could not be stored.") {
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
                _ = try? await deliver(toChannels: channels) {
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
        let watchers = try await storing("The watchers could not be read.") { try await store.watchers(of: user) }
        guard !watchers.isEmpty else { return }
        try await storing("The presence notification could not be made.") {
            try await deliver(to: watchers, service: .presence) { .presence(eventId: $0, user: user, state: state) }
        }
    }

    // MARK: Instant messages

    /// Delivers a message to every `IM` channel of its recipient; returns the message's id.
    func sendInstantMessage(_ request: InstantMessageRequest, from sender: String) async throws(PlatformError) -> String
    {
        if let charset = request.charset, charset.uppercased() != "UTF-8" {
            throw PlatformError(.invalidField, "imRequest.charset must be UTF-8.")
        }
        let recipient = request.recipient
        guard LinkRoute.isAcceptableUsername(recipient) else {
            throw PlatformError(.invalidField, "imRequest.toUrl must name a user.")
        }
        guard !request.message.isEmpty else {
            throw PlatformError(.invalidField, "imRequest.message is empty.")
        }
        let size = request.message.utf8.count
        guard size <= configuration.maxMessageBytes else {
            throw PlatformError(
                .messageTooLarge, "The message is \(size) bytes; at most \(configuration.maxMessageBytes) are accepted."
            )
        }
        let now = clock.now()
        let live = try await storing("The recipient's sessions could not be read.") {
            try await subscriptions.live(of: [recipient], now: now)
        }
        let channels = Subscriptions.channels(of: live, granting: .im)
        if channels.isEmpty {
            // A user with a live subscription exists; only otherwise ask the store.
            if live.isEmpty { try await requireUsers([recipient]) }
            // Said now rather than accepted and never delivered: messages are kept only for sessions.
            throw PlatformError(
                .recipientUnavailable, "\(recipient) has no session subscribed to IM; the message was not sent.")
        }
        let time = now.milliseconds
        let (eventID, _) = try await storing("The message could not be delivered.") {
            try await deliver(toChannels: channels) {
                .instantMessage(eventId: $0, from: sender, text: request.message, time: time)
            }
        }
        metrics.instantMessages.increment()
        return String(eventID)
    }

    // MARK: Pieces

    private func requireUsers(_ users: [String]) async throws(PlatformError) {
        let existing = try await storing("Users could not be read.") { try await store.existingUsers(users) }
        let missing = users.filter { !existing.contains($0) }
        guard missing.isEmpty else {
            throw PlatformError(
                .userNotFound,
                "No such user: " + missing.prefix(5).joined(separator: ", ") + (missing.count > 5 ? ", …" : "")
                    + ".")
        }
    }

    /// Runs a store operation; its failure is the platform's, reported without detail.
    @discardableResult
    private func storing<T>(_ failure: String, _ work: () async throws -> T) async throws(PlatformError) -> T {
        do {
            return try await work()
        } catch let error as PlatformError {
            throw error
        } catch {
            logger.error("\(failure)", metadata: ["error": "\(error)"])
            throw PlatformError(.internalError, failure)
        }
    }
}
