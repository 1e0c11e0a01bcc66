import Foundation
@_exported import KandyLinkProtocol
import NIOSSL
import Synchronization

/// A connection to a Kandy Link platform: the Kandy.js `create(config)` instance, in Swift.
///
/// ```swift
/// let kandy = try Kandy.create(KandyConfiguration(
///     authentication: .init(server: .init(base: "link.example.com")),
///     subscription: .init(websocket: .init(server: "link.example.com"))))
///
/// kandy.on(.subscriptionChange) { _ in print(kandy.services.getSubscriptions().subscribed) }
/// try await kandy.setCredentials(.password(username: "alice@example.com", password: "…"))
/// try await kandy.services.subscribe(["call", "Presence", "IM"], forceLogOut: true)
/// // … notifications arrive; the subscription refreshes itself …
/// try await kandy.services.unsubscribe(["call", "Presence", "IM"])
/// await kandy.destroy()
/// ```
///
/// Results come both ways: `async throws` for callers that wait, and events (``on(_:_:)`` or
/// ``events``) for observers. Every instance must end with ``destroy()``, which closes its
/// socket and stops every timer; afterwards each call throws.
public final class Kandy: Sendable {
    /// The SDK's version, sent in `X-Cpaas-Agent`.
    public static let version = "1.0.0"

    public let configuration: KandyConfiguration
    /// Subscribe to and unsubscribe from services.
    public let services: Services
    /// The notification channel's state.
    public let connection: Connection
    /// Your presence and the presence of users you watch.
    public let presence: Presence
    /// Instant messages.
    public let messages: Messages
    /// Calls, and their history (`call.history`).
    public let call: Calls
    /// Your personal address book.
    public let contacts: Contacts
    /// The directory of users, and your own profile.
    public let user: Users
    /// Makes calls' SDP and carries their media.
    public let mediaEngine: any MediaEngine
    let session: KandySession
    let snapshot: KandySession.SnapshotBox
    let observers: KandySession.Observers

    private init(
        configuration: KandyConfiguration, session: KandySession, snapshot: KandySession.SnapshotBox,
        observers: KandySession.Observers, mediaEngine: any MediaEngine
    ) {
        self.configuration = configuration
        self.mediaEngine = mediaEngine
        self.session = session
        self.snapshot = snapshot
        self.observers = observers
        self.services = Services(session: session, snapshot: snapshot)
        self.connection = Connection(configuration: configuration, snapshot: snapshot)
        self.presence = Presence(session: session, snapshot: snapshot)
        self.messages = Messages(session: session, snapshot: snapshot)
        self.call = Calls(
            control: session.calls, history: CallHistory(session: session, observers: observers))
        self.contacts = Contacts(session: session, observers: observers)
        self.user = Users(session: session, observers: observers)
    }

    /// Validates `configuration` and makes an instance. No traffic until ``Services/subscribe(_:forceLogOut:)``.
    ///
    /// - Parameters:
    ///   - http, websocket: transports; nil for AsyncHTTPClient and WSClient.
    ///   - mediaEngine: makes calls' SDP and carries their media; nil for one that only
    ///     signals (``SignallingOnlyMediaEngine``).
    ///   - clock: drives keepalives, retries and the refresh alarm; inject one in tests.
    ///   - now: the wall clock the refresh schedule is checked against.
    public static func create(
        _ configuration: KandyConfiguration,
        http: (any HTTPTransport)? = nil,
        websocket: (any WebSocketTransport)? = nil,
        mediaEngine: (any MediaEngine)? = nil,
        clock: any Clock<Duration> = ContinuousClock(),
        now: @escaping @Sendable () -> Date = { Date() },
        random: @escaping @Sendable () -> Double = { Double.random(in: 0..<1) }
    ) throws(KandyError) -> Kandy {
        try configuration.validate()
        let tls: TLSConfiguration
        do {
            tls = try makeTLS(configuration.tls)
        } catch {
            throw KandyError(.invalidConfiguration, "tls.trustedCertificateFiles: \(error)")
        }
        let snapshot = KandySession.SnapshotBox()
        let observers = KandySession.Observers()
        let engine = mediaEngine ?? SignallingOnlyMediaEngine()
        let session = KandySession(
            configuration: configuration,
            http: http ?? AsyncHTTPTransport(tls: tls),
            websocket: websocket
                ?? WSClientTransport(
                    tls: tls, serverName: serverName(for: configuration),
                    pingInterval: configuration.connectivity.keepaliveInterval,
                    openTimeout: configuration.connectivity.openTimeout),
            clock: clock, wallClock: now, random: random, observers: observers, snapshot: snapshot,
            mediaEngine: engine)
        return Kandy(
            configuration: configuration, session: session, snapshot: snapshot, observers: observers,
            mediaEngine: engine)
    }

    // MARK: Credentials

    /// Sets the credentials later requests carry (spec §2). No traffic: a wrong password shows
    /// at subscribe. Emits `auth:change`, or `auth:error` (and throws) when unusable.
    public func setCredentials(_ credentials: Credentials) async throws {
        try await session.setCredentials(credentials)
    }

    /// The tutorial's `setCredentials({username, password})`.
    public func setCredentials(username: String, password: String) async throws {
        try await setCredentials(.password(username: username, password: password))
    }

