import Foundation
import KandyLinkProtocol

/// What the SDK knows of its subscription on the platform.
public struct SubscriptionRecord: Equatable, Sendable {
    /// Absolute path of the subscription resource (target of PUT and DELETE).
    public var url: String
    /// Granted services, in the platform's spelling.
    public var services: [String]
    public var channelPath: String
    /// Granted lifetime in seconds.
    public var expires: Int
    public var turnCredentials: TurnCredentials?
}

/// Subscribe, service updates, refresh and unsubscribe (spec §5–§7, §13.2), as a value type:
/// each input returns the actions the session performs. One subscribe or unsubscribe at a time;
/// the periodic refresh runs beside them.
struct SubscriptionMachine: Equatable, Sendable {
    enum State: Equatable, Sendable {
        case none
        /// POST sent.
        case subscribing(services: [String])
        /// POST granted; waiting for the channel to open.
        case opening(SubscriptionRecord)
        case active(SubscriptionRecord)
        /// A service-update PUT is in flight.
        case updating(SubscriptionRecord)
        /// DELETE in flight.
        case unsubscribing(SubscriptionRecord)
        case destroyed
    }

    enum Action: Equatable, Sendable {
        case emit(KandyEvent)
        case post(services: [String], forceLogOut: Bool)
        case update(url: String, services: [String], expires: Int)
        case refresh(url: String, services: [String], expires: Int)
        case delete(url: String)
        case openChannel(path: String)
        case closeChannel
        /// Wake the session at this wall-clock time to check the refresh schedule.
        case armRefresh(at: Date)
        case cancelRefresh
        /// Resolve the awaiting `subscribe`/`unsubscribe` call.
        case complete(KandyError?)
        /// Credentials are forgotten: `auth:change {forced, reason}`.
        case forgetCredentials(KandyEvent.Reason)
        /// An input this state does not expect (an answer to a request not made, or made by a
        /// state since left): nothing changes, and the session records it.
        case fault(String)
    }

    private(set) var state: State = .none
    private(set) var refresh: RefreshSchedule

    init(refreshFloor: TimeInterval = 30) {
        refresh = RefreshSchedule(floor: refreshFloor)
    }

    var record: SubscriptionRecord? {
        switch state {
        case .opening(let record), .active(let record), .updating(let record), .unsubscribing(let record): record
        case .none, .subscribing, .destroyed: nil
        }
    }

    /// Services as `getSubscriptions().subscribed` shows them: only once the channel is open.
    var subscribed: [String] {
        switch state {
        case .active(let record), .updating(let record), .unsubscribing(let record): record.services
        default: []
        }
    }

    var isPending: Bool {
        switch state {
        case .subscribing, .opening, .updating, .unsubscribing: true
        case .none, .active, .destroyed: false
        }
    }

    // MARK: Requests from the app

    mutating func subscribe(_ services: [String], forceLogOut: Bool) -> [Action] {
        switch state {
        case .none:
            guard !services.isEmpty else {
                return [.complete(KandyError(.subscribeFailure, "No services to subscribe to."))]
            }
            state = .subscribing(services: services)
            return [.emit(.subscriptionChange(.init())), .post(services: services, forceLogOut: forceLogOut)]
        case .active(let record):
            // Subscribing while subscribed adds services with a PUT (spec §6.4).
            let merged = record.services + services.filter { !record.services.contains($0) }
            guard merged != record.services else { return [.complete(nil)] }
            state = .updating(record)
            return [
                .emit(.subscriptionChange(.init())),
                .update(url: record.url, services: merged, expires: record.expires),
            ]
        case .destroyed:
            return [.complete(KandyError(.destroyed, "This Kandy instance was destroyed."))]
        case .subscribing, .opening, .updating, .unsubscribing:
            return [.complete(KandyError(.busy, "A subscribe or unsubscribe is already in progress."))]
        }
    }

