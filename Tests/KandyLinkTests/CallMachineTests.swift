import Foundation
import KandyLinkProtocol
import Testing

@testable import KandyLink

/// The call machine as a table: given a state reached by some inputs, an input gives these
/// actions and this state.
@Suite struct CallMachineTests {
    typealias Input = CallMachine.Input
    typealias Action = CallMachine.Action

    static let offer = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendrecv\r\n"
    static let heldOffer = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=inactive\r\n"
    static let answer = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendrecv\r\n"
    static let failure = KandyError(.callFailure, "refused", statusCode: 480)

    static func note(_ type: NotificationEventType, sdp: String? = nil, code: Int? = nil, reason: String? = nil)
        -> Input
    {
        .notification(type, sdp: sdp, transition: CallTransition(statusCode: code, reasonText: reason))
    }

    /// An outgoing call after `inputs`.
    static func outgoing(_ inputs: [Input]) -> CallMachine {
        var machine = CallMachine.outgoing()
        for input in inputs { _ = machine.handle(input) }
        return machine
    }

    static let connectedOutgoing: [Input] = [
        .make, .sdpReady(offer, for: .make), .started(sessionID: "s1"), note(.ringing),
        note(.respondCallUpdate, sdp: answer),
    ]

    struct Row: Sendable, CustomTestStringConvertible {
        var name: String
        var given: [Input]
        var input: Input
        var actions: [Action]
        var state: CallState
        var testDescription: String { name }
    }

    static let outgoingRows: [Row] = [
        Row(
            name: "make asks for an offer", given: [], input: .make,
            actions: [.operation(.make, .start, isLocal: true, error: nil), .createOffer(hold: false)],
            state: .initiating),
        Row(
            name: "the offer is posted", given: [.make], input: .sdpReady(offer, for: .make),
            actions: [.postCallStart(sdp: offer)], state: .initiating),
        Row(
            name: "callStart answered: Initiated, ring timer, make returns",
            given: [.make, .sdpReady(offer, for: .make)], input: .started(sessionID: "s1"),
            actions: [
                .stateChanged(previous: .initiating, transition: nil, error: nil), .armRingTimer, .finish(.make, nil),
            ], state: .initiated),
        Row(
            name: "callStart refused: Ended with the error",
            given: [.make, .sdpReady(offer, for: .make)], input: .requestFailed(failure, .make),
            actions: [
                .closeMedia, .cancelRingTimer, .stateChanged(previous: .initiating, transition: nil, error: failure),
                .operation(.make, .finish, isLocal: true, error: failure), .finish(.make, failure),
            ], state: .ended),
        Row(
            name: "ringing", given: Array(connectedOutgoing.prefix(3)), input: note(.ringing),
            actions: [.stateChanged(previous: .initiated, transition: nil, error: nil)], state: .ringing),
        Row(
            name: "the answer connects", given: Array(connectedOutgoing.prefix(4)),
            input: note(.respondCallUpdate, sdp: answer),
            actions: [
                .applyAnswer(answer), .cancelRingTimer, .stateChanged(previous: .ringing, transition: nil, error: nil),
                .operation(.make, .finish, isLocal: true, error: nil),
            ], state: .connected),
        Row(
            name: "an answer without SDP is a fault, not a crash", given: Array(connectedOutgoing.prefix(4)),
            input: note(.respondCallUpdate),
            actions: [.fault("A respondCallUpdate notification in state Ringing was left unhandled.")], state: .ringing),
        Row(
            name: "nobody answers: Ended, and the platform is told", given: Array(connectedOutgoing.prefix(4)),
            input: .ringTimedOut,
            actions: [
                .closeMedia, .cancelRingTimer,
                .stateChanged(
                    previous: .ringing, transition: nil,
                    error: KandyError(.callNoAnswer, "Nobody answered the call in time.")),
                .delete,
            ], state: .ended),
        Row(
            name: "declined by the callee", given: Array(connectedOutgoing.prefix(4)),
            input: note(.callEnd, code: 603, reason: "Declined"),
            actions: [
                .closeMedia, .cancelRingTimer,
                .stateChanged(
                    previous: .ringing, transition: CallTransition(statusCode: 603, reasonText: "Declined"), error: nil),
            ], state: .ended),
        Row(
            name: "hung up by the other side: statusCode 0 is left out", given: connectedOutgoing,
            input: note(.callEnd, code: 0, reason: "Call ended by the remote party"),
            actions: [
                .closeMedia, .cancelRingTimer,
                .stateChanged(
                    previous: .connected, transition: CallTransition(reasonText: "Call ended by the remote party"),
                    error: nil),
            ], state: .ended),
        Row(
            name: "ended while callStart is on its way: the session is deleted when known",
            given: [.make, .sdpReady(offer, for: .make), .end], input: .started(sessionID: "s1"), actions: [.delete],
            state: .ended),
        Row(
            name: "hold offers inactive streams", given: connectedOutgoing, input: .hold,
            actions: [.operation(.hold, .start, isLocal: true, error: nil), .createOffer(hold: true)], state: .connected
        ),
        Row(
            name: "the hold offer is sent", given: connectedOutgoing + [.hold], input: .sdpReady(heldOffer, for: .hold),
            actions: [.put(.startCallUpdate, sdp: heldOffer)], state: .connected),
        Row(
            name: "the hold's answer: On Hold", given: connectedOutgoing + [.hold, .sdpReady(heldOffer, for: .hold)],
            input: note(.respondCallUpdate, sdp: answer),
            actions: [
                .applyAnswer(answer), .stateChanged(previous: .connected, transition: nil, error: nil),
                .operation(.hold, .finish, isLocal: true, error: nil), .finish(.hold, nil),
            ], state: .onHold),
        Row(
            name: "glare refused by the platform: the offer is withdrawn, the call goes on",
            given: connectedOutgoing + [.hold, .sdpReady(heldOffer, for: .hold)],
            input: .requestFailed(failure, .hold),
            actions: [
                .rollbackOffer, .operation(.hold, .finish, isLocal: true, error: failure), .finish(.hold, failure),
            ], state: .connected),
        Row(
            name: "a remote offer crossing ours: ours is withdrawn, theirs answered",
            given: connectedOutgoing + [.hold, .sdpReady(heldOffer, for: .hold)],
            input: note(.startCallUpdate, sdp: heldOffer),
            actions: [
                .rollbackOffer, .operation(.hold, .finish, isLocal: true, error: CallMachine.glare),
                .finish(.hold, CallMachine.glare), .operation(.remoteUpdate, .start, isLocal: false, error: nil),
                .createAnswer(offer: heldOffer, hold: false),
            ], state: .connected),
        Row(
            name: "the answer to an overtaken offer is ignored",
            given: connectedOutgoing + [
                .hold, .sdpReady(heldOffer, for: .hold), note(.startCallUpdate, sdp: heldOffer),
            ],
            input: .sdpReady(heldOffer, for: .hold), actions: [], state: .connected),
        Row(
            name: "hold twice is refused", given: connectedOutgoing + [.hold], input: .hold,
            actions: [
                .finish(
                    .hold,
                    KandyError(.invalidCallState, "HOLD is not possible in state Connected while HOLD is under way."))
            ], state: .connected),
        Row(
            name: "the subscription is lost: Ended, and the platform is told", given: connectedOutgoing,
            input: .lost(failure),
            actions: [
                .closeMedia, .cancelRingTimer, .stateChanged(previous: .connected, transition: nil, error: failure),
                .delete,
            ], state: .ended),
        Row(
            name: "nothing happens to an ended call", given: connectedOutgoing + [note(.callEnd, code: 0)],
            input: note(.ringing), actions: [], state: .ended),
    ]

