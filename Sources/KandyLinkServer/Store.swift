import Foundation
import KandyLinkProtocol

/// A user of the platform. Only a slow salted hash of the password is kept.
public struct UserRecord: Sendable, Equatable {
    public var username: String
    /// An alternative login name for Basic credentials (spec §2 rule 2).
    public var authname: String?
    public var passwordHash: String
    public var createdAt: Date
    /// What the directory shows of them.
    public var profile: UserProfile

    public init(
        username: String, authname: String? = nil, passwordHash: String, createdAt: Date,
        profile: UserProfile = UserProfile()
    ) {
        self.username = username
        self.authname = authname
        self.passwordHash = passwordHash
        self.createdAt = createdAt
        self.profile = profile
    }
}

/// A subscription as stored: enough to answer PUT/DELETE and accept the channel after a restart.
public struct StoredSubscription: Sendable, Equatable {
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

/// A call between two users as stored, so that every node sharing the store can act on it and it
/// outlives a restart (its media never passes through the platform).
public struct CallRecord: Sendable, Equatable, Codable {
    public enum Party: String, Sendable, Codable {
        case caller, callee
    }

    /// The call session id (`sessionData`): 128 random bits, URL-safe.
    public var id: String
    public var caller: String
    public var callee: String
    /// The caller's display name, when its `from` gave one.
    public var callerName: String?
    /// The channels of each party's `call` subscriptions when the call began: its notifications
    /// go there, and a party is in the call while any of them lives.
    public var callerChannels: [String]
    public var calleeChannels: [String]
    public var createdAt: Date
    public var answeredAt: Date?
    /// An unanswered call ends then; nil once answered.
    public var ringsUntil: Date?
    /// Notifications to the caller wait until then: Kandy.js knows the session only once it has
    /// processed the callStart answer (call-protocol §3.4).
    public var callerReadyAt: Date
    /// Who has an offer out that the other side has not answered yet (the call itself, hold,
    /// unhold): a second offer meanwhile is glare.
    public var offerBy: Party?

    public init(
        id: String, caller: String, callee: String, callerName: String? = nil, callerChannels: [String],
        calleeChannels: [String], createdAt: Date, ringsUntil: Date?, callerReadyAt: Date
    ) {
        self.id = id
        self.caller = caller
        self.callee = callee
        self.callerName = callerName
        self.callerChannels = callerChannels
        self.calleeChannels = calleeChannels
        self.createdAt = createdAt
        self.ringsUntil = ringsUntil
        self.callerReadyAt = callerReadyAt
        self.offerBy = .caller
    }

    public var isAnswered: Bool { answeredAt != nil }

    /// Which side `user` is on; nil for anyone else.
    public func party(_ user: String) -> Party? {
        if user == caller { return .caller }
        if user == callee { return .callee }
        return nil
    }

    public func username(of party: Party) -> String { party == .caller ? caller : callee }
    public func channels(of party: Party) -> [String] { party == .caller ? callerChannels : calleeChannels }
}

extension CallRecord.Party {
    public var other: Self { self == .caller ? .callee : .caller }
}

/// A call as stored: JSON of the record beside the columns that are searched.
enum StoredCall {
    static func encode(_ call: CallRecord) throws -> String { try StoredJSON.encode(call) }
    static func decode(_ text: String) throws -> CallRecord { try StoredJSON.decode(CallRecord.self, text) }
}

/// A value kept as JSON text in one column (a call, a profile, a contact, a call log entry):
/// the stores search other columns, never inside it.
enum StoredJSON {
    static func encode(_ value: some Encodable) throws -> String {
        String(decoding: try JSONEncoder().encode(value), as: UTF8.self)
    }

    static func decode<T: Decodable>(_ type: T.Type, _ text: String) throws -> T {
        try decoder.decode(type, from: Data(text.utf8))
    }

    /// A user's profile; users from before profiles have none stored.
    static func profile(_ text: String?) throws -> UserProfile {
        try text.map { try decode(UserProfile.self, $0) } ?? UserProfile()
    }

    /// Decoding is read-only and a decoder is costly to make.
    private static let decoder = JSONDecoder()
}

/// A page of directory search results.
public struct DirectoryPage: Sendable, Equatable {
    public var users: [User]
    /// Whether results follow this page.
    public var moreResults: Bool

    public init(users: [User], moreResults: Bool) {
        self.users = users
        self.moreResults = moreResults
    }
}

/// What adding a contact did.
public enum ContactInsertion: Sendable, Equatable {
    case inserted
    /// The address book has a contact with that id already.
    case exists
    /// The address book holds its limit of contacts.
    case full
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
    /// The database answered what it cannot (a row just written is missing).
    case unexpected(String)

