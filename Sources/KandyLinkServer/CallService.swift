import Foundation
import KandyLinkProtocol
import Logging
import Synchronization

/// Calls (call-protocol.md): the platform relays a call's signalling between its two parties,
/// SDP byte for byte; media flows between the parties, directly or through TURN.
///
/// Calls are kept in the store, so any node sharing it can take any request of a call and a
/// restart ends none. The platform's choices (§9) are in ``Policy`` and docs/protocol.md's Calls section:
/// an unknown callee is 404, one without a `call` session 480, one in another call 486; an
/// unanswered call ends after ``Policy/ringTimeout``; a second offer while the other side's is
/// unanswered is 491; a party whose every `call` session of the call's time has ended leaves it.
final class CallService: Sendable {
    struct Policy: Sendable {
        /// An unanswered call ends then: the caller gets `callEnd` 408, the callee `callCancel`.
        var ringTimeout: TimeInterval = 60
        /// Notifications to the caller wait this long after the callStart answer (§3.4).
        var callerGrace: TimeInterval = 1
        /// Longest SDP relayed, in UTF-8 bytes.
        var maxSDPBytes: Int = 64 * 1024
        /// Most custom parameters relayed with one request.
        var maxCustomParameters: Int = 16
    }

    private let store: any PlatformStore
    private let subscriptions: Subscriptions
    private let delivery: NotificationDelivery
    private let history: CallHistoryService
    private let metrics: PlatformMetrics
    private let policy: Policy
    private let clock: any PlatformClock
    private let logger: Logger
    private let held: CallerHold

    init(
        store: any PlatformStore, subscriptions: Subscriptions, delivery: NotificationDelivery,
        history: CallHistoryService, metrics: PlatformMetrics, policy: Policy, clock: any PlatformClock,
        logger: Logger
    ) {
        self.store = store
        self.subscriptions = subscriptions
        self.delivery = delivery
        self.history = history
        self.metrics = metrics
        self.policy = policy
        self.clock = clock
        self.logger = logger
        self.held = CallerHold(clock: clock)
    }

    // MARK: Requests

    /// `POST …/callControl` `callStart`: rings the callee's `call` sessions and returns the
    /// call's session id.
    func start(_ request: CallControlRequest, by caller: String) async throws(PlatformError) -> String {
        switch request.type {
        case .callStart: break
        case .join: throw PlatformError(.invalidField, "Joining calls is not supported by this platform.")
        default:
            throw PlatformError(
                .invalidField,
                "POST …/callControl starts calls: callControlRequest.type must be callStart, not \(request.type.rawValue)."
            )
        }
        let sdp = try offerOrAnswer(request)
        try check(request.customParameters)
        guard let to = request.to, let callee = CallAddress.username(to), LinkRoute.isAcceptableUsername(callee)
        else {
            throw PlatformError(.invalidField, "callControlRequest.to must name the callee, as sip:user@domain.")
        }
        guard callee != caller else { throw PlatformError(.invalidField, "A user cannot call themself.") }
        let now = clock.now()
        let (callerChannels, calleeChannels) = try await storing("The parties' sessions could not be read.") {
            let live = try await subscriptions.live(of: [caller, callee], now: now)
            return (
                Subscriptions.channels(of: live.filter { $0.username == caller }, granting: .call),
                Subscriptions.channels(of: live.filter { $0.username == callee }, granting: .call)
            )
        }
        guard !callerChannels.isEmpty else {
            throw PlatformError(
                .callServiceRequired, "\(caller) has no session subscribed to call: subscribe to call first.")
        }
        if calleeChannels.isEmpty {
            let exists = try await storing("Users could not be read.") { try await store.existingUsers([callee]) }
            guard exists.contains(callee) else {
                metrics.countFailedCall(.unknownCallee)
                throw PlatformError(call: .unknownCallee)
            }
            metrics.countFailedCall(.unavailable)
            throw PlatformError(call: .unavailable, "\(callee) has no session that takes calls.")
        }
        let call = CallRecord(
            id: RandomIdentifier.make(), caller: caller, callee: callee,
            callerName: request.from.flatMap(CallAddress.displayName), callerChannels: callerChannels,
            calleeChannels: calleeChannels, createdAt: now, ringsUntil: now + policy.ringTimeout,
            callerReadyAt: now + policy.callerGrace)
        let inserted = try await storing("The call could not be stored.") { try await store.insertCall(call) }
        guard inserted else {
            metrics.countFailedCall(.busy)
            throw PlatformError(call: .busy, "\(callee) is in another call.")
        }
        do {
            try await delivery.deliver(toChannels: calleeChannels) {
                .call(
                    .call, eventId: $0, session: SessionParams(sessionData: call.id, sdp: sdp),
                    party: Self.party(to: .callee, of: call), customParameters: request.customParameters)
            }
        } catch {
            _ = try? await store.deleteCall(id: call.id)
            logger.error("The call could not be offered", metadata: ["error": "\(error)"])
            throw PlatformError.store("The call could not be offered to \(callee).", error)
        }
        metrics.callsStarted.increment()
        logger.info("Call started", metadata: ["call": .string(call.id), "caller": .string(caller)])
        return call.id
    }

