import KandyLinkProtocol

/// A call's state, as Kandy.js names it (`call.states`, call-protocol §5).
public enum CallState: String, Sendable, Equatable, CaseIterable {
    case initiating = "Initiating"
    case initiated = "Initiated"
    case ringing = "Ringing"
    case earlyMedia = "Early Media"
    case connected = "Connected"
    case onHold = "On Hold"
    case cancelled = "Cancelled"
    case ended = "Ended"

    /// Ended or Cancelled: nothing more happens to the call.
    public var isFinal: Bool { self == .ended || self == .cancelled }
}

public enum CallDirection: String, Sendable, Equatable {
    case outgoing, incoming
}

/// What a call operation is, as Kandy.js's `call:operation` names it.
public enum CallOperationKind: String, Sendable, Equatable {
    case make = "MAKE"
    case answer = "ANSWER"
    case reject = "REJECT"
    case ignore = "IGNORE"
    case end = "END"
    case hold = "HOLD"
    case unhold = "UNHOLD"
    /// The other party renegotiated (its hold or unhold); `isLocal` is false.
    case remoteUpdate = "REMOTE_UPDATE"
}

/// Why a call ended, as its `callEnd` said (statusCode 0, a plain hang-up, is left out as Kandy.js does).
public struct CallTransition: Sendable, Equatable {
    public var statusCode: Int?
    public var reasonText: String?

    public init(statusCode: Int? = nil, reasonText: String? = nil) {
        self.statusCode = statusCode
        self.reasonText = reasonText
    }
}

/// One call's signalling as a value: an input goes in, actions come out (send a request, ask the
/// media engine for SDP, arm the ring timer, emit an event); ``CallControl`` performs them.
///
/// Unlike Kandy.js it has a ring timeout, answers a remote offer that crosses its own (glare) by
/// withdrawing its own, and reports an unexpected input as a ``Action/fault(_:)`` instead of
/// crashing or ignoring it silently.
struct CallMachine: Sendable, Equatable {
    enum Input: Sendable, Equatable {
        /// The app asked for these.
        case make, answer, reject, ignore, end, hold, unhold
        /// The media engine made the SDP asked for `operation`, or failed.
        case sdpReady(String, for: CallOperationKind)
        case mediaFailed(KandyError)
        /// callStart was answered with the session id.
        case started(sessionID: String)
        /// The request of `operation` succeeded or failed. (Each names its operation: an answer
        /// may come after the operation was overtaken, and must not be taken for another's.)
        case requestDone(CallOperationKind)
        case requestFailed(KandyError, CallOperationKind)
        /// A call notification for this call's session.
        case notification(NotificationEventType, sdp: String?, transition: CallTransition)
        /// Unanswered for the configured ring timeout.
        case ringTimedOut
        /// The subscription or the instance is gone: the call cannot go on.
        case lost(KandyError)
    }

    enum Action: Sendable, Equatable {
        case stateChanged(previous: CallState, transition: CallTransition?, error: KandyError?)
        case operation(CallOperationKind, OperationPhase, isLocal: Bool, error: KandyError?)
        /// Ask the engine for an offer (`hold`: every stream inactive) or an answer to `offer`.
        case createOffer(hold: Bool)
        case createAnswer(offer: String, hold: Bool)
        case applyAnswer(String)
        /// Withdraw the offer made for a pending hold or unhold (the other side's won).
        case rollbackOffer
        case closeMedia
        case postCallStart(sdp: String)
        case put(CallControlType, sdp: String?)
        case delete
        case reject
        case armRingTimer
        case cancelRingTimer
        /// Resumes the app's call of `operation`.
        case finish(CallOperationKind, KandyError?)
        case fault(String)
    }

    enum OperationPhase: String, Sendable, Equatable {
        case start = "START"
        case finish = "FINISH"
    }

    let direction: CallDirection
    private(set) var state: CallState
    private(set) var sessionID: String?
    private(set) var localHold = false
    private(set) var remoteHold = false
    private(set) var error: KandyError?
    private(set) var transition: CallTransition?
    /// The app's operation under way (at most one), or the other side's renegotiation.
    private(set) var pending: CallOperationKind?
    /// Incoming: the offer to answer. During a remote renegotiation: its offer.
    private var remoteOffer: String?
    /// A local offer (hold, unhold) is out and unanswered.
    private var offering = false

    /// An outgoing call, before ``Input/make``.
    static func outgoing() -> CallMachine { CallMachine(direction: .outgoing, state: .initiating) }

    /// An incoming call from a `call` notification; returns the actions that follow it.
    static func incoming(sessionID: String, offer: String) -> (CallMachine, [Action]) {
        var machine = CallMachine(direction: .incoming, state: .initiating)
        machine.sessionID = sessionID
        machine.remoteOffer = offer
        let actions: [Action] = [.put(.ringing, sdp: nil)] + machine.enter(.ringing) + [.armRingTimer]
        return (machine, actions)
    }

    private init(direction: CallDirection, state: CallState) {
        self.direction = direction
        self.state = state
    }

