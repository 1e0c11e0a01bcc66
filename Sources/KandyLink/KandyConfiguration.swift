import Foundation

/// What `Kandy.create` needs to reach a Kandy Link platform. Defaults are those of Kandy.js
/// 4.20 (spec §1); ``validate()`` turns a mistake into a thrown error rather than a log line.
///
/// ```swift
/// let configuration = KandyConfiguration(
///     authentication: .init(server: .init(base: "link.example.com")),
///     subscription: .init(websocket: .init(server: "ws.example.com")))
/// ```
public struct KandyConfiguration: Sendable, Equatable {
    public var authentication: Authentication
    public var subscription: Subscription
    public var call: Call
    public var connectivity: Connectivity
    public var tls: TLS

    public init(
        authentication: Authentication, subscription: Subscription, call: Call = .init(),
        connectivity: Connectivity = .init(), tls: TLS = .init()
    ) {
        self.authentication = authentication
        self.subscription = subscription
        self.call = call
        self.connectivity = connectivity
        self.tls = tls
    }

    public struct Authentication: Sendable, Equatable {
        public var server: Server
        public init(server: Server) { self.server = server }

        /// The REST origin: `{protocol}://{base}:{port}`, REST version `version`.
        public struct Server: Sendable, Equatable {
            public var base: String
            public var `protocol`: String
            public var port: Int
            public var version: String

            public init(base: String, protocol: String = "https", port: Int = 443, version: String = "1") {
                self.base = base
                self.protocol = `protocol`
                self.port = port
                self.version = version
            }
        }
    }

    public struct Subscription: Sendable, Equatable {
        public var websocket: WebSocket
        /// Requested subscription lifetime in seconds; the platform may grant less.
        public var expires: Int
        /// Shortest wait between refreshes, whatever the grant (Kandy.js: 30 s).
        public var minimumRefreshInterval: Duration

        public init(websocket: WebSocket, expires: Int = 3600, minimumRefreshInterval: Duration = .seconds(30)) {
            self.websocket = websocket
            self.expires = expires
            self.minimumRefreshInterval = minimumRefreshInterval
        }

        public struct WebSocket: Sendable, Equatable {
            public var server: String
            /// `wss` or `ws`. Kandy.js ignores this and always uses `wss`; we honour it.
            public var `protocol`: String
            public var port: Int

            public init(server: String, protocol: String = "wss", port: Int = 443) {
                self.server = server
                self.protocol = `protocol`
                self.port = port
            }
        }
    }

    public struct Call: Sendable, Equatable {
        /// Whether the TURN credentials the platform returns replace those of `iceServers`.
        public var serverTurnCredentials: Bool
        public var iceServers: [IceServer]
        /// A call not answered within this ends (outgoing: with a DELETE). Kandy.js has none.
        public var ringTimeout: Duration
        /// How long a call notification for a session not known yet is kept, in case the
        /// callStart answer naming it is still on its way (Kandy.js drops it).
        public var unknownSessionGrace: Duration

        public init(
            serverTurnCredentials: Bool = true, iceServers: [IceServer] = [], ringTimeout: Duration = .seconds(90),
            unknownSessionGrace: Duration = .seconds(5)
        ) {
            self.serverTurnCredentials = serverTurnCredentials
            self.iceServers = iceServers
            self.ringTimeout = ringTimeout
            self.unknownSessionGrace = unknownSessionGrace
        }
    }

    public struct IceServer: Sendable, Equatable {
        public var urls: [String]
        public var username: String?
        public var credential: String?

        public init(urls: [String], username: String? = nil, credential: String? = nil) {
            self.urls = urls
            self.username = username
            self.credential = credential
        }

        public init(url: String, username: String? = nil, credential: String? = nil) {
            self.init(urls: [url], username: username, credential: credential)
        }
    }

    public struct Connectivity: Sendable, Equatable {
        /// Interval of the `{"message_type":"ping"}` keepalive.
        public var keepaliveInterval: Duration
        public var autoReconnect: Bool
        public var reconnect: Backoff
        /// With bearer credentials, put the token in the first channel URL (`access_token=`).
        public var webSocketOAuthQuery: Bool
        /// How long opening the channel (TCP, TLS and the upgrade) may take before the attempt
        /// fails and the backoff takes over: a server that accepts and never answers must not
        /// hold the channel forever.
        public var openTimeout: Duration

        public init(
            keepaliveInterval: Duration = .seconds(30), autoReconnect: Bool = true, reconnect: Backoff = .init(),
            webSocketOAuthQuery: Bool = true, openTimeout: Duration = .seconds(10)
        ) {
            self.keepaliveInterval = keepaliveInterval
            self.autoReconnect = autoReconnect
            self.reconnect = reconnect
            self.webSocketOAuthQuery = webSocketOAuthQuery
            self.openTimeout = openTimeout
        }
    }

