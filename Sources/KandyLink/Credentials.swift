import KandyLinkProtocol

/// How the SDK authenticates, one case per rule of spec §2. The username always names the user
/// in request paths.
public enum Credentials: Sendable, Equatable {
    /// `Authorization: Basic` with the username.
    case password(username: String, password: String)
    /// `Authorization: Basic` with a separate login name; paths still use `username`.
    case authname(username: String, authname: String, password: String)
    /// `Authorization: Bearer`.
    case bearer(username: String, token: String)
    /// `x-token`, sent on every request.
    case hmacToken(username: String, token: String)

    public var username: String {
        switch self {
        case .password(let username, _), .authname(let username, _, _), .bearer(let username, _),
            .hmacToken(let username, _):
            username
        }
    }

    var header: CredentialHeader {
        switch self {
        case .password(let username, let password): .basic(login: username, password: password)
        case .authname(_, let authname, let password): .basic(login: authname, password: password)
        case .bearer(_, let token): .bearer(token)
        case .hmacToken(_, let token): .token(token)
        }
    }

    /// The bearer token, which may travel in the channel URL's query.
    var bearerToken: String? {
        if case .bearer(_, let token) = self { token } else { nil }
    }

    /// Nil when usable; otherwise what is missing.
    var problem: String? {
        switch self {
        case .password(let username, let password):
            username.isEmpty ? "username is empty" : password.isEmpty ? "password is empty" : nil
        case .authname(let username, let authname, let password):
            username.isEmpty || authname.isEmpty
                ? "username or authname is empty" : password.isEmpty ? "password is empty" : nil
        case .bearer(let username, let token), .hmacToken(let username, let token):
            username.isEmpty ? "username is empty" : token.isEmpty ? "token is empty" : nil
        }
    }
}
