import Testing

@testable import KandyLinkServer

/// The queue-bound policy both stores follow, step by step.
struct QueueTrimTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var name: String
        var queued: (count: Int, bytes: Int)
        var adding: Int
        var bound: QueueBound
        /// The oldest notifications, as the store would hand them over: (eventID, bytes).
        var oldest: [(UInt64, Int)]
        var earlierMissed: Int
        var expectDropped: [UInt64]
        var expectTotals: (count: Int, bytes: Int)
        var expectMarker: (eventID: UInt64, missed: Int)?

        var testDescription: String { name }
    }

    static let cases: [Case] = [
        Case(
            name: "within the bound: nothing goes", queued: (2, 200), adding: 100, bound: .init(count: 3, bytes: 1000),
            oldest: [(1, 100)], earlierMissed: 0, expectDropped: [], expectTotals: (3, 300), expectMarker: nil),
        Case(
            name: "one too many: the oldest goes", queued: (3, 300), adding: 100, bound: .init(count: 3, bytes: 1000),
            oldest: [(1, 100), (2, 100)], earlierMissed: 0, expectDropped: [1], expectTotals: (3, 300),
            expectMarker: (1, 1)),
        Case(
            name: "too many bytes: as many go as it takes", queued: (3, 900), adding: 500,
            bound: .init(count: 100, bytes: 1000), oldest: [(1, 300), (2, 300), (3, 300)], earlierMissed: 0,
            expectDropped: [1, 2], expectTotals: (2, 800), expectMarker: (2, 2)),
        Case(
            name: "an earlier marker's count carries over", queued: (3, 300), adding: 100,
            bound: .init(count: 3, bytes: 1000), oldest: [(7, 100)], earlierMissed: 5, expectDropped: [7],
            expectTotals: (3, 300), expectMarker: (7, 6)),
        Case(
            name: "nothing left to drop: the new one stays over the bound", queued: (0, 0), adding: 2000,
            bound: .init(count: 10, bytes: 1000), oldest: [], earlierMissed: 0, expectDropped: [],
            expectTotals: (1, 2000), expectMarker: nil),
    ]

    @Test(arguments: cases) func trims(_ test: Case) {
        var trim = QueueTrim(count: test.queued.count, bytes: test.queued.bytes, adding: test.adding, bound: test.bound)
        var dropped: [UInt64] = []
        var oldest = test.oldest[...]
        // As the stores do: drop the oldest while over the bound and there is one.
        while trim.isOver, let (eventID, bytes) = oldest.popFirst() {
            trim.drop(eventID: eventID, bytes: bytes)
            dropped.append(eventID)
        }
        #expect(dropped == test.expectDropped)
        #expect(trim.count == test.expectTotals.count && trim.bytes == test.expectTotals.bytes)
        let marker = trim.marker(earlierMissed: test.earlierMissed)
        #expect(marker?.eventID == test.expectMarker?.eventID && marker?.missed == test.expectMarker?.missed)
    }
}
