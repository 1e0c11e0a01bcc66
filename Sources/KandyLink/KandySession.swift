import Foundation
import KandyLinkProtocol
import Synchronization

/// The one actor that drives the state machines: it feeds them inputs (app calls, HTTP answers,
/// socket events, timers) and performs the actions they return. All I/O and all timers live
/// here; no decision does.
actor KandySession {
    let configuration: KandyConfiguration
    private let rest: RestExchange
    private let timer: AlarmClock
    let wallClock: @Sendable () -> Date
    private let random: @Sendable () -> Double
    let observers: Observers
    let snapshot: SnapshotBox
    /// Calls: their machines and media, driven by their own actor; notifications go there in order.
    nonisolated let calls: CallControl

    private(set) var auth = AuthMachine()
    private var subscription: SubscriptionMachine
    private var channel: ChannelMachine
    private var socket: ChannelConnector
    private var caller: CheckedContinuation<Void, any Error>?
    /// Alarms armed, by kind.
    private var tasks: [TaskKind: Task<Void, Never>] = [:]
    private var requests: [Int: Task<Void, Never>] = [:]
    private var nextRequest = 0
    private var destroyed = false
    /// The last failure, for `getConnection().error`; cleared by good credentials, as Kandy.js.
    private var lastError: KandyError?
    /// What this channel has received: the newest numeric eventId (sent as `lastEventId` on
    /// reconnect, so the platform replays only what follows) and the last other ids.
    private var receivedEvents = ReceivedEvents()

    private enum TaskKind: Hashable {
        case keepalive, retry, refresh
    }

    init(
        configuration: KandyConfiguration, http: any HTTPTransport, websocket: any WebSocketTransport,
        clock: any Clock<Duration>, wallClock: @escaping @Sendable () -> Date,
        random: @escaping @Sendable () -> Double, observers: Observers, snapshot: SnapshotBox,
        mediaEngine: any MediaEngine
    ) {
        self.configuration = configuration
        self.rest = RestExchange(http: http, origin: configuration.restOrigin)
        self.socket = ChannelConnector(websocket: websocket)
        self.timer = AlarmClock(clock)
        self.wallClock = wallClock
        self.random = random
        self.observers = observers
        self.snapshot = snapshot
        self.subscription = SubscriptionMachine(
            refreshFloor: configuration.subscription.minimumRefreshInterval.seconds)
        self.channel = ChannelMachine(
            backoff: configuration.connectivity.reconnect, autoReconnect: configuration.connectivity.autoReconnect)
        // The call service reaches the platform through this session, which it must not keep alive.
        let link = SessionLink()
        self.calls = CallControl(
            configuration: configuration.call, engine: mediaEngine,
            platform: CallPlatform(
                send: { method, path, body in
                    guard let session = link.session else {
                        return .failure(KandyError(.destroyed, "This Kandy instance was destroyed."))
                    }
                    return await session.callRequest(method, path, body)
                },
                iceServers: { snapshot.iceServers(configuration) },
                username: { await link.session?.username }),
            timer: timer, wallClock: wallClock, observers: observers)
        link.session = self
    }

    // MARK: App requests

    func setCredentials(_ credentials: Credentials) throws(KandyError) {
        try checkAlive()
        let previous = auth.credentials?.username
        let actions = auth.set(credentials)
        if let user = auth.credentials?.username, user != previous {
            snapshot.state.withLock { state in
                state.presence = [:]
                state.conversations = [:]
            }
        }
        lastError = auth.lastError
        for case .emit(let event) in actions {
            publish()
            observers.emit(event)
        }
        if let error = auth.lastError { throw error }
    }

    func subscribe(_ services: [String], forceLogOut: Bool) async throws {
        try checkAlive()
        guard auth.credentials != nil else {
            throw KandyError(.subscribeFailure, "Set credentials before subscribing.")
        }
        try await awaitCaller { perform(subscription.subscribe(services, forceLogOut: forceLogOut)) }
    }

    func unsubscribe(_ services: [String]) async throws {
        try checkAlive()
        try await awaitCaller { perform(subscription.unsubscribe(services)) }
    }

    func destroy() async {
        guard !destroyed else { return }
        // Calls end first, while their DELETEs can still be sent.
        await calls.shutdown()
        perform(subscription.destroy())
        perform(channel.close())
        destroyed = true
        for task in tasks.values { task.cancel() }
        for task in requests.values { task.cancel() }
        tasks = [:]
        requests = [:]
        let open = socket.shutdown()
        await open?.close()
        await rest.http.shutdown()
        publish()
        observers.finish()
    }

    /// Inputs a machine did not expect, the latest ``keptFaults``: a race the machines absorbed,
    /// or a fault to look into. Nothing else records them.
    private(set) var reportedFaults: [String] = []
    static let keptFaults = 50

    private func fault(_ description: String) {
        reportedFaults.append(description)
        if reportedFaults.count > Self.keptFaults { reportedFaults.removeFirst() }
    }

    func checkAlive() throws(KandyError) {
        if destroyed { throw KandyError(.destroyed, "This Kandy instance was destroyed; create a new one.") }
    }

    private func awaitCaller(_ start: () -> Void) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            guard caller == nil else {
                continuation.resume(throwing: KandyError(.busy, "A subscribe or unsubscribe is already in progress."))
                return
            }
            caller = continuation
            start()
        }
    }

    // MARK: Performing actions

    private func perform(_ actions: [SubscriptionMachine.Action]) {
        for action in actions {
            switch action {
            case .fault(let description):
                fault(description)
            case .emit(let event):
                publish()
                observers.emit(event)
            case .post(let services, let forceLogOut):
                request(post(services: services, forceLogOut: forceLogOut))
            case .update(let url, let services, let expires):
                request(put(url: url, services: services, expires: expires, isRefresh: false))
            case .refresh(let url, let services, let expires):
                request(put(url: url, services: services, expires: expires, isRefresh: true))
            case .delete(let url):
                request(delete(url: url))
            case .openChannel:
                perform(channel.open())
            case .closeChannel:
                // The subscription ended (unsubscribe, gone, lost): calls cannot go on without it.
                calls.notifyLost(KandyError(.callFailure, "The subscription ended."))
                perform(channel.close())
            case .armRefresh(let date):
                let delay = max(date.timeIntervalSince(wallClock()), 0)
                schedule(.refresh, after: .seconds(delay))
            case .cancelRefresh:
                tasks.removeValue(forKey: .refresh)?.cancel()
            case .complete(let error):
                publish()
                if let caller {
                    self.caller = nil
                    if let error { caller.resume(throwing: error) } else { caller.resume() }
                }
            case .forgetCredentials(let reason):
                for case .emit(let event) in auth.forget(reason) {
                    publish()
                    observers.emit(event)
                }
            }
        }
        publish()
    }

    private func perform(_ actions: [ChannelMachine.Action]) {
        for action in actions {
            switch action {
            case .fault(let description):
                fault(description)
            case .emitWsChange:
                publish()
                observers.emit(.wsChange)
            case .connect(let query):
                connect(query: query)
            case .scheduleRetry(let delay):
                schedule(.retry, after: delay)
            case .sendKeepalive:
                socket.sendKeepalive()
            case .armKeepalive:
                schedule(.keepalive, after: configuration.connectivity.keepaliveInterval)
            case .disconnect:
                socket.disconnect()
            case .cancelTimers:
                tasks.removeValue(forKey: .keepalive)?.cancel()
                tasks.removeValue(forKey: .retry)?.cancel()
            case .opened(let initial):
                if initial { perform(subscription.channelOpened(now: wallClock(), random: random())) }
            case .initialOpenFailed:
                perform(subscription.channelFailed())
            case .lost:
                // The socket's close (or failed open) was admitted first: none is held.
                perform(subscription.lostConnection())
            }
        }
        publish()
    }

    private func alarm(_ kind: TaskKind) {
        guard !destroyed else { return }
        tasks[kind] = nil
        switch kind {
        case .keepalive:
            perform(channel.keepaliveDue())
            // The wall-clock check of the refresh schedule: catches a sleep past the due time.
            perform(subscription.refreshCheck(now: wallClock()))
        case .retry:
            perform(channel.retryDue())
        case .refresh:
            perform(subscription.refreshCheck(now: wallClock()))
        }
    }

    private func schedule(_ kind: TaskKind, after delay: Duration) {
        tasks[kind]?.cancel()
        let wait = timer.wait(delay)
        tasks[kind] = Task { [weak self] in
            do { try await wait() } catch { return }
            await self?.alarm(kind)
        }
    }

    /// Runs an HTTP exchange off the actor; its answer comes back as an input.
    private func request(_ work: @escaping @Sendable () async -> Void) {
        let id = nextRequest
        nextRequest += 1
        requests[id] = Task { [weak self] in
            await work()
            await self?.requestFinished(id)
        }
    }

    private func requestFinished(_ id: Int) { requests[id] = nil }

    private func publish() {
        let (username, subscribed, isPending, channelOpen, record) = (
            auth.credentials?.username, subscription.subscribed, subscription.isPending, channel.isOpen,
            subscription.record
        )
        snapshot.state.withLock { state in
            state.username = username
            state.subscribed = subscribed
            state.isPending = isPending
            state.channelOpen = channelOpen
            state.lastError = lastError
            state.record = record
            state.destroyed = destroyed
        }
    }

    // MARK: Channel

    private func connect(query: ChannelMachine.Query) {
        guard let path = subscription.record?.channelPath else { return }
        let url = ChannelConnector.url(
            origin: configuration.channelOrigin, path: path, query: query, token: auth.credentials?.bearerToken,
            tokenOnFirstOpen: configuration.connectivity.webSocketOAuthQuery,
            lastEventID: receivedEvents.newest(on: path))
        socket.open(url) { [weak self] event, socket in await self?.channelEvent(event, of: socket) }
    }

    private func channelEvent(_ event: ChannelConnector.Event, of number: Int) {
        // Destroy supersedes every socket, so nothing is admitted after it.
        guard let event = socket.admit(event, of: number) else { return }
        switch event {
        case .opened: perform(channel.connected())
        case .failed: perform(channel.connectFailed(random: random()))
        case .closed: perform(channel.peerClosed())
        case .text(let text): received(text)
        }
    }

    private func received(_ text: String) {
        guard let document = try? WireJSON.decode(NotificationDocument.self, from: Data(text.utf8))
        else { return }
        let message = document.notificationMessage
        // A replay after a reconnect may repeat what arrived before the socket died.
        guard let path = subscription.record?.channelPath, receivedEvents.isNew(message.eventId, on: path) else {
            return
        }
        observers.emit(.notificationReceived(message))
        switch message.eventType {
        case .missedNotifications:
            observers.emit(.notificationsMissed(message.missedNotificationsParams?.count ?? 0))
        case .gone:
            perform(subscription.gone())
        case .presenceWatcher:
            guard let params = message.presenceWatcherNotificationParams else { return }
            learned(UserPresence(userId: params.name, state: params.state))
        case .call, .ringing, .startCallUpdate, .respondCallUpdate, .callEnd, .callCancel, .sessionProgress:
            calls.notify(message)
        case .im:
            guard let params = message.imnotificationParams, let sender = params.sender else { return }
            record(
                InstantMessage(
                    id: message.eventId, sender: sender, recipient: auth.credentials?.username ?? "",
                    text: params.msgText,
                    timestamp: params.time.map { Date(timeIntervalSince1970: Double($0) / 1000) } ?? wallClock(),
                    direction: .incoming))
        default:
            break
        }
    }

    /// One REST exchange of the logged-in user on one of their paths (`path` is given the
    /// username), with an optional query and body; classified as every other request.
    func request<Answer: StatusEnvelope>(
        _ method: String, _ path: (String) -> String, query: [(name: String, value: String)] = [],
        body: (some Encodable)? = String?.none, as: Answer.Type, failure: KandyError.Code, verb: String
    ) async throws(KandyError) -> Answer {
        try checkAlive()
        guard let credentials = auth.credentials else {
            throw KandyError(failure, "Failed to \(verb): set credentials first.")
        }
        let request = try rest.request(
            method, as: credentials, path: path(credentials.username), query: query, body: body, failure: failure,
            verb: verb)
        return try await rest.send(request, as: Answer.self, failure: failure, verb: verb).get()
    }

    // MARK: Calls

    var username: String? { auth.credentials?.username }

    /// One call request as the logged-in user.
    func callRequest(_ method: String, _ path: (String) -> String, _ body: Data?) async -> Result<
        CallControlResponse, KandyError
    > {
        guard let credentials = auth.credentials else {
            return .failure(KandyError(.callFailure, "Set credentials before calling."))
        }
        return await rest.call(method, as: credentials, path: path(credentials.username), body: body)
    }

    // MARK: The subscription's requests

    private func post(services: [String], forceLogOut: Bool) -> @Sendable () async -> Void {
        let (rest, credentials, expires) = (rest, auth.credentials, configuration.subscription.expires)
        return { [weak self] in
            let result = await rest.subscribe(
                as: credentials, services: services, forceLogOut: forceLogOut, expires: expires)
            await self?.answered(result) { session, result in
                switch result {
                case .success(let record): session.subscription.subscribed(record)
                case .failure(let error): session.subscription.subscribeFailed(error)
                }
            }
        }
    }

    private func put(url: String, services: [String], expires: Int, isRefresh: Bool) -> @Sendable () async -> Void {
        let (rest, credentials) = (rest, auth.credentials)
        return { [weak self] in
            let result = await rest.update(as: credentials, url: url, services: services, expires: expires)
            await self?.answered(result) { session, result in
                let now = session.wallClock()
                switch (result, isRefresh) {
                case (.success(let record), true):
                    return session.subscription.refreshSucceeded(record, now: now, random: session.random())
                case (.failure(let error), true):
                    return session.subscription.refreshFailed(error, now: now, random: session.random())
                case (.success(let record?), false):
                    return session.subscription.updated(record, now: now, random: session.random())
                case (.success(nil), false):
                    return session.subscription.updateFailed(RestExchange.noRecord(.updateSubscriptionFailure))
                case (.failure(let error), false): return session.subscription.updateFailed(error)
                }
            }
        }
    }

    private func delete(url: String) -> @Sendable () async -> Void {
        let (rest, credentials) = (rest, auth.credentials)
        return { [weak self] in
            let result = await rest.unsubscribe(as: credentials, url: url)
            await self?.answered(result) { session, result in
                switch result {
                case .success: session.subscription.deleted()
                case .failure(let error): session.subscription.deleteFailed(error)
                }
            }
        }
    }

    private func answered<T>(
        _ result: Result<T, KandyError>,
        _ input: @Sendable (isolated KandySession, Result<T, KandyError>) -> [SubscriptionMachine.Action]
    ) {
        guard !destroyed else { return }
        if case .failure(let error) = result { lastError = error }
        perform(input(self, result))
    }
}

/// The session as the call service sees it: weakly, so that the session can go away.
final class SessionLink: Sendable {
    private struct Reference { weak var session: KandySession? }
    private let reference = Mutex(Reference())

    var session: KandySession? {
        get { reference.withLock { $0.session } }
        set { reference.withLock { $0.session = newValue } }
    }
}
