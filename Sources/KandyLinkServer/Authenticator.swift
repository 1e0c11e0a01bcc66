import Crypto
import Foundation
import HummingbirdBcrypt
import KandyLinkProtocol
import NIOPosix
import Synchronization

/// Who a request is from, once its credential checked out.
public struct AuthenticatedUser: Sendable, Equatable {
    public var username: String
}

/// Checks the credential headers of spec §2 against the user store.
///
/// Basic logins run bcrypt once; the result is then remembered for
/// `credentialCacheLifetime`, keyed by an HMAC of the header value (never the password itself)
/// and bound to the stored hash, so a password change or user removal takes effect at once.
/// Bearer and `x-token` carry tokens this platform signed itself. Failed logins are throttled per
/// account and per client address (``LoginThrottle``).
final class Authenticator: Sendable {
    private struct CachedLogin {
        var username: String
        var passwordHash: String
        var validUntil: Date
    }

    private let store: any PlatformStore
    private let clock: any PlatformClock
    private let tokens: TokenIssuer
    private let cacheKey: SymmetricKey
    private let cacheLifetime: TimeInterval
    private let cache = Mutex<[Data: CachedLogin]>([:])
    /// Password checks under way, by credential and stored hash: a burst of logins with the same
    /// credentials, before the first check ends, waits for that one check rather than queueing a
    /// bcrypt each.
    private let checks = Mutex<[Data: Task<Bool, Never>]>([:])
    /// Checks a password against a hash; bcrypt by default, off the cooperative pool.
    private let passwordCheck: @Sendable (String, String) async -> Bool
    /// Told each time a login joins a check already under way (tests wait on it).
    let joinedCheck: (@Sendable () -> Void)?
    private let accountThrottle: Mutex<LoginThrottle>
    private let addressThrottle: Mutex<LoginThrottle>
    private static let cacheCapacity = 100_000
    /// Verified against when the login is unknown, so unknown and known users take equally long.
    private static let decoyHash = Bcrypt.hash("kandy-link decoy password", cost: 10)

    init(
        store: any PlatformStore, clock: any PlatformClock, tokens: TokenIssuer, configuration: PlatformConfiguration,
        passwordCheck: @escaping @Sendable (String, String) async -> Bool = Authenticator.bcrypt,
        joinedCheck: (@Sendable () -> Void)? = nil
    ) {
        self.passwordCheck = passwordCheck
        self.joinedCheck = joinedCheck
        self.store = store
        self.clock = clock
        self.tokens = tokens
        self.cacheKey = SymmetricKey(size: .bits256)
        self.cacheLifetime = configuration.credentialCacheLifetime
        self.accountThrottle = Mutex(LoginThrottle(policy: configuration.loginThrottle))
        var addressPolicy = configuration.loginThrottle
        // An address may be shared by many honest users (NAT), so it gets more room than an account.
        addressPolicy.freeFailures = configuration.loginThrottle.freeFailures * 5
        self.addressThrottle = Mutex(LoginThrottle(policy: addressPolicy))
    }

    func authenticate(authorization: String?, token: String?, address: String) async throws(PlatformError)
        -> AuthenticatedUser
    {
        let credential: CredentialHeader?
        do {
            credential = try CredentialHeader.parse(authorization: authorization, token: token)
        } catch .unsupportedScheme {
            throw PlatformError(.invalidCredentials, "Unsupported Authorization scheme; use Basic or Bearer.")
        } catch {
            throw PlatformError(.invalidCredentials, "The credential header is malformed.")
        }
        switch credential {
        case nil:
            throw PlatformError(.authenticationRequired, "Send Authorization: Basic, Bearer, or an x-token header.")
        case .bearer(let token), .token(let token):
            return try await verify(token: token)
        case .basic(let login, let password):
            return try await verify(login: login, password: password, header: authorization ?? "", address: address)
        }
    }

