import Foundation
import KandyLinkProtocol
import KandyLinkTesting
import Testing

@testable import KandyLinkServer

/// Call history through the real platform: an entry per party as each kind of call ends, read,
/// removed and cleared as Kandy.js does.
@Suite(.timeLimit(.minutes(1))) struct CallHistoryTests {
    static func logs(_ test: TestPlatform, of user: String, query: String = "startIndex=0&count=50") async throws
        -> [CallLog]
    {
        let reply = try await test.request(
            .GET, LinkPath.logHistory(user: user) + "?" + query,
            credential: .basic(login: user, password: TestPlatform.password))
        guard reply.status == 200 else { throw TestFailure("logHistory answered \(reply.status): \(reply.text)") }
        let history = try reply.decode(LogHistoryDocument.self).logHistory
        #expect(history.logItems?.allSatisfy { $0.type == "CallLog" } == true)
        return history.logItems?.map(\.params) ?? []
    }

    @Test func eachEndingGivesEachPartyItsEntry() async throws {
        try await TestPlatform.with(configure: CallTests.noGrace) { test in
            let alice = try await test.openSession(TestPlatform.alice)
            let bob = try await test.openSession(TestPlatform.bob)

            // 1. answered, 90 s, bob hangs up.
            let answered = try await test.answeredCall(alice: alice, bob: bob)
            test.clock.advance(by: 90)
            #expect(try await test.endCall(answered, by: TestPlatform.bob).status == 200)
            _ = try await alice.nextNotification()
            // 2. rejected by bob.
            test.clock.advance(by: 10)
            let rejected = try await test.callID(from: TestPlatform.alice, to: TestPlatform.bob)
            _ = try await bob.nextNotification()
            #expect(try await test.reject(rejected, by: TestPlatform.bob).status == 200)
            _ = try await alice.nextNotification()
            // 3. cancelled by alice.
            test.clock.advance(by: 10)
            let cancelled = try await test.callID(from: TestPlatform.alice, to: TestPlatform.bob)
            _ = try await bob.nextNotification()
            #expect(try await test.endCall(cancelled, by: TestPlatform.alice).status == 200)
            _ = try await bob.nextNotification()
            // 4. nobody answers bob's call to alice.
            test.clock.advance(by: 10)
            _ = try await test.callID(from: TestPlatform.bob, to: TestPlatform.alice)
            _ = try await alice.nextNotification()
            test.clock.advance(by: 60)
            await test.platform.sweep()
            _ = try await bob.nextNotification()
            _ = try await alice.nextNotification()

            let aliceLogs = try await Self.logs(test, of: TestPlatform.alice)
            let bobLogs = try await Self.logs(test, of: TestPlatform.bob)
            // Newest first.
            #expect(aliceLogs.map(\.direction) == [.missed, .outgoing, .outgoing, .outgoing])
            #expect(aliceLogs.map(\.disposition) == [.missed, .cancelled, .rejected, .answered])
            #expect(bobLogs.map(\.direction) == [.outgoing, .missed, .incoming, .incoming])
            #expect(bobLogs.map(\.disposition) == [.missed, .missed, .rejected, .answered])
            #expect(aliceLogs.map(\.duration) == ["0", "0", "0", "90000"])
            let start = aliceLogs.compactMap { Int64($0.startTime) }
            #expect(start.count == 4 && start == start.sorted(by: >))

            let first = try #require(aliceLogs.last)
            #expect(first.remoteDisplayNumber == "sip:" + TestPlatform.bob)
            #expect(first.callerDisplayNumber == "sip:" + TestPlatform.alice)
            #expect(first.resourceLocation == LinkPath.logRecord(user: TestPlatform.alice, id: first.recordId))
            #expect(bobLogs.last?.remoteName == TestPlatform.alice)
            // Each party's entries are their own: no record id is shared.
            #expect(Set(aliceLogs.map(\.recordId)).isDisjoint(with: bobLogs.map(\.recordId)))
            alice.close()
            bob.close()
        }
    }

    @Test func entriesAreFetchedInPagesRemovedAndCleared() async throws {
        try await TestPlatform.with(configure: { $0.callHistoryLength = 3 }) { test in
            // Calls end through the service, as the endpoints end them.
            for second in 0..<5 {
                let call = CallRecord(
                    id: "call\(second)", caller: TestPlatform.alice, callee: TestPlatform.bob, callerChannels: [],
                    calleeChannels: [], createdAt: Date(timeIntervalSince1970: 1_800_000_000 + Double(second)),
                    ringsUntil: nil, callerReadyAt: .distantPast)
                await test.platform.callHistory.record(call, .unanswered)
            }
            // Only the newest three are kept.
            let all = try await Self.logs(test, of: TestPlatform.alice)
            #expect(all.map(\.startTime) == ["1800000004000", "1800000003000", "1800000002000"])
            #expect(try await Self.logs(test, of: TestPlatform.alice, query: "startIndex=1&count=1") == [all[1]])
            #expect(try await Self.logs(test, of: TestPlatform.alice, query: "startIndex=0&count=0") == [])

            for query in ["startIndex=x&count=1", "startIndex=0&count=-1", "startIndex=0&count=201"] {
                let reply = try await test.request(.GET, LinkPath.logHistory(user: TestPlatform.alice) + "?" + query)
                #expect(reply.status == 400)
                #expect(try reply.decode(LogHistoryDocument.self).logHistory.statusCode == 37)
            }

            let removed = try await test.request(
                .DELETE, LinkPath.logRecord(user: TestPlatform.alice, id: all[0].recordId))
            #expect(removed.status == 200)
            let again = try await test.request(
                .DELETE, LinkPath.logRecord(user: TestPlatform.alice, id: all[0].recordId))
            #expect(again.status == 404)
            #expect(try again.decode(LogRecordDocument.self).logRecord.statusCode == 42)
            // bob cannot remove alice's entry, through his path or hers.
            let bobsTry = try await test.request(
                .DELETE, LinkPath.logRecord(user: TestPlatform.bob, id: all[1].recordId),
                credential: .basic(login: TestPlatform.bob, password: TestPlatform.password))
            #expect(bobsTry.status == 404)
            let throughHers = try await test.request(
                .DELETE, LinkPath.logRecord(user: TestPlatform.alice, id: all[1].recordId),
                credential: .basic(login: TestPlatform.bob, password: TestPlatform.password))
            #expect(throughHers.status == 403)
            #expect(
                try await Self.logs(test, of: TestPlatform.alice).map(\.recordId) == [all[1], all[2]].map(\.recordId))

            #expect(try await test.request(.DELETE, LinkPath.logHistory(user: TestPlatform.alice)).status == 200)
            #expect(try await Self.logs(test, of: TestPlatform.alice) == [])
            #expect(try await Self.logs(test, of: TestPlatform.bob).count == 3)
        }
    }
}
