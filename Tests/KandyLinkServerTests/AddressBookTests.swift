import Foundation
import KandyLinkProtocol
import KandyLinkTesting
import NIOHTTP1
import Testing

@testable import KandyLinkServer

/// The personal address book through the real platform, with the bodies Kandy.js sends.
@Suite(.timeLimit(.minutes(1))) struct AddressBookTests {
    /// What Kandy.js's `contacts.add` sends for `{contactId, primaryContact, firstName, …}`.
    static func body(_ entry: [String: Any]) -> String {
        let data = try! JSONSerialization.data(withJSONObject: ["addressBookRequest": ["addressBookEntries": [entry]]])
        return String(decoding: data, as: UTF8.self)
    }

    static func answer(_ reply: TestPlatform.Reply) throws -> AddressBookResponse {
        try reply.decode(AddressBookResponseDocument.self).addressBookResponse
    }

    @Test func contactsAreAddedListedFetchedUpdatedAndRemoved() async throws {
        try await TestPlatform.with { test in
            let user = TestPlatform.alice
            let added = try await test.request(
                .POST, LinkPath.contacts(user: user),
                body: Self.body([
                    "nickname": "bob", "primaryContact": TestPlatform.bob, "firstName": "Bob", "lastName": "Builder",
                    "emailAddress": "bob@example.com", "friendStatus": true, "groupList": "friends",
                ]))
            #expect(added.status == 200)
            #expect(try Self.answer(added).statusCode == 0)
            _ = try await test.request(
                .POST, LinkPath.contacts(user: user),
                body: Self.body(["nickname": "zed ü/x".replacingOccurrences(of: "/", with: "-"), "workPhone": "1"]))

            let listed = try Self.answer(try await test.request(.GET, LinkPath.addressBook(user: user)))
            #expect(listed.addressBookEntries?.map(\.contactId) == ["bob", "zed ü-x"])
            let bob = Contact(
                contactId: "bob", primaryContact: TestPlatform.bob, firstName: "Bob", lastName: "Builder",
                emailAddress: "bob@example.com", groupList: "friends", friendStatus: true)
            #expect(listed.addressBookEntries?.first == bob)

            // A contact id with a space and a non-ASCII letter, percent-encoded in the path.
            let fetched = try await test.request(.GET, LinkPath.contact(user: user, id: "zed ü-x"))
            #expect(try Self.answer(fetched).addressBookEntries?.first?.workPhone == "1")

            let updated = try await test.request(
                .PUT, LinkPath.contact(user: user, id: "bob"),
                body: Self.body(["nickname": "bob", "primaryContact": TestPlatform.bob, "mobilePhone": "+1 555"]))
            #expect(updated.status == 200)
            let afterUpdate = try Self.answer(try await test.request(.GET, LinkPath.contact(user: user, id: "bob")))
            #expect(
                afterUpdate.addressBookEntries
                    == [Contact(contactId: "bob", primaryContact: TestPlatform.bob, mobilePhone: "+1 555")])

            let removed = try await test.request(.DELETE, LinkPath.contact(user: user, id: "bob"))
            #expect(try removed.status == 200 && Self.answer(removed).statusCode == 0)
            let listedAgain = try Self.answer(try await test.request(.GET, LinkPath.addressBook(user: user)))
            #expect(listedAgain.addressBookEntries?.map(\.contactId) == ["zed ü-x"])

            // bob's address book is his own: empty, and alice's is out of his reach.
            let bobs = try await test.request(
                .GET, LinkPath.addressBook(user: TestPlatform.bob),
                credential: .basic(login: TestPlatform.bob, password: TestPlatform.password))
            #expect(try Self.answer(bobs).addressBookEntries == [])
            for (method, path) in [
                (HTTPMethod.GET, LinkPath.addressBook(user: user)), (.GET, LinkPath.contact(user: user, id: "zed ü-x")),
                (.DELETE, LinkPath.contact(user: user, id: "zed ü-x")),
            ] {
                let reply = try await test.request(
                    method, path, credential: .basic(login: TestPlatform.bob, password: TestPlatform.password))
                #expect(reply.status == 403)
                #expect(try Self.answer(reply).statusCode == StatusCode.forbiddenUser.rawValue)
            }
            #expect(try await test.platform.store.contacts(of: user).count == 1)
        }
    }

    @Test func badRequestsAreRefusedInTheAddressBookEnvelope() async throws {
        try await TestPlatform.with(configure: { $0.maxContactsPerUser = 2 }) { test in
            let user = TestPlatform.alice
            let add = { (entry: [String: Any]) in
                try await test.request(.POST, LinkPath.contacts(user: user), body: Self.body(entry))
            }
            #expect(try await add(["nickname": "one"]).status == 200)
            let cases: [(TestPlatform.Reply, Int, StatusCode)] = [
                (try await add(["nickname": "one"]), 409, .contactExists),
                (try await add(["firstName": "no id"]), 400, .malformedRequest),
                (try await add(["nickname": ""]), 400, .invalidField),
                (try await add(["nickname": "a/b"]), 400, .invalidField),
                (try await add(["nickname": String(repeating: "x", count: 129)]), 400, .invalidField),
                (
                    try await add(["nickname": "big", "firstName": String(repeating: "x", count: 513)]), 400,
                    .invalidField
                ),
                (try await add(["nickname": "flag", "friendStatus": "maybe"]), 400, .malformedRequest),
                (
                    try await test.request(.POST, LinkPath.contacts(user: user), body: "{\"addressBookRequest\":{}}"),
                    400, .malformedRequest
                ),
                (
                    try await test.request(
                        .POST, LinkPath.contacts(user: user),
                        body: "{\"addressBookRequest\":{\"addressBookEntries\":[]}}"), 400, .invalidField
                ),
                (
                    try await test.request(
                        .PUT, LinkPath.contact(user: user, id: "one"), body: Self.body(["nickname": "two"])), 400,
                    .invalidField
                ),
                (
                    try await test.request(
                        .PUT, LinkPath.contact(user: user, id: "ghost"), body: Self.body(["nickname": "ghost"])), 404,
                    .contactNotFound
                ),
                (try await test.request(.DELETE, LinkPath.contact(user: user, id: "ghost")), 404, .contactNotFound),
                (try await test.request(.GET, LinkPath.contact(user: user, id: "ghost")), 404, .contactNotFound),
                (try await test.request(.POST, LinkPath.addressBook(user: user), body: "{}"), 405, .methodNotAllowed),
                (try await test.request(.GET, LinkPath.addressBook(user: user) + "/contacts/a%2Fb"), 400, .invalidPath),
            ]
            for (index, (reply, status, code)) in cases.enumerated() {
                #expect(reply.status == status, "case \(index): \(reply.text)")
                #expect((try? Self.answer(reply).statusCode) == code.rawValue, "case \(index): \(reply.text)")
            }
            #expect(try await add(["nickname": "two"]).status == 200)
            let full = try await add(["nickname": "three"])
            #expect(try full.status == 409 && Self.answer(full).statusCode == StatusCode.addressBookFull.rawValue)
            #expect(try await test.platform.store.contacts(of: user).map(\.contactId) == ["one", "two"])
        }
    }

    @Test(.enabled(if: TestDatabase.isAvailable))
    func aContactAddedThroughOneNodeIsListedThroughTheOther() async throws {
        let database = try await TestDatabase.create()
        try await withCleanup {
            let shared: @Sendable (inout PlatformConfiguration) -> Void = { $0.database = database.url }
            try await TestPlatform.with(configure: shared) { one in
                try await TestPlatform.with(users: [], configure: shared) { two in
                    let added = try await one.request(
                        .POST, LinkPath.contacts(user: TestPlatform.alice),
                        body: Self.body(["nickname": "bob", "primaryContact": TestPlatform.bob]))
                    #expect(added.status == 200)
                    let listed = try await two.request(.GET, LinkPath.addressBook(user: TestPlatform.alice))
                    #expect(try Self.answer(listed).addressBookEntries?.map(\.contactId) == ["bob"])
                    let again = try await two.request(
                        .POST, LinkPath.contacts(user: TestPlatform.alice), body: Self.body(["nickname": "bob"]))
                    #expect(again.status == 409)
                }
            }
        } cleanup: {
            await database.drop()
        }
    }
}