    /// `PUT …/callSessions/{id}`: ringing, the answer, renegotiation, audit and custom headers.
    func update(_ request: CallControlRequest, session id: String, by user: String) async throws(PlatformError) {
        let call = try await call(id, of: user)
        let party = call.party(user)!
        switch request.type {
        case .ringing:
            guard party == .callee, !call.isAnswered else {
                throw PlatformError(.callStateConflict, "Only the callee rings, and only before answering.")
            }
            await send(.ringing, to: .caller, of: call, SessionParams(sessionData: call.id))
        case .callAnswer:
            let sdp = try offerOrAnswer(request)
            try check(request.customParameters)
            guard party == .callee else { throw PlatformError(.callStateConflict, "Only the callee answers.") }
            let now = clock.now()
            let answered = try await change(id) { call in
                guard !call.isAnswered else {
                    throw PlatformError(.callStateConflict, "The call is answered already.")
                }
                call.answeredAt = now
                call.ringsUntil = nil
                call.offerBy = nil
            }
            metrics.callsAnswered.increment()
            metrics.callSetup.record(Duration.milliseconds(Int64((now.timeIntervalSince(call.createdAt)) * 1000)))
            await send(
                .respondCallUpdate, to: .caller, of: answered, SessionParams(sessionData: id, sdp: sdp),
                customParameters: request.customParameters)
            await stopRingingElsewhere(answered)
        case .startCallUpdate:
            let sdp = try offerOrAnswer(request)
            try check(request.customParameters)
            let updated = try await change(id) { call in
                guard call.isAnswered else {
                    throw PlatformError(.callStateConflict, "The call is not answered yet: nothing to update.")
                }
                if call.offerBy == party.other { throw PlatformError(call: .glare) }
                call.offerBy = party
            }
            await send(
                .startCallUpdate, to: party.other, of: updated, SessionParams(sessionData: id, sdp: sdp),
                customParameters: request.customParameters)
        case .respondCallUpdate:
            let sdp = try offerOrAnswer(request)
            try check(request.customParameters)
            let updated = try await change(id) { call in
                guard call.isAnswered, call.offerBy == party.other else {
                    throw PlatformError(.callStateConflict, "The other party has no offer out to answer.")
                }
                call.offerBy = nil
            }
            await send(
                .respondCallUpdate, to: party.other, of: updated, SessionParams(sessionData: id, sdp: sdp),
                customParameters: request.customParameters)
        case .audit:
            break
        case .sendCustomHeaders:
            try check(request.customParameters)
        case .transfer:
            throw PlatformError(.invalidField, "Transfers are not supported by this platform.")
        case .callStart, .join:
            throw PlatformError(.invalidField, "\(request.type.rawValue) is sent with POST …/callControl.")
        default:
            throw PlatformError(
                .invalidField, "callControlRequest.type \(request.type.rawValue) is not a call session request.")
        }
    }

    /// `GET …/callSessions/{id}`: `RINGING` or `ANSWERED`; an unknown session is 47 (§4.11).
    func state(session id: String, of user: String) async throws(PlatformError) -> String {
        let call: CallRecord
        do {
            call = try await self.call(id, of: user)
        } catch  where error.call == .sessionNotFound {
            throw PlatformError(call: .sessionStateNotFound)
        }
        return call.isAnswered ? "ANSWERED" : "RINGING"
    }

    /// `DELETE …/callSessions/{id}`: either party hangs up, cancels or declines.
    func end(session id: String, by user: String) async throws(PlatformError) {
        let found = try await call(id, of: user)
        guard let call = try await storing("The call could not be ended.", { try await store.deleteCall(id: id) })
        else { throw PlatformError(call: .sessionNotFound) }
        let party = found.party(user)!
        switch (call.isAnswered, party) {
        case (false, .caller):
            held.drop(call.id)
            metrics.countFailedCall(.cancelled)
            await send(.callCancel, to: .callee, of: call, SessionParams(sessionData: id))
            await history.record(call, .cancelled)
        case (false, .callee):
            metrics.countFailedCall(.declined)
            await send(.callEnd, to: .caller, of: call, Self.ended(id, .declined))
            await stopRingingElsewhere(call)
            await history.record(call, .rejected)
        case (true, _):
            if party == .caller { held.drop(call.id) }
            await send(.callEnd, to: party.other, of: call, Self.ended(id, .ended))
            await history.record(call, .hungUp)
        }
        logger.info("Call ended", metadata: ["call": .string(id), "by": .string(user)])
    }

