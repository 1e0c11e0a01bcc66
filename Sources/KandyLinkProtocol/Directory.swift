/// The directory of the platform's users, and each user's profile (Kandy.js 4.20's `user`
/// plugin for Link): `GET …/user/{u}/directory?criteria=…&criteriaType=…`,
/// `GET …/user/{u}/userProfileData` and `GET /rest/version/1/localization`.

/// What a user's profile holds. Every field is optional; an empty profile is a bare username.
public struct UserProfile: Codable, Sendable, Equatable, Hashable {
    public var firstName: String?
    public var lastName: String?
    public var emailAddress: String?
    /// Spelled as Kandy.js documents a User (`photoURL`; contacts say `photoUrl`).
    public var photoURL: String?
    public var workPhone: String?
    public var mobilePhone: String?
    public var homePhone: String?

    public init(
        firstName: String? = nil, lastName: String? = nil, emailAddress: String? = nil, photoURL: String? = nil,
        workPhone: String? = nil, mobilePhone: String? = nil, homePhone: String? = nil
    ) {
        self.firstName = firstName
        self.lastName = lastName
        self.emailAddress = emailAddress
        self.photoURL = photoURL
        self.workPhone = workPhone
        self.mobilePhone = mobilePhone
        self.homePhone = homePhone
    }

    /// Every field, by wire name, for what treats them alike.
    public static let fieldKeyPaths: [(name: String, keyPath: WritableKeyPath<UserProfile, String?> & Sendable)] = [
        ("firstName", \.firstName), ("lastName", \.lastName), ("emailAddress", \.emailAddress),
        ("photoURL", \.photoURL),
        ("workPhone", \.workPhone), ("mobilePhone", \.mobilePhone), ("homePhone", \.homePhone),
    ]

    /// The fields' values, by wire name.
    public var fields: [(name: String, value: String?)] {
        Self.fieldKeyPaths.map { ($0.name, self[keyPath: $0.keyPath]) }
    }

    public var phones: [String] { [workPhone, mobilePhone, homePhone].compactMap { $0 } }

    /// "First Last", or whichever of the two there is.
    public var fullName: String? {
        let name = [firstName, lastName].compactMap { $0 }.filter { !$0.isEmpty }.joined(separator: " ")
        return name.isEmpty ? nil : name
    }

    /// `self` with the fields `change` sets replaced; an empty string clears a field.
    public func updated(with change: UserProfile) -> UserProfile {
        var updated = self
        for (_, keyPath) in Self.fieldKeyPaths {
            if let new = change[keyPath: keyPath] { updated[keyPath: keyPath] = new.isEmpty ? nil : new }
        }
        return updated
    }

    /// `self` with empty fields absent: an empty field and no field are the same.
    public var withoutEmptyFields: UserProfile { UserProfile().updated(with: self) }

    /// Longest field accepted, in UTF-8 bytes.
    public static let maxFieldBytes = 256
}

/// A user as the directory and `userProfileData` show them: `primaryContact` (Kandy.js keys
/// users by it, as `userId`) beside the profile's fields.
public struct User: Codable, Sendable, Equatable, Hashable {
    /// The username.
    public var userId: String
    public var profile: UserProfile

    public init(userId: String, profile: UserProfile = UserProfile()) {
        self.userId = userId
        self.profile = profile
    }

    private enum CodingKeys: String, CodingKey { case primaryContact }

    public init(from decoder: any Decoder) throws {
        userId = try decoder.container(keyedBy: CodingKeys.self).decode(String.self, forKey: .primaryContact)
        profile = try UserProfile(from: decoder)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(userId, forKey: .primaryContact)
        try profile.encode(to: encoder)
    }
}

/// `criteriaType`: which field a directory search matches, as Kandy.js numbers its search
/// types (`first_name` 1, `last_name` 2, `name` 3, `phone_number` 4, `user_id`/`user_name` 5).
public enum DirectorySearchType: Int, Codable, Sendable, CaseIterable {
    case firstName = 1
    case lastName = 2
    /// The full name ("First Last"), or the last name alone.
    case name = 3
    /// Any of the user's phone numbers, compared by digits only.
    case phoneNumber = 4
    case userName = 5

