/// The platform's `statusCode` values: the one table of them. Call requests answer some
/// failures with the SIP-style ``CallStatusCode`` instead, as Kandy.js expects.
///
/// The Kandy.js client treats `0` as success (and `2` as success on PUT, which is why no error
/// here uses `2`); every other value is shown to the user inside a message such as
/// "Failed to subscribe user. Code: 21." Each code has one HTTP status.
public enum StatusCode: Int, Sendable, CaseIterable, Codable {
    case success = 0

    case malformedRequest = 10
    case invalidField = 11
    case noGrantableService = 12
    case bodyTooLarge = 13
    case invalidPath = 14
    case messageTooLarge = 15
    case bodyTimedOut = 16

    case authenticationRequired = 20
    case invalidCredentials = 21
    case tokenExpired = 22
    case forbiddenUser = 23
    case throttled = 29

    case subscriptionNotFound = 39
    case notFound = 40
    case methodNotAllowed = 41
    case upgradeRequired = 42
    case userNotFound = 43
    case recipientUnavailable = 44
    case callServiceRequired = 45
    case callStateConflict = 46
    case contactNotFound = 47
    case contactExists = 48
    case sessionLimitReached = 49
    case addressBookFull = 38

    case internalError = 50
    case unavailable = 51

    /// The HTTP status sent with this code.
    public var httpStatus: Int {
        switch self {
        case .success: 200
        case .malformedRequest, .invalidField, .noGrantableService, .invalidPath: 400
        case .bodyTooLarge, .messageTooLarge: 413
        case .bodyTimedOut: 408
        case .authenticationRequired, .invalidCredentials, .tokenExpired: 401
        case .forbiddenUser: 403
        case .throttled: 429
        case .subscriptionNotFound, .notFound, .userNotFound, .recipientUnavailable, .contactNotFound: 404
        case .methodNotAllowed: 405
        case .upgradeRequired: 426
        case .sessionLimitReached, .callServiceRequired, .callStateConflict, .contactExists, .addressBookFull: 409
        case .internalError: 500
        case .unavailable: 503
        }
    }

    /// What the code means, for documentation and for errors without a more specific reason.
    public var summary: String {
        switch self {
        case .success: "Success."
        case .malformedRequest: "The body is not valid JSON of the expected document."
        case .invalidField: "A field has the wrong type or an invalid value."
        case .noGrantableService: "None of the requested services can be granted."
        case .bodyTooLarge: "The request body is larger than the platform accepts."
        case .invalidPath: "The path is malformed: bad username segment or traversal."
        case .messageTooLarge: "The instant message is longer than the platform accepts."
        case .bodyTimedOut: "The request body did not arrive in time."
        case .authenticationRequired: "No credentials were sent."
        case .invalidCredentials: "The credentials are not valid."
        case .tokenExpired: "The token has expired."
        case .forbiddenUser: "The user in the path is not the authenticated user."
        case .throttled: "Too many failed logins; retry later."
        case .subscriptionNotFound: "No such subscription: unknown, expired or ended."
        case .notFound: "No such resource."
        case .methodNotAllowed: "The resource does not support this method."
        case .upgradeRequired: "The notification channel is opened with a WebSocket upgrade."
        case .userNotFound: "A user named in the request does not exist."
        case .recipientUnavailable: "The recipient has no session that receives instant messages."
        case .sessionLimitReached: "The user is at the session limit and forceLogOut was not requested."
        case .callServiceRequired: "Calls need a session subscribed to the call service."
        case .callStateConflict: "The call is not in a state that allows this request."
        case .contactNotFound: "The address book has no contact with that id."
        case .contactExists: "The address book has a contact with that id already."
        case .addressBookFull: "The address book holds as many contacts as the platform keeps."
        case .internalError: "The platform failed to handle the request."
        case .unavailable: "The platform is shutting down, overloaded or cannot reach its database."
        }
    }
}

/// `{"statusCode":N,"reason":"…"}`: the error document for requests outside any endpoint's own
/// envelope (unknown paths, the channel upgrade). Kandy.js also accepts this shape on subscribe
/// errors (spec §5.5).
public struct StatusDocument: Codable, Sendable, Equatable {
    public var statusCode: Int
    public var reason: String

    public init(statusCode: Int, reason: String) {
        self.statusCode = statusCode
        self.reason = reason
    }
}

/// The error document of an endpoint with an envelope of its own,
/// `{"<envelope>":{"statusCode":N,"reason":"…"}}`: Kandy.js reads a failed request's code from
/// the envelope of the path it sent to.
public struct EnvelopedStatus: Encodable, Sendable, Equatable {
    public enum Envelope: String, Sendable, CaseIterable {
        case subscribeResponse, presenceResponse, presenceWatcherResponse, imResponse, callControlResponse
        case addressBookResponse, directory, userProfileData, logHistory, logRecord

        /// The envelope of a Link path's resource segment (``LinkRoute/resource(of:)``); nil for
        /// paths that answer a bare ``StatusDocument``.
        public init?(resource: Substring?) {
            switch resource {
            case "subscription": self = .subscribeResponse
            case "presence": self = .presenceResponse
            case "presenceWatcher": self = .presenceWatcherResponse
            case "instantmessage": self = .imResponse
            // Kandy.js reads a failed call request's code from callControlResponse, whichever path.
            case "callControl", "calldisposition": self = .callControlResponse
            case "addressbook": self = .addressBookResponse
            case "directory": self = .directory
            case "userProfileData": self = .userProfileData
            case "logHistory": self = .logHistory
            case "logRecord": self = .logRecord
            default: return nil
            }
        }
    }

    public var envelope: Envelope
    public var status: ResponseStatus

    public init(_ envelope: Envelope, _ status: ResponseStatus) {
        self.envelope = envelope
        self.status = status
    }

    private struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Key.self)
        try container.encode(status, forKey: Key(stringValue: envelope.rawValue))
    }
}
