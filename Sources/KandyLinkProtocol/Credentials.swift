import Foundation

/// The credential headers of spec §2, built by clients and parsed by the platform.
public enum CredentialHeader: Equatable, Sendable {
    /// `Authorization: Basic base64(utf8(login + ":" + password))`; login is a username or authname.
    case basic(login: String, password: String)
    /// `Authorization: Bearer <token>`
    case bearer(String)
    /// `x-token: <token>`, the HMAC token of spec §2 rule 1.
    case token(String)

    public static let tokenHeaderName = "x-token"

    /// Header name and value to send.
    public var field: (name: String, value: String) {
        switch self {
        case .basic(let login, let password):
            ("Authorization", "Basic " + Data((login + ":" + password).utf8).base64EncodedString())
        case .bearer(let token):
            ("Authorization", "Bearer " + token)
        case .token(let token):
            (Self.tokenHeaderName, token)
        }
    }

    /// Parses the credential of a request: `x-token` wins over `Authorization`, as in the client.
    /// Returns nil when neither header is present; throws when one is present but malformed.
    public static func parse(authorization: String?, token: String?) throws(CredentialParseError) -> CredentialHeader? {
        if let token {
            guard !token.isEmpty else { throw .malformed }
            return .token(token)
        }
        guard let authorization else { return nil }
        let parts = authorization.split(separator: " ", maxSplits: 1)
        guard parts.count == 2 else { throw .malformed }
        let value = parts[1].trimmingSpaces
        switch parts[0].lowercased() {
        case "basic":
            guard let bytes = Data(base64Encoded: String(value)), let text = String(data: bytes, encoding: .utf8),
                let colon = text.firstIndex(of: ":")
            else { throw .malformed }
            return .basic(login: String(text[..<colon]), password: String(text[text.index(after: colon)...]))
        case "bearer":
            guard !value.isEmpty else { throw .malformed }
            return .bearer(String(value))
        default:
            throw .unsupportedScheme
        }
    }
}

public enum CredentialParseError: Error, Equatable, Sendable {
    case malformed
    case unsupportedScheme
}

extension Substring {
    fileprivate var trimmingSpaces: Substring {
        var s = self
        while s.first == " " { s = s.dropFirst() }
        while s.last == " " { s = s.dropLast() }
        return s
    }
}
