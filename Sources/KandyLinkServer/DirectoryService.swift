import Foundation
import KandyLinkProtocol
import Logging

/// The directory of the platform's users and each user's own profile (Kandy.js's `user`
/// plugin): search by first name, last name, full name, phone number or username, prefix
/// match, case and accents folded, one page at a time (``DirectoryTerms``).
final class DirectoryService: Sendable {
    private let store: any PlatformStore
    private let logger: Logger

    init(store: any PlatformStore, logger: Logger) {
        self.store = store
        self.logger = logger
    }

    /// `GET …/directory?criteria=&criteriaType=&startIndex=&count=`.
    func search(query items: [String: String]) async throws(PlatformError) -> (DirectoryPage, DirectoryQuery) {
        let query = try Self.query(items)
        let page = try await storing("The directory could not be searched.", logger: logger) {
            try await store.searchUsers(query)
        }
        return (page, query)
    }

    /// `GET …/userProfileData`: the user's own profile.
    func profile(of username: String) async throws(PlatformError) -> User {
        let record = try await storing("The profile could not be read.", logger: logger) {
            try await store.user(login: username)
        }
        guard let record, record.username == username else {
            throw PlatformError(.userNotFound, "\(username) is no longer a user of this platform.")
        }
        return User(userId: username, profile: record.profile)
    }

    /// The query a search's query string asks for, refused when malformed or out of bounds.
    static func query(_ items: [String: String]) throws(PlatformError) -> DirectoryQuery {
        let criteria = items["criteria"] ?? ""
        guard criteria.utf8.count <= DirectoryQuery.maxCriteriaBytes else {
            throw PlatformError(.invalidField, "criteria is at most \(DirectoryQuery.maxCriteriaBytes) bytes.")
        }
        var type: DirectorySearchType?
        if let text = items["criteriaType"] {
            guard let value = Int(text).flatMap(DirectorySearchType.init(rawValue:)) ?? DirectorySearchType(name: text)
            else {
                throw PlatformError(
                    .invalidField,
                    "criteriaType must be 1 (first name), 2 (last name), 3 (name), 4 (phone number) or 5 (user name).")
            }
            type = value
        }
        if type == .phoneNumber, !criteria.isEmpty, DirectoryTerms.digits(criteria).isEmpty {
            throw PlatformError(.invalidField, "A phone number search needs digits in criteria.")
        }
        guard let page = items.page(defaultCount: DirectoryQuery.defaultCount, counts: 1...DirectoryQuery.maxCount)
        else {
            throw PlatformError(
                .invalidField,
                "startIndex must be a whole number from 0 to \([String: String].maxStartIndex), count from 1 to \(DirectoryQuery.maxCount)."
            )
        }
        return DirectoryQuery(criteria: criteria, type: type, startIndex: page.startIndex, count: page.count)
    }
}
