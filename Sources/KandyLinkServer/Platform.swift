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
    let subscriptionService: SubscriptionService
    let channels: ChannelEndpoint
    let metrics = PlatformMetrics()
    private let connections = OpenConnections()
    let turn: TurnCredentialIssuer?
    let logger: Logger
    private let lifecycle = Mutex(Lifecycle())

    private struct Lifecycle {
        /// The port, once the server listens on it.
        var port: Int?
        /// The node hears the other nodes sharing its store (at once when none can).
        var hearing = false
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
        self.subscriptionService = SubscriptionService(
            subscriptions: subscriptions, hub: hub, delivery: delivery, presence: presence, calls: calls,
            metrics: metrics, turn: turn, unsubscribeCloseDelay: configuration.unsubscribeCloseDelay, clock: clock,
            logger: logger)
        self.channels = ChannelEndpoint(
            subscriptions: subscriptions, authenticator: authenticator, hub: hub, delivery: delivery,
            configuration: configuration, clock: clock, logger: logger)
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
            // Channel sockets still in their close handshake, and any connection the listener
            // accepted as it closed: none outlives the run.
            let left = connections.closeAll()
            if left > 0 { logger.debug("Connections open at the stop closed", metadata: ["count": "\(left)"]) }
            if ownsStore { await store.close() }
        }
    }

    private func serve(gracefulShutdownSignals: [UnixSignal]) async throws {
        let tls = try makeTLSConfiguration()
        let server = try serverBuilder(tls: tls)
        let app = Application(
            responder: LinkResponder(
                authenticator: authenticator, subscriptions: subscriptionService, presence: presence,
                messages: messages, calls: calls, addressBook: addressBook, directory: directory,
                callHistory: callHistory, store: store, hub: hub, metrics: metrics, configuration: configuration,
                logger: logger),
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

    /// The port the platform listens on, once it does and hears the other nodes sharing its
    /// store: a node ready for clients is one that learns of their notifications queued elsewhere.
    public func listeningPort() async throws -> Int {
        try await withCheckedThrowingContinuation { continuation in
            lifecycle.withLock { state in
                if let port = state.port, state.hearing {
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
        logger.info("Listening", metadata: ["host": .string(configuration.host), "port": .stringConvertible(port)])
        becameReady { $0.port = port }
    }

    /// Hearing the other nodes (again, after the database was away).
    fileprivate func hearingOtherNodes() {
        becameReady { $0.hearing = true }
    }

    /// Releases those waiting for the port once it is known and the node hears the others.
    private func becameReady(_ change: (inout Lifecycle) -> Void) {
        let ready = lifecycle.withLock { state -> (Int, [CheckedContinuation<Int, any Error>])? in
            change(&state)
            guard let port = state.port, state.hearing, !state.portWaiters.isEmpty else { return nil }
            defer { state.portWaiters = [] }
            return (port, state.portWaiters)
        }
        guard let (port, waiters) = ready else { return }
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
        let (channels, configuration, connections) = (channels, configuration, connections)
        let base = HTTPServerBuilder { responder in
            PlatformConnection(
                responder: responder, channels: channels, configuration: configuration, connections: connections)
        }
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
    public func subscriptionCount() async throws -> Int { try await subscriptionService.count() }
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
        await subscriptionService.expire(now: now)
        await calls.expireUnanswered()
        let idle = hub.sweep(now: now, silentSince: now - configuration.keepaliveAllowance)
        metrics.idleChannelsClosed.increment(by: Int64(idle))
    }

    /// Acts on what another node signalled.
    func apply(_ signal: NodeSignal) async {
        switch signal {
        case .queued(let channelIDs):
            for channelID in channelIDs { await hub.drain(channelID: channelID, now: clock.now()) }
        case .ended(let channelIDs):
            for channelID in channelIDs {
                await subscriptionService.endChannel(channelID, reason: "Subscription ended")
            }
        case .unsubscribed(let channelIDs):
            await subscriptionService.scheduleCloses(channelIDs)
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
}

/// A platform runs as one service of an app's own group: the group's graceful shutdown is the
/// platform's (every channel socket closed with a close frame, then the listener).
extension Platform: Service {
    public func run() async throws {
        do {
            try await withGracefulShutdownHandler {
                try await run(gracefulShutdownSignals: [])
            } onGracefulShutdown: {
                Task { await self.shutdown() }
            }
        } catch is CancellationError where lifecycle.withLock({ $0.stopped }) {
            // Told to stop before it was under way: a stop, not a failure.
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

/// Hears what other nodes sharing the store signal, and applies it, for as long as the platform
/// runs: the store's LISTEN connection lives in the platform's service group.
private struct SignalListener: Service {
    let platform: Platform

    func run() async throws {
        let store = platform.store
        guard store.isShared else {
            // Nothing will come; stay until the group stops, as a service must.
            platform.hearingOtherNodes()
            try? await gracefulShutdown()
            return
        }
        let signals = store.signals()
        await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { group in
                group.addTask { [platform] in await store.listen { platform.hearingOtherNodes() } }
                // Ends when the group is cancelled.
                for await signal in signals { await platform.apply(signal) }
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
