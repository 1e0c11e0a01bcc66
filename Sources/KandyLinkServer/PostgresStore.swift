import Foundation
import KandyLinkProtocol
import Logging
import NIOSSL
import PostgresNIO
import Synchronization
import _ConnectionPoolModule

/// The store several nodes share: one PostgreSQL database, schema in versioned migrations, and
/// LISTEN/NOTIFY to tell the other nodes about channels whose socket they may hold.
///
/// Rules that must hold across nodes are taken inside transactions: a subscribe locks its user's
/// row (so the session limit counts every node's sessions), a queue change locks its
/// subscription's row, and `DELETE … RETURNING` hands each expired subscription to one node.
public final class PostgresStore: PlatformStore {
    public var isShared: Bool { true }
    /// Known from the node's LISTEN connection while ``listen(onListening:)`` runs: it fails as
    /// soon as the database goes away and listens again as soon as it is back.
    public var isReachable: Bool { reachable.load(ordering: .relaxed) }
    private let reachable = Atomic(true)
    /// Whether this node hears the others now (its LISTEN connection is up).
    var isListening: Bool { listenerUp.load(ordering: .relaxed) }
    private let listenerUp = Atomic(false)
    /// Told whenever listening starts or stops.
    let listenerChanges = StateChanges()

    static func isUnavailability(_ error: any Error) -> Bool {
        if error is ConnectionPoolError || error is OperationTimedOut { return true }
        guard let error = error as? PSQLError else { return false }
        switch error.code {
        case .connectionError, .serverClosedConnection, .clientClosedConnection, .poolClosed, .uncleanShutdown:
            return true
        case .server:
            // Class 08: connection exceptions; 53: out of resources (disk full, memory,
            // connections); 57P0x: shutting down, crashed, starting up; 55P03: a lock not granted
            // within lock_timeout; 57014: a statement cancelled.
            let state = error.serverInfo?[.sqlState] ?? ""
            return state.hasPrefix("08") || state.hasPrefix("53") || state.hasPrefix("57P0") || state == "55P03"
                || state == "57014"
        default:
            return false
        }
    }

    let client: PostgresClient
    /// LISTEN holds its connection for as long as the store is open, so it has one of its own
    /// rather than one of the pool's: a pool that has just found its server again must not give
    /// its first connection away for good while requests wait for one.
    private let listenerConfiguration: PostgresConnection.Configuration
    let deadline: OperationDeadline
    private let running: Task<Void, Never>
    let logger: Logger
    /// Tags this node's NOTIFY payloads, so it does not act on its own signals.
    private let node = RandomIdentifier.make()
    private let listeners = Mutex<[UInt64: AsyncStream<NodeSignal>.Continuation]>([:])
    private let nextListener = Atomic<UInt64>(0)

    /// The LISTEN/NOTIFY channel the nodes talk on.
    static let signalChannel = "kandy_link_nodes"
    /// A NOTIFY payload is at most 8000 bytes: signals about many channels are split.
    static let maxPayloadBytes = 7000

    /// Whether `database` names a PostgreSQL database rather than a SQLite file.
    public static func isURL(_ database: String) -> Bool {
        database.hasPrefix("postgres://") || database.hasPrefix("postgresql://")
    }

