import Foundation
import HummingbirdBcrypt
import KandyLinkProtocol
import NIOCore
import NIOPosix

/// The platform's users: added, listed, removed, re-passworded, and handed tokens. Used by the
/// `kandy-link users` commands against the same database the server uses.
public struct Accounts: Sendable {
    let store: any PlatformStore
    let tokens: TokenIssuer
    let clock: any PlatformClock
    let passwordCost: UInt8
    let tokenLifetime: TimeInterval

    public init(
        store: any PlatformStore, configuration: PlatformConfiguration, clock: any PlatformClock = SystemPlatformClock()
    ) async throws {
        self.store = store
        self.clock = clock
        self.passwordCost = configuration.passwordCost
        self.tokenLifetime = configuration.tokenLifetime
        let secret = try await store.secret("token-signing-key") {
            var generator = SystemRandomNumberGenerator()
            return (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        }
        self.tokens = TokenIssuer(secret: secret)
    }

    public enum AccountError: Error, Equatable, CustomStringConvertible {
        case invalidUsername(String)
        case emptyPassword
        case unknownUser(String)
        case invalidProfile(String)

        public var description: String {
            switch self {
            case .invalidUsername(let name):
                "\"\(name)\" cannot be a username: it must be 1–\(LinkPath.maxUsernameLength) bytes without '/', '\\' or control characters."
            case .emptyPassword: "The password is empty."
            case .unknownUser(let name): "No user \(name)."
            case .invalidProfile(let why): why
            }
        }
    }

    public func add(
        username: String, password: String, authname: String? = nil, profile: UserProfile = UserProfile()
    ) async throws {
        guard LinkRoute.isAcceptableUsername(username) else { throw AccountError.invalidUsername(username) }
        if let authname, !LinkRoute.isAcceptableUsername(authname) { throw AccountError.invalidUsername(authname) }
        guard !password.isEmpty else { throw AccountError.emptyPassword }
        try Self.check(profile)
        let hash = try await hash(password)
        try await store.addUser(
            UserRecord(
                username: username, authname: authname, passwordHash: hash, createdAt: clock.now(),
                profile: profile.withoutEmptyFields))
    }

    /// Changes the profile fields `change` sets; an empty string clears one. Returns the result.
    @discardableResult
    public func updateProfile(username: String, with change: UserProfile) async throws -> UserProfile {
        try Self.check(change)
        let profile = try await profile(of: username).updated(with: change)
        guard try await store.setProfile(profile, for: username) else { throw AccountError.unknownUser(username) }
        return profile
    }

    public func profile(of username: String) async throws -> UserProfile {
        // A login may be an authname too: only the username itself names this user.
        guard let user = try await store.user(login: username), user.username == username else {
            throw AccountError.unknownUser(username)
        }
        return user.profile
    }

    /// Adds many users, each with a password of their own (a bcrypt each, on every core at
    /// once). All are checked before any is added; those whose username exists are skipped.
    /// Returns the usernames added and those skipped.
    public func importUsers(_ users: [UserImport.Entry]) async throws -> (added: [String], skipped: [String]) {
        var seen = Set<String>()
        for user in users {
            guard LinkRoute.isAcceptableUsername(user.username) else {
                throw AccountError.invalidUsername(user.username)
            }
            guard seen.insert(user.username).inserted else {
                throw AccountError.invalidProfile("\(user.username) appears twice in the import.")
            }
            guard !user.password.isEmpty else {
                throw AccountError.invalidProfile("\(user.username) has an empty password.")
            }
            try Self.check(user.profile)
        }
        let existing = try await store.existingUsers(users.map(\.username))
        let fresh = users.filter { !existing.contains($0.username) }
        let now = clock.now()
        // One bcrypt per user: as many at once as there are cores.
        try await Self.forEach(fresh, lanes: System.coreCount) { [self] user in
            try await store.addUser(
                UserRecord(
                    username: user.username, passwordHash: try await hash(user.password), createdAt: now,
                    profile: user.profile.withoutEmptyFields))
        }
        return (fresh.map(\.username), users.map(\.username).filter(existing.contains))
    }

    /// Profile fields are bounded and free of control characters.
    static func check(_ profile: UserProfile) throws {
        for (name, value) in profile.fields {
            guard let value else { continue }
            guard value.utf8.count <= UserProfile.maxFieldBytes,
                !value.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F })
            else {
                throw AccountError.invalidProfile(
                    "\(name) must be at most \(UserProfile.maxFieldBytes) bytes without control characters.")
            }
        }
    }

    /// Adds those of `usernames` that are missing, all with `password` (hashed once: a load
    /// test's thousands of users would otherwise cost a bcrypt each). Returns how many were added.
    @discardableResult
    public func addMissing(usernames: [String], password: String, profiles: [String: UserProfile] = [:]) async throws
        -> Int
    {
        if let bad = usernames.first(where: { !LinkRoute.isAcceptableUsername($0) }) {
            throw AccountError.invalidUsername(bad)
        }
        guard !password.isEmpty else { throw AccountError.emptyPassword }
        let existing = try await store.existingUsers(usernames)
        let missing = usernames.filter { !existing.contains($0) }
        guard !missing.isEmpty else { return 0 }
        let hash = try await hash(password)
        let now = clock.now()
        // A few at once: each is a transaction, and a server database commits them together.
        try await Self.forEach(missing, lanes: 16) { [store] username in
            try await store.addUser(
                UserRecord(
                    username: username, passwordHash: hash, createdAt: now,
                    profile: profiles[username]?.withoutEmptyFields ?? UserProfile()))
        }
        return missing.count
    }

    public func list() async throws -> [UserRecord] { try await store.users() }

    public func remove(username: String) async throws {
        guard try await store.removeUser(username) else { throw AccountError.unknownUser(username) }
    }

    public func setPassword(username: String, password: String) async throws {
        guard !password.isEmpty else { throw AccountError.emptyPassword }
        guard try await store.setPasswordHash(try await hash(password), for: username) else {
            throw AccountError.unknownUser(username)
        }
    }

    /// A bearer / x-token token for `username`, valid for the configured lifetime.
    public func token(for username: String) async throws -> (token: String, expiresAt: Date) {
        guard try await store.user(login: username)?.username == username else {
            throw AccountError.unknownUser(username)
        }
        let expiresAt = clock.now() + tokenLifetime
        return (tokens.issue(for: username, expiresAt: expiresAt), expiresAt)
    }

    /// Tokens for many users at once, checked against one listing of the users.
    public func tokens(for usernames: [String]) async throws -> [String] {
        let existing = Set(try await store.users().map(\.username))
        let expiresAt = clock.now() + tokenLifetime
        return try usernames.map { username in
            guard existing.contains(username) else { throw AccountError.unknownUser(username) }
            return tokens.issue(for: username, expiresAt: expiresAt)
        }
    }

    /// Runs `body` for every item, on `lanes` tasks at once, each taking every `lanes`th item.
    private static func forEach<Item: Sendable>(
        _ items: [Item], lanes: Int, _ body: @escaping @Sendable (Item) async throws -> Void
    ) async throws {
        let lanes = max(1, min(lanes, items.count))
        try await withThrowingTaskGroup(of: Void.self) { group in
            for lane in 0..<lanes {
                group.addTask {
                    for index in stride(from: lane, to: items.count, by: lanes) { try await body(items[index]) }
                }
            }
            try await group.waitForAll()
        }
    }

    private func hash(_ password: String) async throws -> String {
        let cost = passwordCost
        return try await NIOThreadPool.singleton.runIfActive { Bcrypt.hash(password, cost: cost) }
    }
}