    mutating func handle(_ input: Input) -> [Action] {
        switch (input, state) {
        case (.started(let id), .ended) where sessionID == nil:
            // Ended while callStart was on its way: end it at the platform too.
            sessionID = id
            return [.delete]
        case (.end, _) where state.isFinal:
            return [.finish(.end, nil)]
        case (_, _) where state.isFinal:
            return Self.operation(of: input).map { [refusal($0)] } ?? []

        // MARK: Outgoing
        case (.make, .initiating) where direction == .outgoing && pending == nil:
            pending = .make
            return [.operation(.make, .start, isLocal: true, error: nil), .createOffer(hold: false)]
        case (.sdpReady(let sdp, .make), .initiating) where pending == .make:
            return [.postCallStart(sdp: sdp)]
        case (.started(let id), .initiating) where pending == .make:
            sessionID = id
            pending = nil
            return enter(.initiated) + [.armRingTimer, .finish(.make, nil)]
        case (.notification(.ringing, _, _), .initiated):
            return enter(.ringing)
        case (.notification(.sessionProgress, _, _), .initiated), (.notification(.sessionProgress, _, _), .ringing):
            return enter(.earlyMedia)
        case (.notification(.respondCallUpdate, let sdp?, _), .initiated),
            (.notification(.respondCallUpdate, let sdp?, _), .ringing),
            (.notification(.respondCallUpdate, let sdp?, _), .earlyMedia):
            return [.applyAnswer(sdp), .cancelRingTimer] + enter(.connected)
                + [.operation(.make, .finish, isLocal: true, error: nil)]
        case (.ringTimedOut, .initiated), (.ringTimedOut, .ringing), (.ringTimedOut, .earlyMedia):
            let error = KandyError(.callNoAnswer, "Nobody answered the call in time.")
            return end(with: error) + (direction == .outgoing ? [.delete] : [])

        // MARK: Incoming
        case (.answer, .ringing) where direction == .incoming && pending == nil:
            pending = .answer
            return [
                .operation(.answer, .start, isLocal: true, error: nil),
                .createAnswer(offer: remoteOffer ?? "", hold: false),
            ]
        case (.sdpReady(let sdp, .answer), .ringing) where pending == .answer:
            return [.put(.callAnswer, sdp: sdp)]
        case (.requestDone(.answer), .ringing) where pending == .answer:
            pending = nil
            remoteOffer = nil
            return [.cancelRingTimer] + enter(.connected)
                + [.operation(.answer, .finish, isLocal: true, error: nil), .finish(.answer, nil)]
        case (.reject, .ringing) where direction == .incoming && pending == nil:
            return end(with: nil) + [.reject, .finish(.reject, nil)]
        case (.ignore, .ringing) where direction == .incoming && pending == nil:
            return end(with: nil) + [.finish(.ignore, nil)]
        case (.notification(.callCancel, _, _), .ringing) where pending != .answer:
            // (While this device's answer is on its way, the cancel is for the other devices.)
            return [.closeMedia, .cancelRingTimer] + enter(.cancelled)
        case (.notification(.callCancel, _, _), _):
            return []

        // MARK: Renegotiation
        case (.hold, .connected) where pending == nil && !localHold,
            (.hold, .onHold) where pending == nil && !localHold:
            return offer(.hold)
        case (.unhold, .onHold) where pending == nil && localHold:
            return offer(.unhold)
        case (.sdpReady(let sdp, let operation), _) where operation == pending && offering:
            return [.put(.startCallUpdate, sdp: sdp)]
        case (.notification(.respondCallUpdate, let sdp?, _), _) where pending == .hold || pending == .unhold:
            let operation = pending!
            pending = nil
            offering = false
            localHold = operation == .hold
            return [.applyAnswer(sdp)] + enter(heldState)
                + [.operation(operation, .finish, isLocal: true, error: nil), .finish(operation, nil)]
        case (.notification(.startCallUpdate, let sdp?, _), .connected),
            (.notification(.startCallUpdate, let sdp?, _), .onHold):
            var actions: [Action] = []
            if let withdrawn = pending, offering {
                // Glare: the platform took the other side's offer first; ours will be refused.
                actions += [.rollbackOffer, .operation(withdrawn, .finish, isLocal: true, error: Self.glare)]
                actions += [.finish(withdrawn, Self.glare)]
                offering = false
            } else if pending != nil {
                return [.fault("A remote offer arrived during \(pending!.rawValue).")]
            }
            pending = .remoteUpdate
            remoteOffer = sdp
            return actions + [
                .operation(.remoteUpdate, .start, isLocal: false, error: nil),
                .createAnswer(offer: sdp, hold: localHold),
            ]
        case (.sdpReady(let sdp, .remoteUpdate), _) where pending == .remoteUpdate:
            return [.put(.respondCallUpdate, sdp: sdp)]
        case (.requestDone(.remoteUpdate), _) where pending == .remoteUpdate:
            pending = nil
            remoteHold = Self.holds(remoteOffer ?? "")
            remoteOffer = nil
            return enter(heldState) + [.operation(.remoteUpdate, .finish, isLocal: false, error: nil)]

        // MARK: Failures and endings
        case (.requestFailed(let error, let operation), _) where operation == pending:
            return failed(error)
        case (.mediaFailed(let error), _) where pending != nil:
            return failed(error)
        case (.mediaFailed(let error), _):
            // The engine could not apply an answer: the call cannot carry media.
            return end(with: error) + [.delete]
        case (.sdpReady, _), (.requestDone, _), (.requestFailed, _):
            // For an operation that was overtaken (ended, withdrawn in glare): nothing to do. A
            // hold's PUT is answered here too; its result comes as respondCallUpdate.
            return []
        case (.notification(.callEnd, _, let transition), _):
            self.transition =
                transition.statusCode == 0 ? CallTransition(reasonText: transition.reasonText) : transition
            let finish = pending.map { [Action.finish($0, KandyError(.callFailure, "The call ended."))] } ?? []
            pending = nil
            return [.closeMedia, .cancelRingTimer] + enter(.ended) + finish
        case (.end, _):
            let request: [Action] = sessionID == nil ? [] : [.delete]
            let finish = pending.map { [Action.finish($0, KandyError(.callFailure, "The call was ended."))] } ?? []
            pending = nil
            return [.operation(.end, .start, isLocal: true, error: nil), .closeMedia, .cancelRingTimer] + request
                + enter(.ended) + finish + [.finish(.end, nil)]
        case (.lost(let error), _):
            let finish = pending.map { [Action.finish($0, error)] } ?? []
            pending = nil
            return end(with: error) + (sessionID == nil ? [] : [.delete]) + finish

        // MARK: Requests the app may not make now
        case (.make, _), (.answer, _), (.reject, _), (.ignore, _), (.hold, _), (.unhold, _):
            return [refusal(Self.operation(of: input)!)]
        case (.notification(let type, _, _), _):
            return [.fault("A \(type.rawValue) notification in state \(state.rawValue) was left unhandled.")]
        default:
            return [.fault("Unexpected \(input) in state \(state.rawValue).")]
        }
    }

