import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import KandyLinkProtocol
import Logging
import NIOCore
import NIOSSL
import NIOWebSocket
import ServiceLifecycle
import Synchronization
import UnixSignals

/// One Kandy Link platform node: REST subscriptions and WebSocket notification channels on one
/// port (HTTPS and WSS unless `plaintext`), users and subscriptions in a SQLite file, or in a
/// PostgreSQL database that several nodes share.
///
/// ```swift
/// var configuration = PlatformConfiguration()
/// configuration.port = 0                       // any free port
/// let platform = try await Platform(configuration: configuration)
/// async let running: Void = platform.run()
/// let port = try await platform.listeningPort()
/// ```
public final class Platform: Sendable {
    public let configuration: PlatformConfiguration
    public let accounts: Accounts
    let clock: any PlatformClock
    let store: any PlatformStore
    private let ownsStore: Bool
    let subscriptions: Subscriptions
    let hub: NotificationHub
    let authenticator: Authenticator
    let events: EventSequence
    let delivery: NotificationDelivery
    let presence: PresenceService
    let messages: InstantMessageService
    let calls: CallService
    let callHistory: CallHistoryService
    let addressBook: AddressBookService
    let directory: DirectoryService
    let metrics = PlatformMetrics()
    let turn: TurnCredentialIssuer?
    let logger: Logger
    private let lifecycle = Mutex(Lifecycle())

    private struct Lifecycle {
        var port: Int?
        var portWaiters: [CheckedContinuation<Int, any Error>] = []
        var group: ServiceGroup?
        var stopped = false
    }

    /// Opens (or creates and migrates) the database.
    public init(
        configuration: PlatformConfiguration,
        store: (any PlatformStore)? = nil,
        clock: any PlatformClock = SystemPlatformClock(),
        logger: Logger = Logger(label: "kandy-link")
    ) async throws {
        self.configuration = configuration
        self.clock = clock
        self.logger = logger
        // A store the platform opened itself is closed when it stops; a given one is the caller's.
        self.ownsStore = store == nil
        let opened: any PlatformStore
        if let store {
            opened = store
        } else {
            opened = try await openStore(configuration.database, logger: logger)
        }
        let store = opened
        self.store = store
        do {
            self.accounts = try await Accounts(store: store, configuration: configuration, clock: clock)
        } catch {
            // Only on failure: on success the store lives as long as the platform.
            if ownsStore { await store.close() }
            throw error
        }
        self.subscriptions = Subscriptions(
            store: store,
            policy: .init(
                maxSessionsPerUser: configuration.maxSessionsPerUser, minExpires: configuration.minExpires,
                maxExpires: configuration.maxExpires))
        self.authenticator = Authenticator(
            store: store, clock: clock, tokens: accounts.tokens, configuration: configuration)
        let events = EventSequence(store: store)
        self.events = events
        self.hub = NotificationHub(
            store: store,
            policy: .init(
                queue: QueueBound(count: configuration.maxQueuedNotifications, bytes: configuration.maxQueuedBytes)),
            restamp: { text in try await Self.restamp(text, events: events) },
            logger: logger)
        self.turn = configuration.turn.map { TurnCredentialIssuer(secret: $0.secret, lifetime: $0.lifetime) }
        let delivery = NotificationDelivery(
            store: store, subscriptions: subscriptions, hub: hub, events: events, metrics: metrics, clock: clock,
            logger: logger)
        self.delivery = delivery
        self.presence = PresenceService(
            store: store, subscriptions: subscriptions, delivery: delivery, configuration: configuration, clock: clock,
            logger: logger)
        self.messages = InstantMessageService(
            store: store, subscriptions: subscriptions, delivery: delivery, metrics: metrics,
            maxMessageBytes: configuration.maxMessageBytes, clock: clock, logger: logger)
        let callHistory = CallHistoryService(
            store: store, length: configuration.callHistoryLength, clock: clock, logger: logger)
        self.callHistory = callHistory
        self.calls = CallService(
            store: store, subscriptions: subscriptions, delivery: delivery, history: callHistory, metrics: metrics,
            policy: .init(
                ringTimeout: configuration.callRingTimeout, callerGrace: configuration.callerNotificationGrace,
                maxSDPBytes: configuration.maxSDPBytes),
            clock: clock, logger: logger)
        self.addressBook = AddressBookService(store: store, limit: configuration.maxContactsPerUser, logger: logger)
        self.directory = DirectoryService(store: store, logger: logger)
    }

