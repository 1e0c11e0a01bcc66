import Foundation
import KandyLinkProtocol
import Testing

@testable import KandyLinkServer

/// What every `PlatformStore` must do, run against each implementation (SQLite today; a
/// PostgreSQL store joins the list of `StoreKind`).
@Suite struct StoreContractTests {
    enum StoreKind: String, CaseIterable, Sendable {
        case sqlite

        func make() throws -> StoreFixture {
            switch self {
            case .sqlite:
                let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
                    "store-\(UUID().uuidString)")
                return StoreFixture(
                    store: try SQLiteStore(path: directory.appendingPathComponent("store.sqlite").path),
                    cleanUp: { try? FileManager.default.removeItem(at: directory) })
            }
        }
    }

    static let now = Date(timeIntervalSince1970: 1_800_000_000)

    static func seeded(_ kind: StoreKind) throws -> StoreFixture {
        let fixture = try kind.make()
        for name in ["alice", "bob", "carol"] {
            try fixture.store.addUser(UserRecord(username: name, passwordHash: "hash-\(name)", createdAt: now))
        }
        return fixture
    }

    static func subscription(_ id: String, user: String, channel: String) -> SubscriptionRecord {
        SubscriptionRecord(
            id: id, username: user, channelID: channel, services: ["call", "IM"], expires: 60, expiresAt: now + 60,
            createdAt: now)
    }

    @Test(arguments: StoreKind.allCases) func users(kind: StoreKind) throws {
        let fixture = try Self.seeded(kind)
        defer { withExtendedLifetime(fixture) {} }
        let store = fixture.store
        #expect(throws: StoreError.userExists("alice")) {
            try store.addUser(UserRecord(username: "alice", passwordHash: "x", createdAt: Self.now))
        }
        try store.addUser(UserRecord(username: "dave", authname: "d", passwordHash: "x", createdAt: Self.now))
        #expect(throws: StoreError.authnameTaken("alice")) {
            try store.addUser(UserRecord(username: "erin", authname: "alice", passwordHash: "x", createdAt: Self.now))
        }
        #expect(try store.user(login: "d")?.username == "dave")
        #expect(try store.existingUsers(["alice", "nobody", "carol"]) == ["alice", "carol"])
        #expect(try store.setPasswordHash("new", for: "bob"))
        #expect(try store.user(login: "bob")?.passwordHash == "new")
        #expect(try store.removeUser("carol"))
        #expect(try !store.removeUser("carol"))
        #expect(try store.users().map(\.username) == ["alice", "bob", "dave"])
    }

    @Test(arguments: StoreKind.allCases) func subscriptionsWithEviction(kind: StoreKind) throws {
        let fixture = try Self.seeded(kind)
        defer { withExtendedLifetime(fixture) {} }
        let store = fixture.store
        try store.insertSubscription(Self.subscription("s1", user: "alice", channel: "c1"), evicting: [])
        try store.insertSubscription(Self.subscription("s2", user: "alice", channel: "c2"), evicting: ["s1"])
        var updated = Self.subscription("s2", user: "alice", channel: "c2")
        updated.services = ["IM"]
        updated.expiresAt = Self.now + 120
        try store.updateSubscription(updated)
        #expect(try store.subscriptions() == [updated])
        try store.deleteSubscriptions(["s2"])
        #expect(try store.subscriptions().isEmpty)
    }

    @Test(arguments: StoreKind.allCases) func presenceAndWatchLists(kind: StoreKind) throws {
        let fixture = try Self.seeded(kind)
        defer { withExtendedLifetime(fixture) {} }
        let store = fixture.store
        let busy = PresenceState(status: .open, activity: .busy, note: "n")
        try store.setPresence(busy, for: "alice", at: Self.now)
        try store.setPresence(.offline, for: "bob", at: Self.now)
        #expect(try store.presence(of: ["alice", "bob", "carol"]) == ["alice": busy, "bob": .offline])

        #expect(try store.watch(["alice", "carol"], by: "bob", limit: 2))
        #expect(try store.watch(["alice"], by: "bob", limit: 2))  // already watched: no change
        #expect(try !store.watch(["bob"], by: "carol", limit: 0))
        #expect(try !store.watch(["carol"], by: "alice", limit: 0))
        #expect(try store.watchers(of: "alice") == ["bob"])
        #expect(try store.watch(["alice"], by: "carol", limit: 5))
        #expect(try store.watchers(of: "alice") == ["bob", "carol"])
        try store.unwatch(["alice"], by: "bob")
        #expect(try store.watchers(of: "alice") == ["carol"])
        // A removed user's presence and watches go with them.
        #expect(try store.removeUser("carol"))
        #expect(try store.watchers(of: "alice").isEmpty)
    }

    @Test(arguments: StoreKind.allCases) func queuesAreBoundedOrderedAndEndWithTheirSubscription(kind: StoreKind) throws
    {
        let fixture = try Self.seeded(kind)
        defer { withExtendedLifetime(fixture) {} }
        let store = fixture.store
        try store.insertSubscription(Self.subscription("s1", user: "alice", channel: "c1"), evicting: [])
        try store.insertSubscription(Self.subscription("s2", user: "bob", channel: "c2"), evicting: [])
        let bound = QueueBound(count: 3, bytes: 1 << 20)
        for id in UInt64(10)...14 {
            #expect(try store.enqueue(channelID: "c1", eventID: id, text: "n\(id)", bound: bound))
        }
        #expect(try store.enqueue(channelID: "c2", eventID: 15, text: "other", bound: bound))
        #expect(try !store.enqueue(channelID: "nope", eventID: 16, text: "x", bound: bound))
        #expect(
            try store.queued(channelID: "c1") == [
                QueuedNotification(eventID: 11, text: nil, missed: 2),
                QueuedNotification(eventID: 12, text: "n12"), QueuedNotification(eventID: 13, text: "n13"),
                QueuedNotification(eventID: 14, text: "n14"),
            ])
        // More overflow moves the marker up and adds to its count.
        #expect(try store.enqueue(channelID: "c1", eventID: 17, text: "n17", bound: bound))
        #expect(try store.queued(channelID: "c1").first == QueuedNotification(eventID: 12, text: nil, missed: 3))

        try store.dequeue(channelID: "c1", through: 13)
        #expect(try store.queued(channelID: "c1").map(\.eventID) == [14, 17])
        // The bound counts what is left.
        for id in UInt64(18)...18 { _ = try store.enqueue(channelID: "c1", eventID: id, text: "n\(id)", bound: bound) }
        #expect(try store.queued(channelID: "c1").map(\.eventID) == [14, 17, 18])

        try store.deleteSubscriptions(["s1"])
        #expect(try store.queued(channelID: "c1").isEmpty)
        #expect(try store.queued(channelID: "c2").map(\.text) == ["other"])
    }

    @Test(arguments: StoreKind.allCases) func secretsAndEventIDsAreKept(kind: StoreKind) throws {
        let fixture = try kind.make()
        defer { withExtendedLifetime(fixture) {} }
        let store = fixture.store
        let first = try store.secret("k") { [1, 2, 3] }
        let again = try store.secret("k") { [9] }
        #expect(first == [1, 2, 3] && again == first)
        let a = try store.reserveEventIDs(100)
        let b = try store.reserveEventIDs(100)
        #expect(b == a + 100)
    }
}

/// A store for one test, and what removes it afterwards (files, a schema).
final class StoreFixture: Sendable {
    let store: any PlatformStore
    private let cleanUp: @Sendable () -> Void

    init(store: any PlatformStore, cleanUp: @escaping @Sendable () -> Void) {
        self.store = store
        self.cleanUp = cleanUp
    }

    deinit { cleanUp() }
}
