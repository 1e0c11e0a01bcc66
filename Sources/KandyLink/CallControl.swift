import Foundation
import KandyLinkProtocol
import Synchronization

/// A call as the app sees it (`kandy.call.getAll()` / `getById`).
public struct Call: Sendable, Equatable, Identifiable {
    public var id: String
    public var direction: CallDirection
    public var state: CallState
    public var localHold: Bool
    public var remoteHold: Bool
    /// The other party: its username and display name, as the platform names it.
    public var remoteParticipant: RemoteParticipant
    public var media: CallMedia
    /// The platform's session id (Kandy.js `wrtcsSessionId`), once known.
    public var sessionID: String?
    public var startTime: Date
    public var endTime: Date?
    /// Why the call ended, as the other side or the platform said.
    public var transition: CallTransition?
    public var error: KandyError?

    public struct RemoteParticipant: Sendable, Equatable {
        /// `sip:user@domain`.
        public var displayNumber: String
        public var displayName: String?
    }
}

/// How the call service reaches the platform: REST as the logged-in user, and the ICE servers
/// of the moment. Given by ``KandySession``, which owns the credentials and the subscription.
struct CallPlatform: Sendable {
    /// Sends a call request to `path(username)`; the answer's `callControlResponse`, or the error.
    var send:
        @Sendable (_ method: String, _ path: @Sendable (String) -> String, _ body: Data?) async -> Result<
            CallControlResponse, KandyError
        >
    var iceServers: @Sendable () -> [KandyConfiguration.IceServer]
    var username: @Sendable () async -> String?
}

