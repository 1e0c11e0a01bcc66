import Foundation
import KandyLinkProtocol

/// A user of the platform. Only a slow salted hash of the password is kept.
public struct UserRecord: Sendable, Equatable {
    public var username: String
    /// An alternative login name for Basic credentials (spec §2 rule 2).
    public var authname: String?
    public var passwordHash: String
    public var createdAt: Date

    public init(username: String, authname: String? = nil, passwordHash: String, createdAt: Date) {
        self.username = username
        self.authname = authname
        self.passwordHash = passwordHash
        self.createdAt = createdAt
    }
}

/// A subscription as stored: enough to answer PUT/DELETE and accept the channel after a restart.
public struct SubscriptionRecord: Sendable, Equatable {
    public var id: String
    public var username: String
    public var channelID: String
    /// Granted services, spelled as the client asked.
    public var services: [String]
    /// Granted lifetime in seconds.
    public var expires: Int
    public var expiresAt: Date
    public var createdAt: Date

    public init(
        id: String, username: String, channelID: String, services: [String], expires: Int, expiresAt: Date,
        createdAt: Date
    ) {
        self.id = id
        self.username = username
        self.channelID = channelID
        self.services = services
        self.expires = expires
        self.expiresAt = expiresAt
        self.createdAt = createdAt
    }
}

/// A notification kept for a channel whose socket was down, or the marker standing for those
/// dropped from a full queue.
public struct QueuedNotification: Sendable, Equatable {
    public var eventID: UInt64
    /// The wire text; nil for the marker.
    public var text: String?
    /// For the marker: how many were dropped.
    public var missed: Int

    public init(eventID: UInt64, text: String?, missed: Int = 0) {
        self.eventID = eventID
        self.text = text
        self.missed = missed
    }
}

/// How much a channel's queue holds; beyond it the oldest are dropped.
public struct QueueBound: Sendable, Equatable {
    public var count: Int
    public var bytes: Int

    public init(count: Int, bytes: Int) {
        self.count = count
        self.bytes = bytes
    }
}

public enum StoreError: Error, Equatable, Sendable, CustomStringConvertible {
    case userExists(String)
    case authnameTaken(String)
    case cannotOpen(path: String, reason: String)

    public var description: String {
        switch self {
        case .userExists(let name): "A user \(name) already exists."
        case .authnameTaken(let name): "The authname \(name) is already someone's login."
        case .cannotOpen(let path, let reason): "Cannot open the database \(path): \(reason)"
        }
    }
}

/// Durable state of the platform. One protocol, so a PostgreSQL store can stand beside SQLite.
/// Calls are synchronous and short; each is one transaction.
public protocol PlatformStore: Sendable {
    func addUser(_ user: UserRecord) throws
    /// The user whose username, or else authname, is `login`.
    func user(login: String) throws -> UserRecord?
    func users() throws -> [UserRecord]
    /// Removes the user and their subscriptions; false if there was none.
    func removeUser(_ username: String) throws -> Bool
    func setPasswordHash(_ hash: String, for username: String) throws -> Bool

    /// Inserts `subscription` and deletes `evicted` in one transaction.
    func insertSubscription(_ subscription: SubscriptionRecord, evicting evicted: [String]) throws
    func updateSubscription(_ subscription: SubscriptionRecord) throws
    func deleteSubscriptions(_ ids: [String]) throws
    func subscriptions() throws -> [SubscriptionRecord]

    /// The usernames among `names` that belong to users.
    func existingUsers(_ names: [String]) throws -> Set<String>

    /// Records a user's published presence.
    func setPresence(_ state: PresenceState, for username: String, at time: Date) throws
    /// The last published presence of each of `usernames` that ever published one.
    func presence(of usernames: [String]) throws -> [String: PresenceState]
    /// Adds `presentities` to `watcher`'s watch list unless it would then hold more than `limit`;
    /// false (and no change) when it would.
    func watch(_ presentities: [String], by watcher: String, limit: Int) throws -> Bool
    func unwatch(_ presentities: [String], by watcher: String) throws
    /// Who watches `presentity`.
    func watchers(of presentity: String) throws -> [String]

    /// Appends a notification to a channel's queue, dropping the oldest beyond `bound` (they
    /// become one marker). False when the channel's subscription no longer exists.
    func enqueue(channelID: String, eventID: UInt64, text: String, bound: QueueBound) throws -> Bool
    /// The channel's queue, oldest first.
    func queued(channelID: String) throws -> [QueuedNotification]
    /// Forgets the channel's queued notifications up to and including `eventID`.
    func dequeue(channelID: String, through eventID: UInt64) throws

    /// A named secret, created with `make` on first use and kept from then on.
    func secret(_ name: String, make: () -> [UInt8]) throws -> [UInt8]
    /// Reserves `count` event ids and returns the first; ids never repeat across restarts.
    func reserveEventIDs(_ count: UInt64) throws -> UInt64
}