    @Test(arguments: outgoingRows) func outgoing(row: Row) {
        var machine = Self.outgoing(row.given)
        #expect(machine.handle(row.input) == row.actions)
        #expect(machine.state == row.state)
    }

    @Test func anIncomingCallRingsAndIsAnswered() {
        var (machine, actions) = CallMachine.incoming(sessionID: "s1", offer: Self.offer)
        #expect(
            actions == [
                .put(.ringing, sdp: nil), .stateChanged(previous: .initiating, transition: nil, error: nil),
                .armRingTimer,
            ])
        #expect(machine.state == .ringing)
        #expect(
            machine.handle(.answer) == [
                .operation(.answer, .start, isLocal: true, error: nil), .createAnswer(offer: Self.offer, hold: false),
            ])
        // The platform's cancel to the other devices reaches this one too while it answers.
        #expect(machine.handle(Self.note(.callCancel)) == [])
        #expect(machine.handle(.sdpReady(Self.answer, for: .answer)) == [.put(.callAnswer, sdp: Self.answer)])
        #expect(
            machine.handle(.requestDone(.answer)) == [
                .cancelRingTimer, .stateChanged(previous: .ringing, transition: nil, error: nil),
                .operation(.answer, .finish, isLocal: true, error: nil), .finish(.answer, nil),
            ])
        #expect(machine.state == .connected)

        // The caller holds: the answer keeps this side sending; the state is On Hold, remoteHold.
        #expect(
            machine.handle(Self.note(.startCallUpdate, sdp: Self.heldOffer)) == [
                .operation(.remoteUpdate, .start, isLocal: false, error: nil),
                .createAnswer(offer: Self.heldOffer, hold: false),
            ])
        #expect(
            machine.handle(.sdpReady(Self.answer, for: .remoteUpdate)) == [
                .put(.respondCallUpdate, sdp: Self.answer)
            ])
        #expect(
            machine.handle(.requestDone(.remoteUpdate)) == [
                .stateChanged(previous: .connected, transition: nil, error: nil),
                .operation(.remoteUpdate, .finish, isLocal: false, error: nil),
            ])
        #expect(machine.state == .onHold && machine.remoteHold && !machine.localHold)
    }

    @Test func anIncomingCallCancelledRejectedOrIgnored() {
        var cancelled = CallMachine.incoming(sessionID: "s1", offer: Self.offer).0
        #expect(
            cancelled.handle(Self.note(.callCancel)) == [
                .closeMedia, .cancelRingTimer, .stateChanged(previous: .ringing, transition: nil, error: nil),
            ])
        #expect(cancelled.state == .cancelled)

        var rejected = CallMachine.incoming(sessionID: "s1", offer: Self.offer).0
        #expect(
            rejected.handle(.reject) == [
                .closeMedia, .cancelRingTimer, .stateChanged(previous: .ringing, transition: nil, error: nil), .reject,
                .finish(.reject, nil),
            ])
        var ignored = CallMachine.incoming(sessionID: "s1", offer: Self.offer).0
        #expect(
            ignored.handle(.ignore) == [
                .closeMedia, .cancelRingTimer, .stateChanged(previous: .ringing, transition: nil, error: nil),
                .finish(.ignore, nil),
            ])
        #expect(ignored.state == .ended)
        // An operation on a call that no longer rings is refused with the Kandy.js code, and
        // ending it again is no error.
        var late = CallMachine.incoming(sessionID: "s1", offer: Self.offer).0
        _ = late.handle(Self.note(.callCancel))
        #expect(
            late.handle(.answer) == [
                .finish(.answer, KandyError(.invalidCallState, "ANSWER is not possible in state Cancelled."))
            ])
        #expect(late.handle(.end) == [.finish(.end, nil)])
    }

    @Test(arguments: [
        (CallMachineTests.offer, false), (CallMachineTests.heldOffer, true),
        ("v=0\r\nm=audio 9 X 0\r\na=sendonly\r\nm=video 9 X 96\r\na=inactive\r\n", true),
        ("v=0\r\nm=audio 9 X 0\r\na=inactive\r\nm=video 9 X 96\r\na=sendrecv\r\n", false), ("v=0\r\n", false),
    ])
    func holdIsReadFromTheOffersDirections(sdp: String, holds: Bool) {
        #expect(CallMachine.holds(sdp) == holds)
    }
}

