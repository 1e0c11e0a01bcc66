import Foundation

/// The notification channel's socket: opening, keepalive, loss and reconnect (spec §4, §13.3).
///
/// A value type: each input returns the actions to perform; the session performs them. Fixes
/// the JS client's faults: a close is an input at once (not noticed at the next keepalive), and
/// reconnects back off with jitter, one attempt at a time.
struct ChannelMachine: Equatable, Sendable {
    enum State: Equatable, Sendable {
        case closed
        /// Attempt `attempt` of a cycle is under way; `initial` is the cycle started by subscribe.
        case connecting(attempt: Int, initial: Bool)
        case waiting(attempt: Int, initial: Bool)
        case open
    }

    enum Query: Equatable, Sendable {
        /// First open: nothing, or `?access_token=` with a bearer token.
        case firstOpen
        /// Reconnects: a bare `?`, or `?token=` with a bearer token (spec §4.1).
        case reconnect
    }

    enum Action: Equatable, Sendable {
        case emitWsChange
        case connect(Query)
        case scheduleRetry(after: Duration)
        case sendKeepalive
        case armKeepalive
        case disconnect
        case cancelTimers
        /// The channel opened; `initial` completes a subscribe.
        case opened(initial: Bool)
        /// The subscribe's channel never opened.
        case initialOpenFailed
        /// The channel is gone and the policy gave up: `LOST_CONNECTION`.
        case lost
        /// An input this state does not expect: nothing changes, and the session records it.
        case fault(String)
    }

    let backoff: KandyConfiguration.Backoff
    let autoReconnect: Bool
    private(set) var state: State = .closed

    init(backoff: KandyConfiguration.Backoff, autoReconnect: Bool) {
        self.backoff = backoff
        self.autoReconnect = autoReconnect
    }

    var isOpen: Bool { state == .open }

    mutating func open() -> [Action] {
        guard state == .closed else { return [] }
        state = .connecting(attempt: 1, initial: true)
        return [.emitWsChange, .connect(.firstOpen)]
    }

    mutating func connected() -> [Action] {
        guard case .connecting(_, let initial) = state else { return [.disconnect] }
        state = .open
        return [.emitWsChange, .sendKeepalive, .armKeepalive, .opened(initial: initial)]
    }

    /// `random` in [0, 1) spreads the retry.
    mutating func connectFailed(random: Double) -> [Action] {
        guard case .connecting(let attempt, let initial) = state else {
            return [.fault("Unexpected failed connect in state \(state).")]
        }
        if backoff.limit == 0 || attempt < backoff.limit {
            state = .waiting(attempt: attempt, initial: initial)
            return [.scheduleRetry(after: backoff.wait(afterAttempt: attempt, random: random))]
        }
        state = .closed
        return [initial ? .initialOpenFailed : .lost]
    }

    mutating func retryDue() -> [Action] {
        guard case .waiting(let attempt, let initial) = state else {
            return [.fault("Unexpected retry alarm in state \(state).")]
        }
        state = .connecting(attempt: attempt + 1, initial: initial)
        return [.connect(initial ? .firstOpen : .reconnect)]
    }

    /// The socket closed without being asked to: by the platform, the network, or a missed pong.
    mutating func peerClosed() -> [Action] {
        guard state == .open else { return [] }
        guard autoReconnect else {
            state = .closed
            return [.cancelTimers, .emitWsChange, .lost]
        }
        state = .connecting(attempt: 1, initial: false)
        // One ws:change for the loss, one for the new connection cycle, as Kandy.js.
        return [.cancelTimers, .emitWsChange, .emitWsChange, .connect(.reconnect)]
    }

    mutating func keepaliveDue() -> [Action] {
        state == .open ? [.sendKeepalive, .armKeepalive] : []
    }

    /// Closing at the client's request (unsubscribe, `gone`, destroy).
    mutating func close() -> [Action] {
        let wasActive = state != .closed
        state = .closed
        return wasActive ? [.cancelTimers, .disconnect, .emitWsChange] : []
    }
}