/// Performs the actions of every call's ``CallMachine``: the one place calls do I/O (requests,
/// the media engine, the ring timer). Notifications come in order through ``notify(_:)``.
actor CallControl {
    private struct Entry {
        var machine: CallMachine
        var call: Call
        var media: (any MediaSession)?
        var waiters: [CallOperationKind: CheckedContinuation<Void, any Error>] = [:]
        var ringTimer: Task<Void, Never>?
    }

    private let configuration: KandyConfiguration.Call
    private let engine: any MediaEngine
    private let platform: CallPlatform
    private let timer: AlarmClock
    private let wallClock: @Sendable () -> Date
    private let observers: KandySession.Observers
    nonisolated let calls: Mutex<[String: Call]>
    private var entries: [String: Entry] = [:]
    private var bySession: [String: String] = [:]
    /// Notifications for sessions not known yet, in arrival order, each until its deadline.
    private var unmatched: [(message: NotificationMessage, until: ContinuousClock.Instant)] = []
    /// What the session passes on, in its order.
    private enum Inbound: Sendable {
        case notification(NotificationMessage)
        case lost(KandyError)
    }
    private let inbox: AsyncStream<Inbound>.Continuation
    private var faults: [String] = []
    /// Requests under way, so that ``shutdown()`` can wait for the last DELETEs.
    private var inflight: [UUID: Task<Void, Never>] = [:]

    init(
        configuration: KandyConfiguration.Call, engine: any MediaEngine, platform: CallPlatform, timer: AlarmClock,
        wallClock: @escaping @Sendable () -> Date, observers: KandySession.Observers
    ) {
        self.configuration = configuration
        self.engine = engine
        self.platform = platform
        self.timer = timer
        self.wallClock = wallClock
        self.observers = observers
        self.calls = Mutex([:])
        let (stream, inbox) = AsyncStream.makeStream(of: Inbound.self)
        self.inbox = inbox
        Task { await self.read(stream) }
    }

    private func read(_ stream: AsyncStream<Inbound>) async {
        for await inbound in stream {
            switch inbound {
            case .notification(let message): received(message)
            case .lost(let error): endAll(error)
            }
        }
    }

    /// A call notification from the channel; handled after those before it.
    nonisolated func notify(_ message: NotificationMessage) { inbox.yield(.notification(message)) }

    /// Unexpected inputs the machines reported, for logs and tests.
    var reportedFaults: [String] { faults }

    // MARK: The app's operations

    func make(to destination: String, media: CallMedia) async throws -> Call {
        try checkAlive()
        guard let callee = Self.normalized(destination) else {
            throw KandyError(.invalidCallParameter, "A call needs a destination.")
        }
        let id = UUID().uuidString.lowercased()
        let call = Call(
            id: id, direction: .outgoing, state: .initiating, localHold: false, remoteHold: false,
            remoteParticipant: .init(displayNumber: CallAddress.sip(callee), displayName: nil), media: media,
            startTime: wallClock())
        entries[id] = Entry(machine: .outgoing(), call: call)
        publish(id)
        observers.emit(.callStart(id))
        try await operate(id, .make, .make)
        return entries[id]?.call ?? call
    }

    func operate(_ id: String, _ input: CallMachine.Input, _ operation: CallOperationKind) async throws {
        try checkAlive()
        guard entries[id] != nil else { throw KandyError(.unknownCall, "No call has the id \(id).") }
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            if let earlier = entries[id]?.waiters[operation] {
                earlier.resume(throwing: KandyError(.invalidCallState, "\(operation.rawValue) was asked again."))
            }
            entries[id]?.waiters[operation] = continuation
            handle(id, input)
        }
    }

    /// The subscription ended; handled in order with the notifications before it.
    nonisolated func notifyLost(_ error: KandyError) { inbox.yield(.lost(error)) }

    /// Ends every call: the subscription or the instance is gone.
    func endAll(_ error: KandyError) {
        for id in entries.keys where !(entries[id]?.machine.state.isFinal ?? true) { handle(id, .lost(error)) }
    }

    private var destroyed = false

    private func checkAlive() throws(KandyError) {
        if destroyed { throw KandyError(.destroyed, "This Kandy instance was destroyed; create a new one.") }
    }

    /// Ends every call, waits for the requests that tell the platform, and stops.
    func shutdown() async {
        destroyed = true
        endAll(KandyError(.destroyed, "The instance was destroyed."))
        inbox.finish()
        for id in entries.keys { entries[id]?.ringTimer?.cancel() }
        while let (key, task) = inflight.first {
            await task.value
            inflight[key] = nil
        }
    }

    /// The last task of each chain. A call has two: its requests, which go one after the other in
    /// the order the machine asked for them (ringing before the answer, as the platform expects),
    /// and its media steps, likewise (an answer is applied before the next offer is made).
    private var chainTails: [String: Task<Void, Never>] = [:]

    private static func media(_ id: String) -> String { id + "/media" }

    /// Runs `work` off the actor after the chain's previous task, tracked until it ends.
    private func run(_ chain: String, _ work: @escaping @Sendable () async -> Void) {
        let key = UUID()
        let previous = chainTails[chain]
        let task = Task { [weak self] in
            await previous?.value
            await work()
            await self?.finished(key, of: chain)
        }
        inflight[key] = task
        chainTails[chain] = task
    }

    private func finished(_ key: UUID, of chain: String) {
        if let task = inflight.removeValue(forKey: key), chainTails[chain] == task { chainTails[chain] = nil }
    }

    // MARK: Inputs

    func received(_ message: NotificationMessage) {
        guard let session = message.sessionParams?.sessionData else { return }
        if message.eventType == .call {
            guard bySession[session] == nil else { return }
            guard let offer = message.sessionParams?.sdp else {
                fault("A call without an offer (slow start) is not supported; it was left ringing.")
                return
            }
            incoming(message, session: session, offer: offer)
            return
        }
        guard let id = bySession[session] else {
            // The callStart answer naming this session may still be on its way.
            let now = ContinuousClock.now
            unmatched.removeAll { $0.until < now }
            unmatched.append((message, now.advanced(by: configuration.unknownSessionGrace)))
            if unmatched.count > Self.kept { unmatched.removeFirst() }
            return
        }
        deliver(message, to: id)
    }

    private func deliver(_ message: NotificationMessage, to id: String) {
        let params = message.sessionParams
        if let party = message.callNotificationParams, var entry = entries[id] {
            let number = entry.call.direction == .incoming ? party.callerDisplayNumber : party.remoteDisplayNumber
            let name = entry.call.direction == .incoming ? party.callerName : party.remoteName
            if let number { entry.call.remoteParticipant.displayNumber = number }
            if let name { entry.call.remoteParticipant.displayName = name }
            entries[id] = entry
        }
        handle(
            id,
            .notification(
                message.eventType, sdp: params?.sdp,
                transition: CallTransition(statusCode: params?.statusCode, reasonText: params?.reasonText)))
    }

    private func incoming(_ message: NotificationMessage, session: String, offer: String) {
        let id = UUID().uuidString.lowercased()
        let party = message.callNotificationParams
        let (machine, actions) = CallMachine.incoming(sessionID: session, offer: offer)
        let media = CallMedia(audio: offer.contains("m=audio"), video: offer.contains("m=video"))
        let call = Call(
            id: id, direction: .incoming, state: machine.state, localHold: false, remoteHold: false,
            remoteParticipant: .init(
                displayNumber: party?.callerDisplayNumber ?? "", displayName: party?.callerName),
            media: media, sessionID: session, startTime: wallClock())
        entries[id] = Entry(machine: machine, call: call)
        bySession[session] = id
        observers.emit(.callReceive(id))
        perform(id, actions)
    }

    private func handle(_ id: String, _ input: CallMachine.Input) {
        guard var entry = entries[id] else { return }
        let actions = entry.machine.handle(input)
        entries[id] = entry
        perform(id, actions)
    }

    // MARK: Actions

    private func perform(_ id: String, _ actions: [CallMachine.Action]) {
        sync(id)
        // What the machine is doing as it asks: the SDP and answers come back tagged with it.
        let purpose = entries[id]?.machine.pending
        for action in actions {
            switch action {
            case .stateChanged(let previous, let transition, let error):
                if entries[id]?.machine.state.isFinal == true { entries[id]?.call.endTime = wallClock() }
                sync(id)
                observers.emit(
                    .callStateChange(
                        .init(
                            callId: id, previous: previous, state: entries[id]?.machine.state ?? previous,
                            transition: transition, error: error)))
            case .operation(let kind, let phase, let isLocal, let error):
                observers.emit(
                    .callOperation(
                        .init(callId: id, operation: kind, transition: phase.rawValue, isLocal: isLocal, error: error)))
            case .createOffer(let hold):
                media(id, for: purpose) { session in try await session.createOffer(hold: hold) }
            case .createAnswer(let offer, let hold):
                media(id, for: purpose) { session in try await session.createAnswer(to: offer, hold: hold) }
            case .applyAnswer(let sdp):
                media(id, for: nil) { session in
                    try await session.applyAnswer(sdp)
                    return nil
                }
            case .rollbackOffer:
                let session = entries[id]?.media
                run(Self.media(id)) { await session?.rollback() }
            case .closeMedia:
                let session = entries[id]?.media
                entries[id]?.media = nil
                run(Self.media(id)) { await session?.close() }
            case .postCallStart(let sdp):
                let callee = entries[id]?.call.remoteParticipant.displayNumber ?? ""
                request(id, .make, "POST", LinkPath.callControl(user:)) { username in
                    CallControlRequest(type: .callStart, to: callee, from: CallAddress.sip(username), sdp: sdp)
                } answered: { [weak self] response in
                    guard let session = response.sessionData else {
                        await self?.handle(
                            id,
                            .requestFailed(KandyError(.callFailure, "The platform's answer has no sessionData."), .make)
                        )
                        return
                    }
                    await self?.started(id, session: session)
                }
            case .put(let type, let sdp):
                guard let session = entries[id]?.machine.sessionID else { continue }
                // Ringing is a courtesy to the caller: its answer changes nothing here.
                let operation = type == .ringing ? nil : purpose
                request(id, operation, "PUT", { LinkPath.callSession(user: $0, id: session) }) { _ in
                    CallControlRequest(type: type, sdp: sdp)
                } answered: { [weak self] _ in
                    if let operation { await self?.handle(id, .requestDone(operation)) }
                }
            case .delete:
                guard let session = entries[id]?.machine.sessionID else { continue }
                let platform = platform
                run(id) { _ = await platform.send("DELETE", { LinkPath.callSession(user: $0, id: session) }, nil) }
            case .reject:
                guard let session = entries[id]?.machine.sessionID else { continue }
                let platform = platform
                let body = try? WireJSON.encode(
                    CallDispositionRequestDocument(
                        callDispositionRequest: .init(action: CallDispositionRequest.reject, sessionData: session)))
                run(id) { _ = await platform.send("POST", LinkPath.callDisposition(user:), body) }
            case .armRingTimer:
                let wait = timer.wait(configuration.ringTimeout)
                entries[id]?.ringTimer?.cancel()
                entries[id]?.ringTimer = Task { [weak self] in
                    guard (try? await wait()) != nil else { return }
                    await self?.handle(id, .ringTimedOut)
                }
            case .cancelRingTimer:
                entries[id]?.ringTimer?.cancel()
                entries[id]?.ringTimer = nil
            case .finish(let operation, let error):
                let waiter = entries[id]?.waiters.removeValue(forKey: operation)
                if operation == .end || operation == .reject, error == nil, let waiter {
                    // Returns once the platform has it (the request before this one), so that
                    // what the app does next (unsubscribe, destroy) cannot overtake it.
                    run(id) { waiter.resume() }
                } else if let error {
                    waiter?.resume(throwing: error)
                } else {
                    waiter?.resume()
                }
            case .fault(let description):
                fault(description)
            }
        }
        if entries[id]?.machine.state.isFinal == true, let session = entries[id]?.machine.sessionID {
            bySession[session] = nil
        }
        sync(id)
        forgetOldCalls()
    }

    /// How many ended calls, unmatched notifications and faults are kept.
    static let kept = 100

    private func fault(_ description: String) {
        faults.append(description)
        if faults.count > Self.kept { faults.removeFirst() }
    }

    /// Ended calls stay visible to `getAll`, the latest ``kept`` of them.
    private func forgetOldCalls() {
        let ended = entries.filter { $0.value.machine.state.isFinal && $0.value.waiters.isEmpty }
        guard ended.count > Self.kept else { return }
        let oldest = ended.sorted { $0.value.call.startTime < $1.value.call.startTime }.prefix(ended.count - Self.kept)
        for (id, _) in oldest { entries[id] = nil }
        calls.withLock { calls in for (id, _) in oldest { calls[id] = nil } }
    }

    /// Runs a media engine step off the actor, after the call's previous one; the SDP it makes
    /// (or its failure) comes back as an input.
    private func media(
        _ id: String, for purpose: CallOperationKind?,
        _ step: @escaping @Sendable (any MediaSession) async throws -> String?
    ) {
        run(Self.media(id)) { [weak self] in
            guard let self else { return }
            do {
                guard let session = try await self.mediaSession(of: id) else { return }
                let sdp = try await step(session)
                if let sdp, let purpose { await self.handle(id, .sdpReady(sdp, for: purpose)) }
            } catch {
                await self.handle(id, .mediaFailed(KandyError(.mediaFailure, "The media engine failed: \(error)")))
            }
        }
    }

    /// The call's media session, made on its first step; nil once the call has ended.
    private func mediaSession(of id: String) async throws -> (any MediaSession)? {
        guard let entry = entries[id], !entry.machine.state.isFinal else { return nil }
        if let session = entry.media { return session }
        let session = try await engine.session(callID: id, media: entry.call.media, iceServers: platform.iceServers())
        guard entries[id]?.machine.state.isFinal == false else {
            await session.close()
            return nil
        }
        entries[id]?.media = session
        return session
    }

    private func started(_ id: String, session: String) {
        bySession[session] = id
        handle(id, .started(sessionID: session))
        // What arrived for the session before its id was known, in order.
        let waiting = unmatched.filter { $0.message.sessionParams?.sessionData == session }
        unmatched.removeAll { $0.message.sessionParams?.sessionData == session }
        for item in waiting { deliver(item.message, to: id) }
    }

    private func request(
        _ id: String, _ operation: CallOperationKind?, _ method: String, _ path: @escaping @Sendable (String) -> String,
        _ body: @escaping @Sendable (String) -> CallControlRequest,
        answered: @escaping @Sendable (CallControlResponse) async -> Void
    ) {
        let platform = platform
        run(id) { [weak self] in
            guard let username = await platform.username() else {
                if let operation {
                    await self?.handle(
                        id, .requestFailed(KandyError(.callFailure, "Set credentials first."), operation))
                }
                return
            }
            let document = try? WireJSON.encode(CallControlRequestDocument(callControlRequest: body(username)))
            switch await platform.send(method, path, document) {
            case .success(let response): await answered(response)
            case .failure(let error):
                if let operation { await self?.handle(id, .requestFailed(error, operation)) }
            }
        }
    }

    /// Copies the machine's view into the app-visible call.
    private func sync(_ id: String) {
        guard var entry = entries[id] else { return }
        entry.call.state = entry.machine.state
        entry.call.localHold = entry.machine.localHold
        entry.call.remoteHold = entry.machine.remoteHold
        entry.call.sessionID = entry.machine.sessionID
        entry.call.error = entry.machine.error ?? entry.call.error
        entry.call.transition = entry.machine.transition
        entries[id] = entry
        publish(id)
    }

    private func publish(_ id: String) {
        guard let call = entries[id]?.call else { return }
        calls.withLock { $0[id] = call }
    }

    /// `bob@example.com`, `sip:bob@example.com` or `Bob<sip:bob@…>` → `bob@example.com`.
    static func normalized(_ destination: String) -> String? {
        CallAddress.username(destination.trimmingCharacters(in: .whitespaces))
    }
}
