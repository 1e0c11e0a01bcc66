import Foundation
import KandyLinkProtocol
import KandyLinkTesting
import Testing

@testable import KandyLink

/// Two SDK clients call each other through a real platform, with the signalling-only engine.
@Suite(.timeLimit(.minutes(1))) struct CallsTests {
    /// alice and bob logged in and subscribed; the platform holds nothing back for the caller.
    struct Parties {
        let rig: Rig
        let alice: Pair.Client
        let bob: Pair.Client

        init(aliceCall: KandyConfiguration.Call = .init()) async throws {
            rig = try await Rig(configure: { $0.callerNotificationGrace = 0 })
            alice = try await Pair.login(rig, PlatformFixture.alice, call: aliceCall)
            bob = try await Pair.login(rig, PlatformFixture.bob)
        }

        func stop() async throws {
            await alice.kandy.destroy()
            await bob.kandy.destroy()
            try await rig.fixture.stop()
        }

        /// alice calls bob; returns both sides' ids once bob's rings.
        func ring() async throws -> (alice: String, bob: String) {
            let received = bob.recorder.collect(1) { $0.name == .callReceive }
            let call = try await alice.kandy.call.make(to: PlatformFixture.bob, media: .init(audio: true, video: true))
            guard case .callReceive(let id)? = await received.value().first else { throw CallTestFailure("no call") }
            return (call.id, id)
        }

        /// ring(), then bob answers; returns once alice is Connected too.
        func connected() async throws -> (alice: String, bob: String) {
            let ids = try await ring()
            let aliceConnected = alice.state(.connected, of: ids.alice)
            try await bob.kandy.call.answer(ids.bob)
            _ = await aliceConnected.value()
            return ids
        }
    }

    @Test func aCallIsAnsweredHeldUnheldAndHungUp() async throws {
        let parties = try await Parties()
        let (alice, bob) = (parties.alice, parties.bob)
        let aliceRinging = alice.recorder.collect(1) {
            if case .callStateChange(let change) = $0 { change.state == .ringing } else { false }
        }
        let ids = try await parties.ring()
        #expect(alice.recorder.all.contains(.callStart(ids.alice)))
        let incoming = try #require(bob.kandy.call.getById(ids.bob))
        #expect(incoming.direction == .incoming && incoming.state == .ringing)
        #expect(incoming.remoteParticipant.displayNumber == "sip:" + PlatformFixture.alice)
        #expect(incoming.media == CallMedia(audio: true, video: true))
        _ = await aliceRinging.value()

        let aliceConnected = alice.state(.connected, of: ids.alice)
        try await bob.kandy.call.answer(ids.bob)
        #expect(bob.kandy.call.getById(ids.bob)?.state == .connected)
        _ = await aliceConnected.value()
        #expect(alice.kandy.call.getById(ids.alice)?.sessionID == incoming.sessionID)

        let bobHeld = bob.state(.onHold, of: ids.bob)
        try await alice.kandy.call.hold(ids.alice)
        let held = try #require(alice.kandy.call.getById(ids.alice))
        #expect(held.state == .onHold && held.localHold && !held.remoteHold)
        _ = await bobHeld.value()
        #expect(bob.kandy.call.getById(ids.bob)?.remoteHold == true)

        let bobBack = bob.state(.connected, of: ids.bob)
        try await alice.kandy.call.unhold(ids.alice)
        #expect(alice.kandy.call.getById(ids.alice)?.state == .connected)
        _ = await bobBack.value()

        let aliceEnded = alice.state(.ended, of: ids.alice)
        try await bob.kandy.call.end(ids.bob)
        guard case .callStateChange(let end)? = await aliceEnded.value().first else { throw CallTestFailure("no end") }
        #expect(end.transition == CallTransition(reasonText: "Call ended by the remote party"))
        #expect(alice.kandy.call.getById(ids.alice)?.endTime != nil)
        try await parties.stop()
    }

    @Test func aRejectedCallEndsForTheCallerAsDeclined() async throws {
        let parties = try await Parties()
        let ids = try await parties.ring()
        let ended = parties.alice.state(.ended, of: ids.alice)
        try await parties.bob.kandy.call.reject(ids.bob)
        guard case .callStateChange(let end)? = await ended.value().first else { throw CallTestFailure("no end") }
        #expect(end.transition == CallTransition(statusCode: 603, reasonText: "Declined"))
        // Answering what was rejected is refused, with Kandy.js's code.
        await #expect(throws: KandyError.self) { try await parties.bob.kandy.call.answer(ids.bob) }
        try await parties.stop()
    }

    @Test func theCallerCancelsBeforeTheAnswer() async throws {
        let parties = try await Parties()
        let ids = try await parties.ring()
        let cancelled = parties.bob.state(.cancelled, of: ids.bob)
        try await parties.alice.kandy.call.end(ids.alice)
        #expect(parties.alice.kandy.call.getById(ids.alice)?.state == .ended)
        _ = await cancelled.value()
        try await parties.stop()
    }

    @Test func aCallToAnUnknownUserFailsWithThePlatformsCode() async throws {
        let parties = try await Parties()
        do {
            try await parties.alice.kandy.call.make(to: "sip:nobody@example.com")
            Issue.record("the call was made")
        } catch let error as KandyError {
            #expect(error.statusCode == 404 && error.code == .callFailure)
        }
        let call = try #require(parties.alice.kandy.call.getAll().first)
        #expect(call.state == .ended && call.error?.statusCode == 404)
        try await parties.stop()
    }

    @Test func anUnansweredCallEndsAtTheSDKsRingTimeout() async throws {
        // Only alice's runs out: bob's is the default 90 s.
        let parties = try await Parties(aliceCall: .init(ringTimeout: .seconds(30)))
        let ids = try await parties.ring()
        let ended = parties.alice.state(.ended, of: ids.alice)
        let cancelled = parties.bob.state(.cancelled, of: ids.bob)
        parties.rig.clock.advance(by: .seconds(30))
        guard case .callStateChange(let end)? = await ended.value().first else { throw CallTestFailure("no end") }
        #expect(end.error?.code == .callNoAnswer)
        // The SDK told the platform, which stopped bob's phone.
        _ = await cancelled.value()
        try await parties.stop()
    }

    @Test func destroyEndsTheCallForTheOtherParty() async throws {
        let parties = try await Parties()
        let ids = try await parties.connected()
        let ended = parties.bob.state(.ended, of: ids.bob)
        await parties.alice.kandy.destroy()
        _ = await ended.value()
        #expect(try await parties.rig.fixture.platform.callCount() == 0)
        await #expect(throws: KandyError(.destroyed, "This Kandy instance was destroyed; create a new one.")) {
            try await parties.alice.kandy.call.make(to: PlatformFixture.bob)
        }
        try await parties.stop()
    }

    @Test func unsubscribingEndsTheCall() async throws {
        let parties = try await Parties()
        let ids = try await parties.connected()
        let aliceEnded = parties.alice.state(.ended, of: ids.alice)
        let bobEnded = parties.bob.state(.ended, of: ids.bob)
        try await parties.alice.kandy.services.unsubscribe(["call", "Presence", "IM"])
        _ = await aliceEnded.value()
        _ = await bobEnded.value()
        #expect(try await parties.rig.fixture.platform.callCount() == 0)
        try await parties.stop()
    }
}

struct CallTestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

extension Pair.Client {
    /// Starts collecting now: the state change of call `id` to `state`.
    func state(_ state: CallState, of id: String) -> Recorder.Collection {
        recorder.collect(1) {
            if case .callStateChange(let change) = $0 { change.callId == id && change.state == state } else { false }
        }
    }
}
