/// An error with a Kandy code and a readable message, as Kandy.js's `BasicError` (spec §9).
public struct KandyError: Error, Sendable, Equatable, CustomStringConvertible {
    public struct Code: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// `setCredentials` without a usable combination.
        public static let invalidCredentials = Code(rawValue: "authentication:1")
        /// The channel could not be opened.
        public static let connectFailure = Code(rawValue: "authentication:2")
        /// Unsubscribe failed, or there was nothing to unsubscribe.
        public static let unsubscribeFailure = Code(rawValue: "authentication:3")
        /// Subscribe failed.
        public static let subscribeFailure = Code(rawValue: "authentication:4")
        /// Declared as Kandy.js 4.20 declares it, for apps that compare against it; like Kandy.js's
        /// Link build, a failed refresh is reported as ``updateSubscriptionFailure``.
        public static let extendSubscriptionFailure = Code(rawValue: "authentication:5")
        /// A service update failed.
        public static let updateSubscriptionFailure = Code(rawValue: "authentication:6")
        /// `presence.update` with a status other than open or closed.
        public static let invalidPresenceStatus = Code(rawValue: "presence:1")
        /// `presence.update` with an activity outside `presence.activities`.
        public static let invalidPresenceActivity = Code(rawValue: "presence:2")
        /// A presence request failed at the platform or on the way.
        public static let presenceFailure = Code(rawValue: "presence:3")
        /// A message could not be sent.
        public static let sendMessageFailure = Code(rawValue: "messaging:5")
        /// A message without a usable destination.
        public static let invalidDestination = Code(rawValue: "messaging:9")
        /// A call request failed at the platform or on the way (Kandy.js `call:2`).
        public static let callFailure = Code(rawValue: "call:2")
        /// The media engine could not make or apply SDP (Kandy.js `call:3`).
        public static let mediaFailure = Code(rawValue: "call:3")
        /// The operation is not possible in the call's state (Kandy.js `call:6`).
        public static let invalidCallState = Code(rawValue: "call:6")
        /// A call parameter is unusable, e.g. an empty destination (Kandy.js `call:7`).
        public static let invalidCallParameter = Code(rawValue: "call:7")
        /// No call has this id (ours).
        public static let unknownCall = Code(rawValue: "call:unknown")
        /// Nobody answered within `call.ringTimeout` (ours: Kandy.js has no timeout).
        public static let callNoAnswer = Code(rawValue: "call:noAnswer")
        /// A user or profile request failed.
        public static let usersFailure = Code(rawValue: "users:1")
        /// An address book request failed.
        public static let contactsFailure = Code(rawValue: "users:2")
        /// A directory search failed.
        public static let directoryFailure = Code(rawValue: "users:3")
        /// A contact, user id or search given to the SDK is unusable (no request was sent).
        public static let invalidUserParameter = Code(rawValue: "users:4")
        /// A call history request failed.
        public static let callHistoryFailure = Code(rawValue: "callHistory:1")
        /// A call history request was refused as malformed.
        public static let callHistoryBadRequest = Code(rawValue: "callHistory:2")
        /// The call log record does not exist.
        public static let callHistoryNotFound = Code(rawValue: "callHistory:3")
        /// The configuration given to `Kandy.create` is invalid.
        public static let invalidConfiguration = Code(rawValue: "configuration")
        /// The instance was destroyed.
        public static let destroyed = Code(rawValue: "destroyed")
        /// Another subscribe or unsubscribe is still in progress.
        public static let busy = Code(rawValue: "busy")
    }

    public var code: Code
    public var message: String
    /// The platform's `statusCode`, when it sent one.
    public var statusCode: Int?

    public init(_ code: Code, _ message: String, statusCode: Int? = nil) {
        self.code = code
        self.message = message
        self.statusCode = statusCode
    }

    public var description: String { "\(message) (\(code))" }
}