/// The call service with a platform of the test's own: what it does with notifications for a
/// session whose callStart answer has not arrived.
@Suite(.timeLimit(.minutes(1))) struct CallControlTests {
    /// A platform whose callStart answer waits until the test lets it go.
    final class HeldPlatform: Sendable {
        let posted: AsyncStream<Void>
        private let postedSink: AsyncStream<Void>.Continuation
        private let release: AsyncStream<Void>
        private let releaseSink: AsyncStream<Void>.Continuation

        init() {
            (posted, postedSink) = AsyncStream.makeStream(of: Void.self)
            (release, releaseSink) = AsyncStream.makeStream(of: Void.self)
        }

        func letGo() { releaseSink.yield() }

        var platform: CallPlatform {
            CallPlatform(
                send: { [self] method, _, _ in
                    guard method == "POST" else { return .success(CallControlResponse(statusCode: 0)) }
                    postedSink.yield()
                    for await _ in release { break }
                    return .success(CallControlResponse(statusCode: 0, sessionData: "s1"))
                },
                iceServers: { [] }, username: { "alice@example.com" })
        }
    }

    @Test func notificationsForASessionNotKnownYetWaitForItsAnswer() async throws {
        let held = HeldPlatform()
        let observers = KandySession.Observers()
        let control = CallControl(
            configuration: .init(), engine: SignallingOnlyMediaEngine(), platform: held.platform,
            timer: AlarmClock(TestClock()), wallClock: { Date() }, observers: observers)
        let events = observers.stream()
        async let made = control.make(to: "bob@example.com", media: .init())
        var posted = held.posted.makeAsyncIterator()
        _ = await posted.next()
        // Kandy.js loses these: they name a session it has not stored yet.
        await control.received(.call(.ringing, eventId: "1", session: SessionParams(sessionData: "s1")))
        await control.received(
            .call(
                .respondCallUpdate, eventId: "2",
                session: SessionParams(sessionData: "s1", sdp: CallMachineTests.answer)))
        #expect(control.calls.withLock { $0.values.first?.state } == .initiating)
        held.letGo()
        let call = try await made
        var states: [CallState] = []
        for await event in events {
            if case .callStateChange(let change) = event { states.append(change.state) }
            if states.last == .connected { break }
        }
        #expect(states == [.initiated, .ringing, .connected])
        #expect(control.calls.withLock { $0[call.id]?.sessionID } == "s1")
        #expect(await control.reportedFaults.isEmpty)
        await control.shutdown()
    }
}