    /// Removing every service is a DELETE; removing some is a PUT with the rest (spec §7.1).
    mutating func unsubscribe(_ names: [String]) -> [Action] {
        switch state {
        case .active(let record):
            let remaining = record.services.filter { !names.contains($0) }
            if remaining == record.services {
                let error = KandyError(
                    .unsubscribeFailure, "No subscription found for \(names), can't unsubscribe.")
                return [.emit(.subscriptionError(error)), .complete(error)]
            }
            if remaining.isEmpty {
                state = .unsubscribing(record)
                return [.emit(.subscriptionChange(.init())), .delete(url: record.url)]
            }
            state = .updating(record)
            return [
                .emit(.subscriptionChange(.init())),
                .update(url: record.url, services: remaining, expires: record.expires),
            ]
        case .none:
            let error = KandyError(.unsubscribeFailure, "No subscription found, can't unsubscribe.")
            return [.emit(.subscriptionError(error)), .complete(error)]
        case .destroyed:
            return [.complete(KandyError(.destroyed, "This Kandy instance was destroyed."))]
        case .subscribing, .opening, .updating, .unsubscribing:
            return [.complete(KandyError(.busy, "A subscribe or unsubscribe is already in progress."))]
        }
    }

    // MARK: Answers from the platform and the channel

    mutating func subscribed(_ record: SubscriptionRecord) -> [Action] {
        guard case .subscribing = state else { return unexpected("a subscribe answer") }
        state = .opening(record)
        return [.openChannel(path: record.channelPath)]
    }

    mutating func subscribeFailed(_ error: KandyError) -> [Action] {
        guard case .subscribing = state else { return unexpected("a failed subscribe") }
        state = .none
        return [.emit(.subscriptionError(error)), .complete(error)]
    }

    mutating func channelOpened(now: Date, random: Double) -> [Action] {
        guard case .opening(let record) = state else { return unexpected("an opened channel") }
        state = .active(record)
        let due = refresh.arm(expires: record.expires, now: now, random: random)
        return [.emit(.subscriptionChange(.init())), .armRefresh(at: due), .complete(nil)]
    }

    /// The channel of a new subscription never opened. Unlike Kandy.js, the platform's
    /// subscription is deleted rather than left to expire.
    mutating func channelFailed() -> [Action] {
        guard case .opening(let record) = state else { return unexpected("a failed channel open") }
        state = .none
        let error = KandyError(.connectFailure, "Could not connect to websocket. Received error on open.")
        return [.delete(url: record.url), .emit(.subscriptionError(error)), .complete(error)]
    }

    mutating func updated(_ record: SubscriptionRecord, now: Date, random: Double) -> [Action] {
        guard case .updating = state else { return unexpected("a service update answer") }
        state = .active(record)
        let due = refresh.arm(expires: record.expires, now: now, random: random)
        return [.emit(.subscriptionChange(.init())), .armRefresh(at: due), .complete(nil)]
    }

    mutating func updateFailed(_ error: KandyError) -> [Action] {
        guard case .updating(let record) = state else { return unexpected("a failed service update") }
        state = .active(record)
        return [.emit(.subscriptionError(error)), .complete(error)]
    }

    mutating func deleted() -> [Action] {
        guard case .unsubscribing = state else { return unexpected("an unsubscribe answer") }
        state = .none
        refresh.cancel()
        return [.closeChannel, .cancelRefresh, .emit(.subscriptionChange(.init())), .complete(nil)]
    }

    /// A failed DELETE leaves the subscription in place, socket included.
    mutating func deleteFailed(_ error: KandyError) -> [Action] {
        guard case .unsubscribing(let record) = state else { return unexpected("a failed unsubscribe") }
        state = .active(record)
        return [.emit(.subscriptionError(error)), .complete(error)]
    }

    // MARK: Refresh

    /// Called when the refresh alarm fires and on every keepalive tick (the wall-clock check).
    mutating func refreshCheck(now: Date) -> [Action] {
        guard case .active(let record) = state, refresh.check(now: now) else { return [] }
        return [.refresh(url: record.url, services: record.services, expires: record.expires)]
    }

