import Testing

@testable import KandyLink

@Suite struct ChannelMachineTests {
    typealias Action = ChannelMachine.Action
    let backoff = KandyConfiguration.Backoff(
        limit: 3, delay: .seconds(2), multiplier: 2, maxDelay: .seconds(3), jitter: 0.5)

    @Test func backoffFormula() {
        // (failed attempt, random, wait)
        let table: [(Int, Double, Duration)] = [
            (1, 0, .seconds(2)), (2, 0, .seconds(3)), (3, 0, .seconds(3)), (1, 0.5, .seconds(1.5)),
            (2, 1, .seconds(1.5)),
        ]
        for (attempt, random, wait) in table {
            #expect(backoff.wait(afterAttempt: attempt, random: random) == wait, "\(attempt) \(random)")
        }
    }

    @Test func firstOpenSucceeds() {
        var machine = ChannelMachine(backoff: backoff, autoReconnect: true)
        #expect(machine.open() == [.emitWsChange, .connect(.firstOpen)])
        #expect(machine.open() == [])  // already opening
        #expect(machine.connected() == [.emitWsChange, .sendKeepalive, .armKeepalive, .opened(initial: true)])
        #expect(machine.keepaliveDue() == [.sendKeepalive, .armKeepalive])
        #expect(machine.close() == [.cancelTimers, .disconnect, .emitWsChange])
        #expect(machine.keepaliveDue() == [])
    }

    @Test func initialOpenRetriesThenFails() {
        var machine = ChannelMachine(backoff: backoff, autoReconnect: true)
        _ = machine.open()
        let steps: [(String, [Action])] = [
            ("fail", [.scheduleRetry(after: .seconds(2))]),
            ("retry", [.connect(.firstOpen)]),
            ("fail", [.scheduleRetry(after: .seconds(3))]),
            ("retry", [.connect(.firstOpen)]),
            ("fail", [.initialOpenFailed]),
        ]
        for (input, actions) in steps {
            #expect((input == "fail" ? machine.connectFailed(random: 0) : machine.retryDue()) == actions, "\(input)")
        }
        #expect(machine.state == .closed)
    }

    @Test func aCloseReconnectsAtOnceWithTheReconnectQueryAndGivesUpAfterTheLimit() {
        var machine = ChannelMachine(backoff: backoff, autoReconnect: true)
        _ = machine.open()
        _ = machine.connected()
        #expect(machine.peerClosed() == [.cancelTimers, .emitWsChange, .emitWsChange, .connect(.reconnect)])
        #expect(machine.connectFailed(random: 0) == [.scheduleRetry(after: .seconds(2))])
        #expect(machine.retryDue() == [.connect(.reconnect)])
        #expect(machine.connected() == [.emitWsChange, .sendKeepalive, .armKeepalive, .opened(initial: false)])

        _ = machine.peerClosed()
        for _ in 0..<2 {
            _ = machine.connectFailed(random: 0)
            #expect(machine.retryDue() == [.connect(.reconnect)])
        }
        #expect(machine.connectFailed(random: 0) == [.lost])
    }

    @Test func withoutAutoReconnectALossIsFinal() {
        var machine = ChannelMachine(backoff: backoff, autoReconnect: false)
        _ = machine.open()
        _ = machine.connected()
        #expect(machine.peerClosed() == [.cancelTimers, .emitWsChange, .lost])
    }

    @Test func unlimitedRetriesNeverGiveUp() {
        var machine = ChannelMachine(
            backoff: .init(limit: 0, delay: .seconds(1), multiplier: 2, maxDelay: .seconds(8), jitter: 0),
            autoReconnect: true)
        _ = machine.open()
        for attempt in 1...50 {
            let expected = Duration.seconds(min(pow(2, Double(attempt - 1)), 8))
            #expect(machine.connectFailed(random: 0) == [.scheduleRetry(after: expected)])
            _ = machine.retryDue()
        }
    }

    @Test func lateEventsAfterCloseAreIgnored() {
        var machine = ChannelMachine(backoff: backoff, autoReconnect: true)
        _ = machine.open()
        _ = machine.close()
        #expect(machine.connectFailed(random: 0) == [.fault("Unexpected failed connect in state closed.")])
        #expect(machine.retryDue() == [.fault("Unexpected retry alarm in state closed.")])
        #expect(machine.state == .closed)
        #expect(machine.peerClosed() == [])
        #expect(machine.connected() == [.disconnect])  // a socket that opened too late is closed
    }
}

import Foundation
