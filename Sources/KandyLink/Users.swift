import Foundation
import KandyLinkProtocol
import Synchronization

/// `kandy.user`: the platform's directory of users, your own profile, and a local copy of the
/// users fetched or found.
///
/// ```swift
/// let found = try await kandy.user.search(.lastName, "lind")
/// let me = try await kandy.user.fetchSelfInfo()
/// ```
///
/// Searches match the start of the field, with case and accents ignored. Each operation
/// throws a ``KandyError`` (`users:1`, `users:3`, or `users:4` without a request) and emits
/// the Kandy.js events: `directory:change`, `directory:error`, `users:change`, `users:error`.
public struct Users: Sendable {
    let session: KandySession
    let observers: KandySession.Observers
    let known = Known()

    final class Known: Sendable {
        let users = Mutex<[String: User]>([:])
    }

    /// Your own profile and the platform's locale for you.
    public struct SelfInfo: Sendable, Equatable {
        public var user: User
        /// `acceptLanguage`, when the platform told it.
        public var currentLocale: String?
    }

    /// One page of a directory search.
    public struct SearchResult: Sendable, Equatable {
        public var users: [User]
        /// Pass it as `startIndex` for the next page; nil on the last page.
        public var nextStartIndex: Int?
    }

    /// Searches the directory for users whose `type` field starts with `criteria` (any name or
    /// username when `type` is nil); `directory:change` with the users found.
    public func search(
        _ type: DirectorySearchType?, _ criteria: String, startIndex: Int = 0, count: Int = DirectoryQuery.defaultCount
    ) async throws -> SearchResult {
        do {
            guard criteria.utf8.count <= DirectoryQuery.maxCriteriaBytes, startIndex >= 0,
                (1...DirectoryQuery.maxCount).contains(count)
            else {
                throw KandyError(
                    .invalidUserParameter,
                    "A search has criteria of at most \(DirectoryQuery.maxCriteriaBytes) bytes and a count of 1–\(DirectoryQuery.maxCount)."
                )
            }
            let query = DirectoryQuery(criteria: criteria, type: type, startIndex: startIndex, count: count)
            let answer = try await session.request(
                "GET", LinkPath.directory(user:), query: query.queryItems, as: DirectoryResponseDocument.self,
                failure: .directoryFailure, verb: "search directory")
            let users = answer.directory.directoryItems ?? []
            remember(users)
            observers.emit(.directoryChange(users))
            return SearchResult(
                users: users, nextStartIndex: answer.directory.moreResults == true ? startIndex + users.count : nil)
        } catch let error as KandyError {
            observers.emit(.directoryError(error))
            throw error
        }
    }

    /// Kandy.js's `search({firstName: …})`: the first filter given decides the type.
    public func search(filters: [String: String]) async throws -> SearchResult {
        let first = filters.sorted { $0.key < $1.key }.first { !$0.value.isEmpty }
        guard let first, let type = DirectorySearchType(name: first.key) else {
            let error = KandyError(
                .invalidUserParameter,
                "Search by first_name, last_name, name, phone_number or user_name (Kandy.js's spellings).")
            observers.emit(.directoryError(error))
            throw error
        }
        return try await search(type, first.value)
    }

    /// Fetches one user by id (an exact username); `users:change`. Nil when there is none.
    @discardableResult
    public func fetch(_ userId: String) async throws -> User? {
        let found = try await search(.userName, userId, count: DirectoryQuery.maxCount)
        guard let user = found.users.first(where: { $0.userId == userId }) else { return nil }
        observers.emit(.usersChange(userId))
        return user
    }

    /// Your own profile and locale; `users:change`.
    @discardableResult
    public func fetchSelfInfo() async throws -> SelfInfo {
        do {
            async let profile = session.request(
                "GET", LinkPath.userProfileData(user:), as: UserProfileDataDocument.self, failure: .usersFailure,
                verb: "fetch user details")
            // The locale is optional, as Kandy.js treats it.
            async let locale = try? session.request(
                "GET", { _ in LinkPath.localization }, as: LocalizationDocument.self, failure: .usersFailure,
                verb: "fetch user locale")
            guard let user = try await profile.userProfileData.user else {
                throw KandyError(.usersFailure, "Failed to fetch user details: the platform's answer has no user.")
            }
            let info = SelfInfo(user: user, currentLocale: await locale?.acceptLanguage)
            remember([user])
            observers.emit(.usersChange(user.userId))
            return info
        } catch let error as KandyError {
            observers.emit(.usersError(error))
            throw error
        }
    }

    /// The local copy of a user fetched or found.
    public func get(_ userId: String) -> User? { known.users.withLock { $0[userId] } }

    /// Every user fetched or found, by id.
    public func getAll() -> [User] { known.users.withLock { $0.values.sorted { $0.userId < $1.userId } } }

    private func remember(_ users: [User]) {
        known.users.withLock { known in
            for user in users { known[user.userId] = user }
        }
    }
}