    /// Kandy.js's spellings of each type (`searchTypeInteger`).
    public init?(name: String) {
        switch name {
        case "first_name", "firstName", "FIRSTNAME": self = .firstName
        case "last_name", "lastName", "LASTNAME": self = .lastName
        case "name", "NAME": self = .name
        case "phone_number", "phoneNumber", "PHONENUMBER": self = .phoneNumber
        case "user_id", "userId", "USERID", "user_name", "userName", "USERNAME": self = .userName
        default: return nil
        }
    }
}

/// The query of a directory search, as the query string carries it.
public struct DirectoryQuery: Sendable, Equatable {
    /// What the field starts with; empty lists every user.
    public var criteria: String
    /// Nil matches any field.
    public var type: DirectorySearchType?
    /// The first result to return (0-based), and how many at most.
    public var startIndex: Int
    public var count: Int

    public init(criteria: String, type: DirectorySearchType? = nil, startIndex: Int = 0, count: Int = Self.defaultCount)
    {
        self.criteria = criteria
        self.type = type
        self.startIndex = startIndex
        self.count = count
    }

    public static let defaultCount = 50
    public static let maxCount = 200
    public static let maxCriteriaBytes = 128

    /// The query string: `criteria`, `criteriaType`, and the page when not the first default one.
    public var queryItems: [(name: String, value: String)] {
        var items = [("criteria", criteria)]
        if let type { items.append(("criteriaType", String(type.rawValue))) }
        if startIndex != 0 { items.append(("startIndex", String(startIndex))) }
        if count != Self.defaultCount { items.append(("count", String(count))) }
        return items
    }
}

/// The answer to a directory search, and the envelope of its errors.
public struct DirectoryResponseDocument: Codable, Sendable, Equatable {
    public var directory: DirectoryResponse

    public init(directory: DirectoryResponse) { self.directory = directory }
}

public struct DirectoryResponse: Codable, Sendable, Equatable {
    public var statusCode: Int
    public var reason: String?
    public var directoryItems: [User]?
    /// Where this page starts, and whether more results follow it.
    public var startIndex: Int?
    public var moreResults: Bool?

    public init(
        statusCode: Int, reason: String? = nil, directoryItems: [User]? = nil, startIndex: Int? = nil,
        moreResults: Bool? = nil
    ) {
        self.statusCode = statusCode
        self.reason = reason
        self.directoryItems = directoryItems
        self.startIndex = startIndex
        self.moreResults = moreResults
    }
}

/// `GET …/userProfileData`: the user's own profile; Kandy.js returns the whole object.
public struct UserProfileDataDocument: Codable, Sendable, Equatable {
    public var userProfileData: UserProfileData

    public init(userProfileData: UserProfileData) { self.userProfileData = userProfileData }
}

public struct UserProfileData: Codable, Sendable, Equatable {
    public var statusCode: Int
    public var reason: String?
    public var user: User?

    public init(statusCode: Int, reason: String? = nil, user: User? = nil) {
        self.statusCode = statusCode
        self.reason = reason
        self.user = user
    }

    private enum CodingKeys: String, CodingKey { case statusCode, reason, primaryContact }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        statusCode = try container.decode(Int.self, forKey: .statusCode)
        reason = try container.decodeIfPresent(String.self, forKey: .reason)
        user = container.contains(.primaryContact) ? try User(from: decoder) : nil
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(statusCode, forKey: .statusCode)
        try container.encodeIfPresent(reason, forKey: .reason)
        try user?.encode(to: encoder)
    }
}

/// `GET /rest/version/1/localization`: Kandy.js reads `acceptLanguage` as the user's locale.
public struct LocalizationDocument: Codable, Sendable, Equatable {
    public var acceptLanguage: String

    public init(acceptLanguage: String) { self.acceptLanguage = acceptLanguage }
}