    /// Waits between channel open attempts:
    /// `min(delay × multiplier^(n−1), maxDelay) × (1 − jitter × r)`, r uniform in [0, 1).
    ///
    /// | attempt failed (defaults: 5 s, ×1, no cap reached, jitter 0.2) | 1 | 2 | 3 | 4 | 5 |
    /// |---|---|---|---|---|---|
    /// | next attempt after | 4–5 s | 4–5 s | 4–5 s | 4–5 s | gives up (limit 5) |
    public struct Backoff: Sendable, Equatable {
        /// Open attempts per connection cycle; 0 means unlimited.
        public var limit: Int
        public var delay: Duration
        public var multiplier: Double
        public var maxDelay: Duration
        public var jitter: Double

        public init(
            limit: Int = 5, delay: Duration = .seconds(5), multiplier: Double = 1, maxDelay: Duration = .seconds(640),
            jitter: Double = 0.2
        ) {
            self.limit = limit
            self.delay = delay
            self.multiplier = multiplier
            self.maxDelay = maxDelay
            self.jitter = jitter
        }

        /// The wait after failed attempt `attempt` (1-based), for a random `r` in [0, 1).
        public func wait(afterAttempt attempt: Int, random r: Double) -> Duration {
            let base = delay.seconds * pow(multiplier, Double(max(attempt - 1, 0)))
            return .seconds(min(base, maxDelay.seconds) * (1 - jitter * r))
        }
    }

    /// Which certificates the SDK trusts.
    public struct TLS: Sendable, Equatable {
        /// PEM files of extra trust roots, e.g. a development platform's self-signed certificate.
        /// Empty: the system's roots.
        public var trustedCertificateFiles: [String]
        /// Name the WebSocket checks the certificate against when the server is an IP address
        /// (TLS cannot send an IP as server name). Default for loopback addresses: `localhost`.
        public var serverName: String?

        public init(trustedCertificateFiles: [String] = [], serverName: String? = nil) {
            self.trustedCertificateFiles = trustedCertificateFiles
            self.serverName = serverName
        }
    }

    /// Throws ``KandyError`` with code `configuration` and the field at fault.
    public func validate() throws(KandyError) {
        func fail(_ message: String) -> KandyError { KandyError(.invalidConfiguration, message) }
        let server = authentication.server
        guard !server.base.isEmpty, !server.base.contains("/") else {
            throw fail("authentication.server.base must be a host name, e.g. \"link.example.com\".")
        }
        guard ["http", "https"].contains(server.protocol) else {
            throw fail("authentication.server.protocol must be \"http\" or \"https\", not \"\(server.protocol)\".")
        }
        guard (1...65535).contains(server.port) else { throw fail("authentication.server.port must be 1–65535.") }
        guard server.version == "1" else { throw fail("authentication.server.version must be \"1\".") }
        let websocket = subscription.websocket
        guard !websocket.server.isEmpty, !websocket.server.contains("/") else {
            throw fail("subscription.websocket.server must be a host name.")
        }
        guard ["ws", "wss"].contains(websocket.protocol) else {
            throw fail("subscription.websocket.protocol must be \"ws\" or \"wss\".")
        }
        guard (1...65535).contains(websocket.port) else { throw fail("subscription.websocket.port must be 1–65535.") }
        guard subscription.expires > 0 else { throw fail("subscription.expires must be positive.") }
        guard subscription.minimumRefreshInterval > .zero else {
            throw fail("subscription.minimumRefreshInterval must be positive.")
        }
        guard connectivity.openTimeout > .zero else {
            throw fail("connectivity.openTimeout must be positive.")
        }
        guard connectivity.keepaliveInterval > .zero else {
            throw fail("connectivity.keepaliveInterval must be positive.")
        }
        let backoff = connectivity.reconnect
        guard backoff.limit >= 0, backoff.delay >= .zero, backoff.multiplier >= 1, backoff.maxDelay >= backoff.delay,
            (0...1).contains(backoff.jitter)
        else {
            throw fail(
                "connectivity.reconnect needs limit ≥ 0, delay ≥ 0, multiplier ≥ 1, maxDelay ≥ delay, jitter in 0…1.")
        }
        for server in call.iceServers where server.urls.isEmpty {
            throw fail("every call.iceServers entry needs at least one URL.")
        }
        for file in tls.trustedCertificateFiles where !FileManager.default.isReadableFile(atPath: file) {
            throw fail("tls.trustedCertificateFiles: cannot read \(file).")
        }
    }

    var restOrigin: String {
        "\(authentication.server.protocol)://\(authentication.server.base):\(authentication.server.port)"
    }

    var channelOrigin: String {
        "\(subscription.websocket.protocol)://\(subscription.websocket.server):\(subscription.websocket.port)"
    }
}

extension Duration {
    var seconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}
