import Foundation
import KandyLinkProtocol
import KandyLinkTesting
import Testing

@testable import KandyLink

/// `kandy.contacts`, `kandy.user` and `kandy.call.history` against a real platform.
@Suite(.timeLimit(.minutes(1))) struct AddressBookAndDirectoryTests {
    @Test func contactsAreKeptOnThePlatformAndMirroredHere() async throws {
        let parties = try await CallsTests.Parties()
        let alice = parties.alice
        let added = alice.recorder.collect(1) { $0.name == .contactsNew }
        let bob = Contact(contactId: "bob", primaryContact: PlatformFixture.bob, firstName: "Bob", friendStatus: true)
        try await alice.kandy.contacts.add(bob)
        #expect(await added.value() == [.contactsNew(bob)])
        #expect(alice.kandy.contacts.get("bob") == bob)

        var changed = bob
        changed.lastName = "Builder"
        try await alice.kandy.contacts.update(changed)
        // A second instance of alice sees what the first stored.
        let other = try parties.rig.client()
        try await other.setCredentials(username: PlatformFixture.alice, password: PlatformFixture.password)
        #expect(try await other.contacts.refresh() == [changed])
        #expect(try await other.contacts.fetch("bob") == changed)

        // A duplicate is the platform's refusal, with its code, and an event.
        let failed = alice.recorder.collect(1) { $0.name == .contactsError }
        await #expect {
            try await alice.kandy.contacts.add(bob)
        } throws: { ($0 as? KandyError)?.code == .contactsFailure && ($0 as? KandyError)?.statusCode == 48 }
        #expect(await failed.value().count == 1)
        // An id the platform would refuse is refused here, without a request.
        await #expect(throws: KandyError.self) { try await alice.kandy.contacts.add(Contact(contactId: "a/b")) }

        try await alice.kandy.contacts.remove("bob")
        #expect(alice.kandy.contacts.getAll() == [])
        #expect(try await other.contacts.refresh() == [])
        await other.destroy()
        await #expect(throws: KandyError.self) { try await other.contacts.refresh() }
        try await parties.stop()
    }

    @Test func theDirectoryIsSearchedAndOnesOwnProfileFetched() async throws {
        let parties = try await CallsTests.Parties()
        let accounts = parties.rig.fixture.platform.accounts
        try await accounts.updateProfile(
            username: PlatformFixture.bob,
            with: UserProfile(firstName: "Bob", lastName: "Ångström", workPhone: "+1 555 0101"))
        try await accounts.updateProfile(
            username: PlatformFixture.alice, with: UserProfile(firstName: "Alice", emailAddress: "alice@example.com"))
        let alice = parties.alice

        let change = alice.recorder.collect(1) { $0.name == .directoryChange }
        let found = try await alice.kandy.user.search(.lastName, "ANGS")
        #expect(found.users.map(\.userId) == [PlatformFixture.bob] && found.nextStartIndex == nil)
        #expect(await change.value() == [.directoryChange(found.users)])
        #expect(alice.kandy.user.get(PlatformFixture.bob)?.profile.workPhone == "+1 555 0101")
        #expect(try await alice.kandy.user.search(filters: ["phone_number": "0101"]).users.count == 1)
        let page = try await alice.kandy.user.search(nil, "", count: 1)
        #expect(page.users.count == 1 && page.nextStartIndex == 1)
        #expect(try await alice.kandy.user.fetch(PlatformFixture.bob)?.profile.firstName == "Bob")
        #expect(try await alice.kandy.user.fetch("nobody@example.com") == nil)

        let me = try await alice.kandy.user.fetchSelfInfo()
        #expect(
            me.user
                == User(
                    userId: PlatformFixture.alice,
                    profile: UserProfile(firstName: "Alice", emailAddress: "alice@example.com")))
        #expect(me.currentLocale == "English_US")
        await #expect(throws: KandyError.self) { try await alice.kandy.user.search(filters: ["middle_name": "x"]) }
        try await parties.stop()
    }

    @Test func callsAppearInBothPartiesHistories() async throws {
        let parties = try await CallsTests.Parties()
        let (alice, bob) = (parties.alice, parties.bob)
        let ids = try await parties.connected()
        let aliceEnded = alice.state(.ended, of: ids.alice)
        try await bob.kandy.call.end(ids.bob)
        _ = await aliceEnded.value()

        let changed = alice.recorder.collect(1) { $0.name == .callHistoryChange }
        let aliceLogs = try await alice.kandy.call.history.fetch()
        _ = await changed.value()
        let bobLogs = try await bob.kandy.call.history.fetch()
        #expect(aliceLogs.map(\.direction) == [.outgoing] && aliceLogs.first?.disposition == .answered)
        #expect(
            bobLogs.map(\.direction) == [.incoming]
                && bobLogs.first?.remoteDisplayNumber == "sip:" + PlatformFixture.alice)
        #expect(alice.kandy.call.history.get() == aliceLogs)

        let record = try #require(aliceLogs.first).recordId
        try await alice.kandy.call.history.remove(record)
        #expect(alice.kandy.call.history.get() == [])
        await #expect {
            try await alice.kandy.call.history.remove(record)
        } throws: { ($0 as? KandyError)?.code == .callHistoryNotFound }
        await #expect {
            try await alice.kandy.call.history.fetch(amount: 500)
        } throws: { ($0 as? KandyError)?.code == .callHistoryBadRequest }
        try await bob.kandy.call.history.clear()
        #expect(try await bob.kandy.call.history.fetch() == [])
        try await parties.stop()
    }
}
