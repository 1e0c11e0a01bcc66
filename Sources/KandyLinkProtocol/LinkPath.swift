/// Paths of the Kandy Link REST API and notification channel: how they are built and parsed.
///
/// Layout (`design.md`): `/rest/version/{v}/user/{u}/subscription[/{id}]`,
/// `/rest/version/{v}/user/{u}/websocket/{channelId}`, and `…/user/{u}/presence`,
/// `…/presenceWatcher`, `…/instantmessage`, `…/callControl[/callSessions/{id}]`,
/// `…/calldisposition`, `…/addressbook[/contacts/[{contactId}]]`, `…/directory`,
/// `…/userProfileData`, `…/logHistory`, `…/logRecord/{id}`, and `/rest/version/{v}/localization`. The username segment is percent-encoded
/// when built and percent-decoded when parsed; the Kandy.js client appends returned paths to its
/// origin verbatim.
public enum LinkPath {
    public static let version = "1"
    /// Longest username accepted, in UTF-8 bytes.
    public static let maxUsernameLength = 256

    public static func userPrefix(_ user: String, version: String = version) -> String {
        "/rest/version/\(version)/user/\(encode(user))"
    }

    public static func subscriptions(user: String) -> String {
        userPrefix(user) + "/subscription"
    }

    public static func subscription(user: String, id: String) -> String {
        subscriptions(user: user) + "/" + id
    }

    public static func channel(user: String, channelID: String) -> String {
        userPrefix(user) + "/websocket/" + channelID
    }

    public static func presence(user: String) -> String { userPrefix(user) + "/presence" }
    public static func presenceWatcher(user: String) -> String { userPrefix(user) + "/presenceWatcher" }
    public static func instantMessage(user: String) -> String { userPrefix(user) + "/instantmessage" }
    public static func callControl(user: String) -> String { userPrefix(user) + "/callControl" }
    public static func callSession(user: String, id: String) -> String {
        callControl(user: user) + "/callSessions/" + id
    }
    public static func callDisposition(user: String) -> String { userPrefix(user) + "/calldisposition" }
    public static func addressBook(user: String) -> String { userPrefix(user) + "/addressbook" }
    /// Where a contact is added; with the trailing slash Kandy.js sends.
    public static func contacts(user: String) -> String { addressBook(user: user) + "/contacts/" }
    public static func contact(user: String, id: String) -> String { contacts(user: user) + encode(id) }
    public static func directory(user: String) -> String { userPrefix(user) + "/directory" }
    public static func userProfileData(user: String) -> String { userPrefix(user) + "/userProfileData" }
    public static func logHistory(user: String) -> String { userPrefix(user) + "/logHistory" }
    public static func logRecord(user: String, id: String) -> String { userPrefix(user) + "/logRecord/" + id }
    public static let localization = "/rest/version/\(version)/localization"

    /// The channel query parameter naming the newest notification a reconnecting client has
    /// (`…/websocket/{id}?lastEventId=N`); ours, Kandy.js sends none.
    public static let lastEventIDParameter = "lastEventId"

    /// Percent-encodes a username for one path segment. `@`, `+` and the other characters that
    /// browsers leave literal stay literal.
    public static func encode(_ segment: String) -> String {
        var out = ""
        for byte in segment.utf8 {
            if isUnreserved(byte) {
                out.unicodeScalars.append(UnicodeScalar(byte))
            } else {
                out += "%" + hex(byte >> 4) + hex(byte & 0xF)
            }
        }
        return out
    }

    /// Decodes a percent-encoded path segment; nil when it is malformed or not UTF-8.
    public static func decode(_ segment: Substring) -> String? {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(segment.utf8.count)
        var iterator = segment.utf8.makeIterator()
        while let byte = iterator.next() {
            if byte == UInt8(ascii: "%") {
                guard let high = iterator.next().flatMap(hexValue), let low = iterator.next().flatMap(hexValue)
                else { return nil }
                bytes.append(high << 4 | low)
            } else {
                bytes.append(byte)
            }
        }
        return String(validating: bytes, as: UTF8.self)
    }

