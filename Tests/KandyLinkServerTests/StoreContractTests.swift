import Foundation
import KandyLinkProtocol
import KandyLinkTesting
import Logging
import Testing

@testable import KandyLinkServer

/// What every `PlatformStore` must do, run against each implementation: SQLite always,
/// PostgreSQL when a server is configured for the tests (see `TestDatabase`).
@Suite struct StoreContractTests {
    enum StoreKind: String, CaseIterable, Sendable {
        case sqlite
        case postgres

        static var available: [StoreKind] { TestDatabase.isAvailable ? [.sqlite, .postgres] : [.sqlite] }

        /// Runs `body` with a new, empty store, removed afterwards whatever happens.
        func with(_ body: (any PlatformStore) async throws -> Void) async throws {
            switch self {
            case .sqlite:
                let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
                    "store-\(UUID().uuidString)")
                defer { try? FileManager.default.removeItem(at: directory) }
                try await body(try SQLiteStore(path: directory.appendingPathComponent("store.sqlite").path))
            case .postgres:
                let database = try await TestDatabase.create()
                try await withCleanup {
                    let store = try await PostgresStore(url: database.url, logger: Logger(label: "store-test"))
                    try await withCleanup {
                        try await body(store)
                    } cleanup: {
                        await store.close()
                    }
                } cleanup: {
                    await database.drop()
                }
            }
        }

