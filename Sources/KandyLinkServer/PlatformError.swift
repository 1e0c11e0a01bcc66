import KandyLinkProtocol

/// A request the platform refuses: a status code from the one table, and a reason a person can
/// act on. Never carries a secret.
public struct PlatformError: Error, Equatable, Sendable {
    public var code: StatusCode
    public var reason: String
    /// Seconds the client should wait (429).
    public var retryAfter: Int?
    /// The request's body is left unread or unreadable: the answer ends the connection.
    public var endsConnection: Bool

    public init(_ code: StatusCode, _ reason: String? = nil, retryAfter: Int? = nil, endsConnection: Bool = false) {
        self.code = code
        self.reason = reason ?? code.summary
        self.retryAfter = retryAfter
        self.endsConnection = endsConnection
    }
}