    // MARK: Running

    /// Serves until cancelled or until ``shutdown()`` or one of `gracefulShutdownSignals` arrives.
    /// On a graceful shutdown every channel socket is closed with a close frame first; the
    /// subscriptions stay stored, so clients reconnect to the next run.
    public func run(gracefulShutdownSignals: [UnixSignal] = []) async throws {
        // Whatever ends the run, including a failure before listening, releases listeningPort().
        defer { serverStopped() }
        try await withCleanup {
            try await serve(gracefulShutdownSignals: gracefulShutdownSignals)
        } cleanup: {
            if ownsStore { await store.close() }
        }
    }

    private func serve(gracefulShutdownSignals: [UnixSignal]) async throws {
        let tls = try makeTLSConfiguration()
        let server = try serverBuilder(tls: tls)
        let app = Application(
            responder: LinkResponder(platform: self),
            server: server,
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: nil),
            onServerRunning: { [self] channel in self.serverIsRunning(port: channel.localAddress?.port ?? 0) },
            logger: logger)
        var groupConfiguration = ServiceGroupConfiguration(
            services: [
                .init(service: app),
                .init(service: Sweeper(platform: self)),
                .init(service: SignalListener(platform: self)),
            ],
            gracefulShutdownSignals: gracefulShutdownSignals,
            cancellationSignals: [],
            logger: logger)
        groupConfiguration.maximumGracefulShutdownDuration = configuration.shutdownGrace
        let group = ServiceGroup(configuration: groupConfiguration)
        try lifecycle.withLock { state in
            if state.stopped { throw CancellationError() }
            state.group = group
        }
        try await group.run()
    }

    /// The port the platform listens on, once it does.
    public func listeningPort() async throws -> Int {
        try await withCheckedThrowingContinuation { continuation in
            lifecycle.withLock { state in
                if let port = state.port {
                    continuation.resume(returning: port)
                } else if state.stopped {
                    continuation.resume(throwing: CancellationError())
                } else {
                    state.portWaiters.append(continuation)
                }
            }
        }
    }

    /// Closes every channel socket with a close frame, stops listening and lets ``run()`` return.
    public func shutdown() async {
        let group = lifecycle.withLock { state in
            state.stopped = true
            return state.group
        }
        await group?.triggerGracefulShutdown()
    }

    private func serverIsRunning(port: Int) {
        let waiters = lifecycle.withLock { state in
            state.port = port
            defer { state.portWaiters = [] }
            return state.portWaiters
        }
        logger.info("Listening", metadata: ["host": .string(configuration.host), "port": .stringConvertible(port)])
        for waiter in waiters { waiter.resume(returning: port) }
    }

    private func serverStopped() {
        let waiters = lifecycle.withLock { state in
            state.stopped = true
            defer { state.portWaiters = [] }
            return state.portWaiters
        }
        for waiter in waiters { waiter.resume(throwing: CancellationError()) }
    }

    /// HTTP/1.1 with channel upgrades served by ``PlatformConnection``, inside TLS unless plaintext.
    private func serverBuilder(tls: TLSConfiguration?) throws -> HTTPServerBuilder {
        let base = HTTPServerBuilder { [self] responder in PlatformConnection(responder: responder, platform: self) }
        guard let tls else { return base }
        return try .tls(base, tlsConfiguration: tls)
    }

    func makeTLSConfiguration() throws -> TLSConfiguration? {
        switch configuration.transportSecurity {
        case .plaintext:
            return nil
        case .developmentCertificate:
            let files = try DevelopmentCertificate.loadOrCreate(in: configuration.dataDirectory)
            return try TLSConfiguration.forServer(chainPath: files.chainPath, keyPath: files.keyPath)
        case .certificate(let chainPath, let keyPath):
            return try TLSConfiguration.forServer(chainPath: chainPath, keyPath: keyPath)
        }
    }

    /// Live subscriptions (on every node sharing the store), for operators and tests.
    public func subscriptionCount() async throws -> Int { try await subscriptions.count(now: clock.now()) }
    /// Calls ringing or answered (on every node sharing the store).
    public func callCount() async throws -> Int { try await store.callCount() }
    /// Open channel sockets.
    public var openChannelCount: Int { hub.count }

    /// Returns true once `condition` holds, looked at again whenever a channel socket attaches,
    /// is closed or is heard from; false if it still does not at the end of `limit`.
    public func waitUntil(within limit: Duration = .seconds(10), _ condition: () -> Bool) async -> Bool {
        await hub.changes.until(within: limit, condition)
    }

    // MARK: Housekeeping

    /// Ends subscriptions that were not refreshed in time (`gone`, then close) and closes sockets
    /// that went silent or outlived their unsubscribe. Runs every `sweepInterval`; tests with a
    /// manual clock call it directly.
    public func sweep() async {
        let now = clock.now()
        do {
            let expired = try await subscriptions.expire(now: now)
            for record in expired {
                logger.info("Subscription expired", metadata: ["user": .string(record.username)])
            }
            await endChannels(expired.map(\.channelID), reason: "Subscription expired")
            metrics.expirations.increment(by: Int64(expired.count))
            await sessionsEnded(for: Set(expired.map(\.username)))
        } catch {
            logger.error("Expiring subscriptions failed", metadata: ["error": "\(error)"])
        }
        await calls.expireUnanswered()
        let idle = hub.sweep(now: now, silentSince: now - configuration.keepaliveAllowance)
        metrics.idleChannelsClosed.increment(by: Int64(idle))
    }

    /// Sessions of `users` ended (unsubscribe, expiry, a forced logout): a user left without any
    /// goes offline, and calls a user can no longer be reached in end.
    func sessionsEnded(for users: Set<String>) async {
        for user in users { await presence.sessionsEnded(for: user) }
        await calls.sessionsEnded(for: users)
    }

    /// The subscriptions of these channels ended: wherever a socket of theirs is open (here or
    /// on another node), it gets `gone` and is closed.
    func endChannels(_ channelIDs: [String], reason: String) async {
        guard !channelIDs.isEmpty else { return }
        for channelID in channelIDs { await endChannel(channelID, reason: reason) }
        await delivery.signal(.ended(channelIDs))
    }

    /// Sends `gone` on the channel's socket here (if one is open) and closes it.
    private func endChannel(_ channelID: String, reason: String) async {
        guard hub.hasSocket(channelID) else {
            await hub.close(channelID: channelID, code: .goingAway, reason: reason)
            return
        }
        let gone = try? await delivery.notification { .gone(eventId: $0) }.text
        await hub.close(
            channelID: channelID, sending: gone, code: gone == nil ? .goingAway : .normalClosure, reason: reason)
    }

    /// These subscriptions ended at the client's request: their sockets, wherever they are, are
    /// closed unless the client closes them first.
    func unsubscribed(_ channelIDs: [String]) async {
        await scheduleCloses(channelIDs)
        await delivery.signal(.unsubscribed(channelIDs))
    }

    /// Closes these channels' sockets here after the unsubscribe grace delay.
    private func scheduleCloses(_ channelIDs: [String]) async {
        let deadline = clock.now() + configuration.unsubscribeCloseDelay
        for channelID in channelIDs { await hub.scheduleClose(channelID: channelID, at: deadline) }
    }

    /// Acts on what another node signalled.
    func apply(_ signal: NodeSignal) async {
        switch signal {
        case .queued(let channelIDs):
            for channelID in channelIDs { await hub.drain(channelID: channelID, now: clock.now()) }
        case .ended(let channelIDs):
            for channelID in channelIDs { await endChannel(channelID, reason: "Subscription ended") }
        case .unsubscribed(let channelIDs):
            await scheduleCloses(channelIDs)
        case .attached(let channelIDs):
            for channelID in channelIDs { hub.release(channelID: channelID) }
        case .resume:
            for channelID in hub.channelsWithSockets() { await hub.drain(channelID: channelID, now: clock.now()) }
        }
    }

    /// The same notification under a fresh eventId.
    static func restamp(_ text: String, events: EventSequence) async throws -> (eventID: UInt64, text: String) {
        let eventID = try await events.next()
        guard let restamped = NotificationDocument.restamped(text, eventID: String(eventID)) else {
            throw PlatformError(.internalError, "A queued notification has no eventId.")
        }
        return (eventID, restamped)
    }

    // MARK: Channel

    /// Whether an upgrade of `target` may open a notification channel: a channel path whose
    /// subscription is live and the user's, from a page the origin allow-list admits. Browsers
    /// send no credentials on an upgrade, so the unguessable channel id is the capability; but
    /// credentials that are sent (Authorization, `access_token`, `token`) must be the owner's.
    func admitChannel(target: String, origins: [String], authorization: String? = nil, address: String = "unknown")
        async -> Result<ChannelAdmission, PlatformError>
    {
        guard case .channel(let user, let channelID)? = try? LinkRoute.parse(target) else {
            return .failure(PlatformError(.notFound, "Not a notification channel path."))
        }
        // A client reconnecting at once as this node stops is sent to try again (elsewhere, or
        // after the restart) rather than upgraded on a node that will not serve it.
        guard !hub.isClosing else {
            return .failure(PlatformError(.unavailable, "The platform is shutting down; reconnect shortly."))
        }
        let record: StoredSubscription?
        do {
            record = try await subscriptions.subscription(channelID: channelID, now: clock.now())
        } catch {
            logger.error("Channel refused: the store is unavailable", metadata: ["error": "\(error)"])
            return .failure(PlatformError(.unavailable))
        }
        guard let record, record.username == user else {
            return .failure(PlatformError(.subscriptionNotFound, "No live subscription has this channel."))
        }
        let token = Self.queryValue("access_token", in: target) ?? Self.queryValue("token", in: target)
        // Credentials that do not verify prove nothing either way (an expired token on a reconnect):
        // the path stays the capability. Valid ones of another user are refused.
        if authorization != nil || token?.isEmpty == false,
            let presented = try? await authenticator.authenticate(
                authorization: authorization, token: token, address: address),
            presented.username != record.username
        {
            logger.notice(
                "Channel refused: another user's credentials",
                metadata: [
                    "owner": .string(record.username), "presented": .string(presented.username),
                    "address": .string(address),
                ])
            return .failure(PlatformError(.forbiddenUser, "The credentials are not the channel owner's."))
        }
        // The allow-list protects against other web pages; an Origin that is not a page's
        // (native clients such as WSClient send their own ws:// or wss:// one) is not checked.
        if let allowed = configuration.allowedOrigins,
            let page = origins.first(where: {
                ($0.hasPrefix("https://") || $0.hasPrefix("http://")) && !allowed.contains($0)
            })
        {
            logger.notice("Channel refused: origin not allowed", metadata: ["origin": .string(page)])
            return .failure(PlatformError(.forbiddenUser, "Pages from this origin may not open channels."))
        }
        return .success(ChannelAdmission(channelID: channelID, lastEventID: Self.lastEventID(in: target)))
    }

    /// `lastEventId=N` in the channel query: the newest notification the client has (our SDK
    /// sends it on reconnect; Kandy.js does not).
    static func lastEventID(in target: String) -> UInt64? {
        queryValue(LinkPath.lastEventIDParameter, in: target).flatMap { UInt64($0) }
    }

    /// The percent-decoded value of `name` in the target's query.
    static func queryValue(_ name: String, in target: String) -> String? {
        guard let query = target.split(separator: "?", maxSplits: 1).dropFirst().first else { return nil }
        for pair in query.split(separator: "&") where pair.hasPrefix(name + "=") {
            return LinkPath.decode(pair.dropFirst(name.count + 1))
        }
        return nil
    }

    /// Makes an upgraded connection an admitted channel's socket (on the connection's event
    /// loop); what it returns attaches the socket to its channel, which writes it what the client
    /// has not had. Keepalives never get an answer (spec §4.4).
    func openChannel(_ admission: ChannelAdmission, on connection: any Channel) throws -> @Sendable () async -> Void {
        let clock = self.clock
        let hub = self.hub
        let backlog = configuration.maxChannelBacklogBytes
        try connection.syncOptions?.setOption(
            ChannelOptions.writeBufferWaterMark, value: .init(low: backlog / 2, high: backlog))
        let socket = NotificationHub.Socket(
            channelID: admission.channelID, connection: ChannelSocketHandler.connection(to: connection),
            now: clock.now(), peer: connection.remoteAddress?.description ?? "unknown")
        let decoder = try connection.pipeline.syncOperations.context(
            handlerType: ByteToMessageHandler<WebSocketFrameDecoder>.self)
        try connection.pipeline.syncOperations.addHandler(
            FrameDeadline(timeout: .init(configuration.frameTimeout)), position: .before(decoder.handler))
        try connection.pipeline.syncOperations.addHandler(
            ChannelSocketHandler(
                closeTimeout: .seconds(5), logger: logger,
                heard: {
                    socket.touch(clock.now())
                    hub.changes.signal()
                },
                ended: { hub.detach(socket) }))
        return { [self] in
            await hub.attach(socket, lastEventID: admission.lastEventID, now: clock.now())
            // A connection that closed while attaching found nothing to detach: detach it now.
            // (One closing later is detached by its handler.)
            if !connection.isActive { hub.detach(socket) }
            await delivery.signal(.attached([admission.channelID]))
        }
    }
}

