import Foundation
import Testing

@testable import KandyLink

@Suite struct RefreshScheduleTests {
    let start = Date(timeIntervalSince1970: 1_800_000_000)

    @Test(arguments: [
        // (granted expires, attempt, random, wait)
        (60, 1, 0.0, 30.0),
        (62, 1, 0.0, 31.0),
        (3600, 1, 0.0, 1800.0),
        (3600, 1, 0.999, 1800.0 * (1 - 0.0999)),
        (3600, 2, 0.0, 900.0),
        (3600, 3, 0.0, 450.0),
        (3600, 7, 0.0, 30.0),  // 3600 / 128 = 28.1: the floor
        (64, 2, 0.0, 30.0),
        (20, 1, 0.5, 30.0),
    ])
    func waitIsHalfTheGrantWithJitterAndFloor(expires: Int, attempt: Int, random: Double, wait: Double) {
        #expect(abs(RefreshSchedule().wait(expires: expires, attempt: attempt, random: random) - wait) < 0.001)
    }

    @Test func grantedSixtySecondsRefreshesAtThirtyAndRearmsAfterSuccess() {
        var schedule = RefreshSchedule()
        schedule.arm(expires: 60, now: start, random: 0)
        // (seconds since start, check says PUT now?)
        let table: [(Double, Bool)] = [(0, false), (29.9, false), (30, true), (31, false)]
        for (offset, due) in table {
            let sendsPUT = schedule.check(now: start + offset)
            #expect(sendsPUT == due, "at \(offset)")
        }
        #expect(schedule.inFlight)
        let reported = schedule.succeeded(now: start + 31, random: 0)
        #expect(reported.attempt == 1 && reported.dueAt == start + 61)
        #expect(schedule.dueAt == start + 61)
        #expect(!schedule.inFlight)
    }

    @Test func failuresBackOffAndReportTheirAttempt() {
        var schedule = RefreshSchedule()
        schedule.arm(expires: 3600, now: start, random: 0)
        var now = start + 1800
        // (attempt reported by the failure, wait before the next PUT)
        let table: [(Int, Double)] = [(1, 900), (2, 450), (3, 225), (4, 112.5), (5, 56.25), (6, 30), (7, 30)]
        for (reported, wait) in table {
            let due = schedule.check(now: now)
            let attempt = schedule.failed(now: now, random: 0)
            #expect(due)
            #expect(attempt.attempt == reported && attempt.dueAt == now + wait)
            #expect(schedule.dueAt == now + wait)
            now = now + wait
        }
        let due = schedule.check(now: now)
        let attempt = schedule.succeeded(now: now, random: 0)
        #expect(due)
        #expect(attempt.attempt == 8)
        #expect(schedule.dueAt == now + 1800)
    }

    @Test func aDeviceThatSleptPastTheDueTimeRefreshesAtOnce() {
        var schedule = RefreshSchedule()
        schedule.arm(expires: 600, now: start, random: 0)
        // The first check after waking, whatever woke the device, finds it overdue.
        let first = schedule.check(now: start + 7200)
        let second = schedule.check(now: start + 7200)
        #expect(first)
        #expect(!second)  // one PUT at a time
    }

    @Test func theFloorIsConfigurable() {
        let schedule = RefreshSchedule(floor: 1)
        #expect(schedule.wait(expires: 4, attempt: 1, random: 0) == 2)
        #expect(schedule.wait(expires: 4, attempt: 3, random: 0) == 1)
    }

    @Test func cancelStopsIt() {
        var schedule = RefreshSchedule()
        schedule.arm(expires: 60, now: start, random: 0)
        schedule.cancel()
        let due = schedule.check(now: start + 1000)
        #expect(!due)
    }
}
