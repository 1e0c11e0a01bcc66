import Foundation

/// Everything an operator can set on a platform node. Defaults follow `design.md`.
public struct PlatformConfiguration: Sendable {
    /// How the listener is secured.
    public enum TransportSecurity: Sendable, Equatable {
        /// A self-signed certificate for localhost/127.0.0.1, created once and kept next to the
        /// database so a browser needs to trust it only once.
        case developmentCertificate
        /// PEM files of a real certificate chain and its private key.
        case certificate(chainPath: String, keyPath: String)
        /// Plain HTTP and WS: only behind a TLS-terminating proxy.
        case plaintext
    }

    public var host: String = "127.0.0.1"
    /// 0 picks a free port (tests, the embedded demo).
    public var port: Int = 8443
    public var transportSecurity: TransportSecurity = .developmentCertificate
    /// Where users, subscriptions, presence and queued notifications are kept: a SQLite file, or
    /// a `postgres://user:password@host:port/database` URL that several nodes share.
    public var database: String = "kandy-link.sqlite"

    /// Sessions one user may hold at once; `forceLogOut` evicts the oldest beyond it.
    public var maxSessionsPerUser: Int = 1
    /// Bounds of a granted subscription lifetime, in seconds.
    public var minExpires: Int = 60
    public var maxExpires: Int = 3600
    /// A channel socket silent for longer than this is closed: 3 × the 30 s client keepalive
    /// plus grace. The subscription itself lives on until it expires.
    public var keepaliveAllowance: TimeInterval = 100
    /// After a DELETE the client closes its socket itself; the platform closes it after this.
    public var unsubscribeCloseDelay: TimeInterval = 1
    /// How long a graceful shutdown waits for requests under way (one may be waiting on a
    /// database that does not answer) before it cancels them: a node told to stop always stops.
    public var shutdownGrace: Duration = .seconds(10)
    /// How often expiry and idle sockets are checked. nil: only when ``Platform/sweep()`` is called.
    public var sweepInterval: Duration? = .seconds(1)

    public var maxBodyBytes: Int = 16 * 1024
    /// How long a request body may take from its first bytes to its end.
    public var bodyTimeout: Duration = .seconds(30)
    public var maxFrameBytes: Int = 4 * 1024
    /// How long a channel socket's frame may take from its first bytes to its end.
    public var frameTimeout: Duration = .seconds(30)
    /// Bound of the queue each subscription keeps while its socket is down; beyond it the oldest
    /// notifications are dropped and the client is told how many.
    public var maxQueuedNotifications: Int = 10_000
    public var maxQueuedBytes: Int = 4 << 20

    /// Bytes a channel socket may have waiting to be written; past it the client is taken as not
    /// reading: its socket is closed (1008) and what follows is queued for its reconnect.
    public var maxChannelBacklogBytes: Int = 1 << 20

    /// Longest instant message, in UTF-8 bytes (the body limit bounds it too).
    public var maxMessageBytes: Int = 10_000
    /// Longest presence note, in UTF-8 bytes.
    public var maxNoteBytes: Int = 1024
    /// Users one presenceWatcher request may name.
    public var maxUserListCount: Int = 100
    /// Users one user may watch.
    public var maxWatchedUsers: Int = 1000

    /// An unanswered call ends after this many seconds (Kandy.js has no timeout of its own).
    public var callRingTimeout: TimeInterval = 60
    /// Notifications to a caller about its new call wait this long after the callStart answer:
    /// Kandy.js loses those that overtake it (call-protocol §3.4).
    public var callerNotificationGrace: TimeInterval = 1
    /// Longest SDP a call request may carry, in UTF-8 bytes; call requests may be this much
    /// larger than ``maxBodyBytes``.
    public var maxSDPBytes: Int = 64 * 1024
    /// Call log entries kept per user; older ones are dropped as new calls end.
    public var callHistoryLength: Int = 500

    /// Contacts one user's address book may hold.
    public var maxContactsPerUser: Int = 1000

    /// Browser origins allowed to open channels; nil allows any (the client sends no credential
    /// on the socket, so the unguessable channel id is the capability either way).
    public var allowedOrigins: Set<String>? = nil

    /// Lifetime of the bearer / x-token tokens the platform issues.
    public var tokenLifetime: TimeInterval = 3600
    /// How long a verified password login is remembered (keyed by an HMAC of the header, never the
    /// password), so the slow hash runs once per login rather than per request.
    public var credentialCacheLifetime: TimeInterval = 300
    public var loginThrottle: LoginThrottle.Policy = .standard
    /// bcrypt cost for new passwords.
    public var passwordCost: UInt8 = 10

    /// TURN servers and the secret they share with the platform; nil: no TURN credentials.
    public var turn: Turn? = nil

    public struct Turn: Sendable, Equatable {
        public var secret: String
        /// `turn:`, `turns:` and `stun:` URIs, for the printed client configuration.
        public var uris: [String]
        /// Seconds a credential stays valid, within ``TurnCredentialIssuer/lifetimeRange``.
        public var lifetime: TimeInterval

        /// A day: long enough for any call, short enough to be worth renewing.
        public static let defaultLifetime: TimeInterval = 86400

        public init(secret: String, uris: [String] = [], lifetime: TimeInterval = defaultLifetime) {
            self.secret = secret
            self.uris = uris
            self.lifetime = lifetime
        }
    }

    public init() {}

    /// Directory of the database file, or the working directory with PostgreSQL: where the
    /// development certificate is kept.
    public var dataDirectory: URL {
        PostgresStore.isURL(database)
            ? URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
            : URL(fileURLWithPath: database).deletingLastPathComponent()
    }
}