    private func verify(token: String) async throws(PlatformError) -> AuthenticatedUser {
        let username: String
        switch tokens.verify(token, now: clock.now()) {
        case .valid(let name): username = name
        case .expired: throw PlatformError(.tokenExpired, "The token has expired; ask for a new one.")
        case .invalid: throw PlatformError(.invalidCredentials, "The token is not valid.")
        }
        // Only whether the user still exists: the record (and its profile) is not needed, and
        // this runs on every token-authenticated request.
        let exists: Bool
        do {
            exists = try await store.existingUsers([username]).contains(username)
        } catch {
            throw PlatformError.store("The user could not be looked up.", error)
        }
        guard exists else {
            throw PlatformError(.invalidCredentials, "The token's user no longer exists.")
        }
        return AuthenticatedUser(username: username)
    }

    private func verify(login: String, password: String, header: String, address: String) async throws(PlatformError)
        -> AuthenticatedUser
    {
        let now = clock.now()
        let user: UserRecord?
        do {
            user = try await store.user(login: login)
        } catch {
            throw PlatformError.store("The user could not be looked up.", error)
        }
        let key = Data(HMAC<SHA256>.authenticationCode(for: Data(header.utf8), using: cacheKey))
        if let user, let cached = cache.withLock({ $0[key] }), cached.validUntil > now,
            cached.username == user.username, cached.passwordHash == user.passwordHash
        {
            return AuthenticatedUser(username: user.username)
        }

        let accountKey = user?.username ?? login
        let wait = max(
            accountThrottle.withLock { $0.retryAfter(accountKey, now: now) } ?? 0,
            addressThrottle.withLock { $0.retryAfter(address, now: now) } ?? 0)
        if wait > 0 {
            throw PlatformError(
                .throttled, "Too many failed logins; retry in \(Int(wait.rounded(.up))) s.",
                retryAfter: Int(wait.rounded(.up)))
        }

        let hash = user?.passwordHash ?? Self.decoyHash
        let matches = await check(password, against: hash, key: key)
        guard let user, matches else {
            accountThrottle.withLock { $0.recordFailure(accountKey, now: now) }
            addressThrottle.withLock { $0.recordFailure(address, now: now) }
            throw PlatformError(.invalidCredentials, "Wrong username or password.")
        }
        accountThrottle.withLock { $0.recordSuccess(accountKey) }
        cache.withLock { cache in
            if cache.count >= Self.cacheCapacity { cache = cache.filter { $0.value.validUntil > now } }
            if cache.count >= Self.cacheCapacity { cache.removeAll() }
            cache[key] = CachedLogin(
                username: user.username, passwordHash: user.passwordHash, validUntil: now + cacheLifetime)
        }
        return AuthenticatedUser(username: user.username)
    }

    /// One password check per credential and hash at a time: later logins with the same header
    /// join the check under way.
    private func check(_ password: String, against hash: String, key: Data) async -> Bool {
        let flight = key + Data(hash.utf8)
        let passwordCheck = self.passwordCheck
        let (task, joined) = checks.withLock { checks -> (Task<Bool, Never>, Bool) in
            if let running = checks[flight] { return (running, true) }
            let task = Task { await passwordCheck(password, hash) }
            checks[flight] = task
            return (task, false)
        }
        if joined { joinedCheck?() }
        let matches = await task.value
        checks.withLock { checks in
            if checks[flight] == task { checks[flight] = nil }
        }
        return matches
    }

    /// bcrypt takes tens of milliseconds: it runs on NIO's thread pool, not the cooperative one.
    static let bcrypt: @Sendable (String, String) async -> Bool = { password, hash in
        (try? await NIOThreadPool.singleton.runIfActive { Bcrypt.verify(password, hash: hash) }) ?? false
    }
}

/// Tokens the platform issues itself for `Authorization: Bearer` and `x-token`:
/// `kl1.<base64url(username)>.<expiry, unix seconds>.<base64url(HMAC-SHA256 of the preceding)>`.
public struct TokenIssuer: Sendable {
    public enum Verdict: Equatable, Sendable {
        case valid(username: String)
        case expired
        case invalid
    }

