import KandyLinkProtocol
import Testing

@Suite struct LinkPathTests {
    @Test func buildsThePathsOfTheDesign() {
        #expect(
            LinkPath.subscriptions(user: "alice@example.com") == "/rest/version/1/user/alice@example.com/subscription")
        #expect(
            LinkPath.subscription(user: "alice@example.com", id: "s1")
                == "/rest/version/1/user/alice@example.com/subscription/s1")
        #expect(
            LinkPath.channel(user: "alice@example.com", channelID: "c1")
                == "/rest/version/1/user/alice@example.com/websocket/c1")
        // A browser's fetch leaves @ and + literal and sends a space as %20 (spec §1.9).
        #expect(LinkPath.encode("bob smith+1@x.org") == "bob%20smith+1@x.org")
        #expect(LinkPath.encode("jürgen") == "j%C3%BCrgen")
    }

    @Test(arguments: [
        ("/rest/version/1/user/alice@example.com/subscription", LinkRoute.subscriptions(user: "alice@example.com")),
        ("/rest/version/1/user/bob%20smith/subscription/abc_-9", .subscription(user: "bob smith", id: "abc_-9")),
        ("/rest/version/1/user/j%C3%BCrgen/websocket/CH1", .channel(user: "jürgen", channelID: "CH1")),
        ("/rest/version/1/user/a/websocket/CH1?", .channel(user: "a", channelID: "CH1")),
        ("/rest/version/1/user/a/websocket/CH1?access_token=t%2F1", .channel(user: "a", channelID: "CH1")),
        ("/rest/version/1/user/a/websocket/CH1?token=x", .channel(user: "a", channelID: "CH1")),
        ("/rest/version/1/user/a%40b/presence", .presence(user: "a@b")),
        ("/rest/version/1/user/a@b/presenceWatcher", .presenceWatcher(user: "a@b")),
        ("/rest/version/1/user/a@b/instantmessage", .instantMessage(user: "a@b")),
        // As Kandy.js builds them: POST with a trailing slash, GET/PUT with the id raw.
        ("/rest/version/1/user/a/addressbook", .addressBook(user: "a")),
        ("/rest/version/1/user/a/addressbook/contacts/", .contacts(user: "a")),
        ("/rest/version/1/user/a/addressbook/contacts", .contacts(user: "a")),
        ("/rest/version/1/user/a/addressbook/contacts/bob%20b%C3%BC", .contact(user: "a", id: "bob bü")),
        ("/rest/version/1/user/a/directory?criteria=x&criteriaType=1", .directory(user: "a")),
        ("/rest/version/1/user/a/userProfileData", .userProfileData(user: "a")),
        ("/rest/version/1/user/a/logHistory?startIndex=0&count=50", .logHistory(user: "a")),
        ("/rest/version/1/user/a/logRecord/R1_x", .logRecord(user: "a", id: "R1_x")),
        ("/rest/version/1/localization", .localization),
    ])
    func parsesRoutes(path: String, route: LinkRoute) throws {
        #expect(try LinkRoute.parse(path) == route)
    }

    @Test(arguments: [
        ("/", LinkRoute.ParseError.unknownPath),
        ("/rest/version/1/user/a", .unknownPath),
        ("/rest/version/1/user/a/presences", .unknownPath),
        ("/rest/version/1/user/a/addressbook/contacts/a%2Fb", .invalidContactID),
        ("/rest/version/1/user/a/addressbook/contacts/%00", .invalidContactID),
        ("/rest/version/1/user/a/addressbook/friends/x", .unknownPath),
        ("/rest/version/1/user/a/logRecord/a.b", .unknownPath),
        ("/rest/version/2/localization", .unsupportedVersion),
        ("/rest/version/1/user/a/subscription/", .unknownPath),
        ("/rest/version/1/user/a/subscription/x/y", .unknownPath),
        ("/rest/version/1/user/a/callControl/callSessions/s1/x", .unknownPath),
        ("/rest/version/1/user/a/callControl/callSessions/s1/x/y/z", .unknownPath),
        ("/rest/version/1/user/a/callControl/callSessions/s1" + String(repeating: "/", count: 10_000), .unknownPath),
        ("/rest/version/1/user/a/subscription/..", .unknownPath),
        ("/rest/version/1/user/a/websocket/id%2F..", .unknownPath),
        ("/rest/version/2/user/a/subscription", .unsupportedVersion),
        ("/rest/version/1/user/../subscription", .invalidUser),
        ("/rest/version/1/user/%2E%2E/subscription", .invalidUser),
        ("/rest/version/1/user/a%2Fb/subscription", .invalidUser),
        ("/rest/version/1/user/a%00/subscription", .invalidUser),
        ("/rest/version/1/user/%zz/subscription", .invalidUser),
        ("/rest/version/1/user/%C3/subscription", .invalidUser),
        ("/rest/version/1/user//subscription", .invalidUser),
        ("/rest/version/1/user/" + String(repeating: "a", count: 257) + "/subscription", .invalidUser),
    ])
    func refusesBadPaths(path: String, error: LinkRoute.ParseError) {
        #expect(throws: error) { try LinkRoute.parse(path) }
    }

    @Test(arguments: [
        ("/rest/version/1/user/a/instantmessage", "instantmessage" as Substring?),
        ("/rest/version/1/user/%zz/subscription/s1?x=/y", "subscription"),
        ("/rest/version/1/user/a/callControl/callSessions/s1/x/y/z", "callControl"),
        ("/rest/version/1/user/a/", ""),
        ("/rest/version/1/user/a", nil),
        ("/rest/version/1/user?/a/b/c", nil),
        ("/health", nil),
        ("", nil),
    ])
    func namesTheResourceOfALinkPath(target: String, resource: Substring?) {
        #expect(LinkRoute.resource(of: target) == resource)
    }

    @Test func encodeThenParseIsIdentity() throws {
        for user in ["alice@example.com", "bob smith", "ünïcødé 😀", "a%b", "semi;colon", "q?x#y"] {
            #expect(try LinkRoute.parse(LinkPath.subscriptions(user: user)) == .subscriptions(user: user))
        }
    }
}
