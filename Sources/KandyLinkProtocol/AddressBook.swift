/// A user's personal address book (Kandy.js 4.20's `contacts` for Link):
/// `GET …/user/{u}/addressbook`, `POST …/addressbook/contacts/`, and `GET`, `PUT`, `DELETE`
/// `…/addressbook/contacts/{contactId}`. Every answer, errors included, is an
/// `addressBookResponse` with a `statusCode`.

/// One contact. Kandy.js calls its key `contactId` and sends it as `nickname`; it drops empty
/// fields before sending, as Link refuses them.
public struct Contact: Codable, Sendable, Equatable, Hashable {
    /// Unique in its address book; the last segment of the contact's path.
    public var contactId: String
    /// The contact's user id on the platform.
    public var primaryContact: String?
    public var firstName: String?
    public var lastName: String?
    public var photoUrl: String?
    public var emailAddress: String?
    public var homePhone: String?
    public var workPhone: String?
    public var mobilePhone: String?
    public var conferenceURL: String?
    public var fax: String?
    public var pager: String?
    /// The contact list it is on ("friends" by default in Kandy.js's documentation).
    public var groupList: String?
    public var friendStatus: Bool?

    public init(
        contactId: String, primaryContact: String? = nil, firstName: String? = nil, lastName: String? = nil,
        photoUrl: String? = nil, emailAddress: String? = nil, homePhone: String? = nil, workPhone: String? = nil,
        mobilePhone: String? = nil, conferenceURL: String? = nil, fax: String? = nil, pager: String? = nil,
        groupList: String? = nil, friendStatus: Bool? = nil
    ) {
        self.contactId = contactId
        self.primaryContact = primaryContact
        self.firstName = firstName
        self.lastName = lastName
        self.photoUrl = photoUrl
        self.emailAddress = emailAddress
        self.homePhone = homePhone
        self.workPhone = workPhone
        self.mobilePhone = mobilePhone
        self.conferenceURL = conferenceURL
        self.fax = fax
        self.pager = pager
        self.groupList = groupList
        self.friendStatus = friendStatus
    }

    private enum CodingKeys: String, CodingKey {
        case contactId = "nickname"
        case primaryContact, firstName, lastName, photoUrl, emailAddress, homePhone, workPhone, mobilePhone
        case conferenceURL, fax, pager, groupList, friendStatus
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        contactId = try container.decode(String.self, forKey: .contactId)
        primaryContact = try container.decodeIfPresent(String.self, forKey: .primaryContact)
        firstName = try container.decodeIfPresent(String.self, forKey: .firstName)
        lastName = try container.decodeIfPresent(String.self, forKey: .lastName)
        photoUrl = try container.decodeIfPresent(String.self, forKey: .photoUrl)
        emailAddress = try container.decodeIfPresent(String.self, forKey: .emailAddress)
        homePhone = try container.decodeIfPresent(String.self, forKey: .homePhone)
        workPhone = try container.decodeIfPresent(String.self, forKey: .workPhone)
        mobilePhone = try container.decodeIfPresent(String.self, forKey: .mobilePhone)
        conferenceURL = try container.decodeIfPresent(String.self, forKey: .conferenceURL)
        fax = try container.decodeIfPresent(String.self, forKey: .fax)
        pager = try container.decodeIfPresent(String.self, forKey: .pager)
        groupList = try container.decodeIfPresent(String.self, forKey: .groupList)
        // Apps pass what their forms hold: "true" as often as true.
        if let flag = try? container.decodeIfPresent(Bool.self, forKey: .friendStatus) {
            friendStatus = flag
        } else if let text = try container.decodeIfPresent(String.self, forKey: .friendStatus) {
            guard let flag = Bool(text) else {
                throw DecodingError.dataCorruptedError(
                    forKey: .friendStatus, in: container, debugDescription: "friendStatus must be true or false.")
            }
            friendStatus = flag
        } else {
            friendStatus = nil
        }
    }

    /// The text fields, by wire name, for what treats them alike.
    public static let textKeyPaths: [(name: String, keyPath: WritableKeyPath<Contact, String?> & Sendable)] = [
        ("primaryContact", \.primaryContact), ("firstName", \.firstName), ("lastName", \.lastName),
        ("photoUrl", \.photoUrl), ("emailAddress", \.emailAddress), ("homePhone", \.homePhone),
        ("workPhone", \.workPhone), ("mobilePhone", \.mobilePhone), ("conferenceURL", \.conferenceURL),
        ("fax", \.fax), ("pager", \.pager), ("groupList", \.groupList),
    ]

    /// The text fields' values, by wire name.
    public var textFields: [(name: String, value: String?)] {
        Self.textKeyPaths.map { ($0.name, self[keyPath: $0.keyPath]) }
    }

    /// `self` with empty text fields absent (Kandy.js drops them before sending; other clients
    /// may not).
    public var withoutEmptyFields: Contact {
        var contact = self
        for (_, keyPath) in Self.textKeyPaths where contact[keyPath: keyPath]?.isEmpty == true {
            contact[keyPath: keyPath] = nil
        }
        return contact
    }

    /// Longest contact id and longest field accepted, in UTF-8 bytes.
    public static let maxContactIDBytes = 128
    public static let maxFieldBytes = 512

    /// A contact id can be a path segment: non-empty, no `/`, `\` or control characters.
    public static func isAcceptableID(_ id: String) -> Bool {
        !id.isEmpty && id.utf8.count <= maxContactIDBytes && id != "." && id != ".."
            && !id.unicodeScalars.contains { $0 == "/" || $0 == "\\" || $0.value < 0x20 || $0.value == 0x7F }
    }
}

/// The body of an add or update: one entry.
public struct AddressBookRequestDocument: Codable, Sendable, Equatable {
    public var addressBookRequest: AddressBookRequest

    public init(addressBookRequest: AddressBookRequest) { self.addressBookRequest = addressBookRequest }
    public init(_ contact: Contact) { self.addressBookRequest = AddressBookRequest(addressBookEntries: [contact]) }
}

public struct AddressBookRequest: Codable, Sendable, Equatable {
    public var addressBookEntries: [Contact]

    public init(addressBookEntries: [Contact]) { self.addressBookEntries = addressBookEntries }
}

/// Every answer of the address book, and the envelope of its errors.
public struct AddressBookResponseDocument: Codable, Sendable, Equatable {
    public var addressBookResponse: AddressBookResponse

    public init(addressBookResponse: AddressBookResponse) { self.addressBookResponse = addressBookResponse }
}

public struct AddressBookResponse: Codable, Sendable, Equatable {
    public var statusCode: Int
    public var reason: String?
    public var addressBookEntries: [Contact]?

    public init(statusCode: Int, reason: String? = nil, addressBookEntries: [Contact]? = nil) {
        self.statusCode = statusCode
        self.reason = reason
        self.addressBookEntries = addressBookEntries
    }
}