    /// `POST …/calldisposition`: the callee rejects a call that rings.
    func dispose(_ request: CallDispositionRequest, by user: String) async throws(PlatformError) {
        switch request.action {
        case CallDispositionRequest.reject: break
        case CallDispositionRequest.forward:
            throw PlatformError(.invalidField, "Forwarding calls is not supported by this platform.")
        default:
            throw PlatformError(.invalidField, "callDispositionRequest.action must be reject.")
        }
        guard LinkRoute.isIdentifier(Substring(request.sessionData)) else {
            throw PlatformError(call: .sessionNotFound)
        }
        let found = try await call(request.sessionData, of: user)
        guard found.party(user) == .callee, !found.isAnswered else {
            throw PlatformError(.callStateConflict, "Only the callee rejects, and only a call that rings.")
        }
        guard
            let call = try await storing(
                "The call could not be ended.", { try await store.deleteCall(id: request.sessionData) })
        else { throw PlatformError(call: .sessionNotFound) }
        metrics.countFailedCall(.declined)
        await send(.callEnd, to: .caller, of: call, Self.ended(call.id, .declined))
        await stopRingingElsewhere(call)
        await history.record(call, .rejected)
    }

    // MARK: The platform's own endings

    /// Ends the calls nobody answered in time: the caller hears 408, the callee stops ringing.
    func expireUnanswered() async {
        let expired: [CallRecord]
        do {
            expired = try await store.deleteUnansweredCalls(now: clock.now())
        } catch {
            logger.error("Unanswered calls could not be ended", metadata: ["error": "\(error)"])
            return
        }
        for call in expired {
            metrics.countFailedCall(.noAnswer)
            await send(.callEnd, to: .caller, of: call, Self.ended(call.id, .noAnswer))
            await send(.callCancel, to: .callee, of: call, SessionParams(sessionData: call.id))
            await history.record(call, .unanswered)
        }
    }

    /// Sessions of `users` ended: a party none of whose `call` sessions of the call's time is
    /// left has gone, and the other party is told (the callee of an unanswered call by `callCancel`).
    func sessionsEnded(for users: some Collection<String>) async {
        for user in users {
            do {
                let calls = try await store.calls(of: user)
                guard !calls.isEmpty else { continue }
                let live = Set(
                    Subscriptions.channels(
                        of: try await subscriptions.live(of: [user], now: clock.now()), granting: .call))
                for call in calls {
                    guard let party = call.party(user), live.isDisjoint(with: call.channels(of: party)),
                        let ended = try await store.deleteCall(id: call.id)
                    else { continue }
                    if !ended.isAnswered { metrics.countFailedCall(.partyGone) }
                    if party == .caller { held.drop(call.id) }
                    if party == .caller && !ended.isAnswered {
                        await send(.callCancel, to: .callee, of: ended, SessionParams(sessionData: call.id))
                    } else {
                        await send(.callEnd, to: party.other, of: ended, Self.ended(call.id, .unavailable))
                    }
                    await history.record(
                        ended, ended.isAnswered ? .hungUp : party == .caller ? .cancelled : .unanswered)
                    logger.info(
                        "Call ended: a party left", metadata: ["call": .string(call.id), "user": .string(user)])
                }
            } catch {
                logger.error("Calls of an ended session could not be ended", metadata: ["error": "\(error)"])
            }
        }
    }

    // MARK: Pieces

    /// The call `id` if `user` is one of its parties; otherwise, as for an unknown one, 42.
    private func call(_ id: String, of user: String) async throws(PlatformError) -> CallRecord {
        let call = try await storing("The call could not be read.") { try await store.call(id: id) }
        guard let call, call.party(user) != nil else { throw PlatformError(call: .sessionNotFound) }
        return call
    }

    private func change(_ id: String, _ change: @escaping @Sendable (inout CallRecord) throws -> Void)
        async throws(PlatformError) -> CallRecord
    {
        let changed = try await storing("The call could not be stored.") { try await store.updateCall(id: id, change) }
        guard let changed else { throw PlatformError(call: .sessionNotFound) }
        return changed
    }

    private func offerOrAnswer(_ request: CallControlRequest) throws(PlatformError) -> String {
        guard let sdp = request.sdp, !sdp.isEmpty else {
            throw PlatformError(
                .invalidField, "callControlRequest.sdp is missing: \(request.type.rawValue) carries SDP.")
        }
        guard sdp.utf8.count <= policy.maxSDPBytes else {
            throw PlatformError(
                .invalidField, "callControlRequest.sdp is \(sdp.utf8.count) bytes; at most \(policy.maxSDPBytes).")
        }
        return sdp
    }

