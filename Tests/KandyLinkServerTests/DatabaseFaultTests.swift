import Foundation
import GRDB
import KandyLinkProtocol
import KandyLinkTesting
import NIOCore
import Testing

@testable import KandyLinkServer

/// What an operator's database does to a node under load: PostgreSQL going away and coming back,
/// SQLite's disk filling up. Requests are answered 503 meanwhile, sockets stay, and nothing a
/// sender was told is sent goes missing.
@Suite(.timeLimit(.minutes(4))) struct DatabaseFaultTests {
    /// One sender's messages, each with what the platform answered.
    struct Outcome: Sendable {
        var number: Int
        var status: Int
        var text: String
    }

    @Test(.enabled(if: TestDatabase.isAvailable))
    func postgreSQLAwayForThirtySecondsUnderLoad() async throws {
        let database = try await TestDatabase.create()
        try await withCleanup {
            try await TestPlatform.with(configure: { $0.database = database.url }) { test in
                // bob's socket is down, so what alice sends him is queued in PostgreSQL; alice's is open.
                let (bobPath, bobFirst) = try await test.openBobsChannel()
                try await test.dropSocket(bobFirst, path: bobPath)
                let alicePath = try #require(try await test.subscribe().subscriptionParams).notificationChannel
                let aliceChannel = try await test.openChannel(alicePath)

                let (outcomes, record) = AsyncStream.makeStream(of: Outcome.self)
                let load = Task {
                    var number = 0
                    defer { record.finish() }
                    while !Task.isCancelled {
                        do {
                            // Longer than the outage: a request that waits for the database is answered.
                            let reply = try await test.sendMessage(
                                "\(number)", from: TestPlatform.alice, to: TestPlatform.bob, timeout: .seconds(90))
                            record.yield(Outcome(number: number, status: reply.status, text: reply.text))
                        } catch {
                            record.yield(Outcome(number: number, status: 0, text: "no answer: \(error)"))
                        }
                        number += 1
                    }
                }
                // Ended on every path: left running after a failure, it would spin on a stopped node.
                defer { load.cancel() }
                var seen: [Outcome] = []
                var iterator = outcomes.makeAsyncIterator()
                func next() async throws -> Outcome {
                    guard let outcome = await iterator.next() else { throw TestFailure("the load stopped") }
                    seen.append(outcome)
                    return outcome
                }
                // Under way before the outage.
                while try await next().number < 50 {}

                try await database.suspend()
                while try await next().status == 200 {}
                let health = try await test.request(.GET, "/health", credential: nil)
                #expect(health.status == 503)
                #expect(health.statusDocument?.statusCode == StatusCode.unavailable.rawValue)
                let outage = ContinuousClock.now + .seconds(30)
                while ContinuousClock.now < outage { _ = try await next() }

                try await database.resume()
                // The node finds its database again by itself.
                while try await next().status != 200 {}
                for _ in 0..<50 { _ = try await next() }
                load.cancel()

                let refused = seen.filter { $0.status != 200 }
                #expect(!refused.isEmpty)
                for outcome in refused {
                    #expect(outcome.status == 503, "\(outcome.number): \(outcome.text)")
                    #expect(outcome.text.contains("\"statusCode\":51"), "\(outcome.number): \(outcome.text)")
                }
                #expect(seen.last?.status == 200, "the load ends served")

                // alice kept her socket: what bob sends now arrives on it.
                #expect(test.platform.hub.hasSocket(test.channelID(alicePath)))
                #expect(
                    try await test.sendMessage("still here", from: TestPlatform.bob, to: TestPlatform.alice).status
                        == 200)
                #expect(try await aliceChannel.nextNotification().imnotificationParams?.msgText == "still here")

                // Every message alice was told is sent reaches bob, once and in order. (One answered
                // 503 as the database went may have been kept too: refused is not the same as lost.)
                let acknowledged = seen.filter { $0.status == 200 }.map(\.number)
                let bobAgain = try await test.openChannel(bobPath, query: "?")
                var received: [Int] = []
                while received.last != acknowledged.last {
                    let text = try await bobAgain.nextNotification().imnotificationParams?.msgText
                    received.append(try #require(text.flatMap { Int($0) }))
                }
                #expect(received == received.sorted() && Set(received).count == received.count)
                #expect(Set(acknowledged).isSubset(of: Set(received)))
                #expect(Set(received).isSubset(of: Set(seen.map(\.number))))
                aliceChannel.close()
                bobAgain.close()
            }
        } cleanup: {
            try? await database.resume()
            await database.drop()
        }
    }

    /// A node told to stop while a request waits on its database (a row another program keeps
    /// locked) still stops: the node's lock_timeout ends the wait with a 503 rather than leaving
    /// the request, bob's channel and the shutdown waiting for as long as that program likes.
    @Test(.enabled(if: TestDatabase.isAvailable))
    func aNodeStopsWhileARequestWaitsOnItsDatabase() async throws {
        let database = try await TestDatabase.create()
        try await withCleanup {
            try await TestPlatform.with(configure: {
                $0.database = database.url
                $0.shutdownGrace = .milliseconds(200)
            }) { test in
                let (bobPath, bobFirst) = try await test.openBobsChannel()
                try await test.dropSocket(bobFirst, path: bobPath)
                // Queueing for bob takes his subscription's row, which this transaction holds.
                let hold = try await database.hold("SELECT 1 FROM subscription FOR UPDATE")
                let refused = try await test.sendMessage("refused", from: TestPlatform.alice, to: TestPlatform.bob)
                #expect(refused.status == 503 && refused.text.contains("\"statusCode\":51"), "\(refused.text)")

                let stuck = Task { try await test.sendMessage("held", from: TestPlatform.alice, to: TestPlatform.bob) }
                try await database.waitForLockWaiter()

                // Raced against a limit far beyond any wait the node has: a node that never stops
                // fails the test rather than hanging the run.
                let (outcomes, report) = AsyncStream.makeStream(of: Bool.self)
                _ = Task { report.yield((try? await test.stopPlatform()) != nil) }
                let limit = Task {
                    try await Task.sleep(for: .seconds(30))
                    report.yield(false)
                }
                var first = outcomes.makeAsyncIterator()
                let stopped = await first.next() ?? false
                limit.cancel()
                #expect(stopped, "the node was still waiting for the request 30 s later")
                // Refused or cut off, not answered as sent.
                let answer = try? await stuck.value
                #expect(answer?.status != 200)
                try await hold.release()
            }
        } cleanup: {
            await database.drop()
        }
    }

    @Test func aFullDiskIsAnswered503AndCorruptsNothing() async throws {
        try await TestPlatform.with { test in
            let (path, first) = try await test.openBobsChannel()
            try await test.dropSocket(first, path: path)
            let store = try #require(test.platform.store as? SQLiteStore)
            // The database may not grow a page more: as a full disk, SQLite answers SQLITE_FULL.
            try await store.pool.write { db in
                let pages = try Int.fetchOne(db, sql: "PRAGMA page_count") ?? 0
                try db.execute(sql: "PRAGMA max_page_count = \(pages)")
            }
            let padding = String(repeating: "x", count: 1000)
            var acknowledged: [Int] = []
            var refused: TestPlatform.Reply?
            for number in 0..<2000 {
                let reply = try await test.sendMessage(
                    "\(number) \(padding)", from: TestPlatform.alice, to: TestPlatform.bob)
                guard reply.status == 200 else {
                    refused = reply
                    break
                }
                acknowledged.append(number)
            }
            let full = try #require(refused, "the database never filled")
            #expect(full.status == 503, "\(full.text)")
            #expect(full.text.contains("\"statusCode\":51"), "\(full.text)")
            let integrity = try await store.pool.read { db in try String.fetchAll(db, sql: "PRAGMA integrity_check") }
            #expect(integrity == ["ok"])

            // Room again: served at once, and what was acknowledged is all there, in order.
            try await store.pool.write { db in try db.execute(sql: "PRAGMA max_page_count = 1073741823") }
            try await test.sendNumbered(10_000..<10_001)
            let again = try await test.openChannel(path, query: "?")
            let received = try await again.notifications(acknowledged.count + 1).map {
                Int($0.imnotificationParams?.msgText.prefix { $0 != " " } ?? "")
            }
            #expect(received == acknowledged + [10_000])
            again.close()
        }
    }
}