    /// `{username}` once credentials are set; empty after a `gone` or lost connection.
    public func getUserInfo() -> UserInfo {
        UserInfo(username: snapshot.state.withLock { $0.username })
    }

    /// The truth about the connection: subscribed with the channel open, an operation pending,
    /// and the last error.
    public func getConnection() -> ConnectionInfo {
        snapshot.state.withLock {
            ConnectionInfo(
                isConnected: $0.channelOpen && !$0.subscribed.isEmpty, isPending: $0.isPending, error: $0.lastError)
        }
    }

    /// The ICE servers for a WebRTC stack: `call.iceServers` from the configuration, with the
    /// TURN servers' username and credential replaced by the ones the platform issued (when
    /// `call.serverTurnCredentials` is on and the platform sent some). Up to date after every
    /// subscribe, service update and refresh that brought new ones.
    public var iceServers: [KandyConfiguration.IceServer] { snapshot.iceServers(configuration) }

    // MARK: Events

    /// Calls `handler` for each event named `name` (tutorial parity). Returns a token for ``off(_:)``.
    @discardableResult
    public func on(_ name: KandyEvent.Name, _ handler: @escaping @Sendable (KandyEvent) -> Void) -> EventToken {
        EventToken(id: observers.add(name, handler))
    }

    /// Calls `handler` for every event.
    @discardableResult
    public func onAny(_ handler: @escaping @Sendable (KandyEvent) -> Void) -> EventToken {
        EventToken(id: observers.add(nil, handler))
    }

    public func off(_ token: EventToken) {
        observers.remove(token.id)
    }

    /// Every event from now on, until ``destroy()`` finishes the sequence.
    public var events: AsyncStream<KandyEvent> { observers.stream() }

    // MARK: Lifecycle

    /// Closes the socket, cancels every timer and request, finishes ``events``. Sends no DELETE
    /// (as Kandy.js); unsubscribe first to end the platform's subscription. Later calls throw.
    public func destroy() async {
        await session.destroy()
    }

    public var isDestroyed: Bool { snapshot.state.withLock { $0.destroyed } }

    static func makeTLS(_ trust: KandyConfiguration.TLS) throws -> TLSConfiguration {
        var tls = TLSConfiguration.makeClientConfiguration()
        if !trust.trustedCertificateFiles.isEmpty {
            let certificates = try trust.trustedCertificateFiles.flatMap { try NIOSSLCertificate.fromPEMFile($0) }
            tls.trustRoots = .certificates(certificates)
        }
        return tls
    }

    /// TLS cannot name an IP address; a loopback platform's development certificate names localhost.
    private static func serverName(for configuration: KandyConfiguration) -> String? {
        if let name = configuration.tls.serverName { return name }
        let host = configuration.subscription.websocket.server
        let isIP = host.allSatisfy { $0.isNumber || $0 == "." } || host.contains(":")
        guard isIP else { return nil }
        return host.hasPrefix("127.") || host == "::1" ? "localhost" : nil
    }
}

public struct UserInfo: Sendable, Equatable {
    public var username: String?
}

public struct ConnectionInfo: Sendable, Equatable {
    public var isConnected: Bool
    public var isPending: Bool
    public var error: KandyError?
}

public struct EventToken: Sendable, Hashable {
    let id: UUID
}

/// `kandy.services`: subscriptions to platform services.
public struct Services: Sendable {
    let session: KandySession
    let snapshot: KandySession.SnapshotBox

    /// Subscribes (POST, then the channel opens), or adds services to the subscription (PUT).
    /// Returns once subscribed with the channel open; throws the `subscription:error` otherwise.
    /// Names go on the wire exactly as given.
    public func subscribe(_ services: [String], forceLogOut: Bool = false) async throws {
        try await session.subscribe(services, forceLogOut: forceLogOut)
    }

    /// Removing every subscribed service ends the subscription (DELETE) and closes the channel;
    /// removing some updates it (PUT).
    public func unsubscribe(_ services: [String]) async throws {
        try await session.unsubscribe(services)
    }

    public func getSubscriptions() -> Subscriptions {
        snapshot.state.withLock { Subscriptions(subscribed: $0.subscribed, isPending: $0.isPending) }
    }

    /// The subscription as the platform granted it, when there is one.
    public func current() -> SubscriptionRecord? { snapshot.state.withLock { $0.record } }

    public struct Subscriptions: Sendable, Equatable {
        public var subscribed: [String]
        public var isPending: Bool
    }
}

/// `kandy.connection`: the notification channel.
public struct Connection: Sendable {
    let configuration: KandyConfiguration
    let snapshot: KandySession.SnapshotBox

    /// Nil before any socket was opened for a subscription.
    public func getSocketState() -> SocketState? {
        snapshot.state.withLock { state in
            guard let record = state.record else { return nil }
            return SocketState(
                connected: state.channelOpen, url: configuration.channelOrigin + record.channelPath,
                keepaliveInterval: configuration.connectivity.keepaliveInterval)
        }
    }

    public struct SocketState: Sendable, Equatable {
        public var connected: Bool
        public var url: String
        public var keepaliveInterval: Duration
    }
}