        /// The same, with users alice, bob and carol.
        func seeded(_ body: (any PlatformStore) async throws -> Void) async throws {
            try await with { store in
                for name in ["alice", "bob", "carol"] {
                    try await store.addUser(
                        UserRecord(username: name, passwordHash: "hash-\(name)", createdAt: StoreContractTests.now))
                }
                try await body(store)
            }
        }
    }

    static let now = Date(timeIntervalSince1970: 1_800_000_000)

    static func subscription(
        _ id: String, user: String, channel: String, expiresAt: Date = now + 60, createdAt: Date = now
    ) -> StoredSubscription {
        StoredSubscription(
            id: id, username: user, channelID: channel, services: ["call", "IM"], expires: 60, expiresAt: expiresAt,
            createdAt: createdAt)
    }

    @Test(arguments: StoreKind.available) func users(kind: StoreKind) async throws {
        try await kind.seeded { store in
            await #expect(throws: StoreError.userExists("alice")) {
                try await store.addUser(UserRecord(username: "alice", passwordHash: "x", createdAt: Self.now))
            }
            try await store.addUser(UserRecord(username: "dave", authname: "d", passwordHash: "x", createdAt: Self.now))
            await #expect(throws: StoreError.authnameTaken("alice")) {
                try await store.addUser(
                    UserRecord(username: "erin", authname: "alice", passwordHash: "x", createdAt: Self.now))
            }
            #expect(try await store.user(login: "d")?.username == "dave")
            #expect(try await store.user(login: "dave")?.authname == "d")
            #expect(try await store.user(login: "nobody") == nil)
            #expect(try await store.existingUsers(["alice", "nobody", "carol"]) == ["alice", "carol"])
            #expect(try await store.setPasswordHash("new", for: "bob"))
            #expect(try await !store.setPasswordHash("new", for: "nobody"))
            #expect(try await store.user(login: "bob")?.passwordHash == "new")
            #expect(try await store.removeUser("carol"))
            #expect(try await !store.removeUser("carol"))
            #expect(try await store.users().map(\.username) == ["alice", "bob", "dave"])
        }
    }

    @Test(arguments: StoreKind.available) func subscriptionsLiveRefreshAndEnd(kind: StoreKind) async throws {
        try await kind.seeded { store in
            let s1 = Self.subscription("s1", user: "alice", channel: "c1")
            let s2 = Self.subscription("s2", user: "alice", channel: "c2", createdAt: Self.now + 1)
            let none = try await store.insertSubscription(s1, now: Self.now) { _ in 0 }
            #expect(none.isEmpty)
            // The evict rule sees how many live, and the oldest that many it asks for end with the insert.
            let evicted = try await store.insertSubscription(s2, now: Self.now + 1) { live in live }
            #expect(evicted == [s1])
            #expect(try await store.subscriptions(of: ["alice"], now: Self.now + 1) == [s2])
            // A rule that refuses changes nothing.
            struct Refused: Error {}
            await #expect(throws: (any Error).self) {
                try await store.insertSubscription(
                    Self.subscription("s3", user: "alice", channel: "c3"), now: Self.now + 1
                ) { _ in throw Refused() }
            }
            #expect(try await store.subscriptions(of: ["alice"], now: Self.now + 1) == [s2])

            let refreshed = try await store.refreshSubscription(
                id: "s2", of: "alice", services: ["IM"], expires: 120, now: Self.now + 10)
            #expect(refreshed?.services == ["IM"] && refreshed?.expiresAt == Self.now + 130)
            #expect(
                try await store.refreshSubscription(id: "s2", of: "bob", services: ["IM"], expires: 1, now: Self.now)
                    == nil)
            #expect(try await store.subscription(channelID: "c2", now: Self.now + 129)?.id == "s2")
            #expect(try await store.subscription(channelID: "c2", now: Self.now + 130) == nil)
            #expect(try await store.subscriptionCount(now: Self.now + 20) == 1)

            #expect(try await store.deleteSubscription(id: "s2", of: "bob", now: Self.now) == nil)
            #expect(try await store.deleteSubscription(id: "s2", of: "alice", now: Self.now)?.id == "s2")
            #expect(try await store.deleteSubscription(id: "s2", of: "alice", now: Self.now) == nil)
            #expect(try await store.subscriptionCount(now: Self.now) == 0)
        }
    }

    @Test(arguments: StoreKind.available) func expiredSubscriptionsAreHandedOutOnce(kind: StoreKind) async throws {
        try await kind.seeded { store in
            for (index, user) in ["alice", "bob", "carol"].enumerated() {
                _ = try await store.insertSubscription(
                    Self.subscription(
                        "s\(index)", user: user, channel: "c\(index)", expiresAt: Self.now + Double(index)),
                    now: Self.now - 1
                ) { _ in 0 }
            }
            // Several sweepers at once (nodes): each expired subscription reaches exactly one.
            let handedOut = try await withThrowingTaskGroup(of: [String].self) { group in
                for _ in 0..<4 {
                    group.addTask { try await store.deleteExpiredSubscriptions(now: Self.now + 1).map(\.id) }
                }
                return try await group.reduce(into: []) { $0 += $1 }
            }
            #expect(handedOut.sorted() == ["s0", "s1"])
            #expect(try await store.subscriptions(of: ["alice", "bob", "carol"], now: Self.now).map(\.id) == ["s2"])
        }
    }

    @Test(arguments: StoreKind.available) func concurrentSubscribesKeepTheSessionLimit(kind: StoreKind) async throws {
        try await kind.seeded { store in
            // Ten subscribes of one user at once, limit one, no forceLogOut: exactly one gets in.
            let admitted = await withTaskGroup(of: Bool.self) { group in
                for index in 0..<10 {
                    group.addTask {
                        let record = Self.subscription("s\(index)", user: "alice", channel: "c\(index)")
                        return
                            (try? await store.insertSubscription(record, now: Self.now) { live in
                                guard live == 0 else { throw StoreError.userExists("alice") }
                                return 0
                            }) != nil
                    }
                }
                return await group.reduce(0) { $0 + ($1 ? 1 : 0) }
            }
            let stored = try await store.subscriptions(of: ["alice"], now: Self.now)
            #expect(admitted == 1 && stored.count == 1)
        }
    }

    @Test(arguments: StoreKind.available) func presenceAndWatchLists(kind: StoreKind) async throws {
        try await kind.seeded { store in
            let busy = PresenceState(status: .open, activity: .busy, note: "n")
            try await store.setPresence(busy, for: "alice", at: Self.now)
            try await store.setPresence(.offline, for: "bob", at: Self.now)
            #expect(try await store.presence(of: ["alice", "bob", "carol"]) == ["alice": busy, "bob": .offline])

            #expect(try await store.watch(["alice", "carol"], by: "bob", limit: 2))
            #expect(try await store.watch(["alice"], by: "bob", limit: 2))  // already watched: no change
            #expect(try await !store.watch(["bob"], by: "carol", limit: 0))
            #expect(try await !store.watch(["carol"], by: "alice", limit: 0))
            #expect(try await store.watchers(of: "alice") == ["bob"])
            #expect(try await store.watch(["alice"], by: "carol", limit: 5))
            #expect(try await store.watchers(of: "alice") == ["bob", "carol"])
            try await store.unwatch(["alice"], by: "bob")
            #expect(try await store.watchers(of: "alice") == ["carol"])
            // A removed user's presence and watches go with them.
            #expect(try await store.removeUser("carol"))
            #expect(try await store.watchers(of: "alice").isEmpty)
        }
    }

    @Test(arguments: StoreKind.available) func offlineIsRecordedOnceAndOnlyWithoutSessions(kind: StoreKind) async throws
    {
        try await kind.seeded { store in
            let busy = PresenceState(status: .open, activity: .busy, note: nil)
            try await store.setPresence(busy, for: "alice", at: Self.now)
            _ = try await store.insertSubscription(
                Self.subscription("s1", user: "alice", channel: "c1"), now: Self.now
            ) { _ in 0 }
            #expect(try await !store.setOfflineUnlessSubscribed("alice", at: Self.now))
            #expect(try await store.presence(of: ["alice"]) == ["alice": busy])
            _ = try await store.deleteSubscription(id: "s1", of: "alice", now: Self.now)
            #expect(try await store.setOfflineUnlessSubscribed("alice", at: Self.now))
            #expect(try await !store.setOfflineUnlessSubscribed("alice", at: Self.now))
            #expect(try await store.presence(of: ["alice"]) == ["alice": .offline])
            // Someone who never published stays without a presence.
            #expect(try await !store.setOfflineUnlessSubscribed("bob", at: Self.now))
        }
    }

    @Test(arguments: StoreKind.available) func queuesAreBoundedOrderedAndEndWithTheirSubscription(kind: StoreKind)
        async throws
    {
        try await kind.seeded { store in
            _ = try await store.insertSubscription(
                Self.subscription("s1", user: "alice", channel: "c1"), now: Self.now
            ) { _ in 0 }
            _ = try await store.insertSubscription(
                Self.subscription("s2", user: "bob", channel: "c2"), now: Self.now
            ) { _ in 0 }
            let bound = QueueBound(count: 3, bytes: 1 << 20)
            for id in UInt64(10)...14 {
                #expect(try await store.enqueue(channelID: "c1", eventID: id, text: "n\(id)", bound: bound))
            }
            #expect(try await store.enqueue(channelID: "c2", eventID: 15, text: "other", bound: bound))
            #expect(try await !store.enqueue(channelID: "nope", eventID: 16, text: "x", bound: bound))
            #expect(
                try await store.queued(channelID: "c1") == [
                    QueuedNotification(eventID: 11, text: nil, missed: 2),
                    QueuedNotification(eventID: 12, text: "n12"), QueuedNotification(eventID: 13, text: "n13"),
                    QueuedNotification(eventID: 14, text: "n14"),
                ])
            // More overflow moves the marker up and adds to its count.
            #expect(try await store.enqueue(channelID: "c1", eventID: 17, text: "n17", bound: bound))
            #expect(
                try await store.queued(channelID: "c1").first == QueuedNotification(eventID: 12, text: nil, missed: 3))

            try await store.dequeue(channelID: "c1", through: 13)
            #expect(try await store.queued(channelID: "c1").map(\.eventID) == [14, 17])
            // The bound counts what is left.
            _ = try await store.enqueue(channelID: "c1", eventID: 18, text: "n18", bound: bound)
            #expect(try await store.queued(channelID: "c1").map(\.eventID) == [14, 17, 18])

            _ = try await store.deleteSubscription(id: "s1", of: "alice", now: Self.now)
            #expect(try await store.queued(channelID: "c1").isEmpty)
            #expect(try await store.queued(channelID: "c2").map(\.text) == ["other"])
        }
    }

    static func call(_ id: String, from caller: String, to callee: String) -> CallRecord {
        CallRecord(
            id: id, caller: caller, callee: callee, callerChannels: ["c-\(caller)"], calleeChannels: ["c-\(callee)"],
            createdAt: now, ringsUntil: now + 60, callerReadyAt: now + 1)
    }

    @Test(arguments: StoreKind.available) func callsAreBusyChangedInTurnAndEndedOnce(kind: StoreKind) async throws {
        try await kind.seeded { store in
            #expect(try await store.insertCall(Self.call("one", from: "alice", to: "bob")))
            // bob is a party of a call, as callee or caller: a call to him is busy.
            #expect(try await !store.insertCall(Self.call("two", from: "carol", to: "bob")))
            #expect(try await !store.insertCall(Self.call("three", from: "carol", to: "alice")))
            #expect(try await store.callCount() == 1)
            #expect(try await store.calls(of: "bob").map(\.id) == ["one"])
            #expect(try await store.calls(of: "carol").isEmpty)

            struct Refused: Error {}
            let unchanged = try? await store.updateCall(id: "one") { call in
                call.answeredAt = Self.now
                throw Refused()
            }
            #expect(unchanged == nil)
            #expect(try await store.call(id: "one")?.isAnswered == false)
            let answered = try await store.updateCall(id: "one") { call in
                call.answeredAt = Self.now + 5
                call.ringsUntil = nil
                call.offerBy = .callee
            }
            #expect(answered?.answeredAt == Self.now + 5 && answered?.offerBy == .callee)
            #expect(try await store.call(id: "one") == answered)
            #expect(try await store.updateCall(id: "none") { _ in } == nil)
            // An answered call no longer rings out.
            #expect(try await store.deleteUnansweredCalls(now: Self.now + 3600).isEmpty)
            #expect(try await store.call(id: "one") != nil)

            async let first = store.deleteCall(id: "one")
            async let second = store.deleteCall(id: "one")
            let ended = [try await first, try await second].compactMap { $0 }
            #expect(ended.map(\.id) == ["one"])
            #expect(try await store.callCount() == 0)

            #expect(try await store.insertCall(Self.call("five", from: "carol", to: "alice")))
            #expect(try await store.deleteUnansweredCalls(now: Self.now + 59).isEmpty)
            // An unanswered one rings out when its time is up, to one caller only.
            #expect(try await store.deleteUnansweredCalls(now: Self.now + 60).map(\.id) == ["five"])
            #expect(try await store.deleteUnansweredCalls(now: Self.now + 60).isEmpty)
            // A call goes with its user.
            #expect(try await store.insertCall(Self.call("six", from: "carol", to: "alice")))
            #expect(try await store.removeUser("carol"))
            #expect(try await store.call(id: "six") == nil)
        }
    }

    @Test(arguments: StoreKind.available) func profilesAreSearchedThroughTheDirectoryIndex(kind: StoreKind) async throws
    {
        try await kind.seeded { store in
            // alice and bob had no profile: they are found by username, and show an empty one.
            #expect(
                try await store.searchUsers(DirectoryQuery(criteria: "AL", type: .userName)).users
                    == [User(userId: "alice")])
            let profile = UserProfile(firstName: "Zoë", lastName: "Ångström", workPhone: "+46 8-123 45")
            #expect(try await store.setProfile(profile, for: "bob"))
            #expect(try await !store.setProfile(profile, for: "nobody"))
            try await store.addUser(
                UserRecord(
                    username: "dave", passwordHash: "x", createdAt: Self.now,
                    profile: UserProfile(firstName: "Zoe", lastName: "Zed")))
            #expect(try await store.user(login: "bob")?.profile == profile)
            func found(_ criteria: String, _ type: DirectorySearchType?) async throws -> [String] {
                try await store.searchUsers(DirectoryQuery(criteria: criteria, type: type)).users.map(\.userId)
            }
            #expect(try await found("zoe", .firstName) == ["bob", "dave"])
            #expect(try await found("angs", .lastName) == ["bob"])
            #expect(try await found("zoe ang", .name) == ["bob"])
            #expect(try await found("812345", .phoneNumber) == ["bob"])
            #expect(try await found("12345", .phoneNumber) == ["bob"])
            #expect(try await found("d", nil) == ["dave"])
            // Pages: one more result than asked says more follow.
            let page = try await store.searchUsers(DirectoryQuery(criteria: "", count: 2))
            #expect(page.users.map(\.userId) == ["alice", "bob"] && page.moreResults)
            let last = try await store.searchUsers(DirectoryQuery(criteria: "", startIndex: 2, count: 2))
            #expect(last.users.map(\.userId) == ["carol", "dave"] && !last.moreResults)
            // A user's terms go with the user.
            #expect(try await store.removeUser("dave"))
            #expect(try await found("zoe", .firstName) == ["bob"])
        }
    }

    @Test(arguments: StoreKind.available) func addressBooksAndCallLogsAreEachUsersOwn(kind: StoreKind) async throws {
        try await kind.seeded { store in
            #expect(
                try await store.insertContact(Contact(contactId: "b", firstName: "B"), of: "alice", limit: 2)
                    == .inserted)
            #expect(try await store.insertContact(Contact(contactId: "b"), of: "alice", limit: 2) == .exists)
            #expect(try await store.insertContact(Contact(contactId: "a"), of: "alice", limit: 2) == .inserted)
            #expect(try await store.insertContact(Contact(contactId: "c"), of: "alice", limit: 2) == .full)
            #expect(try await store.insertContact(Contact(contactId: "b"), of: "bob", limit: 2) == .inserted)
            #expect(try await store.contacts(of: "alice").map(\.contactId) == ["a", "b"])
            #expect(try await store.replaceContact(Contact(contactId: "b", lastName: "L"), of: "alice"))
            #expect(try await !store.replaceContact(Contact(contactId: "z"), of: "alice"))
            #expect(try await store.contact("b", of: "alice") == Contact(contactId: "b", lastName: "L"))
            #expect(try await store.contact("b", of: "bob") == Contact(contactId: "b"))
            #expect(try await store.deleteContact("b", of: "alice"))
            #expect(try await !store.deleteContact("b", of: "alice"))

            func log(_ id: String, at start: Int) -> CallLog {
                CallLog(
                    recordId: id, direction: .outgoing, disposition: .answered, startTime: String(start), duration: "5",
                    callerName: "alice", callerDisplayNumber: "sip:alice", calleeName: "bob",
                    calleeDisplayNumber: "sip:bob", resourceLocation: "/r/\(id)")
            }
            try await store.appendCallLogs([("alice", log("1", at: 10)), ("bob", log("2", at: 10))], keep: 2)
            try await store.appendCallLogs([("alice", log("3", at: 30))], keep: 2)
            try await store.appendCallLogs([("alice", log("4", at: 20))], keep: 2)
            #expect(try await store.callLogs(of: "alice", startIndex: 0, count: 10).map(\.recordId) == ["3", "4"])
            #expect(try await store.callLogs(of: "alice", startIndex: 1, count: 10) == [log("4", at: 20)])
            #expect(try await !store.deleteCallLog("2", of: "alice"))
            #expect(try await store.deleteCallLog("3", of: "alice"))
            try await store.clearCallLogs(of: "alice")
            #expect(try await store.callLogs(of: "alice", startIndex: 0, count: 10) == [])
            #expect(try await store.callLogs(of: "bob", startIndex: 0, count: 10).map(\.recordId) == ["2"])
            // They go with their user.
            #expect(try await store.removeUser("bob"))
            #expect(try await store.contacts(of: "bob") == [])
            #expect(try await store.callLogs(of: "bob", startIndex: 0, count: 10) == [])
        }
    }

    @Test(arguments: StoreKind.available) func secretsAndEventIDsAreKept(kind: StoreKind) async throws {
        try await kind.with { store in
            let first = try await store.secret("k") { [1, 2, 3] }
            let again = try await store.secret("k") { [9] }
            #expect(first == [1, 2, 3] && again == first)
            let a = try await store.reserveEventIDs(100)
            let b = try await store.reserveEventIDs(100)
            let c = try await store.reserveEventIDs(1)
            #expect(b == a + 100 && c == b + 100)
        }
    }
}
