import Foundation
import KandyLinkProtocol
import KandyLinkTesting
import Testing

@testable import KandyLinkServer

/// The directory, profiles and localization through the real platform, as Kandy.js asks for them.
@Suite(.timeLimit(.minutes(1))) struct DirectoryTests {
    static let people: [(String, UserProfile)] = [
        (
            TestPlatform.alice,
            UserProfile(
                firstName: "Alice", lastName: "Åberg", emailAddress: "alice@example.com", workPhone: "+1 613 555-0100")
        ),
        (TestPlatform.bob, UserProfile(firstName: "Bob", lastName: "Zoë", mobilePhone: "(613) 555 0199")),
        ("dave@example.com", UserProfile(firstName: "Dave", lastName: "Ørsted")),
        ("erin@example.com", UserProfile(firstName: "Érin", lastName: "Abbott")),
    ]

    static func withPeople(_ body: (TestPlatform) async throws -> Void) async throws {
        try await TestPlatform.with(users: people.map(\.0)) { test in
            for (name, profile) in people {
                try await test.platform.accounts.updateProfile(username: name, with: profile)
            }
            try await body(test)
        }
    }

    func search(_ test: TestPlatform, _ query: String) async throws -> (Int, DirectoryResponse) {
        let reply = try await test.request(.GET, LinkPath.directory(user: TestPlatform.alice) + "?" + query)
        return (reply.status, try reply.decode(DirectoryResponseDocument.self).directory)
    }

    func found(_ test: TestPlatform, _ query: String) async throws -> [String] {
        let (status, answer) = try await search(test, query)
        #expect(status == 200 && answer.statusCode == 0, "\(query)")
        return answer.directoryItems?.map(\.userId) ?? []
    }

    @Test func eachSearchTypeFindsByPrefixWithCaseAndAccentsFolded() async throws {
        try await Self.withPeople { test in
            let dave = "dave@example.com"
            let erin = "erin@example.com"
            // Kandy.js's criteriaType numbers, and the names it maps to them.
            let cases: [(String, [String])] = [
                ("criteria=ER&criteriaType=1", [erin]),
                ("criteria=%C3%A9r&criteriaType=1", [erin]),
                ("criteria=ab&criteriaType=2", [TestPlatform.alice, erin]),
                ("criteria=aber&criteriaType=last_name", [TestPlatform.alice]),
                ("criteria=orst&criteriaType=2", [dave]),
                ("criteria=bob%20zo&criteriaType=3", [TestPlatform.bob]),
                ("criteria=zoe&criteriaType=3", [TestPlatform.bob]),
                ("criteria=alice%20ab&criteriaType=name", [TestPlatform.alice]),
                ("criteria=6135550&criteriaType=4", [TestPlatform.alice, TestPlatform.bob]),
                ("criteria=%2B1%20613&criteriaType=4", [TestPlatform.alice]),
                ("criteria=0199&criteriaType=phone_number", [TestPlatform.bob]),
                ("criteria=DAVE%40&criteriaType=5", [dave]),
                ("criteria=b&criteriaType=user_id", [TestPlatform.bob]),
                // No type: names and usernames.
                ("criteria=abb", [erin]),
                ("criteria=bob", [TestPlatform.bob]),
                ("criteria=nobody&criteriaType=3", []),
            ]
            for (query, expected) in cases {
                #expect(try await found(test, query) == expected, "\(query)")
            }
            // The whole user, as Kandy.js caches it under primaryContact.
            let (_, answer) = try await search(test, "criteria=alice&criteriaType=5")
            #expect(answer.directoryItems == [User(userId: TestPlatform.alice, profile: Self.people[0].1)])
        }
    }

    @Test func resultsComeInPages() async throws {
        try await Self.withPeople { test in
            let everyone = Self.people.map(\.0).sorted()
            var seen: [String] = []
            var start = 0
            while true {
                let (status, page) = try await search(test, "criteria=&startIndex=\(start)&count=3")
                #expect(status == 200)
                seen += page.directoryItems?.map(\.userId) ?? []
                #expect(page.startIndex == start)
                guard page.moreResults == true else { break }
                start += 3
            }
            #expect(seen == everyone)
            #expect(try await found(test, "criteria=&startIndex=4") == [])
        }
    }

    @Test func malformedSearchesAreRefusedInTheDirectoryEnvelope() async throws {
        try await Self.withPeople { test in
            for query in [
                "criteria=x&criteriaType=9", "criteria=x&criteriaType=middle_name", "criteria=abc&criteriaType=4",
                "criteria=x&count=0", "criteria=x&count=201", "criteria=x&startIndex=-1", "criteria=x&count=ten",
                "criteria=" + String(repeating: "a", count: 129),
            ] {
                let (status, answer) = try await search(test, query)
                #expect(status == 400, "\(query)")
                #expect(answer.statusCode == StatusCode.invalidField.rawValue, "\(query)")
                #expect(answer.reason?.isEmpty == false)
            }
            // Another user's path is refused, whatever the query.
            let reply = try await test.request(
                .GET, LinkPath.directory(user: TestPlatform.bob) + "?criteria=a")
            #expect(reply.status == 403)
            #expect(try reply.decode(DirectoryResponseDocument.self).directory.statusCode == 23)
            let unauthenticated = try await test.request(
                .GET, LinkPath.directory(user: TestPlatform.alice), credential: nil)
            #expect(unauthenticated.status == 401)
        }
    }

    @Test func aUserFetchesTheirOwnProfileAndLocale() async throws {
        try await Self.withPeople { test in
            let reply = try await test.request(.GET, LinkPath.userProfileData(user: TestPlatform.alice))
            #expect(reply.status == 200)
            let data = try reply.decode(UserProfileDataDocument.self).userProfileData
            #expect(data.statusCode == 0)
            #expect(data.user == User(userId: TestPlatform.alice, profile: Self.people[0].1))
            // A change shows at once, in the profile and in searches.
            try await test.platform.accounts.updateProfile(
                username: TestPlatform.alice, with: UserProfile(lastName: "Lindqvist", workPhone: ""))
            let changed = try await test.request(.GET, LinkPath.userProfileData(user: TestPlatform.alice))
            let user = try #require(try changed.decode(UserProfileDataDocument.self).userProfileData.user)
            #expect(user.profile.lastName == "Lindqvist" && user.profile.workPhone == nil)
            #expect(user.profile.firstName == "Alice")
            #expect(try await found(test, "criteria=lindq&criteriaType=2") == [TestPlatform.alice])
            #expect(try await found(test, "criteria=aberg&criteriaType=2") == [])
            #expect(try await found(test, "criteria=0100&criteriaType=4") == [])

            let locale = try await test.request(.GET, LinkPath.localization)
            #expect(locale.status == 200)
            #expect(try locale.decode(LocalizationDocument.self).acceptLanguage == "English_US")
            #expect(try await test.request(.GET, LinkPath.localization, credential: nil).status == 401)
            #expect(try await test.request(.POST, LinkPath.localization, body: "{}").status == 405)
        }
    }
}