    private func check(_ parameters: [CustomParameter]?) throws(PlatformError) {
        guard let parameters else { return }
        guard parameters.count <= policy.maxCustomParameters,
            parameters.allSatisfy({ $0.name.utf8.count <= 256 && $0.value.utf8.count <= 1024 })
        else {
            throw PlatformError(
                .invalidField,
                "customParameters holds at most \(policy.maxCustomParameters) of at most 256-byte names and 1024-byte values."
            )
        }
    }

    private static func ended(_ id: String, _ code: CallStatusCode) -> SessionParams {
        SessionParams(sessionData: id, statusCode: code.rawValue, reasonText: code.reason)
    }

    /// Who the other party is, as `party`'s client reads it (§3.3).
    private static func party(to party: CallRecord.Party, of call: CallRecord) -> CallNotificationParams {
        switch party {
        case .callee:
            CallNotificationParams(
                callerName: call.callerName ?? call.caller, callerDisplayNumber: CallAddress.sip(call.caller),
                calleeDisplayNumber: CallAddress.sip(call.callee))
        case .caller:
            CallNotificationParams(remoteName: call.callee, remoteDisplayNumber: CallAddress.sip(call.callee))
        }
    }

    /// Sends a call notification to `party`'s channels; the caller's wait, in order, until it can
    /// know the session (§3.4).
    private func send(
        _ type: NotificationEventType, to party: CallRecord.Party, of call: CallRecord, _ session: SessionParams,
        customParameters: [CustomParameter]? = nil
    ) async {
        guard party == .caller else {
            return await deliver(type, to: party, of: call, session, customParameters: customParameters)
        }
        await held.send(call.id, readyAt: call.callerReadyAt) { [self] in
            await deliver(type, to: .caller, of: call, session, customParameters: customParameters)
        }
    }

    private func deliver(
        _ type: NotificationEventType, to party: CallRecord.Party, of call: CallRecord, _ session: SessionParams,
        customParameters: [CustomParameter]?
    ) async {
        do {
            try await delivery.deliver(toChannels: call.channels(of: party)) {
                .call(
                    type, eventId: $0, session: session, party: Self.party(to: party, of: call),
                    customParameters: customParameters)
            }
        } catch {
            logger.error(
                "A call notification could not be sent",
                metadata: ["call": .string(call.id), "type": .string(type.rawValue), "error": "\(error)"])
        }
    }

    /// The callee's other devices stop ringing once one answered or rejected: Kandy.js expects
    /// `callCancel` on every one of them and ignores it where the call was taken (§3.5).
    private func stopRingingElsewhere(_ call: CallRecord) async {
        guard call.calleeChannels.count > 1 else { return }
        await send(.callCancel, to: .callee, of: call, SessionParams(sessionData: call.id))
    }

    private func storing<T>(_ failure: String, _ work: () async throws -> T) async throws(PlatformError) -> T {
        try await KandyLinkServer.storing(failure, logger: logger, work)
    }
}

/// Notifications to a caller that arrive before it can know their call, kept in order per call
/// and sent at the call's `callerReadyAt`; later ones queue behind them while they are sent.
/// Per node: with several nodes each holds what it was asked to send.
final class CallerHold: Sendable {
    typealias Send = @Sendable () async -> Void

    private let clock: any PlatformClock
    private let pending = Mutex<[String: [Send]]>([:])

    init(clock: any PlatformClock) { self.clock = clock }

    /// Sends now, or after what is held for the call, or at `readyAt`.
    func send(_ callID: String, readyAt: Date, _ send: @escaping Send) async {
        let now = clock.now()
        enum Turn { case now, queued, first }
        let turn = pending.withLock { pending -> Turn in
            if pending[callID] != nil {
                pending[callID]!.append(send)
                return .queued
            }
            guard now < readyAt else { return .now }
            pending[callID] = [send]
            return .first
        }
        switch turn {
        case .now: await send()
        case .queued: break
        case .first: Task { await flush(callID, at: readyAt) }
        }
    }

    /// Forgets what is held for the call (its caller ended it).
    func drop(_ callID: String) {
        pending.withLock { _ = $0.removeValue(forKey: callID) }
    }

    private func flush(_ callID: String, at readyAt: Date) async {
        try? await clock.sleep(until: readyAt)
        while let next = pending.withLock({ pending -> Send? in
            guard let queue = pending[callID], let first = queue.first else {
                pending[callID] = nil
                return nil
            }
            pending[callID] = Array(queue.dropFirst())
            return first
        }) {
            await next()
        }
    }
}
