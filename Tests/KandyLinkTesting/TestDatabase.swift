import Foundation
import Logging
import PostgresNIO

/// A PostgreSQL database of its own for one test, on the server that `KANDY_LINK_TEST_POSTGRES`
/// names (`postgres://user:password@host:port/db` of a role allowed to create databases).
/// Without it the PostgreSQL tests are left out, unless `KANDY_LINK_REQUIRE_POSTGRES=1` (CI),
/// where they fail instead.
public struct TestDatabase: Sendable {
    /// The new database's URL.
    public let url: String
    private let name: String
    private let server: URLComponents

    public static var serverURL: String? { ProcessInfo.processInfo.environment["KANDY_LINK_TEST_POSTGRES"] }
    public static var isRequired: Bool { ProcessInfo.processInfo.environment["KANDY_LINK_REQUIRE_POSTGRES"] == "1" }
    public static var isAvailable: Bool { serverURL != nil || isRequired }

    public struct Unavailable: Error, CustomStringConvertible {
        public var description: String {
            "KANDY_LINK_TEST_POSTGRES is not set; .ci/run shows how to start PostgreSQL for the tests."
        }
    }

    /// Creates an empty database.
    public static func create() async throws -> TestDatabase {
        guard let serverURL, let server = URLComponents(string: serverURL) else { throw Unavailable() }
        let name = "kandy_link_test_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        try await administer(server) { client in
            try await client.query(PostgresQuery(unsafeSQL: "CREATE DATABASE \(name)"))
        }
        var components = server
        components.path = "/" + name
        return TestDatabase(url: components.string!, name: name, server: server)
    }

    /// Drops the database, ending any connection still open to it.
    public func drop() async {
        let name = name
        try? await Self.administer(server) { client in
            try await client.query(PostgresQuery(unsafeSQL: "DROP DATABASE IF EXISTS \(name) WITH (FORCE)"))
        }
    }

    /// Cuts the connections that LISTEN on this database, as a network failure would.
    public func terminateListeners() async throws {
        let name = name
        try await Self.administer(server) { client in
            try await client.query(
                """
                SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                WHERE datname = \(name) AND query ILIKE 'LISTEN%'
                """)
        }
    }

    /// Takes the database away as a stopped server would: its connections are ended (SQLSTATE
    /// 57P01, as at a server shutdown) and new ones refused until ``resume()``. Other tests'
    /// databases on the same server are left alone.
    public func suspend() async throws {
        let name = name
        try await Self.administer(server) { client in
            try await client.query(PostgresQuery(unsafeSQL: "ALTER DATABASE \(name) ALLOW_CONNECTIONS false"))
            try await client.query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = \(name)")
        }
    }

    /// Accepts connections to the database again.
    public func resume() async throws {
        let name = name
        try await Self.administer(server) { client in
            try await client.query(PostgresQuery(unsafeSQL: "ALTER DATABASE \(name) ALLOW_CONNECTIONS true"))
        }
    }

    /// A transaction left open on the database, holding the locks its statement took, until
    /// ``release()``.
    public final class Hold: Sendable {
        private let done: AsyncStream<Void>.Continuation
        private let task: Task<Void, any Error>

        init(done: AsyncStream<Void>.Continuation, task: Task<Void, any Error>) {
            self.done = done
            self.task = task
        }

        /// Rolls the transaction back.
        public func release() async throws {
            done.finish()
            try await task.value
        }
    }

    /// Runs `statement` in a transaction that stays open, as a long transaction of another
    /// program would, and returns once its locks are held.
    public func hold(_ statement: String) async throws -> Hold {
        var database = server
        database.path = "/" + name
        let (held, heldSignal) = AsyncStream.makeStream(of: Void.self)
        let (done, doneSignal) = AsyncStream.makeStream(of: Void.self)
        let task = Task { [database] in
            defer { heldSignal.finish() }
            try await Self.administer(database) { client in
                try await client.withConnection { connection in
                    let logger = Logger(label: "test-database")
                    try await connection.query("BEGIN", logger: logger)
                    try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                    heldSignal.yield()
                    for await _ in done {}
                    try await connection.query("ROLLBACK", logger: logger)
                }
            }
        }
        var iterator = held.makeAsyncIterator()
        guard await iterator.next() != nil else {
            try await task.value
            throw Unavailable()
        }
        return Hold(done: doneSignal, task: task)
    }

    /// Returns once some session of this database waits for a lock (PostgreSQL tells nobody,
    /// so it is asked, on one connection, until it says so).
    public func waitForLockWaiter() async throws {
        let name = name
        try await Self.administer(server) { client in
            var waiting = false
            while !waiting {
                let rows = try await client.query(
                    """
                    SELECT count(*) FROM pg_stat_activity WHERE datname = \(name) AND wait_event_type = 'Lock'
                    """)
                for try await count in rows.decode(Int.self) { waiting = count > 0 }
            }
        }
    }

    private static func administer(_ server: URLComponents, _ body: (PostgresClient) async throws -> Void)
        async throws
    {
        let configuration = PostgresClient.Configuration(
            host: server.host ?? "127.0.0.1", port: server.port ?? 5432, username: server.user ?? "postgres",
            password: server.password, database: String(server.path.drop { $0 == "/" }), tls: .disable)
        let client = PostgresClient(configuration: configuration, backgroundLogger: Logger(label: "test-database"))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await client.run() }
            defer { group.cancelAll() }
            try await body(client)
        }
    }
}
