import Foundation
import Testing

@testable import KandyLinkServer

/// The hub's rules, without sockets: liveness, replacement, scheduled close.
@Suite(.timeLimit(.minutes(1))) struct NotificationHubTests {
    let start = Date(timeIntervalSince1970: 1_800_000_000)

    @Test func keepaliveMovesTheIdleDeadline() async {
        let hub = NotificationHub()
        let (socket, outbox) = hub.attach(channelID: "c1", now: start)
        // (seconds since start when touched, seconds when swept, closed?)
        let table: [(touch: Double?, sweep: Double, closed: Bool)] = [
            (nil, 100, false),
            (90, 189, false),
            (nil, 190, false),
            (nil, 190.001, true),
        ]
        for row in table {
            if let touch = row.touch { socket.touch(start + touch) }
            let closed = hub.sweep(now: start + row.sweep, silentSince: start + row.sweep - 100)
            #expect(closed == (row.closed ? 1 : 0), "sweep at \(row.sweep)")
        }
        #expect(hub.count == 0)
        var items: [NotificationHub.Outbound] = []
        for await item in outbox { items.append(item) }
        guard case .close(let code, _)? = items.last else {
            Issue.record("no close")
            return
        }
        #expect(code == .goingAway)
    }

    @Test func aNewSocketReplacesTheOldOneAndDetachOfTheOldIsHarmless() async {
        let hub = NotificationHub()
        let (old, oldOutbox) = hub.attach(channelID: "c1", now: start)
        let (new, _) = hub.attach(channelID: "c1", now: start)
        hub.detach(old)
        #expect(hub.count == 1)
        #expect(hub.send("hello", to: "c1"))
        var oldItems: [NotificationHub.Outbound] = []
        for await item in oldOutbox { oldItems.append(item) }
        #expect(oldItems.count == 1)  // only its close
        hub.detach(new)
        #expect(hub.count == 0)
        #expect(!hub.send("hello", to: "c1"))
    }

    @Test func closeSendsTheLastWordFirst() async {
        let hub = NotificationHub()
        let (_, outbox) = hub.attach(channelID: "c1", now: start)
        hub.send("one", to: "c1")
        hub.close(channelID: "c1", sending: "gone", code: .normalClosure, reason: "bye")
        var texts: [String] = []
        var closed = false
        for await item in outbox {
            switch item {
            case .text(let text): texts.append(text)
            case .close: closed = true
            }
        }
        #expect(texts == ["one", "gone"])
        #expect(closed)
    }

    @Test func scheduledCloseHappensAtItsDeadline() {
        let hub = NotificationHub()
        _ = hub.attach(channelID: "c1", now: start)
        hub.scheduleClose(channelID: "c1", at: start + 1)
        #expect(hub.sweep(now: start + 0.5, silentSince: start - 100) == 0)
        #expect(hub.sweep(now: start + 1, silentSince: start - 100) == 1)
    }
}