/// Runs ``Platform/sweep()`` on an interval and, on graceful shutdown, closes every channel socket
/// before the HTTP server stops (it is shut down first, being last in the group).
private struct Sweeper: Service {
    let platform: Platform

    func run() async throws {
        await withGracefulShutdownHandler {
            guard let interval = platform.configuration.sweepInterval else {
                try? await gracefulShutdown()
                return
            }
            // Shutdown ends the wait between sweeps rather than waiting it out.
            await cancelWhenGracefulShutdown {
                while (try? await Task.sleep(for: interval)) != nil {
                    await platform.sweep()
                }
            }
        } onGracefulShutdown: {
            platform.hub.closeAll(reason: "Platform shutting down")
        }
        // Give the sockets a moment to finish their close handshakes.
        for _ in 0..<50 where platform.hub.count > 0 {
            try? await Task.sleep(for: .milliseconds(20))
        }
    }
}

/// Applies what other nodes sharing the store signal, for as long as the platform runs.
private struct SignalListener: Service {
    let platform: Platform

    func run() async throws {
        guard platform.store.isShared else {
            // Nothing will come; stay until the group stops, as a service must.
            try? await gracefulShutdown()
            return
        }
        await cancelWhenGracefulShutdown {
            for await signal in platform.store.signals() {
                await platform.apply(signal)
            }
        }
    }
}

extension TLSConfiguration {
    static func forServer(chainPath: String, keyPath: String) throws -> TLSConfiguration {
        let chain: [NIOSSLCertificate]
        let key: NIOSSLPrivateKey
        do {
            chain = try NIOSSLCertificate.fromPEMFile(chainPath)
        } catch {
            throw PlatformStartError.unreadableCertificate(path: chainPath, reason: "\(error)")
        }
        do {
            key = try NIOSSLPrivateKey(file: keyPath, format: .pem)
        } catch {
            throw PlatformStartError.unreadableCertificate(path: keyPath, reason: "\(error)")
        }
        var tls = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        // Closing a connection waits this long for the client's close_notify: an idle keep-alive
        // client that does not answer would otherwise hold a shutdown for 5 s.
        tls.shutdownTimeout = .seconds(1)
        return tls
    }
}

public enum PlatformStartError: Error, CustomStringConvertible {
    case unreadableCertificate(path: String, reason: String)

    public var description: String {
        switch self {
        case .unreadableCertificate(let path, let reason): "Cannot read TLS file \(path): \(reason)"
        }
    }
}
