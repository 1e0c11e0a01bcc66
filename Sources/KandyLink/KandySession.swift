import Foundation
import KandyLinkProtocol
import Synchronization

/// The one actor that drives the state machines: it feeds them inputs (app calls, HTTP answers,
/// socket events, timers) and performs the actions they return. All I/O and all timers live
/// here; no decision does.
actor KandySession {
    let configuration: KandyConfiguration
    private let http: any HTTPTransport
    private let websocket: any WebSocketTransport
    private let timer: AlarmClock
    private let wallClock: @Sendable () -> Date
    private let random: @Sendable () -> Double
    let observers: Observers
    let snapshot: SnapshotBox
    /// Calls: their machines and media, driven by their own actor; notifications go there in order.
    nonisolated let calls: CallControl

    private var auth = AuthMachine()
    private var subscription: SubscriptionMachine
    private var channel: ChannelMachine
    private var connection: (any WebSocketConnection)?
    /// Bumped per socket, so events of an old socket are recognised and ignored.
    private var generation = 0
    private var caller: CheckedContinuation<Void, any Error>?
    /// Alarms armed, by kind.
    private var tasks: [TaskKind: Task<Void, Never>] = [:]
    /// The socket being opened, cancelled by destroy.
    private var connecting: Task<Void, Never>?
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

    /// What the synchronous getters of `Kandy` read.
    struct Snapshot: Sendable {
        var username: String?
        var subscribed: [String] = []
        var isPending = false
        var channelOpen = false
        var lastError: KandyError?
        var record: SubscriptionRecord?
        var destroyed = false
        /// Presence of watched and fetched users; forgotten when another user logs in. Kept only
        /// here and changed in place, so a message does not copy its conversation.
        var presence: [String: UserPresence] = [:]
        /// Messages by peer, the latest `Messages.conversationLength` of each.
        var conversations: [String: [InstantMessage]] = [:]
    }

    init(
        configuration: KandyConfiguration, http: any HTTPTransport, websocket: any WebSocketTransport,
        clock: any Clock<Duration>, wallClock: @escaping @Sendable () -> Date,
        random: @escaping @Sendable () -> Double, observers: Observers, snapshot: SnapshotBox,
        mediaEngine: any MediaEngine
    ) {
        self.configuration = configuration
        self.http = http
        self.websocket = websocket
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
        connecting?.cancel()
        connecting = nil
        tasks = [:]
        requests = [:]
        await connection?.close()
        connection = nil
        await http.shutdown()
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

    private func checkAlive() throws(KandyError) {
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
                if let connection {
                    Task { try? await connection.send(KeepaliveMessage.text) }
                }
            case .armKeepalive:
                schedule(.keepalive, after: configuration.connectivity.keepaliveInterval)
            case .disconnect:
                generation += 1
                if let connection {
                    self.connection = nil
                    Task { await connection.close() }
                }
            case .cancelTimers:
                tasks.removeValue(forKey: .keepalive)?.cancel()
                tasks.removeValue(forKey: .retry)?.cancel()
            case .opened(let initial):
                if initial { perform(subscription.channelOpened(now: wallClock(), random: random())) }
            case .initialOpenFailed:
                perform(subscription.channelFailed())
            case .lost:
                connection = nil
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
        generation += 1
        let generation = self.generation
        var url = configuration.channelOrigin + path
        let token = auth.credentials?.bearerToken
        switch query {
        case .firstOpen:
            if let token, configuration.connectivity.webSocketOAuthQuery {
                url += "?access_token=" + Self.queryEncode(token)
            }
        case .reconnect:
            url += token.map { "?token=" + Self.queryEncode($0) } ?? "?"
            if let last = receivedEvents.newest(on: path) {
                url += (url.hasSuffix("?") ? "" : "&") + "\(LinkPath.lastEventIDParameter)=\(last)"
            }
        }
        let websocket = self.websocket
        // Frames reach the actor one after the other, in arrival order, and the close after them.
        let (inbound, sink) = AsyncStream.makeStream(of: ChannelInput.self)
        Task { [weak self] in
            for await input in inbound {
                switch input {
                case .text(let text): await self?.received(text, generation: generation)
                case .closed: await self?.closed(generation: generation)
                }
            }
        }
        // One superseded by a newer socket finishes by itself and is ignored by its generation.
        connecting = Task { [self] in
            do {
                let connection = try await websocket.connect(
                    url: url,
                    onMessage: { text in sink.yield(.text(text)) },
                    onClose: {
                        sink.yield(.closed)
                        sink.finish()
                    })
                await connected(connection, generation: generation)
            } catch {
                sink.finish()
                connectFailed(generation: generation)
            }
        }
    }

    private enum ChannelInput: Sendable {
        case text(String)
        case closed
    }

    private func connected(_ connection: any WebSocketConnection, generation: Int) async {
        guard generation == self.generation, !destroyed else {
            await connection.close()
            return
        }
        self.connection = connection
        perform(channel.connected())
    }

    private func connectFailed(generation: Int) {
        guard generation == self.generation else { return }
        perform(channel.connectFailed(random: random()))
    }

    private func closed(generation: Int) {
        guard generation == self.generation else { return }
        connection = nil
        perform(channel.peerClosed())
    }

    private func received(_ text: String, generation: Int) {
        guard generation == self.generation, !destroyed,
            let document = try? WireJSON.decode(NotificationDocument.self, from: Data(text.utf8))
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

    private func learned(_ presence: UserPresence) {
        snapshot.state.withLock { $0.presence[presence.userId] = presence }
        observers.emit(.presenceChange(presence))
    }

    private func record(_ message: InstantMessage) {
        snapshot.state.withLock { state in
            state.conversations[message.peer, default: []].append(message)
            if state.conversations[message.peer]!.count > Messages.conversationLength {
                state.conversations[message.peer]!.removeFirst()
            }
        }
        observers.emit(.messagesChange(message))
    }

    // MARK: Presence and messages

    func updatePresence(_ state: PresenceState) async throws {
        try checkAlive()
        var state = state
        if state.note?.isEmpty == true { state.note = nil }  // as Kandy.js: a note only if non-empty
        let result: Result<PresenceResponseDocument, KandyError>
        if !state.status.isKnown {
            result = .failure(KandyError(.invalidPresenceStatus, "Invalid status in presence update request."))
        } else if !state.activity.isKnown {
            result = .failure(KandyError(.invalidPresenceActivity, "Invalid activity in presence update request."))
        } else {
            result = await exchange(
                LinkPath.presence(user:), PresenceRequestDocument(presenceRequest: state),
                failure: .presenceFailure, verb: "update presence")
        }
        switch result {
        case .success:
            observers.emit(.presenceSelfChange(state))
        case .failure(let error):
            observers.emit(.presenceError(error))
            throw error
        }
    }

    func presenceWatcher(_ users: [String], action: PresenceWatcherAction) async throws -> [UserPresence] {
        try checkAlive()
        let result = await exchange(
            LinkPath.presenceWatcher(user:),
            PresenceWatcherRequestDocument(presenceWatcherRequest: .init(userList: users, action: action)),
            as: PresenceWatcherResponseDocument.self, failure: .presenceFailure, verb: "\(action.rawValue) presence")
        switch result {
        case .success(let answer):
            switch action {
            case .watch: observers.emit(.presenceSubscribe(users))
            case .stopwatch: observers.emit(.presenceUnsubscribe(users))
            case .get: break
            }
            let fetched = (answer.presenceContact ?? []).map {
                UserPresence(userId: $0.presentityUserId, state: $0.state)
            }
            for presence in fetched { learned(presence) }
            return fetched
        case .failure(let error):
            observers.emit(.presenceError(error))
            throw error
        }
    }

    func sendMessage(to destination: String, text: String) async throws -> InstantMessage {
        try checkAlive()
        let recipient = InstantMessageRequest(toUrl: destination, message: text).recipient
        let result: Result<InstantMessageResponseDocument, KandyError>
        if recipient.isEmpty {
            result = .failure(KandyError(.invalidDestination, "A message needs a recipient."))
        } else {
            result = await exchange(
                LinkPath.instantMessage(user:),
                InstantMessageRequestDocument(imRequest: .init(toUrl: recipient, message: text)),
                failure: .sendMessageFailure, verb: "send message")
        }
        switch result {
        case .success(let answer):
            guard let id = answer.imResponse.messageId else {
                let error = KandyError(
                    .sendMessageFailure, "Failed to send message: the platform's answer has no messageId.")
                observers.emit(.messagesError(error))
                throw error
            }
            let message = InstantMessage(
                id: id, sender: auth.credentials?.username ?? "", recipient: recipient, text: text,
                timestamp: wallClock(), direction: .outgoing)
            record(message)
            return message
        case .failure(let error):
            observers.emit(.messagesError(error))
            throw error
        }
    }

    /// One presence or IM exchange as the logged-in user. Success is a 2xx whose envelope says
    /// statusCode 0; anything else is a `KandyError` with the platform's statusCode and reason.
    private func exchange<Answer: StatusEnvelope>(
        _ path: (String) -> String, _ body: some Encodable, as: Answer.Type = Answer.self,
        failure: KandyError.Code, verb: String
    ) async -> Result<Answer, KandyError> {
        guard let username = auth.credentials?.username else {
            return .failure(KandyError(failure, "Failed to \(verb): set credentials first."))
        }
        let request = HTTPRequestSpec(
            method: "POST", url: configuration.restOrigin + path(username), headers: headers(),
            body: try? WireJSON.encode(body))
        return await Self.send(http, request, as: Answer.self, failure: failure, verb: verb)
    }

    /// One REST exchange of the logged-in user on one of their paths (`path` is given the
    /// username), with an optional query and body; classified as every other request.
    func request<Answer: StatusEnvelope>(
        _ method: String, _ path: (String) -> String, query: [(name: String, value: String)] = [],
        body: (some Encodable)? = String?.none, as: Answer.Type, failure: KandyError.Code, verb: String
    ) async throws(KandyError) -> Answer {
        try checkAlive()
        guard let username = auth.credentials?.username else {
            throw KandyError(failure, "Failed to \(verb): set credentials first.")
        }
        let encodedQuery = query.map { "\($0.name)=\(Self.queryEncode($0.value))" }.joined(separator: "&")
        let request = HTTPRequestSpec(
            method: method,
            url: configuration.restOrigin + path(username) + (encodedQuery.isEmpty ? "" : "?" + encodedQuery),
            headers: headers(),
            body: try body.map { body throws(KandyError) in
                do { return try WireJSON.encode(body) } catch {
                    throw KandyError(failure, "Failed to \(verb): the request cannot be encoded (\(error)).")
                }
            })
        return try await Self.send(http, request, as: Answer.self, failure: failure, verb: verb).get()
    }

    static func queryEncode(_ value: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return value.addingPercentEncoding(withAllowedCharacters: allowed) ?? value
    }

    // MARK: Calls

    var username: String? { auth.credentials?.username }

    /// One call request as the logged-in user. A 2xx is success whatever its body says (as
    /// Kandy.js: DELETE's body is not read); otherwise the `callControlResponse` statusCode.
    func callRequest(_ method: String, _ path: (String) -> String, _ body: Data?) async -> Result<
        CallControlResponse, KandyError
    > {
        guard let username = auth.credentials?.username else {
            return .failure(KandyError(.callFailure, "Set credentials before calling."))
        }
        let request = HTTPRequestSpec(
            method: method, url: configuration.restOrigin + path(username), headers: headers(), body: body)
        let response: HTTPResponseSpec
        do {
            response = try await http.send(request)
        } catch {
            return .failure(KandyError(.callFailure, "The call request failed: \(error)."))
        }
        let answer = try? WireJSON.decode(CallControlResponseDocument.self, from: response.body)
        guard (200..<300).contains(response.status) else {
            var error = Self.refusal(
                response, envelope: answer?.status, failure: .callFailure, verb: "send the call request")
            // Kandy.js reports the HTTP status where no statusCode came (§2.4).
            error.statusCode = error.statusCode ?? response.status
            return .failure(error)
        }
        return .success(answer?.callControlResponse ?? CallControlResponse(statusCode: 0))
    }

    // MARK: REST

    private func headers() -> [String: String] {
        var headers = [
            "Content-Type": "application/json", "Accept": "application/json",
            "X-Cpaas-Agent": "link-swift-sdk/\(Kandy.version)",
        ]
        if let field = auth.credentials?.header.field { headers[field.name] = field.value }
        return headers
    }

    private func post(services: [String], forceLogOut: Bool) -> @Sendable () async -> Void {
        let username = auth.credentials?.username ?? ""
        let request = HTTPRequestSpec(
            method: "POST",
            url: configuration.restOrigin + LinkPath.subscriptions(user: username),
            headers: headers(),
            body: try? WireJSON.encode(
                SubscribeRequestDocument(
                    subscribeRequest: .init(
                        expires: configuration.subscription.expires, service: services.map { ServiceName($0) },
                        supported: ["RingingFeedback"], forceLogOut: ForceLogOut(forceLogOut)))))
        let http = self.http
        return { [weak self] in
            let result = await Self.exchange(http, request, failure: .subscribeFailure, verb: "subscribe user")
            await self?.answered(result) { session, result in
                switch result {
                case .success(let record?): session.subscription.subscribed(record)
                case .success(nil): session.subscription.subscribeFailed(Self.noRecord(.subscribeFailure))
                case .failure(let error): session.subscription.subscribeFailed(error)
                }
            }
        }
    }

    private func put(url: String, services: [String], expires: Int, isRefresh: Bool) -> @Sendable () async -> Void {
        let request = HTTPRequestSpec(
            method: "PUT", url: configuration.restOrigin + url, headers: headers(),
            body: try? WireJSON.encode(
                SubscribeRequestDocument(
                    subscribeRequest: .init(expires: expires, service: services.map { ServiceName($0) }))))
        let http = self.http
        return { [weak self] in
            let result = await Self.exchange(
                http, request, failure: .updateSubscriptionFailure, verb: "update user subscription")
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
                    return session.subscription.updateFailed(Self.noRecord(.updateSubscriptionFailure))
                case (.failure(let error), false): return session.subscription.updateFailed(error)
                }
            }
        }
    }

    private func delete(url: String) -> @Sendable () async -> Void {
        let request = HTTPRequestSpec(method: "DELETE", url: configuration.restOrigin + url, headers: headers())
        let http = self.http
        return { [weak self] in
            let result = await Self.exchange(http, request, failure: .unsubscribeFailure, verb: "unsubscribe user")
            await self?.answered(result) { session, result in
                switch result {
                case .success: session.subscription.deleted()
                case .failure(let error): session.subscription.deleteFailed(error)
                }
            }
        }
    }

    private static func noRecord(_ code: KandyError.Code) -> KandyError {
        KandyError(code, "The platform's answer has no subscription record.")
    }

    private func answered<T>(
        _ result: Result<T, KandyError>,
        _ input: @Sendable (isolated KandySession, Result<T, KandyError>) -> [SubscriptionMachine.Action]
    ) {
        guard !destroyed else { return }
        if case .failure(let error) = result { lastError = error }
        perform(input(self, result))
    }

    /// One subscription exchange: a record on success (DELETE's success has none).
    private static func exchange(
        _ http: any HTTPTransport, _ request: HTTPRequestSpec, failure: KandyError.Code, verb: String
    ) async -> Result<SubscriptionRecord?, KandyError> {
        // Kandy.js counts statusCode 2 as success on PUT.
        let result = await send(
            http, request, as: SubscribeResponseDocument.self, failure: failure, verb: verb,
            succeeded: { $0 == 0 || (request.method == "PUT" && $0 == 2) })
        return result.flatMap { document in
            if request.method == "DELETE" { return .success(nil) }
            let answer = document.subscribeResponse
            guard let url = answer.subscription, let params = answer.subscriptionParams else {
                return .failure(KandyError(failure, "Failed to \(verb): the platform's answer has no subscription."))
            }
            return .success(
                SubscriptionRecord(
                    url: url, services: params.service.map(\.rawValue), channelPath: params.notificationChannel,
                    expires: params.expires, turnCredentials: params.turnCredentials))
        }
    }

    /// One REST exchange, classified as spec §3.2: the answer when it is a 2xx whose envelope's
    /// statusCode `succeeded`; otherwise a `KandyError` with the platform's statusCode and reason
    /// (from the envelope, or the bare status document other paths answer with).
    private static func send<Answer: StatusEnvelope>(
        _ http: any HTTPTransport, _ request: HTTPRequestSpec, as: Answer.Type, failure: KandyError.Code,
        verb: String, succeeded: (Int) -> Bool = { $0 == 0 }
    ) async -> Result<Answer, KandyError> {
        let response: HTTPResponseSpec
        do {
            response = try await http.send(request)
        } catch {
            return .failure(KandyError(failure, "Failed to \(verb): \(error)."))
        }
        let answer = try? WireJSON.decode(Answer.self, from: response.body)
        guard (200..<300).contains(response.status), let answer, succeeded(answer.status.statusCode) else {
            return .failure(refusal(response, envelope: answer?.status, failure: failure, verb: verb))
        }
        return .success(answer)
    }

    /// A refused exchange as a `KandyError`: the statusCode and reason of the endpoint's envelope,
    /// or of the bare status document other paths answer with, or else the HTTP status.
    private static func refusal(
        _ response: HTTPResponseSpec, envelope: ResponseStatus?, failure: KandyError.Code, verb: String
    ) -> KandyError {
        let status =
            envelope
            ?? (try? WireJSON.decode(StatusDocument.self, from: response.body)).map {
                ResponseStatus(statusCode: $0.statusCode, reason: $0.reason)
            }
        let code = status.map { " Code: \($0.statusCode)." } ?? " HTTP \(response.status)."
        return KandyError(
            failure, "Failed to \(verb).\(code)" + (status?.reason.map { " \($0)" } ?? ""),
            statusCode: status?.statusCode)
    }
}

