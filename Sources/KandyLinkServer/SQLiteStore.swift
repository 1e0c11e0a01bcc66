import Foundation
import GRDB
import KandyLinkProtocol

/// The embedded store: one SQLite file in WAL mode, schema in versioned migrations.
public final class SQLiteStore: PlatformStore {
    private let pool: DatabasePool

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
        return migrator
    }

    public func addUser(_ user: UserRecord) throws {
        try pool.write { db in
            if try Bool.fetchOne(db, sql: "SELECT 1 FROM user WHERE username = ?", arguments: [user.username]) != nil {
                throw StoreError.userExists(user.username)
            }
            if let authname = user.authname,
                try Bool.fetchOne(
                    db, sql: "SELECT 1 FROM user WHERE authname = ? OR username = ?", arguments: [authname, authname])
                    != nil
            {
                throw StoreError.authnameTaken(authname)
            }
            try db.execute(
                sql: "INSERT INTO user (username, authname, password_hash, created_at) VALUES (?, ?, ?, ?)",
                arguments: [user.username, user.authname, user.passwordHash, user.createdAt.timeIntervalSince1970])
        }
    }

    public func user(login: String) throws -> UserRecord? {
        try pool.read { db in
            let row =
                try Row.fetchOne(db, sql: "SELECT * FROM user WHERE username = ?", arguments: [login])
                ?? Row.fetchOne(db, sql: "SELECT * FROM user WHERE authname = ?", arguments: [login])
            return row.map(Self.user)
        }
    }

    public func users() throws -> [UserRecord] {
        try pool.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM user ORDER BY username").map(Self.user)
        }
    }

    public func removeUser(_ username: String) throws -> Bool {
        try pool.write { db in
            try db.execute(sql: "DELETE FROM subscription WHERE username = ?", arguments: [username])
            try db.execute(sql: "DELETE FROM user WHERE username = ?", arguments: [username])
            return db.changesCount > 0
        }
    }

    public func setPasswordHash(_ hash: String, for username: String) throws -> Bool {
        try pool.write { db in
            try db.execute(sql: "UPDATE user SET password_hash = ? WHERE username = ?", arguments: [hash, username])
            return db.changesCount > 0
        }
    }

    public func insertSubscription(_ subscription: SubscriptionRecord, evicting evicted: [String]) throws {
        try pool.write { db in
            for id in evicted {
                try db.execute(sql: "DELETE FROM subscription WHERE id = ?", arguments: [id])
            }
            try db.execute(
                sql: """
                    INSERT INTO subscription (id, username, channel_id, services, expires, expires_at, created_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [
                    subscription.id, subscription.username, subscription.channelID,
                    try Self.encode(subscription.services), subscription.expires,
                    subscription.expiresAt.timeIntervalSince1970, subscription.createdAt.timeIntervalSince1970,
                ])
        }
    }

    public func updateSubscription(_ subscription: SubscriptionRecord) throws {
        try pool.write { db in
            try db.execute(
                sql: "UPDATE subscription SET services = ?, expires = ?, expires_at = ? WHERE id = ?",
                arguments: [
                    try Self.encode(subscription.services), subscription.expires,
                    subscription.expiresAt.timeIntervalSince1970, subscription.id,
                ])
        }
    }

    public func deleteSubscriptions(_ ids: [String]) throws {
        guard !ids.isEmpty else { return }
        try pool.write { db in
            for id in ids {
                try db.execute(sql: "DELETE FROM subscription WHERE id = ?", arguments: [id])
            }
        }
    }

    public func subscriptions() throws -> [SubscriptionRecord] {
        try pool.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM subscription ORDER BY created_at, id").map { row in
                SubscriptionRecord(
                    id: row["id"], username: row["username"], channelID: row["channel_id"],
                    services: try Self.decode(row["services"]), expires: row["expires"],
                    expiresAt: Date(timeIntervalSince1970: row["expires_at"]),
                    createdAt: Date(timeIntervalSince1970: row["created_at"]))
            }
        }
    }

    public func existingUsers(_ names: [String]) throws -> Set<String> {
        try pool.read { db in
            var found = Set<String>()
            for name in Set(names)
            where try Bool.fetchOne(db, sql: "SELECT 1 FROM user WHERE username = ?", arguments: [name]) != nil {
                found.insert(name)
            }
            return found
        }
    }

    public func setPresence(_ state: PresenceState, for username: String, at time: Date) throws {
        try pool.write { db in
            try db.execute(
                sql: """
                    INSERT INTO presence (username, status, activity, note, updated_at) VALUES (?, ?, ?, ?, ?)
                    ON CONFLICT(username) DO UPDATE SET
                        status = excluded.status, activity = excluded.activity, note = excluded.note,
                        updated_at = excluded.updated_at
                    """,
                arguments: [
                    username, state.status.rawValue, state.activity.rawValue, state.note, time.timeIntervalSince1970,
                ])
        }
    }

    public func presence(of usernames: [String]) throws -> [String: PresenceState] {
        try pool.read { db in
            var found: [String: PresenceState] = [:]
            for name in Set(usernames) {
                guard
                    let row = try Row.fetchOne(
                        db, sql: "SELECT status, activity, note FROM presence WHERE username = ?", arguments: [name])
                else { continue }
                found[name] = PresenceState(
                    status: PresenceStatus(rawValue: row["status"]),
                    activity: PresenceActivity(rawValue: row["activity"]),
                    note: row["note"])
            }
            return found
        }
    }

    public func watch(_ presentities: [String], by watcher: String, limit: Int) throws -> Bool {
        do {
            try addWatches(presentities, by: watcher, limit: limit)
            return true
        } catch is WatchLimitExceeded {
            return false
        }
    }

    /// Throwing out of the write rolls its inserts back: the list stays as it was.
    private func addWatches(_ presentities: [String], by watcher: String, limit: Int) throws {
        try pool.write { db in
            for presentity in presentities {
                try db.execute(
                    sql: "INSERT OR IGNORE INTO presence_watch (watcher, presentity) VALUES (?, ?)",
                    arguments: [watcher, presentity])
            }
            let count =
                try Int.fetchOne(db, sql: "SELECT count(*) FROM presence_watch WHERE watcher = ?", arguments: [watcher])
                ?? 0
            if count > limit { throw WatchLimitExceeded() }
        }
    }

    private struct WatchLimitExceeded: Error {}

    public func unwatch(_ presentities: [String], by watcher: String) throws {
        try pool.write { db in
            for presentity in presentities {
                try db.execute(
                    sql: "DELETE FROM presence_watch WHERE watcher = ? AND presentity = ?",
                    arguments: [watcher, presentity])
            }
        }
    }

    public func watchers(of presentity: String) throws -> [String] {
        try pool.read { db in
            try String.fetchAll(
                db, sql: "SELECT watcher FROM presence_watch WHERE presentity = ? ORDER BY watcher",
                arguments: [presentity])
        }
    }

    public func enqueue(channelID: String, eventID: UInt64, text: String, bound: QueueBound) throws -> Bool {
        try pool.write { db in
            guard
                try Bool.fetchOne(db, sql: "SELECT 1 FROM subscription WHERE channel_id = ?", arguments: [channelID])
                    != nil
            else { return false }
            let size = text.utf8.count
            try db.execute(
                sql: "INSERT INTO queued_notification (channel_id, event_id, body, bytes) VALUES (?, ?, ?, ?)",
                arguments: [channelID, Int64(eventID), text, size])
            let totals = try Row.fetchOne(
                db, sql: "SELECT count, bytes FROM notification_queue WHERE channel_id = ?", arguments: [channelID])
            var count: Int = (totals?["count"] ?? 0) + 1
            var bytes: Int = (totals?["bytes"] ?? 0) + size
            var dropped = 0
            var newestDropped: Int64 = 0
            while count > bound.count || bytes > bound.bytes,
                let oldest = try Row.fetchOne(
                    db,
                    sql: """
                        SELECT event_id, bytes FROM queued_notification
                        WHERE channel_id = ? AND body IS NOT NULL ORDER BY event_id LIMIT 1
                        """,
                    arguments: [channelID])
            {
                newestDropped = oldest["event_id"]
                try db.execute(
                    sql: "DELETE FROM queued_notification WHERE channel_id = ? AND event_id = ?",
                    arguments: [channelID, newestDropped])
                count -= 1
                bytes -= oldest["bytes"] as Int
                dropped += 1
            }
            if dropped > 0 {
                // One marker stands for every dropped notification, with the newest dropped id,
                // so it sorts before the notifications that were kept.
                let marker = try Row.fetchOne(
                    db, sql: "SELECT event_id, missed FROM queued_notification WHERE channel_id = ? AND body IS NULL",
                    arguments: [channelID])
                if let marker {
                    try db.execute(
                        sql: "DELETE FROM queued_notification WHERE channel_id = ? AND event_id = ?",
                        arguments: [channelID, marker["event_id"] as Int64])
                }
                try db.execute(
                    sql:
                        "INSERT INTO queued_notification (channel_id, event_id, body, bytes, missed) VALUES (?, ?, NULL, 0, ?)",
                    arguments: [channelID, newestDropped, (marker?["missed"] ?? 0) + dropped])
            }
            try db.execute(
                sql: """
                    INSERT INTO notification_queue (channel_id, count, bytes) VALUES (?, ?, ?)
                    ON CONFLICT(channel_id) DO UPDATE SET count = excluded.count, bytes = excluded.bytes
                    """,
                arguments: [channelID, count, bytes])
            return true
        }
    }

    public func queued(channelID: String) throws -> [QueuedNotification] {
        try pool.read { db in
            try Row.fetchAll(
                db,
                sql: "SELECT event_id, body, missed FROM queued_notification WHERE channel_id = ? ORDER BY event_id",
                arguments: [channelID]
            ).map { row in
                QueuedNotification(eventID: UInt64(row["event_id"] as Int64), text: row["body"], missed: row["missed"])
            }
        }
    }

    public func dequeue(channelID: String, through eventID: UInt64) throws {
        try pool.write { db in
            try db.execute(
                sql: "DELETE FROM queued_notification WHERE channel_id = ? AND event_id <= ?",
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
                try db.execute(sql: "DELETE FROM notification_queue WHERE channel_id = ?", arguments: [channelID])
            } else {
                try db.execute(
                    sql: "UPDATE notification_queue SET count = ?, bytes = ? WHERE channel_id = ?",
                    arguments: [count, left?["bytes"] ?? 0, channelID])
            }
        }
    }

    public func secret(_ name: String, make: () -> [UInt8]) throws -> [UInt8] {
        try pool.write { db in
            if let existing = try Data.fetchOne(db, sql: "SELECT value FROM secret WHERE name = ?", arguments: [name]) {
                return Array(existing)
            }
            let value = make()
            try db.execute(sql: "INSERT INTO secret (name, value) VALUES (?, ?)", arguments: [name, Data(value)])
            return value
        }
    }

    public func reserveEventIDs(_ count: UInt64) throws -> UInt64 {
        try pool.write { db in
            let current = try Int64.fetchOne(db, sql: "SELECT value FROM counter WHERE name = 'event'") ?? 0
            try db.execute(
                sql: "INSERT OR REPLACE INTO counter (name, value) VALUES ('event', ?)",
                arguments: [current + Int64(count)])
            return UInt64(current) + 1
        }
    }

    private static func user(_ row: Row) -> UserRecord {
        UserRecord(
            username: row["username"], authname: row["authname"], passwordHash: row["password_hash"],
            createdAt: Date(timeIntervalSince1970: row["created_at"]))
    }

    private static func encode(_ services: [String]) throws -> String {
        String(decoding: try JSONEncoder().encode(services), as: UTF8.self)
    }

    private static func decode(_ text: String) throws -> [String] {
        try JSONDecoder().decode([String].self, from: Data(text.utf8))
    }
}