@Suite struct UserImportTests {
    @Test func csvWithQuotesCommasAndLineBreaksIsRead() throws {
        let text =
            "Username,password,first_name,last_name,phone\r\n"
            + "alice,pw1,Alice,\"Åberg, \"\"Jr.\"\"\",+1 555\r\n\r\n"
            + "bob,\"p,w\",Bob,\"two\nlines\",\n"
        #expect(
            try UserImport.parse(text) == [
                .init(
                    username: "alice", password: "pw1",
                    profile: UserProfile(firstName: "Alice", lastName: "Åberg, \"Jr.\"", workPhone: "+1 555")),
                .init(username: "bob", password: "p,w", profile: UserProfile(firstName: "Bob", lastName: "two\nlines")),
            ])
    }

    @Test func jsonUsesTheWireNames() throws {
        let text = #"[{"username":"a","password":"p","firstName":"A","emailAddress":"a@x","photoURL":"http://p"}]"#
        #expect(
            try UserImport.parse(text) == [
                .init(
                    username: "a", password: "p",
                    profile: UserProfile(firstName: "A", emailAddress: "a@x", photoURL: "http://p"))
            ])
    }

    @Test func malformedFilesAreRefusedWithTheLine() throws {
        #expect(throws: UserImport.ImportError.missingColumn("password")) { try UserImport.parse("username\na\n") }
        #expect(throws: UserImport.ImportError.malformed(line: 3, "1 fields where the header has 2.")) {
            try UserImport.parse("username,password\na,b\nc\n")
        }
        #expect(throws: UserImport.ImportError.malformed(line: 2, "A quoted field is not closed.")) {
            try UserImport.parse("username,password\na,\"b\n")
        }
        #expect(throws: (any Error).self) { try UserImport.parse(#"[{"username":"a"}]"#) }
    }

    @Test func anImportAddsEveryoneWithTheirOwnPasswordOrNothing() async throws {
        try await TestPlatform.with(users: [TestPlatform.alice]) { test in
            let accounts = test.platform.accounts
            let bad = [
                UserImport.Entry(username: "x", password: "p"),
                UserImport.Entry(username: "y", password: "p", profile: UserProfile(firstName: "bad\u{7}")),
            ]
            await #expect(throws: Accounts.AccountError.self) { try await accounts.importUsers(bad) }
            #expect(try await test.platform.store.existingUsers(["x", "y"]).isEmpty)

            let entries = [
                UserImport.Entry(username: TestPlatform.alice, password: "other"),
                UserImport.Entry(username: "carol", password: "carol-pw", profile: UserProfile(firstName: "Carol")),
                UserImport.Entry(username: "dave", password: "dave-pw"),
            ]
            let (added, skipped) = try await accounts.importUsers(entries)
            #expect(added == ["carol", "dave"] && skipped == [TestPlatform.alice])
            #expect(try await accounts.profile(of: "carol").firstName == "Carol")
            // Each logs in with their own password; alice keeps hers.
            for (user, password, status) in [
                ("carol", "carol-pw", 200), ("dave", "dave-pw", 200), ("dave", "carol-pw", 401),
                (TestPlatform.alice, TestPlatform.password, 200),
            ] {
                let reply = try await test.request(
                    .GET, LinkPath.userProfileData(user: user), credential: .basic(login: user, password: password))
                #expect(reply.status == status, "\(user)")
            }
        }
    }
}