    /// `answer` is the platform's record; only its TURN credentials are taken (the refreshed
    /// lifetime and services are what was asked for).
    mutating func refreshSucceeded(_ answer: SubscriptionRecord?, now: Date, random: Double) -> [Action] {
        guard refresh.inFlight, record != nil else { return unexpected("a refresh answer") }
        if let credentials = answer?.turnCredentials, case .active(var current) = state {
            current.turnCredentials = credentials
            state = .active(current)
        }
        let (attempt, due) = refresh.succeeded(now: now, random: random)
        return [.emit(.subscriptionResub(.init(attemptNum: attempt, isFailure: false))), .armRefresh(at: due)]
    }

    /// A failed refresh is retried with backoff, except when the platform says the
    /// subscription no longer exists (statusCode 39, as Kandy Link 3.x platforms also answer):
    /// retrying cannot help then, so the subscription ends as with `gone`.
    mutating func refreshFailed(_ error: KandyError, now: Date, random: Double) -> [Action] {
        guard refresh.inFlight, record != nil else { return unexpected("a failed refresh") }
        let (attempt, due) = refresh.failed(now: now, random: random)
        // An unsubscribe overtook the refresh: its answer no longer matters.
        if case .unsubscribing = state { return [] }
        let resub = Action.emit(.subscriptionResub(.init(attemptNum: attempt, isFailure: true, error: error)))
        if error.statusCode == StatusCode.subscriptionNotFound.rawValue {
            return [resub] + end(reason: .gone)
        }
        return [resub, .armRefresh(at: due)]
    }

    private func unexpected(_ input: String) -> [Action] {
        [.fault("Unexpected \(input) in state \(state).")]
    }

    // MARK: Endings not asked for

    /// The platform sent `gone` (spec §4.6).
    mutating func gone() -> [Action] {
        end(reason: .gone)
    }

    /// The channel could not be restored.
    mutating func lostConnection() -> [Action] {
        end(reason: .lostConnection)
    }

    private mutating func end(reason: KandyEvent.Reason) -> [Action] {
        switch state {
        case .none, .destroyed, .subscribing:
            return []
        case .opening, .active, .updating, .unsubscribing:
            let wasOpening = if case .opening = state { true } else { false }
            state = .none
            refresh.cancel()
            var actions: [Action] = [.closeChannel, .cancelRefresh]
            actions.append(.emit(.subscriptionChange(.init(reason: reason))))
            actions.append(.forgetCredentials(reason))
            if wasOpening {
                actions.append(.complete(KandyError(.subscribeFailure, "The platform ended the subscription.")))
            } else {
                actions.append(
                    .complete(KandyError(.unsubscribeFailure, "The subscription ended: \(reason.rawValue).")))
            }
            return actions
        }
    }

    mutating func destroy() -> [Action] {
        let active = state != .none && state != .destroyed
        state = .destroyed
        refresh.cancel()
        return (active ? [.closeChannel] : [])
            + [.cancelRefresh, .complete(KandyError(.destroyed, "This Kandy instance was destroyed."))]
    }
}

/// Credentials: set, replaced, forgotten on `gone` or a lost connection (spec §13.1).
struct AuthMachine: Equatable, Sendable {
    private(set) var credentials: Credentials?
    private(set) var lastError: KandyError?

    enum Action: Equatable, Sendable {
        case emit(KandyEvent)
    }

    mutating func set(_ credentials: Credentials) -> [Action] {
        if let problem = credentials.problem {
            let error = KandyError(.invalidCredentials, "This credentials signature is not valid: \(problem).")
            lastError = error
            return [.emit(.authError(error))]
        }
        self.credentials = credentials
        lastError = nil
        return [.emit(.authChange(.init()))]
    }

    mutating func forget(_ reason: KandyEvent.Reason) -> [Action] {
        credentials = nil
        return [.emit(.authChange(.init(forced: reason == .gone, reason: reason)))]
    }
}