/// Sleeps on an injected clock. The deadline is taken when the alarm is set, not when its task
/// first runs, so a test clock advanced right after an action still fires it.
struct AlarmClock: Sendable {
    let wait: @Sendable (Duration) -> @Sendable () async throws -> Void

    init(_ clock: any Clock<Duration>) {
        func make<C: Clock<Duration>>(_ clock: C) -> @Sendable (Duration) -> @Sendable () async throws -> Void {
            { delay in
                let deadline = clock.now.advanced(by: delay)
                return { try await clock.sleep(until: deadline, tolerance: nil) }
            }
        }
        wait = make(clock)
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

extension KandySession {
    /// The snapshot, shared between the actor (which writes it) and `Kandy`'s synchronous getters.
    final class SnapshotBox: Sendable {
        let state = Mutex(Snapshot())

        /// `call.iceServers` with the TURN credentials the platform issued, when it issued some
        /// and `serverTurnCredentials` is on (TURN entries only; STUN needs none).
        func iceServers(_ configuration: KandyConfiguration) -> [KandyConfiguration.IceServer] {
            let issued = state.withLock { $0.record?.turnCredentials }
            guard configuration.call.serverTurnCredentials, let issued else { return configuration.call.iceServers }
            return configuration.call.iceServers.map { server in
                guard server.urls.contains(where: { $0.hasPrefix("turn:") || $0.hasPrefix("turns:") }) else {
                    return server
                }
                var server = server
                server.username = issued.username
                server.credential = issued.password
                return server
            }
        }
    }

    /// Handlers registered with `on(_:)` and the open `events` streams.
    final class Observers: Sendable {
        private struct State {
            var handlers: [UUID: (KandyEvent.Name?, @Sendable (KandyEvent) -> Void)] = [:]
            var streams: [UUID: AsyncStream<KandyEvent>.Continuation] = [:]
            var finished = false
        }
        private let state = Mutex(State())

        func add(_ name: KandyEvent.Name?, _ handler: @escaping @Sendable (KandyEvent) -> Void) -> UUID {
            let id = UUID()
            state.withLock { $0.handlers[id] = (name, handler) }
            return id
        }

        func remove(_ id: UUID) { state.withLock { $0.handlers[id] = nil } }

        func stream() -> AsyncStream<KandyEvent> {
            let (stream, continuation) = AsyncStream.makeStream(of: KandyEvent.self)
            let id = UUID()
            let finished = state.withLock { state in
                if !state.finished { state.streams[id] = continuation }
                return state.finished
            }
            if finished { continuation.finish() }
            continuation.onTermination = { [weak self] _ in self?.state.withLock { $0.streams[id] = nil } }
            return stream
        }

        func emit(_ event: KandyEvent) {
            let (handlers, streams) = state.withLock { ($0.handlers.values.map { $0 }, Array($0.streams.values)) }
            for (name, handler) in handlers where name == nil || name == event.name { handler(event) }
            for stream in streams { stream.yield(event) }
        }

        func finish() {
            let streams = state.withLock { state in
                state.finished = true
                state.handlers = [:]
                defer { state.streams = [:] }
                return Array(state.streams.values)
            }
            for stream in streams { stream.finish() }
        }
    }
}

/// An answer document whose envelope carries the statusCode.
protocol StatusEnvelope: Decodable, Sendable {
    var status: ResponseStatus { get }
}

extension SubscribeResponseDocument: StatusEnvelope {
    var status: ResponseStatus {
        ResponseStatus(statusCode: subscribeResponse.statusCode, reason: subscribeResponse.reason)
    }
}

extension PresenceResponseDocument: StatusEnvelope {
    var status: ResponseStatus { presenceResponse }
}

extension PresenceWatcherResponseDocument: StatusEnvelope {
    var status: ResponseStatus { presenceWatcherResponse }
}

extension CallControlResponseDocument: StatusEnvelope {
    var status: ResponseStatus {
        ResponseStatus(statusCode: callControlResponse.statusCode, reason: callControlResponse.reason)
    }
}

extension AddressBookResponseDocument: StatusEnvelope {
    var status: ResponseStatus {
        ResponseStatus(statusCode: addressBookResponse.statusCode, reason: addressBookResponse.reason)
    }
}

extension DirectoryResponseDocument: StatusEnvelope {
    var status: ResponseStatus { ResponseStatus(statusCode: directory.statusCode, reason: directory.reason) }
}

extension UserProfileDataDocument: StatusEnvelope {
    var status: ResponseStatus {
        ResponseStatus(statusCode: userProfileData.statusCode, reason: userProfileData.reason)
    }
}

extension LogHistoryDocument: StatusEnvelope {
    var status: ResponseStatus { ResponseStatus(statusCode: logHistory.statusCode, reason: logHistory.reason) }
}

extension LogRecordDocument: StatusEnvelope {
    var status: ResponseStatus { logRecord }
}

/// The locale has no envelope: an answer is a success.
extension LocalizationDocument: StatusEnvelope {
    var status: ResponseStatus { .success }
}

extension InstantMessageResponseDocument: StatusEnvelope {
    var status: ResponseStatus { ResponseStatus(statusCode: imResponse.statusCode, reason: imResponse.reason) }
}

/// Which notifications a channel has had. Platform eventIds increase on each channel, so one
/// number covers them; ids that are not numbers are remembered, the last 100, as Kandy.js does.
struct ReceivedEvents: Sendable, Equatable {
    private var channelPath: String?
    private var newest: UInt64?
    private var others: [String] = []

    /// The newest numeric id received on `path`.
    func newest(on path: String) -> UInt64? { channelPath == path ? newest : nil }

    /// Records `eventId`; false when it was had already. A new channel starts afresh.
    mutating func isNew(_ eventId: String, on path: String) -> Bool {
        if channelPath != path { self = ReceivedEvents(channelPath: path) }
        if let number = UInt64(eventId) {
            if let newest, number <= newest { return false }
            newest = number
            return true
        }
        if others.contains(eventId) { return false }
        others.append(eventId)
        if others.count > 100 { others.removeFirst() }
        return true
    }

    private init(channelPath: String) { self.channelPath = channelPath }
    init() {}
}