    /// The app's operation an input stands for.
    private static func operation(of input: Input) -> CallOperationKind? {
        switch input {
        case .make: .make
        case .answer: .answer
        case .reject: .reject
        case .ignore: .ignore
        case .hold: .hold
        case .unhold: .unhold
        case .end: .end
        default: nil
        }
    }

    private func refusal(_ operation: CallOperationKind) -> Action {
        .finish(
            operation,
            KandyError(
                .invalidCallState,
                "\(operation.rawValue) is not possible in state \(state.rawValue)"
                    + (pending.map { " while \($0.rawValue) is under way" } ?? "") + "."))
    }

    static let glare = KandyError(
        .callFailure, "The other party renegotiated at the same moment; its change was taken.", statusCode: 491)

    /// The state that follows a renegotiation: On Hold while either side holds.
    private var heldState: CallState { localHold || remoteHold ? .onHold : .connected }

    private mutating func enter(_ next: CallState, error: KandyError? = nil) -> [Action] {
        guard next != state || error != nil else { return [] }
        let previous = state
        state = next
        return [.stateChanged(previous: previous, transition: next.isFinal ? transition : nil, error: error)]
    }

    private mutating func offer(_ operation: CallOperationKind) -> [Action] {
        pending = operation
        offering = true
        return [.operation(operation, .start, isLocal: true, error: nil), .createOffer(hold: operation == .hold)]
    }

    private mutating func end(with error: KandyError?) -> [Action] {
        self.error = error
        return [.closeMedia, .cancelRingTimer] + enter(.ended, error: error)
    }

    /// The pending operation failed: a call that was being made or answered ends; a renegotiation
    /// is withdrawn and the call goes on as it was.
    private mutating func failed(_ error: KandyError) -> [Action] {
        let operation = pending!
        pending = nil
        switch operation {
        case .make:
            return end(with: error) + [.operation(.make, .finish, isLocal: true, error: error), .finish(.make, error)]
        case .answer where error.statusCode == CallStatusCode.sessionNotFound.rawValue:
            return end(with: error) + [
                .operation(.answer, .finish, isLocal: true, error: error), .finish(.answer, error),
            ]
        case .answer:
            return [.operation(.answer, .finish, isLocal: true, error: error), .finish(.answer, error)]
        case .hold, .unhold:
            offering = false
            return [
                .rollbackOffer, .operation(operation, .finish, isLocal: true, error: error), .finish(operation, error),
            ]
        case .remoteUpdate:
            remoteOffer = nil
            return [.operation(.remoteUpdate, .finish, isLocal: false, error: error)]
        case .reject, .ignore, .end:
            return [.finish(operation, error)]
        }
    }

    /// Whether an offer puts its receiver on hold: no stream is sent (RFC 3264 §8.4).
    static func holds(_ sdp: String) -> Bool {
        var media = 0
        var held = 0
        var sending = true
        for line in sdp.split(whereSeparator: \.isNewline) {
            if line.hasPrefix("m=") {
                if media > 0 && !sending { held += 1 }
                media += 1
                sending = true
            } else if line == "a=inactive" || line == "a=sendonly" {
                sending = false
            }
        }
        if media > 0 && !sending { held += 1 }
        return media > 0 && held == media
    }
}
