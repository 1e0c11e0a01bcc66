import Foundation
import KandyLinkProtocol
import Logging
import PostgresNIO

/// Profiles and the directory, address books and call history in the shared store.
extension PostgresStore {
    // MARK: Profiles and the directory

    public func setProfile(_ profile: UserProfile, for username: String) async throws -> Bool {
        try await deadline.run { [self] in
            let stored = try StoredJSON.encode(profile)
            return try await transaction { connection in
                guard
                    try await Self.anyRow(
                        connection.query(
                            "UPDATE platform_user SET profile = \(stored) WHERE username = \(username) RETURNING 1",
                            logger: logger))
                else { return false }
                try await Self.index(username, profile, on: connection, logger: logger)
                return true
            }
        }
    }

    /// Replaces the directory's terms for `username`.
    static func index(_ username: String, _ profile: UserProfile, on connection: PostgresConnection, logger: Logger)
        async throws
    {
        try await connection.query("DELETE FROM user_search WHERE username = \(username)", logger: logger)
        let terms = DirectoryTerms.terms(username: username, profile: profile)
        try await connection.query(
            """
            INSERT INTO user_search (kind, term, username)
            SELECT kind, term, \(username) FROM unnest(\(terms.map { Int16($0.kind.rawValue) }), \(terms.map(\.text))) AS t(kind, term)
            """, logger: logger)
    }

    public func searchUsers(_ query: DirectoryQuery) async throws -> DirectoryPage {
        try await deadline.run { [self] in
            // One more than asked says whether more follow.
            let limit = query.count + 1
            let rows: PostgresRowSequence
            if let range = DirectoryTerms.range(of: query) {
                rows = try await client.query(
                    """
                    SELECT found.username, platform_user.profile FROM (
                        SELECT DISTINCT username FROM user_search
                        WHERE kind = ANY(\(range.kinds.map { Int16($0.rawValue) })) AND term >= \(range.low) AND term < \(range.high)
                        ORDER BY username LIMIT \(limit) OFFSET \(query.startIndex)
                    ) AS found JOIN platform_user ON platform_user.username = found.username
                    ORDER BY found.username
                    """, logger: logger)
            } else {
                rows = try await client.query(
                    """
                    SELECT username, profile FROM platform_user ORDER BY username
                    LIMIT \(limit) OFFSET \(query.startIndex)
                    """, logger: logger)
            }
            var users: [User] = []
            for try await (username, profile) in rows.decode((String, String?).self) {
                users.append(User(userId: username, profile: try StoredJSON.profile(profile)))
            }
            return DirectoryPage(users: Array(users.prefix(query.count)), moreResults: users.count > query.count)
        }
    }

    // MARK: Address books

    public func contacts(of owner: String) async throws -> [Contact] {
        try await deadline.run { [self] in
            try await Self.contacts(
                client.query("SELECT entry FROM contact WHERE owner = \(owner) ORDER BY contact_id", logger: logger))
        }
    }

    public func contact(_ id: String, of owner: String) async throws -> Contact? {
        try await deadline.run { [self] in
            try await Self.contacts(
                client.query("SELECT entry FROM contact WHERE owner = \(owner) AND contact_id = \(id)", logger: logger)
            ).first
        }
    }

    public func insertContact(_ contact: Contact, of owner: String, limit: Int) async throws -> ContactInsertion {
        try await deadline.run { [self] in
            let entry = try StoredJSON.encode(contact)
            return try await transaction { connection in
                // Concurrent adds to one address book, on any node, take turns here.
                try await connection.query(
                    "SELECT 1 FROM platform_user WHERE username = \(owner) FOR UPDATE", logger: logger)
                var count = 0
                var exists = false
                for try await (total, taken) in try await connection.query(
                    """
                    SELECT count(*), count(*) FILTER (WHERE contact_id = \(contact.contactId))
                    FROM contact WHERE owner = \(owner)
                    """, logger: logger
                ).decode((Int, Int).self) {
                    count = total
                    exists = taken > 0
                }
                if exists { return .exists }
                guard count < limit else { return .full }
                try await connection.query(
                    "INSERT INTO contact (owner, contact_id, entry) VALUES (\(owner), \(contact.contactId), \(entry))",
                    logger: logger)
                return .inserted
            }
        }
    }

    public func replaceContact(_ contact: Contact, of owner: String) async throws -> Bool {
        try await deadline.run { [self] in
            let entry = try StoredJSON.encode(contact)
            return try await Self.anyRow(
                client.query(
                    """
                    UPDATE contact SET entry = \(entry) WHERE owner = \(owner) AND contact_id = \(contact.contactId)
                    RETURNING 1
                    """, logger: logger))
        }
    }

    public func deleteContact(_ id: String, of owner: String) async throws -> Bool {
        try await deadline.run { [self] in
            try await Self.anyRow(
                client.query(
                    "DELETE FROM contact WHERE owner = \(owner) AND contact_id = \(id) RETURNING 1", logger: logger))
        }
    }

    private static func contacts(_ rows: PostgresRowSequence) async throws -> [Contact] {
        var found: [Contact] = []
        for try await entry in rows.decode(String.self) { found.append(try StoredJSON.decode(Contact.self, entry)) }
        return found
    }

    // MARK: Call history

    public func appendCallLogs(_ entries: [(owner: String, log: CallLog)], keep: Int) async throws {
        try await deadline.run { [self] in
            let rows = try entries.map {
                ($0.owner, $0.log.recordId, Int64($0.log.startTime) ?? 0, try StoredJSON.encode($0.log))
            }
            try await transaction { connection in
                for (owner, id, started, entry) in rows {
                    try await connection.query(
                        """
                        INSERT INTO call_log (owner, record_id, started_at, entry)
                        VALUES (\(owner), \(id), \(started), \(entry))
                        """, logger: logger)
                }
                for owner in Set(rows.map(\.0)) {
                    try await connection.query(
                        """
                        DELETE FROM call_log WHERE owner = \(owner) AND record_id NOT IN (
                            SELECT record_id FROM call_log WHERE owner = \(owner)
                            ORDER BY started_at DESC, record_id DESC LIMIT \(keep))
                        """, logger: logger)
                }
            }
        }
    }

    public func callLogs(of owner: String, startIndex: Int, count: Int) async throws -> [CallLog] {
        try await deadline.run { [self] in
            var found: [CallLog] = []
            for try await entry in try await client.query(
                """
                SELECT entry FROM call_log WHERE owner = \(owner)
                ORDER BY started_at DESC, record_id DESC LIMIT \(count) OFFSET \(startIndex)
                """, logger: logger
            ).decode(String.self) {
                found.append(try StoredJSON.decode(CallLog.self, entry))
            }
            return found
        }
    }

    public func deleteCallLog(_ id: String, of owner: String) async throws -> Bool {
        try await deadline.run { [self] in
            try await Self.anyRow(
                client.query(
                    "DELETE FROM call_log WHERE owner = \(owner) AND record_id = \(id) RETURNING 1", logger: logger))
        }
    }

    public func clearCallLogs(of owner: String) async throws {
        try await deadline.run { [self] in
            try await client.query("DELETE FROM call_log WHERE owner = \(owner)", logger: logger)
        }
    }
}