    public var description: String {
        switch self {
        case .unexpected(let what): what
        case .userExists(let name): "A user \(name) already exists."
        case .authnameTaken(let name): "The authname \(name) is already someone's login."
        case .cannotOpen(let path, let reason): "Cannot open the database \(path): \(reason)"
        }
    }
}

/// Durable state of the platform, shared by every node that uses the same database. One
/// protocol, two stores: SQLite (embedded, one node) and PostgreSQL (several nodes).
///
/// Each call is one transaction. What must hold across nodes (the session limit, who ends an
/// expired subscription) is decided inside the store's transaction, not in a node's memory.
/// Whether `error`, thrown by either store, means the database cannot serve now (connection lost,
/// disk full, shutting down): answered 503, where a fault in what was asked is a 500.
func isDatabaseUnavailability(_ error: any Error) -> Bool {
    SQLiteStore.isUnavailability(error) || PostgresStore.isUnavailability(error)
}

public protocol PlatformStore: Sendable {
    /// Whether other nodes may use this store at the same time: event ids are then drawn one by
    /// one (so they follow time across nodes) and ``signal(_:)`` reaches them.
    var isShared: Bool { get }
    /// Whether the database can be reached now, as far as the store knows without asking it: while
    /// not, requests are answered 503 at once rather than queued for a connection.
    var isReachable: Bool { get }

    func addUser(_ user: UserRecord) async throws
    /// The user whose username, or else authname, is `login`.
    func user(login: String) async throws -> UserRecord?
    func users() async throws -> [UserRecord]
    /// Removes the user and their subscriptions; false if there was none.
    func removeUser(_ username: String) async throws -> Bool
    func setPasswordHash(_ hash: String, for username: String) async throws -> Bool
    /// The usernames among `names` that belong to users.
    func existingUsers(_ names: [String]) async throws -> Set<String>

    /// Inserts `subscription` after ending as many of its user's live subscriptions, oldest
    /// first, as `evict` says given how many there are, in one transaction that concurrent
    /// subscribes of the same user (on any node) wait for. Returns the ended ones; an error thrown
    /// by `evict` leaves all as it was. The live ones are counted, not read: a subscribe costs the
    /// same whatever its user's session count.
    func insertSubscription(
        _ subscription: StoredSubscription, now: Date,
        evicting evict: @escaping @Sendable (_ liveCount: Int) throws -> Int
    ) async throws -> [StoredSubscription]
    /// Gives `username`'s live subscription `id` new services and lifetime; nil if there is none.
    func refreshSubscription(id: String, of username: String, services: [String], expires: Int, now: Date)
        async throws -> StoredSubscription?
    /// Deletes `username`'s live subscription `id` and returns it; nil if there is none.
    func deleteSubscription(id: String, of username: String, now: Date) async throws -> StoredSubscription?
    /// Deletes and returns the subscriptions expired by `now`; each is returned to one caller only.
    func deleteExpiredSubscriptions(now: Date) async throws -> [StoredSubscription]
    /// The live subscription whose channel this is.
    func subscription(channelID: String, now: Date) async throws -> StoredSubscription?
    /// The live subscriptions of `usernames`, oldest first.
    func subscriptions(of usernames: [String], now: Date) async throws -> [StoredSubscription]
    func subscriptionCount(now: Date) async throws -> Int

    /// Records a user's published presence.
    func setPresence(_ state: PresenceState, for username: String, at time: Date) async throws
    /// Records `offline` unless the user is offline already or holds a live subscription; true
    /// if it was recorded (only one of several nodes ending the last sessions at once sees true).
    func setOfflineUnlessSubscribed(_ username: String, at time: Date) async throws -> Bool
    /// The last published presence of each of `usernames` that ever published one.
    func presence(of usernames: [String]) async throws -> [String: PresenceState]
    /// Adds `presentities` to `watcher`'s watch list unless it would then hold more than `limit`;
    /// false (and no change) when it would.
    func watch(_ presentities: [String], by watcher: String, limit: Int) async throws -> Bool
    func unwatch(_ presentities: [String], by watcher: String) async throws
    /// Who watches `presentity`.
    func watchers(of presentity: String) async throws -> [String]

    /// Appends a notification to a channel's queue, dropping the oldest beyond `bound` (they
    /// become one marker). False when the channel's subscription no longer exists.
    func enqueue(channelID: String, eventID: UInt64, text: String, bound: QueueBound) async throws -> Bool
    /// The channel's queue, oldest first.
    func queued(channelID: String) async throws -> [QueuedNotification]
    /// Forgets the channel's queued notifications up to and including `eventID`.
    func dequeue(channelID: String, through eventID: UInt64) async throws

