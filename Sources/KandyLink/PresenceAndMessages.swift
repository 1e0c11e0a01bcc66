import Foundation
import KandyLinkProtocol

/// What is known of a user's presence: from a `presenceWatcher` notification or a fetch.
public struct UserPresence: Sendable, Equatable {
    public var userId: String
    public var status: PresenceStatus
    public var activity: PresenceActivity
    public var note: String?

    public init(userId: String, state: PresenceState) {
        self.userId = userId
        self.status = state.status
        self.activity = state.activity
        self.note = state.note
    }
}

/// One instant message, sent or received.
public struct InstantMessage: Sendable, Equatable {
    public enum Direction: Sendable, Equatable {
        case incoming, outgoing
    }

    /// The platform's id: `imResponse.messageId` when sent, the notification's eventId when
    /// received (the two are the same message's id).
    public var id: String
    public var sender: String
    public var recipient: String
    public var text: String
    /// When the platform accepted it (received), or when the send was answered (sent).
    public var timestamp: Date
    public var direction: Direction

    /// The other party of the conversation this message belongs to.
    public var peer: String { direction == .incoming ? sender : recipient }
}

/// `kandy.presence`: publish your presence, watch others' (spec §12.1).
public struct Presence: Sendable {
    let session: KandySession
    let snapshot: KandySession.SnapshotBox

    /// Publishes your presence. Emits `presence:selfChange`, or `presence:error` and throws.
    /// An unknown status or activity fails here (`presence:1`, `presence:2`) without a request.
    public func update(_ status: PresenceStatus, activity: PresenceActivity, note: String? = nil) async throws {
        try await session.updatePresence(PresenceState(status: status, activity: activity, note: note))
    }

    /// Starts watching `users`: `presence:subscribe`, then a `presence:change` per user with their
    /// current presence, and another on every change.
    public func subscribe(_ users: [String]) async throws {
        _ = try await session.presenceWatcher(users, action: .watch)
    }

    /// Stops watching `users`: `presence:unsubscribe`.
    public func unsubscribe(_ users: [String]) async throws {
        _ = try await session.presenceWatcher(users, action: .stopwatch)
    }

    /// Asks once for `users`' presence: a `presence:change` per user; also returned.
    @discardableResult
    public func fetch(_ users: [String]) async throws -> [UserPresence] {
        try await session.presenceWatcher(users, action: .get)
    }

    /// The last known presence of `user`.
    public func get(_ user: String) -> UserPresence? { snapshot.state.withLock { $0.presence[user] } }

    /// Every user whose presence is known.
    public func getAll() -> [UserPresence] {
        snapshot.state.withLock { $0.presence.values.sorted { $0.userId < $1.userId } }
    }

    public static let statuses = PresenceStatus.all
    public static let activities = PresenceActivity.all
}

/// `kandy.messages`: one-to-one instant messages (spec §12.2).
public struct Messages: Sendable {
    let session: KandySession
    let snapshot: KandySession.SnapshotBox

    /// Sends `text` to `user` (a username, or `sip:<username>`). Returns the message once the
    /// platform accepted it; emits `messages:change`, or `messages:error` and throws.
    @discardableResult
    public func send(to user: String, text: String) async throws -> InstantMessage {
        try await session.sendMessage(to: user, text: text)
    }

    /// The messages exchanged with `user`, oldest first (the latest ``conversationLength``).
    public func conversation(with user: String) -> [InstantMessage] {
        snapshot.state.withLock { $0.conversations[user] ?? [] }
    }

    /// Everyone a message was exchanged with.
    public func peers() -> [String] { snapshot.state.withLock { $0.conversations.keys.sorted() } }

    /// Messages kept per conversation.
    public static let conversationLength = 200
}

// MARK: The session's presence and messages

extension KandySession {
    func updatePresence(_ state: PresenceState) async throws {
        try checkAlive()
        var state = state
        if state.note?.isEmpty == true { state.note = nil }  // as Kandy.js: a note only if non-empty
        do throws(KandyError) {
            guard state.status.isKnown else {
                throw KandyError(.invalidPresenceStatus, "Invalid status in presence update request.")
            }
            guard state.activity.isKnown else {
                throw KandyError(.invalidPresenceActivity, "Invalid activity in presence update request.")
            }
            _ = try await request(
                "POST", LinkPath.presence(user:), body: PresenceRequestDocument(presenceRequest: state),
                as: PresenceResponseDocument.self, failure: .presenceFailure, verb: "update presence")
        } catch {
            observers.emit(.presenceError(error))
            throw error
        }
        observers.emit(.presenceSelfChange(state))
    }

    func presenceWatcher(_ users: [String], action: PresenceWatcherAction) async throws -> [UserPresence] {
        try checkAlive()
        let answer: PresenceWatcherResponseDocument
        do {
            answer = try await request(
                "POST", LinkPath.presenceWatcher(user:),
                body: PresenceWatcherRequestDocument(presenceWatcherRequest: .init(userList: users, action: action)),
                as: PresenceWatcherResponseDocument.self, failure: .presenceFailure,
                verb: "\(action.rawValue) presence")
        } catch {
            observers.emit(.presenceError(error))
            throw error
        }
        switch action {
        case .watch: observers.emit(.presenceSubscribe(users))
        case .stopwatch: observers.emit(.presenceUnsubscribe(users))
        case .get: break
        }
        let fetched = (answer.presenceContact ?? []).map { UserPresence(userId: $0.presentityUserId, state: $0.state) }
        for presence in fetched { learned(presence) }
        return fetched
    }

    func sendMessage(to destination: String, text: String) async throws -> InstantMessage {
        try checkAlive()
        let recipient = InstantMessageRequest(toUrl: destination, message: text).recipient
        let id: String
        do throws(KandyError) {
            guard !recipient.isEmpty else { throw KandyError(.invalidDestination, "A message needs a recipient.") }
            let answer = try await request(
                "POST", LinkPath.instantMessage(user:),
                body: InstantMessageRequestDocument(imRequest: .init(toUrl: recipient, message: text)),
                as: InstantMessageResponseDocument.self, failure: .sendMessageFailure, verb: "send message")
            guard let messageId = answer.imResponse.messageId else {
                throw KandyError(
                    .sendMessageFailure, "Failed to send message: the platform's answer has no messageId.")
            }
            id = messageId
        } catch {
            observers.emit(.messagesError(error))
            throw error
        }
        let message = InstantMessage(
            id: id, sender: auth.credentials?.username ?? "", recipient: recipient, text: text,
            timestamp: wallClock(), direction: .outgoing)
        record(message)
        return message
    }

    func learned(_ presence: UserPresence) {
        snapshot.state.withLock { $0.presence[presence.userId] = presence }
        observers.emit(.presenceChange(presence))
    }

    func record(_ message: InstantMessage) {
        snapshot.state.withLock { state in
            state.conversations[message.peer, default: []].append(message)
            if state.conversations[message.peer]!.count > Messages.conversationLength {
                state.conversations[message.peer]!.removeFirst()
            }
        }
        observers.emit(.messagesChange(message))
    }
}
