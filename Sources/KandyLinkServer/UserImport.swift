import Foundation
import KandyLinkProtocol

/// The users of a `kandy-link users import` file: CSV with a header row, or a JSON array.
///
/// CSV columns (by header name, any order): `username`, `password`, and optionally
/// `first_name`, `last_name`, `email`, `phone` (work), `mobile_phone`, `home_phone`, `photo_url`. JSON objects use the wire names:
/// `username`, `password`, `firstName`, `lastName`, `emailAddress`, `workPhone`,
/// `mobilePhone`, `homePhone`, `photoURL`.
public enum UserImport {
    public struct Entry: Sendable, Equatable {
        public var username: String
        public var password: String
        public var profile: UserProfile

        public init(username: String, password: String, profile: UserProfile = UserProfile()) {
            self.username = username
            self.password = password
            self.profile = profile
        }
    }

    public enum ImportError: Error, Equatable, CustomStringConvertible {
        case malformed(line: Int, String)
        case missingColumn(String)
        case notJSON(String)

        public var description: String {
            switch self {
            case .malformed(let line, let why): "Line \(line): \(why)"
            case .missingColumn(let name): "The CSV header has no \(name) column."
            case .notJSON(let why): "Not a JSON array of users: \(why)"
            }
        }
    }

    /// Reads `text` as JSON when it starts with `[`, as CSV otherwise.
    public static func parse(_ text: String) throws -> [Entry] {
        text.drop(while: \.isWhitespace).first == "[" ? try json(text) : try csv(text)
    }

    static func json(_ text: String) throws -> [Entry] {
        struct Row: Decodable {
            var username: String
            var password: String
            var firstName, lastName, emailAddress, workPhone, mobilePhone, homePhone, photoURL: String?
        }
        do {
            return try JSONDecoder().decode([Row].self, from: Data(text.utf8)).map {
                Entry(
                    username: $0.username, password: $0.password,
                    profile: UserProfile(
                        firstName: $0.firstName, lastName: $0.lastName, emailAddress: $0.emailAddress,
                        photoURL: $0.photoURL, workPhone: $0.workPhone, mobilePhone: $0.mobilePhone,
                        homePhone: $0.homePhone))
            }
        } catch {
            throw ImportError.notJSON(WireJSON.explain(error))
        }
    }

    static func csv(_ text: String) throws -> [Entry] {
        let records = try records(text)
        guard let header = records.first?.fields.map({ $0.trimmingCharacters(in: .whitespaces).lowercased() }) else {
            return []
        }
        func column(_ name: String) -> Int? { header.firstIndex(of: name) }
        guard let username = column("username") else { throw ImportError.missingColumn("username") }
        guard let password = column("password") else { throw ImportError.missingColumn("password") }
        return try records.dropFirst().map { record in
            guard record.fields.count == header.count else {
                throw ImportError.malformed(
                    line: record.line, "\(record.fields.count) fields where the header has \(header.count).")
            }
            func value(_ name: String) -> String? {
                column(name).map { record.fields[$0] }.flatMap { $0.isEmpty ? nil : $0 }
            }
            return Entry(
                username: record.fields[username], password: record.fields[password],
                profile: UserProfile(
                    firstName: value("first_name"), lastName: value("last_name"), emailAddress: value("email"),
                    photoURL: value("photo_url"), workPhone: value("phone"), mobilePhone: value("mobile_phone"),
                    homePhone: value("home_phone")))
        }
    }

    /// RFC 4180 records: quoted fields may hold commas, doubled quotes and line breaks. Blank
    /// lines are skipped.
    static func records(_ text: String) throws -> [(line: Int, fields: [String])] {
        var records: [(Int, [String])] = []
        var fields: [String] = []
        var field = ""
        var quoted = false
        var line = 1
        var recordLine = 1
        var characters = text.makeIterator()
        var pending: Character? = nil
        func next() -> Character? {
            if let character = pending {
                pending = nil
                return character
            }
            return characters.next()
        }
        func endRecord() {
            fields.append(field)
            if !(fields.count == 1 && fields[0].isEmpty) { records.append((recordLine, fields)) }
            fields = []
            field = ""
        }
        while let character = next() {
            if quoted {
                if character == "\"" {
                    if let following = next() {
                        if following == "\"" {
                            field.append("\"")
                        } else {
                            quoted = false
                            pending = following
                        }
                    } else {
                        quoted = false
                    }
                } else {
                    if character.isNewline { line += 1 }
                    field.append(character)
                }
                continue
            }
            switch character {
            case "\"" where field.isEmpty: quoted = true
            case ",":
                fields.append(field)
                field = ""
            case "\n", "\r\n", "\r":
                endRecord()
                line += 1
                recordLine = line
            default: field.append(character)
            }
        }
        if quoted { throw ImportError.malformed(line: recordLine, "A quoted field is not closed.") }
        if !field.isEmpty || !fields.isEmpty { endRecord() }
        return records
    }
}