    /// Connects to `url` (`postgres://user:password@host:port/database`, `?sslmode=require` for
    /// TLS) and migrates the schema. It hears other nodes only while ``listen(onListening:)`` runs.
    /// `operationTimeout`: how long a request waits for any one operation (see
    /// ``OperationDeadline``); longer than the 5 s lock timeout, so a lock says so itself.
    public init(url: String, operationTimeout: Duration = .seconds(15), logger: Logger)
        async throws
    {
        self.deadline = OperationDeadline(limit: TimeAmount(operationTimeout))
        let address = try Address(url)
        let configuration = address.poolConfiguration
        self.listenerConfiguration = try address.connectionConfiguration()
        let client = PostgresClient(configuration: configuration, backgroundLogger: logger)
        self.client = client
        self.logger = logger
        // The pool runs from here to close(), not in a service group: the schema is migrated
        // now, and tools (`users add`, `Accounts`) use a store with no group running at all.
        // close() cancels it and waits for it, so nothing outlives the store.
        if #available(macOS 26.0, *) {
            self.running = Task.immediate { await client.run() }
        } else {
            self.running = Task { await client.run() }
        }
        do {
            try await Self.migrate(client, logger: logger)
        } catch {
            running.cancel()
            await running.value
            throw StoreError.cannotOpen(path: Self.redacted(url), reason: "\(String(reflecting: error))")
        }
    }

    public func close() async {
        // Finished outside the lock: finishing runs onTermination, which takes the lock.
        let open = listeners.withLock { listeners in
            defer { listeners = [:] }
            return Array(listeners.values)
        }
        for continuation in open { continuation.finish() }
        running.cancel()
        await running.value
    }

    static func configuration(_ url: String) throws -> PostgresClient.Configuration {
        try Address(url).poolConfiguration
    }

    /// What a `postgres://` URL names: the server, the credentials and how to reach it.
    struct Address {
        var host: String
        var port: Int
        var username: String
        var password: String?
        var database: String?
        var requiresTLS: Bool
        var poolSize: Int
        static let lockTimeout = "5s"

        init(_ url: String) throws {
            guard let components = URLComponents(string: url), isURL(url), let host = components.host,
                let user = components.user
            else {
                throw StoreError.cannotOpen(
                    path: redacted(url), reason: "Expected postgres://user:password@host:port/database.")
            }
            let database = String(components.path.drop { $0 == "/" })
            switch components.queryItems?.first(where: { $0.name == "sslmode" })?.value ?? "disable" {
            case "disable": requiresTLS = false
            case "require", "verify-full": requiresTLS = true
            default:
                throw StoreError.cannotOpen(path: redacted(url), reason: "sslmode must be disable or require.")
            }
            // Nodes share the server's max_connections (100 by default): with many nodes each takes
            // fewer, set as pgx and pgbouncer users spell it.
            let poolSize = components.queryItems?.first { $0.name == "pool_max_conns" }?.value
            guard let maximum = poolSize.map({ Int($0) }) ?? 16, (1...1000).contains(maximum) else {
                throw StoreError.cannotOpen(path: redacted(url), reason: "pool_max_conns must be 1–1000.")
            }
            self.host = host
            self.port = components.port ?? 5432
            self.username = user.removingPercentEncoding ?? user
            self.password = components.password.map { $0.removingPercentEncoding ?? $0 }
            self.database = database.isEmpty ? nil : database
            self.poolSize = maximum
        }

        var poolConfiguration: PostgresClient.Configuration {
            var configuration = PostgresClient.Configuration(
                host: host, port: port, username: username, password: password, database: database,
                tls: requiresTLS ? .require(.makeClientConfiguration()) : .disable)
            configuration.options.minimumConnections = 1
            configuration.options.maximumConnections = poolSize
            // A row another session keeps locked (a stuck node, an operator's open transaction)
            // fails the statement after this, answered 503, rather than holding the request, its
            // channel's turn and the node's shutdown for as long as that session lasts.
            configuration.options.additionalStartupParameters = [("lock_timeout", Self.lockTimeout)]
            return configuration
        }

        func connectionConfiguration() throws -> PostgresConnection.Configuration {
            PostgresConnection.Configuration(
                host: host, port: port, username: username, password: password, database: database,
                tls: requiresTLS ? .require(try NIOSSLContext(configuration: .makeClientConfiguration())) : .disable)
        }
    }

    /// The URL without its password, for messages.
    public static func redacted(_ url: String) -> String {
        guard var components = URLComponents(string: url), components.password != nil else { return url }
        components.password = "***"
        return components.string ?? url
    }

    // MARK: Schema

    /// Each step runs once, in order, in its own transaction; nodes starting together take turns.
    /// A step of the schema: its statements, then `then` (work SQL cannot do) in the same transaction.
    struct Migration: Sendable {
        var version: Int
        var name: String
        var sql: [String]
        var then: (@Sendable (PostgresConnection, Logger) async throws -> Void)?

        init(
            _ version: Int, _ name: String, _ sql: [String],
            then: (@Sendable (PostgresConnection, Logger) async throws -> Void)? = nil
        ) {
            self.version = version
            self.name = name
            self.sql = sql
            self.then = then
        }
    }

    static let migrations: [Migration] = [
        Migration(
            1, "users, subscriptions, secrets",
            [
                """
                CREATE TABLE platform_user (
                    username TEXT PRIMARY KEY,
                    authname TEXT UNIQUE,
                    password_hash TEXT NOT NULL,
                    created_at DOUBLE PRECISION NOT NULL
                )
                """,
                """
                CREATE TABLE subscription (
                    id TEXT PRIMARY KEY,
                    -- Orders subscriptions made in the same instant: oldest first.
                    seq BIGSERIAL NOT NULL,
                    username TEXT NOT NULL REFERENCES platform_user(username) ON DELETE CASCADE,
                    channel_id TEXT NOT NULL UNIQUE,
                    services TEXT NOT NULL,
                    expires INTEGER NOT NULL,
                    expires_at DOUBLE PRECISION NOT NULL,
                    created_at DOUBLE PRECISION NOT NULL
                )
                """,
                "CREATE INDEX subscription_username ON subscription(username)",
                "CREATE TABLE secret (name TEXT PRIMARY KEY, value BYTEA NOT NULL)",
                "CREATE SEQUENCE event_id",
            ]
        ),
        Migration(
            2, "presence and watch lists",
            [
                """
                CREATE TABLE presence (
                    username TEXT PRIMARY KEY REFERENCES platform_user(username) ON DELETE CASCADE,
                    status TEXT NOT NULL,
                    activity TEXT NOT NULL,
                    note TEXT,
                    updated_at DOUBLE PRECISION NOT NULL
                )
                """,
                """
                CREATE TABLE presence_watch (
                    watcher TEXT NOT NULL REFERENCES platform_user(username) ON DELETE CASCADE,
                    presentity TEXT NOT NULL REFERENCES platform_user(username) ON DELETE CASCADE,
                    PRIMARY KEY (watcher, presentity)
                )
                """,
                "CREATE INDEX presence_watch_presentity ON presence_watch(presentity, watcher)",
            ]
        ),
        Migration(
            3, "notification queues",
            [
                """
                CREATE TABLE queued_notification (
                    channel_id TEXT NOT NULL REFERENCES subscription(channel_id) ON DELETE CASCADE,
                    event_id BIGINT NOT NULL,
                    body TEXT,
                    bytes INTEGER NOT NULL,
                    missed INTEGER NOT NULL DEFAULT 0,
                    PRIMARY KEY (channel_id, event_id)
                )
                """,
                """
                CREATE TABLE notification_queue (
                    channel_id TEXT PRIMARY KEY REFERENCES subscription(channel_id) ON DELETE CASCADE,
                    count INTEGER NOT NULL,
                    bytes INTEGER NOT NULL
                )
                """,
            ]
        ),
        Migration(4, "subscriptions by expiry", ["CREATE INDEX subscription_expires_at ON subscription(expires_at)"]),
        Migration(
            5, "calls",
            [
                """
                CREATE TABLE call (
                    id TEXT PRIMARY KEY,
                    caller TEXT NOT NULL REFERENCES platform_user(username) ON DELETE CASCADE,
                    callee TEXT NOT NULL REFERENCES platform_user(username) ON DELETE CASCADE,
                    rings_until DOUBLE PRECISION,
                    record TEXT NOT NULL
                )
                """,
                "CREATE INDEX call_caller ON call(caller)",
                "CREATE INDEX call_callee ON call(callee)",
                "CREATE INDEX call_rings_until ON call(rings_until) WHERE rings_until IS NOT NULL",
            ]
        ),
        Migration(
            6, "profiles, directory, address books, call history",
            [
                "ALTER TABLE platform_user ADD COLUMN profile TEXT",
                // Terms compare byte by byte, so that a range is a prefix (DirectoryTerms).
                """
                CREATE TABLE user_search (
                    kind SMALLINT NOT NULL,
                    term TEXT COLLATE "C" NOT NULL,
                    username TEXT NOT NULL REFERENCES platform_user(username) ON DELETE CASCADE,
                    PRIMARY KEY (kind, term, username)
                )
                """,
                "CREATE INDEX user_search_username ON user_search(username)",
                """
                CREATE TABLE contact (
                    owner TEXT NOT NULL REFERENCES platform_user(username) ON DELETE CASCADE,
                    contact_id TEXT NOT NULL,
                    entry TEXT NOT NULL,
                    PRIMARY KEY (owner, contact_id)
                )
                """,
                """
                CREATE TABLE call_log (
                    owner TEXT NOT NULL REFERENCES platform_user(username) ON DELETE CASCADE,
                    record_id TEXT NOT NULL,
                    started_at BIGINT NOT NULL,
                    entry TEXT NOT NULL,
                    PRIMARY KEY (owner, record_id)
                )
                """,
                "CREATE INDEX call_log_started ON call_log(owner, started_at)",
            ],
            then: { connection, logger in
                // Users from before profiles are found by their username.
                var usernames: [String] = []
                for try await name in try await connection.query("SELECT username FROM platform_user", logger: logger)
                    .decode(String.self)
                {
                    usernames.append(name)
                }
                for username in usernames { try await index(username, UserProfile(), on: connection, logger: logger) }
            }
        ),
        Migration(
            7, "live subscriptions counted from the index",
            ["CREATE INDEX subscription_live ON subscription(username, expires_at)"]
        ),
    ]

    private static func migrate(_ client: PostgresClient, logger: Logger) async throws {
        try await client.withTransaction(logger: logger) { connection in
            // Held to the end of this transaction: a second node starting now waits here.
            try await connection.query("SELECT pg_advisory_xact_lock(\(Self.migrationLock))", logger: logger)
            try await connection.query(
                """
                CREATE TABLE IF NOT EXISTS schema_migration (
                    version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)
                """, logger: logger)
            var applied = Set<Int>()
            for try await version in try await connection.query(
                "SELECT version FROM schema_migration", logger: logger
            ).decode(Int.self) {
                applied.insert(version)
            }
            for migration in migrations where !applied.contains(migration.version) {
                for statement in migration.sql {
                    try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                }
                try await migration.then?(connection, logger)
                try await connection.query(
                    """
                    INSERT INTO schema_migration (version, name, applied_at)
                    VALUES (\(migration.version), \(migration.name), \(Date().timeIntervalSince1970))
                    """, logger: logger)
                logger.info("Migrated", metadata: ["version": "\(migration.version)", "name": "\(migration.name)"])
            }
        }
    }

    private static let migrationLock: Int64 = 0x6b61_6e64_796c_6e6b
    private static let eventIDLock: Int64 = 0x6b61_6e64_7965_7669

    // MARK: Users

    public func addUser(_ user: UserRecord) async throws {
        try await deadline.run { [self] in
            let profile = try StoredJSON.encode(user.profile)
            try await transaction { connection in
                if try await Self.anyRow(
                    connection.query("SELECT 1 FROM platform_user WHERE username = \(user.username)", logger: logger))
                {
                    throw StoreError.userExists(user.username)
                }
                if let authname = user.authname,
                    try await Self.anyRow(
                        connection.query(
                            "SELECT 1 FROM platform_user WHERE authname = \(authname) OR username = \(authname)",
                            logger: logger))
                {
                    throw StoreError.authnameTaken(authname)
                }
                try await connection.query(
                    """
                    INSERT INTO platform_user (username, authname, password_hash, created_at, profile)
                    VALUES (\(user.username), \(user.authname), \(user.passwordHash), \(user.createdAt.timeIntervalSince1970),
                        \(profile))
                    """, logger: logger)
                try await Self.index(user.username, user.profile, on: connection, logger: logger)
            }
        }
    }

    public func user(login: String) async throws -> UserRecord? {
        try await deadline.run { [self] in
            let rows = try await client.query(
                """
                SELECT username, authname, password_hash, created_at, profile FROM platform_user
                WHERE username = \(login) OR authname = \(login)
                ORDER BY (username = \(login)) DESC LIMIT 1
                """, logger: logger)
            return try await Self.users(rows).first
        }
    }

    public func users() async throws -> [UserRecord] {
        try await deadline.run { [self] in
            let rows = try await client.query(
                "SELECT username, authname, password_hash, created_at, profile FROM platform_user ORDER BY username",
                logger: logger)
            return try await Self.users(rows)
        }
    }

    public func removeUser(_ username: String) async throws -> Bool {
        try await deadline.run { [self] in
            try await Self.anyRow(
                client.query("DELETE FROM platform_user WHERE username = \(username) RETURNING 1", logger: logger))
        }
    }

    public func setPasswordHash(_ hash: String, for username: String) async throws -> Bool {
        try await deadline.run { [self] in
            try await Self.anyRow(
                client.query(
                    "UPDATE platform_user SET password_hash = \(hash) WHERE username = \(username) RETURNING 1",
                    logger: logger))
        }
    }

    public func existingUsers(_ names: [String]) async throws -> Set<String> {
        try await deadline.run { [self] in
            var found = Set<String>()
            for try await name in try await client.query(
                "SELECT username FROM platform_user WHERE username = ANY(\(Array(Set(names))))", logger: logger
            ).decode(String.self) {
                found.insert(name)
            }
            return found
        }
    }

    // MARK: Subscriptions

    private static let subscriptionColumns = "id, username, channel_id, services, expires, expires_at, created_at"

    public func insertSubscription(
        _ subscription: StoredSubscription, now: Date,
        evicting evict: @escaping @Sendable (_ liveCount: Int) throws -> Int
    ) async throws -> [StoredSubscription] {
        try await deadline.run { [self] in
            let services = try StoredServices.encode(subscription.services)
            return try await transaction { connection in
                // Concurrent subscribes of one user, on any node, take turns here.
                try await connection.query(
                    "SELECT 1 FROM platform_user WHERE username = \(subscription.username) FOR UPDATE", logger: logger)
                var live = 0
                for try await count in try await connection.query(
                    """
                    SELECT count(*) FROM subscription
                    WHERE username = \(subscription.username) AND expires_at > \(now.timeIntervalSince1970)
                    """, logger: logger
                ).decode(Int.self) {
                    live = count
                }
                let excess = try evict(live)
                let evicted =
                    excess > 0
                    ? try await Self.subscriptions(
                        connection.query(
                            PostgresQuery(
                                unsafeSQL: """
                                    SELECT \(Self.subscriptionColumns) FROM subscription
                                    WHERE username = $1 AND expires_at > $2 ORDER BY created_at, seq LIMIT $3
                                    """,
                                binds: try Self.binds(subscription.username, now.timeIntervalSince1970, excess)),
                            logger: logger)) : []
                if !evicted.isEmpty {
                    try await connection.query(
                        "DELETE FROM subscription WHERE id = ANY(\(evicted.map(\.id)))", logger: logger)
                }
                try await connection.query(
                    """
                    INSERT INTO subscription (id, username, channel_id, services, expires, expires_at, created_at)
                    VALUES (\(subscription.id), \(subscription.username), \(subscription.channelID), \(services),
                            \(subscription.expires), \(subscription.expiresAt.timeIntervalSince1970),
                            \(subscription.createdAt.timeIntervalSince1970))
                    """, logger: logger)
                return evicted
            }
        }
    }

    public func refreshSubscription(id: String, of username: String, services: [String], expires: Int, now: Date)
        async throws -> StoredSubscription?
    {
        try await deadline.run { [self] in
            try await Self.subscriptions(
                client.query(
                    PostgresQuery(
                        unsafeSQL: """
                            UPDATE subscription SET services = $1, expires = $2, expires_at = $3
                            WHERE id = $4 AND username = $5 AND expires_at > $6 RETURNING \(Self.subscriptionColumns)
                            """,
                        binds: try Self.binds(
                            try StoredServices.encode(services), expires,
                            (now + TimeInterval(expires)).timeIntervalSince1970, id, username, now.timeIntervalSince1970
                        )),
                    logger: logger)
            ).first
        }
    }

    public func deleteSubscription(id: String, of username: String, now: Date) async throws -> StoredSubscription? {
        try await deadline.run { [self] in
            try await Self.subscriptions(
                client.query(
                    PostgresQuery(
                        unsafeSQL: """
                            DELETE FROM subscription WHERE id = $1 AND username = $2 AND expires_at > $3
                            RETURNING \(Self.subscriptionColumns)
                            """,
                        binds: try Self.binds(id, username, now.timeIntervalSince1970)),
                    logger: logger)
            ).first
        }
    }

    public func deleteExpiredSubscriptions(now: Date) async throws -> [StoredSubscription] {
        try await deadline.run { [self] in
            try await Self.subscriptions(
                client.query(
                    PostgresQuery(
                        unsafeSQL:
                            "DELETE FROM subscription WHERE expires_at <= $1 RETURNING \(Self.subscriptionColumns)",
                        binds: try Self.binds(now.timeIntervalSince1970)),
                    logger: logger))
        }
    }

    public func subscription(channelID: String, now: Date) async throws -> StoredSubscription? {
        try await deadline.run { [self] in
            try await Self.subscriptions(
                client.query(
                    PostgresQuery(
                        unsafeSQL: """
                            SELECT \(Self.subscriptionColumns) FROM subscription WHERE channel_id = $1 AND expires_at > $2
                            """,
                        binds: try Self.binds(channelID, now.timeIntervalSince1970)),
                    logger: logger)
            ).first
        }
    }

    public func subscriptions(of usernames: [String], now: Date) async throws -> [StoredSubscription] {
        try await deadline.run { [self] in
            try await Self.subscriptions(
                client.query(
                    PostgresQuery(
                        unsafeSQL: """
                            SELECT \(Self.subscriptionColumns) FROM subscription
                            WHERE username = ANY($1) AND expires_at > $2 ORDER BY created_at, seq
                            """,
                        binds: try Self.binds(usernames, now.timeIntervalSince1970)),
                    logger: logger))
        }
    }

    public func subscriptionCount(now: Date) async throws -> Int {
        try await deadline.run { [self] in
            var count = 0
            for try await value in try await client.query(
                "SELECT count(*)::INTEGER FROM subscription WHERE expires_at > \(now.timeIntervalSince1970)",
                logger: logger
            ).decode(Int.self) {
                count = value
            }
            return count
        }
    }

    // MARK: Presence

    public func setPresence(_ state: PresenceState, for username: String, at time: Date) async throws {
        try await deadline.run { [self] in
            try await client.query(
                """
                INSERT INTO presence (username, status, activity, note, updated_at)
                VALUES (\(username), \(state.status.rawValue), \(state.activity.rawValue), \(state.note),
                        \(time.timeIntervalSince1970))
                ON CONFLICT (username) DO UPDATE SET
                    status = excluded.status, activity = excluded.activity, note = excluded.note,
                    updated_at = excluded.updated_at
                """, logger: logger)
        }
    }

    public func setOfflineUnlessSubscribed(_ username: String, at time: Date) async throws -> Bool {
        try await deadline.run { [self] in
            let offline = PresenceState.offline
            return try await Self.anyRow(
                client.query(
                    """
                    UPDATE presence SET status = \(offline.status.rawValue), activity = \(offline.activity.rawValue),
                        note = NULL, updated_at = \(time.timeIntervalSince1970)
                    WHERE username = \(username)
                    AND NOT (status = \(offline.status.rawValue) AND activity = \(offline.activity.rawValue) AND note IS NULL)
                    AND NOT EXISTS (
                        SELECT 1 FROM subscription WHERE username = \(username) AND expires_at > \(time.timeIntervalSince1970))
                    RETURNING 1
                    """, logger: logger))
        }
    }

    public func presence(of usernames: [String]) async throws -> [String: PresenceState] {
        try await deadline.run { [self] in
            var found: [String: PresenceState] = [:]
            for try await (name, status, activity, note) in try await client.query(
                "SELECT username, status, activity, note FROM presence WHERE username = ANY(\(Array(Set(usernames))))",
                logger: logger
            ).decode((String, String, String, String?).self) {
                found[name] = PresenceState(
                    status: PresenceStatus(rawValue: status), activity: PresenceActivity(rawValue: activity), note: note
                )
            }
            return found
        }
    }

    public func watch(_ presentities: [String], by watcher: String, limit: Int) async throws -> Bool {
        try await deadline.run { [self] in
            do {
                try await transaction { connection in
                    try await connection.query(
                        """
                        INSERT INTO presence_watch (watcher, presentity)
                        SELECT \(watcher), unnest(\(presentities)::TEXT[]) ON CONFLICT DO NOTHING
                        """, logger: logger)
                    var count = 0
                    for try await value in try await connection.query(
                        "SELECT count(*)::INTEGER FROM presence_watch WHERE watcher = \(watcher)", logger: logger
                    ).decode(Int.self) {
                        count = value
                    }
                    // Thrown out of the transaction: it rolls back and the list stays as it was.
                    if count > limit { throw WatchLimitExceeded() }
                }
                return true
            } catch is WatchLimitExceeded {
                return false
            }
        }
    }

    private struct WatchLimitExceeded: Error {}

    public func unwatch(_ presentities: [String], by watcher: String) async throws {
        try await deadline.run { [self] in
            try await client.query(
                "DELETE FROM presence_watch WHERE watcher = \(watcher) AND presentity = ANY(\(presentities))",
                logger: logger)
        }
    }

    public func watchers(of presentity: String) async throws -> [String] {
        try await deadline.run { [self] in
            var found: [String] = []
            for try await name in try await client.query(
                "SELECT watcher FROM presence_watch WHERE presentity = \(presentity) ORDER BY watcher", logger: logger
            ).decode(String.self) {
                found.append(name)
            }
            return found
        }
    }

    // MARK: Queues

    public func enqueue(channelID: String, eventID: UInt64, text: String, bound: QueueBound) async throws -> Bool {
        try await deadline.run { [self] in
            try await transaction { connection in
                // Enqueues and dequeues of one channel, on any node, take turns on its subscription row.
                guard
                    try await Self.anyRow(
                        connection.query(
                            "SELECT 1 FROM subscription WHERE channel_id = \(channelID) FOR UPDATE", logger: logger))
                else { return false }
                let size = text.utf8.count
                try await connection.query(
                    """
                    INSERT INTO queued_notification (channel_id, event_id, body, bytes)
                    VALUES (\(channelID), \(Int64(eventID)), \(text), \(size))
                    """, logger: logger)
                var queued = (count: 0, bytes: 0)
                for try await totals in try await connection.query(
                    "SELECT count, bytes FROM notification_queue WHERE channel_id = \(channelID)", logger: logger
                ).decode((Int, Int).self) {
                    queued = totals
                }
                var trim = QueueTrim(count: queued.count, bytes: queued.bytes, adding: size, bound: bound)
                while trim.isOver {
                    var oldest: (Int64, Int)?
                    for try await row in try await connection.query(
                        """
                        DELETE FROM queued_notification WHERE channel_id = \(channelID) AND event_id = (
                            SELECT min(event_id) FROM queued_notification
                            WHERE channel_id = \(channelID) AND body IS NOT NULL)
                        RETURNING event_id, bytes
                        """, logger: logger
                    ).decode((Int64, Int).self) {
                        oldest = row
                    }
                    guard let (eventID, size) = oldest else { break }
                    trim.drop(eventID: UInt64(eventID), bytes: size)
                }
                if trim.dropped > 0 {
                    var earlier = 0
                    for try await missed in try await connection.query(
                        """
                        DELETE FROM queued_notification WHERE channel_id = \(channelID) AND body IS NULL
                        RETURNING missed
                        """,
                        logger: logger
                    ).decode(Int.self) {
                        earlier += missed
                    }
                    if let marker = trim.marker(earlierMissed: earlier) {
                        try await connection.query(
                            """
                            INSERT INTO queued_notification (channel_id, event_id, body, bytes, missed)
                            VALUES (\(channelID), \(Int64(marker.eventID)), NULL, 0, \(marker.missed))
                            """, logger: logger)
                    }
                }
                try await connection.query(
                    """
                    INSERT INTO notification_queue (channel_id, count, bytes) VALUES (\(channelID), \(trim.count), \(trim.bytes))
                    ON CONFLICT (channel_id) DO UPDATE SET count = excluded.count, bytes = excluded.bytes
                    """, logger: logger)
                return true
            }
        }
    }

    public func queued(channelID: String) async throws -> [QueuedNotification] {
        try await deadline.run { [self] in
            var found: [QueuedNotification] = []
            for try await (eventID, body, missed) in try await client.query(
                """
                SELECT event_id, body, missed FROM queued_notification WHERE channel_id = \(channelID) ORDER BY event_id
                """, logger: logger
            ).decode((Int64, String?, Int).self) {
                found.append(QueuedNotification(eventID: UInt64(eventID), text: body, missed: missed))
            }
            return found
        }
    }

    public func dequeue(channelID: String, through eventID: UInt64) async throws {
        try await deadline.run { [self] in
            try await transaction { connection in
                try await connection.query(
                    "SELECT 1 FROM subscription WHERE channel_id = \(channelID) FOR UPDATE", logger: logger)
                try await connection.query(
                    "DELETE FROM queued_notification WHERE channel_id = \(channelID) AND event_id <= \(Int64(eventID))",
                    logger: logger)
                var left: (count: Int, bytes: Int) = (0, 0)
                for try await row in try await connection.query(
                    """
                    SELECT count(*)::INTEGER, coalesce(sum(bytes), 0)::INTEGER FROM queued_notification
                    WHERE channel_id = \(channelID) AND body IS NOT NULL
                    """, logger: logger
                ).decode((Int, Int).self) {
                    left = row
                }
                if left.count == 0 {
                    try await connection.query(
                        "DELETE FROM notification_queue WHERE channel_id = \(channelID)", logger: logger)
                } else {
                    try await connection.query(
                        """
                        UPDATE notification_queue SET count = \(left.count), bytes = \(left.bytes)
                        WHERE channel_id = \(channelID)
                        """, logger: logger)
                }
            }
        }
    }

    // MARK: Secrets and ids

    // MARK: Calls

    public func insertCall(_ call: CallRecord) async throws -> Bool {
        try await deadline.run { [self] in
            let record = try StoredCall.encode(call)
            return try await transaction { connection in
                // Calls to or from these users, on any node, take turns here (in one order: no deadlock).
                try await connection.query(
                    """
                    SELECT 1 FROM platform_user WHERE username = ANY(\([call.caller, call.callee]))
                    ORDER BY username FOR UPDATE
                    """, logger: logger)
                if try await Self.anyRow(
                    connection.query(
                        "SELECT 1 FROM call WHERE caller = \(call.callee) OR callee = \(call.callee) LIMIT 1",
                        logger: logger))
                {
                    return false
                }
                try await connection.query(
                    """
                    INSERT INTO call (id, caller, callee, rings_until, record)
                    VALUES (\(call.id), \(call.caller), \(call.callee), \(call.ringsUntil?.timeIntervalSince1970), \(record))
                    """, logger: logger)
                return true
            }
        }
    }

    public func call(id: String) async throws -> CallRecord? {
        try await deadline.run { [self] in
            try await Self.calls(client.query("SELECT record FROM call WHERE id = \(id)", logger: logger)).first
        }
    }

    public func updateCall(id: String, _ change: @escaping @Sendable (inout CallRecord) throws -> Void) async throws
        -> CallRecord?
    {
        try await deadline.run { [self] in
            try await transaction { connection in
                guard
                    var call = try await Self.calls(
                        connection.query("SELECT record FROM call WHERE id = \(id) FOR UPDATE", logger: logger)
                    ).first
                else { return nil }
                try change(&call)
                let record = try StoredCall.encode(call)
                try await connection.query(
                    """
                    UPDATE call SET rings_until = \(call.ringsUntil?.timeIntervalSince1970), record = \(record)
                    WHERE id = \(id)
                    """, logger: logger)
                return call
            }
        }
    }

    public func deleteCall(id: String) async throws -> CallRecord? {
        try await deadline.run { [self] in
            try await Self.calls(client.query("DELETE FROM call WHERE id = \(id) RETURNING record", logger: logger))
                .first
        }
    }

    public func deleteUnansweredCalls(now: Date) async throws -> [CallRecord] {
        try await deadline.run { [self] in
            try await Self.calls(
                client.query(
                    "DELETE FROM call WHERE rings_until <= \(now.timeIntervalSince1970) RETURNING record",
                    logger: logger))
        }
    }

    public func calls(of username: String) async throws -> [CallRecord] {
        try await deadline.run { [self] in
            try await Self.calls(
                client.query(
                    "SELECT record FROM call WHERE caller = \(username) OR callee = \(username)", logger: logger))
        }
    }

    public func callCount() async throws -> Int {
        try await deadline.run { [self] in
            var count = 0
            for try await value in try await client.query("SELECT count(*)::INTEGER FROM call", logger: logger)
                .decode(Int.self)
            {
                count = value
            }
            return count
        }
    }

    public func secret(_ name: String, make: @escaping @Sendable () -> [UInt8]) async throws -> [UInt8] {
        try await deadline.run { [self] in
            let candidate = Data(make())
            // The first node to insert wins; everyone reads the winner's.
            try await client.query(
                "INSERT INTO secret (name, value) VALUES (\(name), \(candidate)) ON CONFLICT (name) DO NOTHING",
                logger: logger)
            for try await value in try await client.query(
                "SELECT value FROM secret WHERE name = \(name)", logger: logger
            ).decode(Data.self) {
                return Array(value)
            }
            throw StoreError.unexpected("The secret \(name) vanished after being written.")
        }
    }

    public func reserveEventIDs(_ count: UInt64) async throws -> UInt64 {
        try await deadline.run { [self] in
            // A sequence cannot step by a varying amount; the lock makes nextval + setval one step.
            let rows = try await client.query(
                """
                WITH turn AS (SELECT pg_advisory_xact_lock(\(Self.eventIDLock)))
                SELECT setval('event_id', nextval('event_id') + \(Int64(count)) - 1) FROM turn
                """, logger: logger)
            for try await last in rows.decode(Int64.self) {
                return UInt64(last) - count + 1
            }
            throw StoreError.unexpected("The event id sequence returned nothing.")
        }
    }

    // MARK: Signals

    public func signal(_ signal: NodeSignal) async throws {
        try await deadline.run { [self] in
            for payload in Self.payloads(signal, from: node) {
                try await client.query("SELECT pg_notify(\(Self.signalChannel), \(payload))", logger: logger)
            }
        }
    }

    public func signals() -> AsyncStream<NodeSignal> {
        let (stream, continuation) = AsyncStream.makeStream(of: NodeSignal.self, bufferingPolicy: .unbounded)
        let id = nextListener.add(1, ordering: .relaxed).oldValue
        listeners.withLock { $0[id] = continuation }
        continuation.onTermination = { [weak self] _ in
            _ = self?.listeners.withLock { $0.removeValue(forKey: id) }
        }
        return stream
    }

    /// Holds one connection in LISTEN until cancelled, reconnecting after a failure;
    /// `onListening` is told each time it listens. Signals sent while no connection listened are
    /// not replayed: queued notifications are still delivered when the client next connects.
    public func listen(onListening: @escaping @Sendable () -> Void) async {
        var first = true
        while !Task.isCancelled {
            do {
                let connection = try await PostgresConnection.connect(
                    configuration: listenerConfiguration, id: 0, logger: logger)
                try await withCleanup {
                    try await connection.listen(on: Self.signalChannel) { notifications in
                        reachable.store(true, ordering: .relaxed)
                        listenerUp.store(true, ordering: .relaxed)
                        listenerChanges.signal()
                        onListening()
                        // Listening again after a failure: what was signalled meanwhile is lost.
                        if !first { broadcast(.resume) }
                        first = false
                        for try await notification in notifications {
                            guard let signal = Self.signal(from: notification.payload, except: node) else { continue }
                            broadcast(signal)
                        }
                    }
                } cleanup: {
                    try? await connection.close()
                }
            } catch {
                if Task.isCancelled { return }
                reachable.store(false, ordering: .relaxed)
                listenerUp.store(false, ordering: .relaxed)
                listenerChanges.signal()
                logger.warning(
                    "Listening for other nodes failed; retrying", metadata: ["error": "\(String(reflecting: error))"])
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }

    private func broadcast(_ signal: NodeSignal) {
        for continuation in listeners.withLock({ Array($0.values) }) { continuation.yield(signal) }
    }

    /// `<node> <kind> <channel> <channel> …`: channel ids are URL-safe base64, never spaces.
    static func payloads(_ signal: NodeSignal, from node: String) -> [String] {
        let kind: String
        switch signal {
        case .queued: kind = "queued"
        case .ended: kind = "ended"
        case .unsubscribed: kind = "unsubscribed"
        case .attached: kind = "attached"
        case .resume: return []
        }
        var payloads: [String] = []
        var current = "\(node) \(kind)"
        let header = current.utf8.count
        for channel in signal.channels {
            if current.utf8.count + 1 + channel.utf8.count > maxPayloadBytes && current.utf8.count > header {
                payloads.append(current)
                current = "\(node) \(kind)"
            }
            current += " " + channel
        }
        if current.utf8.count > header { payloads.append(current) }
        return payloads
    }

    static func signal(from payload: String, except node: String) -> NodeSignal? {
        let words = payload.split(separator: " ").map(String.init)
        guard words.count >= 3, words[0] != node else { return nil }
        let channels = Array(words.dropFirst(2))
        switch words[1] {
        case "queued": return .queued(channels)
        case "ended": return .ended(channels)
        case "unsubscribed": return .unsubscribed(channels)
        case "attached": return .attached(channels)
        default: return nil
        }
    }

    // MARK: Pieces

    /// Runs `body` in a transaction; an error `body` throws comes out as itself (after rollback).
    /// A connection the server ended is not rolled back (the server did): a ROLLBACK sent on it
    /// would wait for an answer that never comes, holding whatever the caller holds.
    func transaction<T: Sendable>(_ body: (PostgresConnection) async throws -> T) async throws -> T {
        try await client.withConnection { connection in
            try await connection.query("BEGIN", logger: logger)
            let value: T
            do {
                value = try await body(connection)
            } catch {
                if !connection.isClosed, !Self.endsConnection(error) {
                    try await connection.query("ROLLBACK", logger: logger)
                }
                throw error
            }
            try await connection.query("COMMIT", logger: logger)
            return value
        }
    }

    /// Whether the connection that met `error` is gone: lost, or ended by the server (a FATAL
    /// error, class 57P0 when it shuts down or an administrator ends the session).
    static func endsConnection(_ error: any Error) -> Bool {
        guard let error = error as? PSQLError else { return false }
        switch error.code {
        case .connectionError, .serverClosedConnection, .clientClosedConnection, .uncleanShutdown: return true
        case .server:
            return error.serverInfo?[.severity] == "FATAL" || error.serverInfo?[.sqlState]?.hasPrefix("57P0") == true
        default: return false
        }
    }

    static func binds(_ values: any PostgresEncodable...) throws -> PostgresBindings {
        var bindings = PostgresBindings(capacity: values.count)
        for value in values { try bindings.append(value) }
        return bindings
    }

    /// Whether the query answered with any row.
    static func anyRow(_ rows: PostgresRowSequence) async throws -> Bool {
        for try await _ in rows { return true }
        return false
    }

    private static func users(_ rows: PostgresRowSequence) async throws -> [UserRecord] {
        var found: [UserRecord] = []
        for try await (username, authname, hash, created, profile) in rows.decode(
            (String, String?, String, Double, String?).self)
        {
            found.append(
                UserRecord(
                    username: username, authname: authname, passwordHash: hash,
                    createdAt: Date(timeIntervalSince1970: created), profile: try StoredJSON.profile(profile)))
        }
        return found
    }

    private static func calls(_ rows: PostgresRowSequence) async throws -> [CallRecord] {
        var found: [CallRecord] = []
        for try await record in rows.decode(String.self) { found.append(try StoredCall.decode(record)) }
        return found
    }

    private static func subscriptions(_ rows: PostgresRowSequence) async throws -> [StoredSubscription] {
        var found: [StoredSubscription] = []
        for try await (id, username, channelID, services, expires, expiresAt, createdAt) in rows.decode(
            (String, String, String, String, Int, Double, Double).self)
        {
            found.append(
                StoredSubscription(
                    id: id, username: username, channelID: channelID, services: try StoredServices.decode(services),
                    expires: expires, expiresAt: Date(timeIntervalSince1970: expiresAt),
                    createdAt: Date(timeIntervalSince1970: createdAt)))
        }
        return found
    }
}

/// Opens the store `database` names: a `postgres://` URL or a SQLite file path.
public func openStore(_ database: String, logger: Logger) async throws -> any PlatformStore {
    if PostgresStore.isURL(database) {
        return try await PostgresStore(url: database, logger: logger)
    }
    return try SQLiteStore(path: database)
}
