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
    /// A call request's failure in the call vocabulary: its `statusCode` and HTTP status.
    public var call: CallStatusCode?
    /// A call history request's failure in the codes Kandy.js reads there.
    public var history: CallHistoryStatusCode?

    public init(_ code: StatusCode, _ reason: String? = nil, retryAfter: Int? = nil, endsConnection: Bool = false) {
        self.code = code
        self.reason = reason ?? code.summary
        self.retryAfter = retryAfter
        self.endsConnection = endsConnection
    }

    /// A call request refused in the call vocabulary (``CallStatusCode``); `code` stands for it
    /// in any other envelope.
    public init(call: CallStatusCode, _ reason: String? = nil) {
        self.init(call == .unknownCallee ? .userNotFound : .callStateConflict, reason ?? call.reason)
        self.call = call
    }

    /// A call history request refused in the codes Kandy.js reads there.
    public init(history: CallHistoryStatusCode) {
        self.init(history == .recordNotFound ? .notFound : .invalidField, history.reason)
        self.history = history
    }

    /// A store operation that failed with `error`: 503 while the database cannot serve (the
    /// client may try again), else the platform's fault, reported without detail.
    static func store(_ failure: String, _ error: any Error) -> PlatformError {
        if let refusal = error as? PlatformError { return refusal }
        return isDatabaseUnavailability(error)
            ? PlatformError(.unavailable, "\(failure) The platform cannot reach its database; try again shortly.")
            : PlatformError(.internalError, failure)
    }

    /// The `statusCode` the client reads.
    public var statusCode: Int { call?.rawValue ?? history?.rawValue ?? code.rawValue }
    public var httpStatus: Int { call?.httpStatus ?? history?.httpStatus ?? code.httpStatus }
}
