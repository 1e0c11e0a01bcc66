import Foundation
import GRDB
import KandyLinkProtocol

/// Profiles and the directory, address books and call history in the embedded store.
extension SQLiteStore {
    // MARK: Profiles and the directory

    public func setProfile(_ profile: UserProfile, for username: String) async throws -> Bool {
        let stored = try StoredJSON.encode(profile)
        return try await pool.write { db in
            try db.cachedStatement(sql: "UPDATE user SET profile = ? WHERE username = ?").execute(arguments: [
                stored, username,
            ])
            guard db.changesCount > 0 else { return false }
            try Self.index(username, profile, in: db)
            return true
        }
    }

    /// Replaces the directory's terms for `username`.
    static func index(_ username: String, _ profile: UserProfile, in db: Database) throws {
        try db.cachedStatement(sql: "DELETE FROM user_search WHERE username = ?").execute(arguments: [username])
        let insert = try db.cachedStatement(sql: "INSERT INTO user_search (kind, term, username) VALUES (?, ?, ?)")
        for term in DirectoryTerms.terms(username: username, profile: profile) {
            try insert.execute(arguments: [term.kind.rawValue, term.text, username])
        }
    }

    public func searchUsers(_ query: DirectoryQuery) async throws -> DirectoryPage {
        try readNow { db in
            // One more than asked says whether more follow.
            let limit = query.count + 1
            let rows: [Row]
            if let range = DirectoryTerms.range(of: query) {
                let kinds = range.kinds.map { _ in "?" }.joined(separator: ", ")
                var arguments = StatementArguments(range.kinds.map(\.rawValue))
                arguments += [range.low, range.high, limit, query.startIndex]
                rows = try Row.fetchAll(
                    db.cachedStatement(
                        sql: """
                            SELECT found.username, user.profile FROM (
                                SELECT DISTINCT username FROM user_search
                                WHERE kind IN (\(kinds)) AND term >= ? AND term < ?
                                ORDER BY username LIMIT ? OFFSET ?
                            ) AS found JOIN user ON user.username = found.username
                            ORDER BY found.username
                            """), arguments: arguments)
            } else {
                rows = try Row.fetchAll(
                    db.cachedStatement(sql: "SELECT username, profile FROM user ORDER BY username LIMIT ? OFFSET ?"),
                    arguments: [limit, query.startIndex])
            }
            let users = try rows.map { User(userId: $0["username"], profile: try StoredJSON.profile($0["profile"])) }
            return DirectoryPage(users: Array(users.prefix(query.count)), moreResults: users.count > query.count)
        }
    }

    // MARK: Address books

    public func contacts(of owner: String) async throws -> [Contact] {
        try readNow { db in
            try String.fetchAll(
                db.cachedStatement(sql: "SELECT entry FROM contact WHERE owner = ? ORDER BY contact_id"),
                arguments: [owner]
            ).map { try StoredJSON.decode(Contact.self, $0) }
        }
    }

    public func contact(_ id: String, of owner: String) async throws -> Contact? {
        try readNow { db in
            try String.fetchOne(
                db.cachedStatement(sql: "SELECT entry FROM contact WHERE owner = ? AND contact_id = ?"),
                arguments: [owner, id]
            ).map { try StoredJSON.decode(Contact.self, $0) }
        }
    }

    public func insertContact(_ contact: Contact, of owner: String, limit: Int) async throws -> ContactInsertion {
        let entry = try StoredJSON.encode(contact)
        return try await pool.write { db in
            if try Bool.fetchOne(
                db.cachedStatement(sql: "SELECT 1 FROM contact WHERE owner = ? AND contact_id = ?"),
                arguments: [owner, contact.contactId]) != nil
            {
                return .exists
            }
            let count =
                try Int.fetchOne(
                    db.cachedStatement(sql: "SELECT count(*) FROM contact WHERE owner = ?"), arguments: [owner]) ?? 0
            guard count < limit else { return .full }
            try db.cachedStatement(sql: "INSERT INTO contact (owner, contact_id, entry) VALUES (?, ?, ?)").execute(
                arguments: [owner, contact.contactId, entry])
            return .inserted
        }
    }

    public func replaceContact(_ contact: Contact, of owner: String) async throws -> Bool {
        let entry = try StoredJSON.encode(contact)
        return try await pool.write { db in
            try db.cachedStatement(sql: "UPDATE contact SET entry = ? WHERE owner = ? AND contact_id = ?").execute(
                arguments: [entry, owner, contact.contactId])
            return db.changesCount > 0
        }
    }

    public func deleteContact(_ id: String, of owner: String) async throws -> Bool {
        try await pool.write { db in
            try db.cachedStatement(sql: "DELETE FROM contact WHERE owner = ? AND contact_id = ?").execute(arguments: [
                owner, id,
            ])
            return db.changesCount > 0
        }
    }

    // MARK: Call history

    public func appendCallLogs(_ entries: [(owner: String, log: CallLog)], keep: Int) async throws {
        let rows = try entries.map {
            ($0.owner, $0.log.recordId, Int64($0.log.startTime) ?? 0, try StoredJSON.encode($0.log))
        }
        try await pool.write { db in
            let insert = try db.cachedStatement(
                sql: "INSERT INTO call_log (owner, record_id, started_at, entry) VALUES (?, ?, ?, ?)")
            for (owner, id, started, entry) in rows {
                try insert.execute(arguments: [owner, id, started, entry])
            }
            for owner in Set(rows.map(\.0)) {
                try db.cachedStatement(
                    sql: """
                        DELETE FROM call_log WHERE owner = ? AND record_id NOT IN (
                            SELECT record_id FROM call_log WHERE owner = ?
                            ORDER BY started_at DESC, record_id DESC LIMIT ?)
                        """
                ).execute(arguments: [owner, owner, keep])
            }
        }
    }

    public func callLogs(of owner: String, startIndex: Int, count: Int) async throws -> [CallLog] {
        try readNow { db in
            try String.fetchAll(
                db.cachedStatement(
                    sql: """
                        SELECT entry FROM call_log WHERE owner = ?
                        ORDER BY started_at DESC, record_id DESC LIMIT ? OFFSET ?
                        """), arguments: [owner, count, startIndex]
            ).map { try StoredJSON.decode(CallLog.self, $0) }
        }
    }

    public func deleteCallLog(_ id: String, of owner: String) async throws -> Bool {
        try await pool.write { db in
            try db.cachedStatement(sql: "DELETE FROM call_log WHERE owner = ? AND record_id = ?").execute(arguments: [
                owner, id,
            ])
            return db.changesCount > 0
        }
    }

    public func clearCallLogs(of owner: String) async throws {
        try await pool.write { db in
            try db.cachedStatement(sql: "DELETE FROM call_log WHERE owner = ?").execute(arguments: [owner])
        }
    }
}