    /// An HMAC with the key already absorbed, copied for each token: setting the key up is two
    /// hash blocks and a handful of allocations, as much as the rest of a check.
    private let keyed: HMAC<SHA256>
    private static let prefix = "kl1"

    public init(secret: [UInt8]) {
        keyed = HMAC(key: SymmetricKey(data: secret))
    }

    public func issue(for username: String, expiresAt: Date) -> String {
        let body = "\(Self.prefix).\(Self.base64url(Data(username.utf8))).\(Int64(expiresAt.timeIntervalSince1970))"
        return body + "." + Self.base64url(Data(mac(of: Data(body.utf8))))
    }

    public func verify(_ token: String, now: Date) -> Verdict {
        var token = token
        return token.withUTF8 { verify($0, now: now) }
    }

    /// On the token's bytes, without making strings or `Data` of its parts: this runs on every
    /// token-authenticated request.
    private func verify(_ token: UnsafeBufferPointer<UInt8>, now: Date) -> Verdict {
        let dot = UInt8(ascii: ".")
        var dots: [Int] = []
        dots.reserveCapacity(3)
        for index in token.indices where token[index] == dot {
            guard dots.count < 3 else { return .invalid }
            dots.append(index)
        }
        guard dots.count == 3, token[..<dots[0]].elementsEqual(Self.prefix.utf8),
            let mac = Self.bytes(base64url: token[(dots[2] + 1)...]), mac.count == SHA256.byteCount,
            // Compared in constant time.
            self.mac(of: UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: token[..<dots[2]]))) == mac,
            let name = Self.bytes(base64url: token[(dots[0] + 1)..<dots[1]]),
            let username = String(validating: name, as: UTF8.self),
            let expiry = Int64(String(decoding: token[(dots[1] + 1)..<dots[2]], as: UTF8.self))
        else { return .invalid }
        return Date(timeIntervalSince1970: TimeInterval(expiry)) > now ? .valid(username: username) : .expired
    }

    /// Byte by byte: this runs on every token-authenticated request, and Foundation's string
    /// replacing costs more than the HMAC.
    static func base64url(_ data: Data) -> String {
        let standard = data.base64EncodedData()
        var url = [UInt8]()
        url.reserveCapacity(standard.count)
        for byte in standard {
            switch byte {
            case UInt8(ascii: "+"): url.append(UInt8(ascii: "-"))
            case UInt8(ascii: "/"): url.append(UInt8(ascii: "_"))
            case UInt8(ascii: "="): continue
            default: url.append(byte)
            }
        }
        return String(decoding: url, as: UTF8.self)
    }

    /// The MAC of a token's body (all but its last part).
    private func mac(of body: some DataProtocol) -> HashedAuthenticationCode<SHA256> {
        var hmac = keyed
        hmac.update(data: body)
        return hmac.finalize()
    }

    /// base64url without padding, in its one canonical spelling: the bits left over in the last
    /// character must be zero, so that a token differing only there is not the token issued.
    static func bytes(base64url text: UnsafeBufferPointer<UInt8>.SubSequence) -> [UInt8]? {
        guard text.count % 4 != 1 else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.count * 3 / 4)
        var bits: UInt32 = 0
        var held = 0
        for character in text {
            guard let value = sextet(character) else { return nil }
            bits = bits << 6 | UInt32(value)
            held += 6
            if held >= 8 {
                held -= 8
                bytes.append(UInt8(truncatingIfNeeded: bits >> UInt32(held)))
            }
        }
        guard bits & ((1 << UInt32(held)) - 1) == 0 else { return nil }
        return bytes
    }

    private static func sextet(_ character: UInt8) -> UInt8? {
        switch character {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"): character - UInt8(ascii: "A")
        case UInt8(ascii: "a")...UInt8(ascii: "z"): character - UInt8(ascii: "a") + 26
        case UInt8(ascii: "0")...UInt8(ascii: "9"): character - UInt8(ascii: "0") + 52
        case UInt8(ascii: "-"): 62
        case UInt8(ascii: "_"): 63
        default: nil
        }
    }
}