    private static func isUnreserved(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"):
            true
        case UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"), UInt8(ascii: "@"),
            UInt8(ascii: "+"), UInt8(ascii: "!"), UInt8(ascii: "$"), UInt8(ascii: "'"), UInt8(ascii: "("),
            UInt8(ascii: ")"), UInt8(ascii: "*"), UInt8(ascii: ","), UInt8(ascii: ";"), UInt8(ascii: "="),
            UInt8(ascii: ":"):
            true
        default:
            false
        }
    }

    private static func hex(_ nibble: UInt8) -> String {
        String(UnicodeScalar(nibble < 10 ? nibble + 48 : nibble + 55))
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - 48
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - 87
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - 55
        default: nil
        }
    }
}

/// A request path of the Link API, parsed.
public enum LinkRoute: Equatable, Sendable {
    /// `…/user/{u}/subscription`
    case subscriptions(user: String)
    /// `…/user/{u}/subscription/{id}`
    case subscription(user: String, id: String)
    /// `…/user/{u}/websocket/{channelId}`
    case channel(user: String, channelID: String)
    /// `…/user/{u}/presence`
    case presence(user: String)
    /// `…/user/{u}/presenceWatcher`
    case presenceWatcher(user: String)
    /// `…/user/{u}/instantmessage`
    case instantMessage(user: String)
    /// `…/user/{u}/callControl`: starts a call.
    case callControl(user: String)
    /// `…/user/{u}/callControl/callSessions/{id}`: one call session.
    case callSession(user: String, id: String)
    /// `…/user/{u}/calldisposition`: rejects an incoming call.
    case callDisposition(user: String)
    /// `…/user/{u}/addressbook`: the whole address book.
    case addressBook(user: String)
    /// `…/user/{u}/addressbook/contacts[/]`: where contacts are added.
    case contacts(user: String)
    /// `…/user/{u}/addressbook/contacts/{contactId}`
    case contact(user: String, id: String)
    /// `…/user/{u}/directory`
    case directory(user: String)
    /// `…/user/{u}/userProfileData`
    case userProfileData(user: String)
    /// `…/user/{u}/logHistory`: the call history.
    case logHistory(user: String)
    /// `…/user/{u}/logRecord/{recordId}`: one call history entry.
    case logRecord(user: String, id: String)
    /// `/rest/version/{v}/localization`: the authenticated user's locale.
    case localization

    /// The user in the path; nil for the one path without a user.
    public var user: String? {
        switch self {
        case .subscriptions(let user), .subscription(let user, _), .channel(let user, _), .presence(let user),
            .presenceWatcher(let user), .instantMessage(let user), .callControl(let user), .callSession(let user, _),
            .callDisposition(let user), .addressBook(let user), .contacts(let user), .contact(let user, _),
            .directory(let user), .userProfileData(let user), .logHistory(let user), .logRecord(let user, _):
            user
        case .localization:
            nil
        }
    }

    /// The resource segment after the username (`subscription`, `presence`, …) of a target that
    /// looks like a Link path, even one whose username is unusable: it picks the error envelope.
    public static func resource(of target: String) -> Substring? {
        let parts = segments(of: path(of: target))
        guard parts.count >= 7, parts[1] == "rest", parts[4] == "user" else { return nil }
        return parts[6]
    }

    /// A request target's path, without its query.
    public static func path(of target: String) -> Substring {
        target.utf8.firstIndex(of: UInt8(ascii: "?")).map { target[..<$0] } ?? target[...]
    }

    /// The path's segments between slashes, at most `limit` (the last holds the rest): no Link
    /// path has more than 9. Found byte by byte; splitting by `Character` was 3 % of an instant
    /// message's CPU.
    static func segments(of path: Substring, limit: Int = 10) -> [Substring] {
        var parts: [Substring] = []
        parts.reserveCapacity(limit)
        var start = path.startIndex
        while parts.count < limit - 1, let slash = path.utf8[start...].firstIndex(of: UInt8(ascii: "/")) {
            parts.append(path[start..<slash])
            start = path.utf8.index(after: slash)
        }
        parts.append(path[start...])
        return parts
    }