    /// Stores a new call unless its callee is already a party of a call (then false), in one
    /// transaction that a concurrent call to or from the same users waits for.
    func insertCall(_ call: CallRecord) async throws -> Bool
    func call(id: String) async throws -> CallRecord?
    /// Changes a call in one transaction; an error thrown by `change` leaves it as it was. Nil
    /// when there is no such call.
    func updateCall(id: String, _ change: @escaping @Sendable (inout CallRecord) throws -> Void) async throws
        -> CallRecord?
    /// Deletes a call and returns it; each call is returned to one caller only.
    func deleteCall(id: String) async throws -> CallRecord?
    /// Deletes and returns the unanswered calls that rang until `now` or before.
    func deleteUnansweredCalls(now: Date) async throws -> [CallRecord]
    /// The calls `username` is a party of.
    func calls(of username: String) async throws -> [CallRecord]
    func callCount() async throws -> Int

    /// Replaces `username`'s profile (and the directory's terms for it); false without such a user.
    func setProfile(_ profile: UserProfile, for username: String) async throws -> Bool
    /// The users matching `query`, by username, one page of them.
    func searchUsers(_ query: DirectoryQuery) async throws -> DirectoryPage

    /// `owner`'s address book, by contact id.
    func contacts(of owner: String) async throws -> [Contact]
    func contact(_ id: String, of owner: String) async throws -> Contact?
    /// Adds a contact unless its id is taken or the address book holds `limit` already.
    func insertContact(_ contact: Contact, of owner: String, limit: Int) async throws -> ContactInsertion
    /// Replaces the contact with the same id; false when there is none.
    func replaceContact(_ contact: Contact, of owner: String) async throws -> Bool
    func deleteContact(_ id: String, of owner: String) async throws -> Bool

    /// Adds call log entries, keeping each owner's newest `keep`.
    func appendCallLogs(_ entries: [(owner: String, log: CallLog)], keep: Int) async throws
    /// `owner`'s call log, newest first.
    func callLogs(of owner: String, startIndex: Int, count: Int) async throws -> [CallLog]
    func deleteCallLog(_ id: String, of owner: String) async throws -> Bool
    func clearCallLogs(of owner: String) async throws

    /// A named secret, created with `make` on first use and kept from then on.
    func secret(_ name: String, make: @escaping @Sendable () -> [UInt8]) async throws -> [UInt8]
    /// Reserves `count` event ids and returns the first; ids never repeat across restarts or nodes.
    func reserveEventIDs(_ count: UInt64) async throws -> UInt64

    /// Tells the other nodes sharing this store (none for an embedded store).
    func signal(_ signal: NodeSignal) async throws
    /// What other nodes signal, until the task is cancelled.
    func signals() -> AsyncStream<NodeSignal>
    /// Hears the other nodes' signals (to ``signals()``) until cancelled; `onListening` is told
    /// each time it starts to, and at once by a store no other node shares.
    func listen(onListening: @escaping @Sendable () -> Void) async
    /// Lets go of connections and files.
    func close() async
}

/// What one node tells the others about channels whose socket may be held elsewhere.
public enum NodeSignal: Sendable, Equatable {
    /// Notifications were queued for these channels: whoever holds their socket writes them.
    case queued([String])
    /// These subscriptions ended (forceLogOut, expiry, removal): send `gone` and close.
    case ended([String])
    /// These subscriptions were unsubscribed: close the socket after the grace delay.
    case unsubscribed([String])
    /// These channels' sockets are now held by the signalling node: close any other.
    case attached([String])
    /// Signals may have been missed (the store's listening connection was re-established):
    /// whatever is queued for a socket held here should be written now.
    case resume

    public var channels: [String] {
        switch self {
        case .queued(let ids), .ended(let ids), .unsubscribed(let ids), .attached(let ids): ids
        case .resume: []
        }
    }
}

/// What both stores do when a notification joins a channel's queue: the oldest notifications
/// go until the queue is within its bound, and one marker stands for all that went, with the
/// newest dropped id (so it sorts before what was kept) and their number added to an earlier
/// marker's.
struct QueueTrim: Equatable {
    let bound: QueueBound
    /// The queue's totals, the new notification included.
    private(set) var count: Int
    private(set) var bytes: Int
    private(set) var dropped = 0
    private(set) var newestDropped: UInt64 = 0

    /// `count` and `bytes`: the queue's totals before the new notification of `size` bytes.
    init(count: Int, bytes: Int, adding size: Int, bound: QueueBound) {
        self.bound = bound
        self.count = count + 1
        self.bytes = bytes + size
    }

    /// Whether the oldest notification must go.
    var isOver: Bool { count > bound.count || bytes > bound.bytes }

    mutating func drop(eventID: UInt64, bytes size: Int) {
        count -= 1
        bytes -= size
        dropped += 1
        newestDropped = eventID
    }

    /// The marker to keep, given the missed count of the one already queued (0 if none); nil
    /// when nothing was dropped.
    func marker(earlierMissed: Int) -> (eventID: UInt64, missed: Int)? {
        dropped > 0 ? (newestDropped, earlierMissed + dropped) : nil
    }
}
