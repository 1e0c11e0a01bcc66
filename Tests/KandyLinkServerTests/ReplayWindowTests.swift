import Testing

@testable import KandyLinkServer

@Suite struct ReplayWindowTests {
    typealias Written = NotificationHub.Written

    private static func entry(_ id: UInt64, bytes: Int = 10, at: Int64? = nil) -> Written {
        Written(eventID: id, text: String(repeating: "x", count: bytes), at: at ?? Int64(id) * 1000)
    }

    /// Entries of the given sizes appended in turn to a window keeping `count` and `bytes`: which
    /// ids are left, and how many were pushed out with the newest of them.
    @Test(arguments: [
        // Within both limits: nothing pushed out.
        (sizes: [10, 10, 10], count: 5, bytes: 100, left: [1, 2, 3] as [UInt64], dropped: 0, newest: nil as UInt64?),
        // Over the count: the oldest go, one at a time.
        ([10, 10, 10, 10], 2, 100, [3, 4], 2, 2),
        // Over the bytes: as many of the oldest as it takes.
        ([40, 40, 40], 10, 100, [2, 3], 1, 1),
        ([10, 10, 10, 95], 10, 100, [4], 3, 3),
        // An entry larger than the whole window pushes everything out, itself included.
        ([10, 200], 10, 100, [], 2, 2),
    ])
    func keepsWithinItsLimits(sizes: [Int], count: Int, bytes: Int, left: [UInt64], dropped: Int, newest: UInt64?) {
        var window = NotificationHub.ReplayWindow()
        var pushed = 0
        var last: Written?
        for (index, size) in sizes.enumerated() {
            let result = window.append(Self.entry(UInt64(index + 1), bytes: size), keeping: count, bytes: bytes)
            pushed += result.dropped
            if let newest = result.newest { last = newest }
        }
        #expect(window.entries(after: nil).map(\.eventID) == left)
        #expect(window.count == left.count)
        #expect(window.bytes == left.map { sizes[Int($0) - 1] }.reduce(0, +))
        #expect(pushed == dropped)
        #expect(last?.eventID == newest)
        #expect(window.isEmpty == left.isEmpty)
    }

    /// Around and around the ring: always the newest `count`, in order.
    @Test func wrapsAroundInOrder() {
        var window = NotificationHub.ReplayWindow()
        for id in UInt64(1)...1000 {
            let result = window.append(Self.entry(id), keeping: 100, bytes: 1 << 20)
            #expect(result.dropped == (id > 100 ? 1 : 0))
        }
        #expect(window.entries(after: nil).map(\.eventID) == Array(901...1000))
        #expect(window.entries(after: 990).map(\.eventID) == Array(991...1000))
        #expect(window.entries(after: 1000).isEmpty)
        #expect(window.bytes == 100 * 10)
    }

    @Test func forgetsWhatWasWrittenBeforeATime() {
        var window = NotificationHub.ReplayWindow()
        for id in UInt64(1)...5 { _ = window.append(Self.entry(id), keeping: 100, bytes: 1 << 20) }
        window.forget(writtenBefore: 3000)
        #expect(window.entries(after: nil).map(\.eventID) == [3, 4, 5])
        #expect(window.bytes == 30)
        window.forget(writtenBefore: 2000)
        #expect(window.count == 3)
        window.forget(writtenBefore: 10_000)
        #expect(window.isEmpty)
        #expect(window.bytes == 0)
    }

    @Test func removeAllEmptiesIt() {
        var window = NotificationHub.ReplayWindow()
        for id in UInt64(1)...3 { _ = window.append(Self.entry(id), keeping: 100, bytes: 1 << 20) }
        window.removeAll()
        #expect(window.isEmpty)
        #expect(window.bytes == 0)
        #expect(window.entries(after: nil).isEmpty)
        _ = window.append(Self.entry(7), keeping: 100, bytes: 1 << 20)
        #expect(window.entries(after: nil).map(\.eventID) == [7])
    }
}
