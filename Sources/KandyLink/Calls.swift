import Foundation

/// `kandy.call`: make and take calls (call-protocol.md). The SDK does the signalling; the
/// ``MediaEngine`` given to ``Kandy/create(_:http:websocket:mediaEngine:clock:now:random:)`` makes
/// the SDP and carries the media.
///
/// ```swift
/// kandy.on(.callReceive) { event in
///     if case .callReceive(let id) = event { Task { try await kandy.call.answer(id) } }
/// }
/// let call = try await kandy.call.make(to: "bob@example.com", media: .init(audio: true, video: true))
/// try await kandy.call.hold(call.id)
/// try await kandy.call.end(call.id)
/// ```
///
/// Each operation returns when it is done (or throws a ``KandyError``) and emits the Kandy.js
/// events: `call:start`, `call:receive`, `call:stateChange`, `call:operation`.
public struct Calls: Sendable {
    let control: CallControl
    /// The calls made and received, as the platform logged them.
    public let history: CallHistory

    /// Calls `destination` (`bob@example.com`, `sip:bob@example.com`). Returns once the platform
    /// took the call (state Initiated); the answer comes as `call:stateChange` to Connected.
    @discardableResult
    public func make(to destination: String, media: CallMedia = CallMedia()) async throws -> Call {
        try await control.make(to: destination, media: media)
    }

    /// Answers a ringing incoming call; returns once Connected.
    public func answer(_ callID: String) async throws { try await control.operate(callID, .answer, .answer) }

    /// Declines a ringing incoming call: the caller is told.
    public func reject(_ callID: String) async throws { try await control.operate(callID, .reject, .reject) }

    /// Stops a ringing incoming call here only; the caller keeps ringing until it gives up.
    public func ignore(_ callID: String) async throws { try await control.operate(callID, .ignore, .ignore) }

    /// Hangs up, cancels or declines, whatever the state; the other party is told.
    public func end(_ callID: String) async throws { try await control.operate(callID, .end, .end) }

    /// Puts a connected call on hold (every stream inactive); returns once the other side agreed.
    public func hold(_ callID: String) async throws { try await control.operate(callID, .hold, .hold) }

    public func unhold(_ callID: String) async throws { try await control.operate(callID, .unhold, .unhold) }

    /// Every call of this instance, ended ones included, oldest first.
    public func getAll() -> [Call] { control.calls.withLock { $0.values.sorted { $0.startTime < $1.startTime } } }

    public func getById(_ callID: String) -> Call? { control.calls.withLock { $0[callID] } }
}
