import Foundation
import GRDB
import KandyLinkProtocol

/// The embedded store: one SQLite file in WAL mode, schema in versioned migrations.
///
/// Reads run on the caller's thread: an indexed read of a local file is shorter than the hop to
/// GRDB's queue and back (which halved the instant-message rate). Writes queue behind each other
/// on GRDB's writer without blocking the caller.
public final class SQLiteStore: PlatformStore {
    let pool: DatabasePool

    public init(path: String) throws {
        var configuration = Configuration()
        configuration.busyMode = .timeout(5)
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = NORMAL")
        }
        do {
            let directory = URL(fileURLWithPath: path).deletingLastPathComponent()
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            pool = try DatabasePool(path: path, configuration: configuration)
            try Self.migrator.migrate(pool)
        } catch {
            throw StoreError.cannotOpen(
                path: path, reason: (error as? DatabaseError)?.message ?? error.localizedDescription)
        }
    }

    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("1: users, subscriptions, secrets") { db in
            try db.execute(
                sql: """
                    CREATE TABLE user (
                        username TEXT PRIMARY KEY NOT NULL,
                        authname TEXT UNIQUE,
                        password_hash TEXT NOT NULL,
                        created_at DOUBLE NOT NULL
                    );
                    CREATE TABLE subscription (
                        id TEXT PRIMARY KEY NOT NULL,
                        username TEXT NOT NULL REFERENCES user(username) ON DELETE CASCADE,
                        channel_id TEXT NOT NULL UNIQUE,
                        services TEXT NOT NULL,
                        expires INTEGER NOT NULL,
                        expires_at DOUBLE NOT NULL,
                        created_at DOUBLE NOT NULL
                    );
                    CREATE INDEX subscription_username ON subscription(username);
                    CREATE TABLE secret (
                        name TEXT PRIMARY KEY NOT NULL,
                        value BLOB NOT NULL
                    );
                    CREATE TABLE counter (
                        name TEXT PRIMARY KEY NOT NULL,
                        value INTEGER NOT NULL
                    );
                    """)
        }
        migrator.registerMigration("2: presence and watch lists") { db in
            try db.execute(
                sql: """
                    CREATE TABLE presence (
                        username TEXT PRIMARY KEY NOT NULL REFERENCES user(username) ON DELETE CASCADE,
                        status TEXT NOT NULL,
                        activity TEXT NOT NULL,
                        note TEXT,
                        updated_at DOUBLE NOT NULL
                    );
                    CREATE TABLE presence_watch (
                        watcher TEXT NOT NULL REFERENCES user(username) ON DELETE CASCADE,
                        presentity TEXT NOT NULL REFERENCES user(username) ON DELETE CASCADE,
                        PRIMARY KEY (watcher, presentity)
                    ) WITHOUT ROWID;
                    CREATE INDEX presence_watch_presentity ON presence_watch(presentity, watcher);
                    """)
        }
        migrator.registerMigration("3: notification queues") { db in
            try db.execute(
                sql: """
                    CREATE TABLE queued_notification (
                        channel_id TEXT NOT NULL REFERENCES subscription(channel_id) ON DELETE CASCADE,
                        event_id INTEGER NOT NULL,
                        body TEXT,
                        bytes INTEGER NOT NULL,
                        missed INTEGER NOT NULL DEFAULT 0,
                        PRIMARY KEY (channel_id, event_id)
                    ) WITHOUT ROWID;
                    CREATE TABLE notification_queue (
                        channel_id TEXT PRIMARY KEY NOT NULL REFERENCES subscription(channel_id) ON DELETE CASCADE,
                        count INTEGER NOT NULL,
                        bytes INTEGER NOT NULL
                    ) WITHOUT ROWID;
                    """)
        }
        migrator.registerMigration("4: subscriptions by expiry") { db in
            try db.execute(sql: "CREATE INDEX subscription_expires_at ON subscription(expires_at)")
        }
        migrator.registerMigration("5: calls") { db in
            try db.execute(
                sql: """
                    CREATE TABLE call (
                        id TEXT PRIMARY KEY NOT NULL,
                        caller TEXT NOT NULL REFERENCES user(username) ON DELETE CASCADE,
                        callee TEXT NOT NULL REFERENCES user(username) ON DELETE CASCADE,
                        rings_until DOUBLE,
                        record TEXT NOT NULL
                    );
                    CREATE INDEX call_caller ON call(caller);
                    CREATE INDEX call_callee ON call(callee);
                    CREATE INDEX call_rings_until ON call(rings_until) WHERE rings_until IS NOT NULL;
                    """)
        }
        migrator.registerMigration("6: profiles, directory, address books, call history") { db in
            try db.execute(
                sql: """
                    ALTER TABLE user ADD COLUMN profile TEXT;
                    CREATE TABLE user_search (
                        kind INTEGER NOT NULL,
                        term TEXT NOT NULL,
                        username TEXT NOT NULL REFERENCES user(username) ON DELETE CASCADE,
                        PRIMARY KEY (kind, term, username)
                    ) WITHOUT ROWID;
                    CREATE INDEX user_search_username ON user_search(username);
                    CREATE TABLE contact (
                        owner TEXT NOT NULL REFERENCES user(username) ON DELETE CASCADE,
                        contact_id TEXT NOT NULL,
                        entry TEXT NOT NULL,
                        PRIMARY KEY (owner, contact_id)
                    ) WITHOUT ROWID;
                    CREATE TABLE call_log (
                        owner TEXT NOT NULL REFERENCES user(username) ON DELETE CASCADE,
                        record_id TEXT NOT NULL,
                        started_at INTEGER NOT NULL,
                        entry TEXT NOT NULL,
                        PRIMARY KEY (owner, record_id)
                    ) WITHOUT ROWID;
                    CREATE INDEX call_log_started ON call_log(owner, started_at);
                    """)
            // Users from before profiles are found by their username.
            for username in try String.fetchAll(db, sql: "SELECT username FROM user") {
                try Self.index(username, UserProfile(), in: db)
            }
        }
        migrator.registerMigration("7: live subscriptions counted from the index") { db in
            try db.execute(sql: "CREATE INDEX subscription_live ON subscription(username, expires_at)")
        }
        return migrator
    }

    public var isShared: Bool { false }
    /// A file on this node is always there; a full disk shows up as an error of a write.
    public var isReachable: Bool { true }

    static func isUnavailability(_ error: any Error) -> Bool {
        guard let error = error as? DatabaseError else { return false }
        return [.SQLITE_FULL, .SQLITE_IOERR, .SQLITE_BUSY, .SQLITE_LOCKED, .SQLITE_READONLY, .SQLITE_CANTOPEN]
            .contains(error.resultCode)
    }

    /// A read on the caller's thread (see above), without a transaction around it: each read is
    /// one statement, or statements whose answers need not be of one instant.
    func readNow<T>(_ body: (Database) throws -> T) throws -> T {
        try pool.unsafeRead(body)
    }

    public func addUser(_ user: UserRecord) async throws {
        try await pool.write { db in
            if try Bool.fetchOne(
                db.cachedStatement(sql: "SELECT 1 FROM user WHERE username = ?"), arguments: [user.username]) != nil
            {
                throw StoreError.userExists(user.username)
            }
            if let authname = user.authname,
                try Bool.fetchOne(
                    db.cachedStatement(sql: "SELECT 1 FROM user WHERE authname = ? OR username = ?"),
                    arguments: [authname, authname])
                    != nil
            {
                throw StoreError.authnameTaken(authname)
            }
            try db.cachedStatement(
                sql:
                    "INSERT INTO user (username, authname, password_hash, created_at, profile) VALUES (?, ?, ?, ?, ?)"
            ).execute(
                arguments: [
                    user.username, user.authname, user.passwordHash, user.createdAt.timeIntervalSince1970,
                    try StoredJSON.encode(user.profile),
                ])
            try Self.index(user.username, user.profile, in: db)
        }
    }

    public func user(login: String) async throws -> UserRecord? {
        try readNow { db in
            let row =
                try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM user WHERE username = ?"), arguments: [login])
                ?? Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM user WHERE authname = ?"), arguments: [login])
            return try row.map(Self.user)
        }
    }

    public func users() async throws -> [UserRecord] {
        try readNow { db in
            try Row.fetchAll(db.cachedStatement(sql: "SELECT * FROM user ORDER BY username")).map(Self.user)
        }
    }

    public func removeUser(_ username: String) async throws -> Bool {
        try await pool.write { db in
            try db.cachedStatement(sql: "DELETE FROM subscription WHERE username = ?").execute(arguments: [username])
            try db.cachedStatement(sql: "DELETE FROM user WHERE username = ?").execute(arguments: [username])
            return db.changesCount > 0
        }
    }

    public func setPasswordHash(_ hash: String, for username: String) async throws -> Bool {
        try await pool.write { db in
            try db.cachedStatement(sql: "UPDATE user SET password_hash = ? WHERE username = ?").execute(arguments: [
                hash, username,
            ])
            return db.changesCount > 0
        }
    }

    public func insertSubscription(
        _ subscription: StoredSubscription, now: Date,
        evicting evict: @escaping @Sendable (_ liveCount: Int) throws -> Int
    ) async throws -> [StoredSubscription] {
        try await pool.write { db in
            let live =
                try Int.fetchOne(
                    db.cachedStatement(
                        sql: "SELECT count(*) FROM subscription WHERE username = ? AND expires_at > ?"),
                    arguments: [subscription.username, now.timeIntervalSince1970]) ?? 0
            let excess = try evict(live)
            let evicted =
                excess > 0
                ? try Row.fetchAll(
                    db.cachedStatement(
                        sql: """
                            SELECT * FROM subscription WHERE username = ? AND expires_at > ?
                            ORDER BY created_at, rowid LIMIT ?
                            """),
                    arguments: [subscription.username, now.timeIntervalSince1970, excess]
                ).map(Self.subscription) : []
            for record in evicted {
                try db.cachedStatement(sql: "DELETE FROM subscription WHERE id = ?").execute(arguments: [record.id])
            }
            try db.cachedStatement(
                sql: """
                    INSERT INTO subscription (id, username, channel_id, services, expires, expires_at, created_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?)
                    """
            ).execute(
                arguments: [
                    subscription.id, subscription.username, subscription.channelID,
                    try StoredServices.encode(subscription.services), subscription.expires,
                    subscription.expiresAt.timeIntervalSince1970, subscription.createdAt.timeIntervalSince1970,
                ])
            return evicted
        }
    }

    public func refreshSubscription(id: String, of username: String, services: [String], expires: Int, now: Date)
        async throws -> StoredSubscription?
    {
        try await pool.write { db in
            try db.cachedStatement(
                sql: """
                    UPDATE subscription SET services = ?, expires = ?, expires_at = ?
                    WHERE id = ? AND username = ? AND expires_at > ?
                    """
            ).execute(
                arguments: [
                    try StoredServices.encode(services), expires, (now + TimeInterval(expires)).timeIntervalSince1970,
                    id, username, now.timeIntervalSince1970,
                ])
            guard db.changesCount > 0 else { return nil }
            return try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM subscription WHERE id = ?"), arguments: [id])
                .map(Self.subscription)
        }
    }

    public func deleteSubscription(id: String, of username: String, now: Date) async throws -> StoredSubscription? {
        try await pool.write { db in
            try Row.fetchOne(
                db.cachedStatement(
                    sql: "DELETE FROM subscription WHERE id = ? AND username = ? AND expires_at > ? RETURNING *"),
                arguments: [id, username, now.timeIntervalSince1970]
            ).map(Self.subscription)
        }
    }

    public func deleteExpiredSubscriptions(now: Date) async throws -> [StoredSubscription] {
        try await pool.write { db in
            try Row.fetchAll(
                db.cachedStatement(sql: "DELETE FROM subscription WHERE expires_at <= ? RETURNING *"),
                arguments: [now.timeIntervalSince1970]
            ).map(Self.subscription)
        }
    }

    public func subscription(channelID: String, now: Date) async throws -> StoredSubscription? {
        try readNow { db in
            try Row.fetchOne(
                db.cachedStatement(sql: "SELECT * FROM subscription WHERE channel_id = ? AND expires_at > ?"),
                arguments: [channelID, now.timeIntervalSince1970]
            ).map(Self.subscription)
        }
    }

    public func subscriptions(of usernames: [String], now: Date) async throws -> [StoredSubscription] {
        try readNow { db in try Self.liveSubscriptions(of: usernames, now: now, in: db) }
    }

    public func subscriptionCount(now: Date) async throws -> Int {
        try readNow { db in
            try Int.fetchOne(
                db.cachedStatement(sql: "SELECT count(*) FROM subscription WHERE expires_at > ?"),
                arguments: [now.timeIntervalSince1970]) ?? 0
        }
    }

    /// Oldest first; subscriptions made in the same instant in the order they were made.
    private static func liveSubscriptions(of usernames: [String], now: Date, in db: Database) throws
        -> [StoredSubscription]
    {
        let names = Array(Set(usernames))
        guard !names.isEmpty else { return [] }
        let placeholders = Array(repeating: "?", count: names.count).joined(separator: ", ")
        // Hot (every instant message and presence change): the statement is prepared once.
        return try Row.fetchAll(
            db.cachedStatement(
                sql: """
                    SELECT * FROM subscription WHERE username IN (\(placeholders)) AND expires_at > ?
                    ORDER BY created_at, rowid
                    """),
            arguments: StatementArguments(
                names.map { $0 as any DatabaseValueConvertible } + [now.timeIntervalSince1970])
        ).map(Self.subscription)
    }

    private static func subscription(_ row: Row) throws -> StoredSubscription {
        StoredSubscription(
            id: row["id"], username: row["username"], channelID: row["channel_id"],
            services: try StoredServices.decode(row["services"]), expires: row["expires"],
            expiresAt: Date(timeIntervalSince1970: row["expires_at"]),
            createdAt: Date(timeIntervalSince1970: row["created_at"]))
    }

    public func existingUsers(_ names: [String]) async throws -> Set<String> {
        try readNow { db in
            var found = Set<String>()
            for name in Set(names)
            where try Bool.fetchOne(db.cachedStatement(sql: "SELECT 1 FROM user WHERE username = ?"), arguments: [name])
                != nil
            {
                found.insert(name)
            }
            return found
        }
    }

    public func setPresence(_ state: PresenceState, for username: String, at time: Date) async throws {
        try await pool.write { db in
            try db.cachedStatement(
                sql: """
                    INSERT INTO presence (username, status, activity, note, updated_at) VALUES (?, ?, ?, ?, ?)
                    ON CONFLICT(username) DO UPDATE SET
                        status = excluded.status, activity = excluded.activity, note = excluded.note,
                        updated_at = excluded.updated_at
                    """
            ).execute(
                arguments: [
                    username, state.status.rawValue, state.activity.rawValue, state.note, time.timeIntervalSince1970,
                ])
        }
    }

    public func setOfflineUnlessSubscribed(_ username: String, at time: Date) async throws -> Bool {
        let offline = PresenceState.offline
        return try await pool.write { db in
            try db.cachedStatement(
                sql: """
                    UPDATE presence SET status = ?, activity = ?, note = NULL, updated_at = ?
                    WHERE username = ? AND NOT (status = ? AND activity = ? AND note IS NULL)
                    AND NOT EXISTS (SELECT 1 FROM subscription WHERE username = ? AND expires_at > ?)
                    """
            ).execute(
                arguments: [
                    offline.status.rawValue, offline.activity.rawValue, time.timeIntervalSince1970, username,
                    offline.status.rawValue, offline.activity.rawValue, username, time.timeIntervalSince1970,
                ])
            return db.changesCount > 0
        }
    }

    public func presence(of usernames: [String]) async throws -> [String: PresenceState] {
        try readNow { db in
            var found: [String: PresenceState] = [:]
            for name in Set(usernames) {
                guard
                    let row = try Row.fetchOne(
                        db.cachedStatement(sql: "SELECT status, activity, note FROM presence WHERE username = ?"),
                        arguments: [name])
                else { continue }
                found[name] = PresenceState(
                    status: PresenceStatus(rawValue: row["status"]),
                    activity: PresenceActivity(rawValue: row["activity"]),
                    note: row["note"])
            }
            return found
        }
    }

    public func watch(_ presentities: [String], by watcher: String, limit: Int) async throws -> Bool {
        do {
            try await addWatches(presentities, by: watcher, limit: limit)
            return true
        } catch is WatchLimitExceeded {
            return false
        }
    }

    /// Throwing out of the write rolls its inserts back: the list stays as it was.
    private func addWatches(_ presentities: [String], by watcher: String, limit: Int) async throws {
        try await pool.write { db in
            for presentity in presentities {
                try db.cachedStatement(sql: "INSERT OR IGNORE INTO presence_watch (watcher, presentity) VALUES (?, ?)")
                    .execute(
                        arguments: [watcher, presentity])
            }
            let count =
                try Int.fetchOne(
                    db.cachedStatement(sql: "SELECT count(*) FROM presence_watch WHERE watcher = ?"),
                    arguments: [watcher])
                ?? 0
            if count > limit { throw WatchLimitExceeded() }
        }
    }

    private struct WatchLimitExceeded: Error {}

    public func unwatch(_ presentities: [String], by watcher: String) async throws {
        try await pool.write { db in
            for presentity in presentities {
                try db.cachedStatement(sql: "DELETE FROM presence_watch WHERE watcher = ? AND presentity = ?").execute(
                    arguments: [watcher, presentity])
            }
        }
    }

    public func watchers(of presentity: String) async throws -> [String] {
        try readNow { db in
            try String.fetchAll(
                db.cachedStatement(sql: "SELECT watcher FROM presence_watch WHERE presentity = ? ORDER BY watcher"),
                arguments: [presentity])
        }
    }

    public func enqueue(channelID: String, eventID: UInt64, text: String, bound: QueueBound) async throws -> Bool {
        try await pool.write { db in
            guard
                try Bool.fetchOne(
                    db.cachedStatement(sql: "SELECT 1 FROM subscription WHERE channel_id = ?"), arguments: [channelID])
                    != nil
            else { return false }
            let size = text.utf8.count
            try db.cachedStatement(
                sql: "INSERT INTO queued_notification (channel_id, event_id, body, bytes) VALUES (?, ?, ?, ?)"
            ).execute(
                arguments: [channelID, Int64(eventID), text, size])
            let totals = try Row.fetchOne(
                db.cachedStatement(sql: "SELECT count, bytes FROM notification_queue WHERE channel_id = ?"),
                arguments: [channelID])
            var trim = QueueTrim(
                count: totals?["count"] ?? 0, bytes: totals?["bytes"] ?? 0, adding: size, bound: bound)
            while trim.isOver,
                let oldest = try Row.fetchOne(
                    db,
                    sql: """
                        SELECT event_id, bytes FROM queued_notification
                        WHERE channel_id = ? AND body IS NOT NULL ORDER BY event_id LIMIT 1
                        """,
                    arguments: [channelID])
            {
                let eventID: Int64 = oldest["event_id"]
                try db.cachedStatement(sql: "DELETE FROM queued_notification WHERE channel_id = ? AND event_id = ?")
                    .execute(arguments: [channelID, eventID])
                trim.drop(eventID: UInt64(eventID), bytes: oldest["bytes"])
            }
            if trim.dropped > 0 {
                let earlier = try Row.fetchOne(
                    db.cachedStatement(
                        sql: "SELECT event_id, missed FROM queued_notification WHERE channel_id = ? AND body IS NULL"),
                    arguments: [channelID])
                if let earlier {
                    try db.cachedStatement(sql: "DELETE FROM queued_notification WHERE channel_id = ? AND event_id = ?")
                        .execute(arguments: [channelID, earlier["event_id"] as Int64])
                }
                if let marker = trim.marker(earlierMissed: earlier?["missed"] ?? 0) {
                    try db.execute(
                        sql: """
                            INSERT INTO queued_notification (channel_id, event_id, body, bytes, missed)
                            VALUES (?, ?, NULL, 0, ?)
                            """,
                        arguments: [channelID, Int64(marker.eventID), marker.missed])
                }
            }
            try db.cachedStatement(
                sql: """
                    INSERT INTO notification_queue (channel_id, count, bytes) VALUES (?, ?, ?)
                    ON CONFLICT(channel_id) DO UPDATE SET count = excluded.count, bytes = excluded.bytes
                    """
            ).execute(
                arguments: [channelID, trim.count, trim.bytes])
            return true
        }
    }

    public func queued(channelID: String) async throws -> [QueuedNotification] {
        try readNow { db in
            try Row.fetchAll(
                db,
                sql: "SELECT event_id, body, missed FROM queued_notification WHERE channel_id = ? ORDER BY event_id",
                arguments: [channelID]
            ).map { row in
                QueuedNotification(eventID: UInt64(row["event_id"] as Int64), text: row["body"], missed: row["missed"])
            }
        }
    }

    public func dequeue(channelID: String, through eventID: UInt64) async throws {
        try await pool.write { db in
            try db.cachedStatement(sql: "DELETE FROM queued_notification WHERE channel_id = ? AND event_id <= ?")
                .execute(
                    arguments: [channelID, Int64(eventID)])
            let left = try Row.fetchOne(
                db,
                sql: """
                    SELECT count(*) AS count, coalesce(sum(bytes), 0) AS bytes FROM queued_notification
                    WHERE channel_id = ? AND body IS NOT NULL
                    """,
                arguments: [channelID])
            let count: Int = left?["count"] ?? 0
            if count == 0 {
                try db.cachedStatement(sql: "DELETE FROM notification_queue WHERE channel_id = ?").execute(arguments: [
                    channelID
                ])
            } else {
                try db.cachedStatement(sql: "UPDATE notification_queue SET count = ?, bytes = ? WHERE channel_id = ?")
                    .execute(
                        arguments: [count, left?["bytes"] ?? 0, channelID])
            }
        }
    }

    // MARK: Calls

    public func insertCall(_ call: CallRecord) async throws -> Bool {
        let record = try StoredCall.encode(call)
        return try await pool.write { db in
            let busy = try Bool.fetchOne(
                db.cachedStatement(sql: "SELECT 1 FROM call WHERE caller = ? OR callee = ? LIMIT 1"),
                arguments: [call.callee, call.callee])
            guard busy == nil else { return false }
            try db.cachedStatement(
                sql: "INSERT INTO call (id, caller, callee, rings_until, record) VALUES (?, ?, ?, ?, ?)"
            ).execute(arguments: [call.id, call.caller, call.callee, call.ringsUntil?.timeIntervalSince1970, record])
            return true
        }
    }

    public func call(id: String) async throws -> CallRecord? {
        try readNow { db in
            try String.fetchOne(db.cachedStatement(sql: "SELECT record FROM call WHERE id = ?"), arguments: [id])
                .map(StoredCall.decode)
        }
    }

    public func updateCall(id: String, _ change: @escaping @Sendable (inout CallRecord) throws -> Void) async throws
        -> CallRecord?
    {
        try await pool.write { db in
            guard
                var call = try String.fetchOne(
                    db.cachedStatement(sql: "SELECT record FROM call WHERE id = ?"), arguments: [id]
                ).map(StoredCall.decode)
            else { return nil }
            try change(&call)
            try db.cachedStatement(sql: "UPDATE call SET rings_until = ?, record = ? WHERE id = ?").execute(
                arguments: [call.ringsUntil?.timeIntervalSince1970, try StoredCall.encode(call), id])
            return call
        }
    }

    public func deleteCall(id: String) async throws -> CallRecord? {
        try await pool.write { db in
            try String.fetchOne(
                db.cachedStatement(sql: "DELETE FROM call WHERE id = ? RETURNING record"), arguments: [id]
            ).map(StoredCall.decode)
        }
    }

    public func deleteUnansweredCalls(now: Date) async throws -> [CallRecord] {
        try await pool.write { db in
            try String.fetchAll(
                db.cachedStatement(sql: "DELETE FROM call WHERE rings_until <= ? RETURNING record"),
                arguments: [now.timeIntervalSince1970]
            ).map(StoredCall.decode)
        }
    }

    public func calls(of username: String) async throws -> [CallRecord] {
        try readNow { db in
            try String.fetchAll(
                db.cachedStatement(sql: "SELECT record FROM call WHERE caller = ? OR callee = ?"),
                arguments: [username, username]
            ).map(StoredCall.decode)
        }
    }

    public func callCount() async throws -> Int {
        try readNow { db in try Int.fetchOne(db.cachedStatement(sql: "SELECT count(*) FROM call")) ?? 0 }
    }

    public func secret(_ name: String, make: @escaping @Sendable () -> [UInt8]) async throws -> [UInt8] {
        try await pool.write { db in
            if let existing = try Data.fetchOne(
                db.cachedStatement(sql: "SELECT value FROM secret WHERE name = ?"), arguments: [name])
            {
                return Array(existing)
            }
            let value = make()
            try db.cachedStatement(sql: "INSERT INTO secret (name, value) VALUES (?, ?)").execute(arguments: [
                name, Data(value),
            ])
            return value
        }
    }

    public func reserveEventIDs(_ count: UInt64) async throws -> UInt64 {
        try await pool.write { db in
            let current =
                try Int64.fetchOne(db.cachedStatement(sql: "SELECT value FROM counter WHERE name = 'event'")) ?? 0
            try db.cachedStatement(sql: "INSERT OR REPLACE INTO counter (name, value) VALUES ('event', ?)").execute(
                arguments: [current + Int64(count)])
            return UInt64(current) + 1
        }
    }

    static func user(_ row: Row) throws -> UserRecord {
        UserRecord(
            username: row["username"], authname: row["authname"], passwordHash: row["password_hash"],
            createdAt: Date(timeIntervalSince1970: row["created_at"]), profile: try StoredJSON.profile(row["profile"]))
    }

    public func signal(_ signal: NodeSignal) async throws {}

    /// No other node shares the file: a stream that stays silent until its consumer stops.
    public func signals() -> AsyncStream<NodeSignal> {
        AsyncStream { _ in }
    }

    /// No other node shares the file: nothing to listen for.
    public func listen(onListening: @escaping @Sendable () -> Void) async {
        onListening()
    }

    public func close() async {}
}

/// Granted services as stored: a JSON array, in the client's spelling.
enum StoredServices {
    static func encode(_ services: [String]) throws -> String {
        String(decoding: try JSONEncoder().encode(services), as: UTF8.self)
    }

    static func decode(_ text: String) throws -> [String] {
        try decoder.decode([String].self, from: Data(text.utf8))
    }

    /// Decoding is read-only and a decoder is costly to make (every delivery decodes).
    private static let decoder = JSONDecoder()
}
