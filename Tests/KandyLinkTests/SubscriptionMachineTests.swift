import Foundation
import Testing

@testable import KandyLink

@Suite struct SubscriptionMachineTests {
    typealias Action = SubscriptionMachine.Action
    let now = Date(timeIntervalSince1970: 1_800_000_000)
    let record = SubscriptionRecord(
        url: "/rest/version/1/user/a/subscription/s1", services: ["call", "Presence", "IM"],
        channelPath: "/rest/version/1/user/a/websocket/c1", expires: 60, turnCredentials: nil)
    let pending = Action.emit(.subscriptionChange(.init()))

    func active() -> SubscriptionMachine {
        var machine = SubscriptionMachine()
        _ = machine.subscribe(["call", "Presence", "IM"], forceLogOut: true)
        _ = machine.subscribed(record)
        _ = machine.channelOpened(now: now, random: 0)
        return machine
    }

    @Test func subscribeOpensTheChannelThenArmsTheRefresh() {
        var machine = SubscriptionMachine()
        #expect(
            machine.subscribe(["call", "Presence", "IM"], forceLogOut: true) == [
                pending, .post(services: ["call", "Presence", "IM"], forceLogOut: true),
            ])
        #expect(machine.isPending && machine.subscribed.isEmpty)
        #expect(machine.subscribed(record) == [.openChannel(path: record.channelPath)])
        #expect(machine.subscribed.isEmpty)  // not before the channel is open
        #expect(machine.channelOpened(now: now, random: 0) == [pending, .armRefresh(at: now + 30), .complete(nil)])
        #expect(machine.subscribed == ["call", "Presence", "IM"])
        #expect(!machine.isPending)
    }

    @Test func subscribeFailures() {
        let error = KandyError(.subscribeFailure, "Failed to subscribe user. Code: 21.")
        var machine = SubscriptionMachine()
        _ = machine.subscribe(["call"], forceLogOut: false)
        #expect(machine.subscribeFailed(error) == [.emit(.subscriptionError(error)), .complete(error)])
        #expect(machine.state == .none)

        _ = machine.subscribe(["call"], forceLogOut: false)
        _ = machine.subscribed(record)
        let actions = machine.channelFailed()
        // The platform's subscription is deleted, not leaked as Kandy.js does.
        #expect(actions.first == .delete(url: record.url))
        #expect(
            actions.contains { if case .complete(let error?) = $0 { error.code == .connectFailure } else { false } })
        #expect(machine.state == .none)
    }

    @Test func oneOperationAtATime() {
        var machine = SubscriptionMachine()
        _ = machine.subscribe(["call"], forceLogOut: false)
        #expect(
            machine.subscribe(["IM"], forceLogOut: false) == [
                .complete(KandyError(.busy, "A subscribe or unsubscribe is already in progress."))
            ])
        #expect(machine.unsubscribe(["call"]).count == 1)
    }

    @Test(arguments: [
        // (names to unsubscribe, expected request, services afterwards if it succeeds)
        (["call", "Presence", "IM"], "DELETE", [String]()),
        (["IM", "call", "Presence", "extra"], "DELETE", []),
        (["IM"], "PUT", ["call", "Presence"]),
        (["presence"], "error", ["call", "Presence", "IM"]),  // case-sensitive, as Kandy.js
    ])
    func partialIsPutFullIsDelete(names: [String], request: String, remaining: [String]) {
        var machine = active()
        let actions = machine.unsubscribe(names)
        switch request {
        case "DELETE":
            #expect(actions == [pending, .delete(url: record.url)])
            #expect(machine.deleted() == [.closeChannel, .cancelRefresh, pending, .complete(nil)])
        case "PUT":
            #expect(actions == [pending, .update(url: record.url, services: remaining, expires: 60)])
            var updated = record
            updated.services = remaining
            #expect(
                machine.updated(updated, now: now, random: 0) == [pending, .armRefresh(at: now + 30), .complete(nil)])
        default:
            #expect(actions.count == 2)
            #expect(machine.state == .active(record))
        }
        #expect(machine.subscribed == remaining)
    }

    @Test func subscribingMoreServicesIsAnUpdate() {
        var machine = active()
        #expect(
            machine.subscribe(["IM", "Presence", "call", "Extra"], forceLogOut: true) == [
                pending, .update(url: record.url, services: ["call", "Presence", "IM", "Extra"], expires: 60),
            ])
        let error = KandyError(.updateSubscriptionFailure, "no")
        #expect(machine.updateFailed(error) == [.emit(.subscriptionError(error)), .complete(error)])
        #expect(machine.state == .active(record))
    }

    @Test func unsubscribeWithoutSubscription() {
        var machine = SubscriptionMachine()
        let error = KandyError(.unsubscribeFailure, "No subscription found, can't unsubscribe.")
        #expect(machine.unsubscribe(["call"]) == [.emit(.subscriptionError(error)), .complete(error)])
    }

    @Test func aFailedDeleteKeepsTheSubscriptionAndItsSocket() {
        var machine = active()
        _ = machine.unsubscribe(["call", "Presence", "IM"])
        let error = KandyError(.unsubscribeFailure, "Failed to unsubscribe user. Code: 50.")
        #expect(machine.deleteFailed(error) == [.emit(.subscriptionError(error)), .complete(error)])
        #expect(machine.state == .active(record))
    }

    @Test func refreshScheduleWithinTheMachine() {
        var machine = active()
        #expect(machine.refreshCheck(now: now + 29) == [])
        #expect(
            machine.refreshCheck(now: now + 30) == [.refresh(url: record.url, services: record.services, expires: 60)])
        #expect(machine.refreshCheck(now: now + 31) == [])  // one in flight
        let error = KandyError(.updateSubscriptionFailure, "Failed to update user subscription. Code: 39.")
        #expect(
            machine.refreshFailed(error, now: now + 31, random: 0) == [
                .emit(.subscriptionResub(.init(attemptNum: 1, isFailure: true, error: error))),
                .armRefresh(at: now + 61),
            ])
        _ = machine.refreshCheck(now: now + 61)
        var answer = record
        answer.turnCredentials = .init(username: "1800086400:a", password: "p")
        #expect(
            machine.refreshSucceeded(answer, now: now + 62, random: 0) == [
                .emit(.subscriptionResub(.init(attemptNum: 2, isFailure: false))), .armRefresh(at: now + 92),
            ])
        // Fresh TURN credentials from a refresh are kept.
        #expect(machine.record?.turnCredentials == answer.turnCredentials)
    }

    @Test func aRefreshAnsweredSubscriptionNotFoundEndsItAsGone() {
        var machine = active()
        _ = machine.refreshCheck(now: now + 30)
        let error = KandyError(
            .updateSubscriptionFailure, "Failed to update user subscription. Code: 39.", statusCode: 39)
        let actions = machine.refreshFailed(error, now: now + 30, random: 0)
        #expect(actions.first == .emit(.subscriptionResub(.init(attemptNum: 1, isFailure: true, error: error))))
        #expect(actions.contains(.emit(.subscriptionChange(.init(reason: .gone)))))
        #expect(actions.contains(.forgetCredentials(.gone)))
        #expect(!actions.contains { if case .armRefresh = $0 { true } else { false } })
        #expect(machine.state == .none)
    }

    @Test func aRefreshOvertakenByUnsubscribeIsIgnored() {
        var machine = active()
        _ = machine.refreshCheck(now: now + 30)
        _ = machine.unsubscribe(["call", "Presence", "IM"])
        let error = KandyError(.updateSubscriptionFailure, "Code: 39.", statusCode: 39)
        #expect(machine.refreshFailed(error, now: now + 30, random: 0) == [])
        #expect(machine.deleted() == [.closeChannel, .cancelRefresh, pending, .complete(nil)])
    }

    @Test func goneForgetsEverything() {
        var machine = active()
        #expect(
            machine.gone() == [
                .closeChannel, .cancelRefresh, .emit(.subscriptionChange(.init(reason: .gone))),
                .forgetCredentials(.gone),
                .complete(KandyError(.unsubscribeFailure, "The subscription ended: GONE.")),
            ])
        #expect(machine.state == .none)
        #expect(machine.refreshCheck(now: now + 1000) == [])
        #expect(machine.gone() == [])
    }

    @Test func lostConnectionEndsTheSubscription() {
        var machine = active()
        let actions = machine.lostConnection()
        #expect(actions.contains(.emit(.subscriptionChange(.init(reason: .lostConnection)))))
        #expect(actions.contains(.forgetCredentials(.lostConnection)))
    }

    @Test func destroyMidFlight() {
        // Destroyed while the POST is out: the caller is released, late answers change nothing.
        var machine = SubscriptionMachine()
        _ = machine.subscribe(["call"], forceLogOut: true)
        #expect(
            machine.destroy() == [
                .closeChannel, .cancelRefresh, .complete(KandyError(.destroyed, "This Kandy instance was destroyed.")),
            ])
        // Late answers change nothing, and each is a recorded fault rather than silence.
        for late in [
            machine.subscribed(record), machine.subscribeFailed(KandyError(.subscribeFailure, "x")),
            machine.channelOpened(now: now, random: 0), machine.channelFailed(),
            machine.updated(record, now: now, random: 0), machine.deleted(),
            machine.refreshSucceeded(record, now: now, random: 0),
        ] {
            #expect(late.count == 1 && late.allSatisfy { if case .fault = $0 { true } else { false } }, "\(late)")
        }
        #expect(machine.state == .destroyed)
        #expect(
            machine.subscribe(["call"], forceLogOut: true) == [
                .complete(KandyError(.destroyed, "This Kandy instance was destroyed."))
            ])
        // Destroyed while active: no refresh afterwards.
        var activeMachine = active()
        _ = activeMachine.destroy()
        #expect(activeMachine.refreshCheck(now: now + 1000) == [])
    }

    @Test func authMachine() {
        var auth = AuthMachine()
        #expect(auth.set(.password(username: "a", password: "p")) == [.emit(.authChange(.init()))])
        let bad = auth.set(.password(username: "", password: "p"))
        guard case .emit(.authError(let error))? = bad.first else { Issue.record("no auth:error"); return }
        #expect(error.code == .invalidCredentials)
        #expect(auth.credentials?.username == "a")  // the good credentials stay
        #expect(auth.forget(.gone) == [.emit(.authChange(.init(forced: true, reason: .gone)))])
        #expect(auth.credentials == nil)
        #expect(auth.forget(.lostConnection) == [.emit(.authChange(.init(forced: false, reason: .lostConnection)))])
    }
}