    public enum ParseError: Error, Equatable {
        /// Not a path of the Link API at all.
        case unknownPath
        /// A Link path whose user segment is unusable (malformed encoding, traversal, too long).
        case invalidUser
        /// A Link path with an unsupported REST version.
        case unsupportedVersion
        /// An address book path whose contact id is unusable.
        case invalidContactID
    }

    /// Parses a request target (path, optionally followed by `?query`, which is ignored).
    public static func parse(_ target: String) throws(ParseError) -> LinkRoute {
        let parts = segments(of: path(of: target))
        if parts.count == 5, parts[0].isEmpty, parts[1] == "rest", parts[2] == "version", parts[4] == "localization" {
            guard parts[3] == Substring(LinkPath.version) else { throw .unsupportedVersion }
            return .localization
        }
        // "", "rest", "version", v, "user", u, kind, [id] or "callSessions", id
        guard (7...9).contains(parts.count), parts[0].isEmpty, parts[1] == "rest", parts[2] == "version",
            parts[4] == "user"
        else { throw .unknownPath }
        guard parts[3] == Substring(LinkPath.version) else { throw .unsupportedVersion }
        guard let user = LinkPath.decode(parts[5]), isAcceptableUsername(user) else { throw .invalidUser }
        switch (parts[6], parts.count) {
        case ("subscription", 7):
            return .subscriptions(user: user)
        case ("subscription", 8) where isIdentifier(parts[7]):
            return .subscription(user: user, id: String(parts[7]))
        case ("websocket", 8) where isIdentifier(parts[7]):
            return .channel(user: user, channelID: String(parts[7]))
        case ("presence", 7):
            return .presence(user: user)
        case ("presenceWatcher", 7):
            return .presenceWatcher(user: user)
        case ("instantmessage", 7):
            return .instantMessage(user: user)
        case ("callControl", 7):
            return .callControl(user: user)
        case ("callControl", 9) where parts[7] == "callSessions" && isIdentifier(parts[8]):
            return .callSession(user: user, id: String(parts[8]))
        case ("calldisposition", 7):
            return .callDisposition(user: user)
        case ("addressbook", 7):
            return .addressBook(user: user)
        case ("addressbook", 8) where parts[7] == "contacts",
            ("addressbook", 9) where parts[7] == "contacts" && parts[8].isEmpty:
            return .contacts(user: user)
        case ("addressbook", 9) where parts[7] == "contacts":
            guard let id = LinkPath.decode(parts[8]), Contact.isAcceptableID(id) else { throw .invalidContactID }
            return .contact(user: user, id: id)
        case ("directory", 7):
            return .directory(user: user)
        case ("userProfileData", 7):
            return .userProfileData(user: user)
        case ("logHistory", 7):
            return .logHistory(user: user)
        case ("logRecord", 8) where isIdentifier(parts[7]):
            return .logRecord(user: user, id: String(parts[7]))
        default:
            throw .unknownPath
        }
    }

    /// Usernames are opaque, but never empty, never a dot segment, never containing `/` or control
    /// characters, and at most `LinkPath.maxUsernameLength` bytes.
    public static func isAcceptableUsername(_ user: String) -> Bool {
        guard !user.isEmpty, user.utf8.count <= LinkPath.maxUsernameLength, user != ".", user != ".." else {
            return false
        }
        return !user.unicodeScalars.contains { $0 == "/" || $0 == "\\" || $0.value < 0x20 || $0.value == 0x7F }
    }

    /// Platform-issued ids are URL-safe base64 of 128 random bits; accept that alphabet only.
    public static func isIdentifier(_ segment: Substring) -> Bool {
        !segment.isEmpty && segment.utf8.count <= 64
            && segment.utf8.allSatisfy { byte in
                switch byte {
                case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                    UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"):
                    true
                default: false
                }
            }
    }
}
