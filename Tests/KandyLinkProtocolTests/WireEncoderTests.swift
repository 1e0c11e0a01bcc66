import Foundation
import KandyLinkProtocol
import Testing

/// ``WireJSON`` writes what `JSONEncoder` writes (slashes unescaped), as JSON: strings byte for
/// byte, documents as the same objects, with keys in the order the document encodes them.
@Suite struct WireEncoderTests {
    static let reference = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        return encoder
    }()

    static func canonical(_ data: Data) throws -> NSObject {
        try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed]) as! NSObject
    }

    /// Every ASCII character alone and among others, and what lies beyond ASCII.
    static let strings: [String] =
        (0..<0x80).map { String(UnicodeScalar(UInt8($0))) } + [
            "", "plain", #"a "quoted" \ back\slash"#, "/rest/version/1/user/a@b/websocket/c1", "tab\tnew\nline\r\u{0}",
            "\u{7F}\u{2028}\u{2029}\u{FEFF}", "jürgen 😀 日本", "\u{1F}end", "\u{8}\u{C}",
        ]

    @Test(arguments: strings)
    func escapesStringsAsJSONEncoderDoes(_ text: String) throws {
        // In an array: one element has one order, so the bytes must match.
        #expect(try WireJSON.encode([text]) == Self.reference.encode([text]))
        #expect(try WireJSON.encode(["key": text]) == Self.reference.encode(["key": text]))
    }

    struct Numbers: Codable, Equatable {
        var int = Int.min
        var int8 = Int8.min
        var int16 = Int16.max
        var int32 = Int32.min
        var int64 = Int64.max
        var uint = UInt.max
        var uint8 = UInt8.max
        var uint16 = UInt16.max
        var uint32 = UInt32.max
        var uint64 = UInt64.max
        var double = 0.1
        var whole = 1.0
        var large = 1e20
        var small = -2.5e-7
        var float: Float = 1.5
        var yes = true
        var no = false
        var none: String? = nil
        var list: [Int?] = [1, nil, 3]
        var empty: [String] = []
        var nested: [[String]] = [["a"], [], ["b", "c"]]
    }

    @Test func writesNumbersFlagsAndArraysThatReadBackTheSame() throws {
        let written = try WireJSON.encode(Numbers())
        #expect(try Self.canonical(written) == Self.canonical(Self.reference.encode(Numbers())))
        #expect(try JSONDecoder().decode(Numbers.self, from: written) == Numbers())
    }

    @Test func writesKeysInTheOrderTheDocumentEncodesThem() throws {
        let text = try WireJSON.text(InstantMessageResponseDocument(imResponse: .init(statusCode: 0, messageId: "9")))
        #expect(text == #"{"imResponse":{"statusCode":0,"messageId":"9"}}"#)
        let notification = try WireJSON.text(
            NotificationDocument(notificationMessage: .instantMessage(eventId: "7", from: "bob", text: "hi", time: 5)))
        #expect(
            notification
                == #"{"notificationMessage":{"eventType":"IM","eventId":"7","imnotificationParams":{"msgText":"hi","primaryContact":"sip:bob","time":5}}}"#
        )
    }

    /// Documents that write two parts into one object, nest, or hold optionals and arrays.
    static let documents: [(String, any Encodable & Sendable)] = [
        (
            "a notification of each kind",
            [
                NotificationDocument(notificationMessage: .gone(eventId: "1")),
                NotificationDocument(notificationMessage: .missed(eventId: "2", count: 3)),
                NotificationDocument(
                    notificationMessage: .presence(
                        eventId: "3", user: "bob@x", state: .init(status: .open, activity: .active, note: "at \"work\"")
                    )),
                NotificationDocument(
                    notificationMessage: .instantMessage(eventId: "4", from: "bob@x", text: "line\nline 😀", time: nil)),
            ]
        ),
        ("a status with no user", StatusDocument(statusCode: 0, reason: "Serving.")),
        (
            "a profile: its status, the user's id and the user's profile written into one object",
            UserProfileDataDocument(
                userProfileData: .init(
                    statusCode: 0,
                    user: User(userId: "alice@x", profile: UserProfile(firstName: "Alice", emailAddress: "a@x"))))
        ),
        ("an enveloped error", EnvelopedStatus(.imResponse, ResponseStatus(statusCode: 42, reason: "No."))),
        ("a keepalive", KeepaliveMessage()),
        ("nested and super containers", Containers()),
        ("a value that writes nothing, within another", [Silent()]),
    ]

    @Test(arguments: documents)
    func writesDocumentsAsTheSameObjects(_ name: String, _ document: any Encodable & Sendable) throws {
        #expect(
            try Self.canonical(WireJSON.encode(document)) == Self.canonical(Self.reference.encode(document)), "\(name)")
    }

    /// What no wire document does yet, written as `JSONEncoder` writes it all the same.
    struct Containers: Encodable {
        enum Key: String, CodingKey { case first, inner, list, after, deep }
        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: Key.self)
            try container.encode("1", forKey: .first)
            var inner = container.nestedContainer(keyedBy: Key.self, forKey: .inner)
            try inner.encode(2, forKey: .first)
            var list = inner.nestedUnkeyedContainer(forKey: .list)
            try list.encode("x")
            var element = list.nestedContainer(keyedBy: Key.self)
            try element.encode(true, forKey: .deep)
            try list.encodeNil()
            try "super".encode(to: container.superEncoder())
            try container.encode([3, 4], forKey: .after)
        }
    }

    struct Silent: Encodable {
        func encode(to encoder: any Encoder) throws {}
    }

    @Test func refusesWhatJSONCannotSayAndWhatItWouldSayOtherwise() {
        #expect(throws: EncodingError.self) { try WireJSON.encode([Double.nan]) }
        #expect(throws: EncodingError.self) { try WireJSON.encode(["x": Double.infinity]) }
        #expect(throws: EncodingError.self) { try WireJSON.encode([Data([1, 2])]) }
        #expect(throws: EncodingError.self) { try WireJSON.encode(["u": URL(string: "https://x")!]) }
        #expect(throws: EncodingError.self) { try WireJSON.encode(Silent()) }
        #expect(throws: EncodingError.self) { try Self.reference.encode(Silent()) }
    }
}
