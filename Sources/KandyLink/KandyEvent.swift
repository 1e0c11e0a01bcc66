import KandyLinkProtocol

/// Everything a `Kandy` instance tells its observers, with the Kandy.js event names (spec §11).
public enum KandyEvent: Sendable, Equatable {
    /// Credentials were set or forgotten. `forced`/`reason` tell a `gone` or a lost connection.
    case authChange(AuthChange)
    /// `setCredentials` was given nothing usable.
    case authError(KandyError)
    /// A subscribe/unsubscribe started or finished, or the platform ended the subscription.
    case subscriptionChange(SubscriptionChange)
    /// A periodic refresh ran.
    case subscriptionResub(Resubscription)
    case subscriptionError(KandyError)
    /// The notification channel opened, closed, or started a connection cycle.
    case wsChange
    /// A notification arrived on the channel: the whole `notificationMessage`.
    case notificationReceived(NotificationMessage)
    /// The platform dropped this many notifications while the socket was down (its queue was
    /// full); what followed them arrives next.
    case notificationsMissed(Int)
    /// A watched or fetched user's presence is known or changed.
    case presenceChange(UserPresence)
    /// Your own presence was published.
    case presenceSelfChange(PresenceState)
    /// Watching these users started.
    case presenceSubscribe([String])
    /// Watching these users stopped.
    case presenceUnsubscribe([String])
    case presenceError(KandyError)
    /// A message was sent or received.
    case messagesChange(InstantMessage)
    /// A send failed.
    case messagesError(KandyError)
    /// `make` started a call (its id).
    case callStart(String)
    /// A call came in (its id).
    case callReceive(String)
    /// A call's state changed; `transition` tells why it ended, `error` what failed.
    case callStateChange(CallStateChange)
    /// An operation on a call started or finished.
    case callOperation(CallOperationEvent)
    /// A contact was added to the address book.
    case contactsNew(Contact)
    /// The address book as known here changed (refreshed, fetched, updated, removed).
    case contactsChange
    case contactsError(KandyError)
    /// A directory search answered: the users found.
    case directoryChange([User])
    case directoryError(KandyError)
    /// A user's information was fetched (their id).
    case usersChange(String)
    case usersError(KandyError)
    /// The call history as known here changed.
    case callHistoryChange
    case callHistoryError(KandyError)

    public var name: Name {
        switch self {
        case .authChange: .authChange
        case .authError: .authError
        case .subscriptionChange: .subscriptionChange
        case .subscriptionResub: .subscriptionResub
        case .subscriptionError: .subscriptionError
        case .wsChange: .wsChange
        case .notificationReceived: .notificationReceived
        case .notificationsMissed: .notificationsMissed
        case .presenceChange: .presenceChange
        case .presenceSelfChange: .presenceSelfChange
        case .presenceSubscribe: .presenceSubscribe
        case .presenceUnsubscribe: .presenceUnsubscribe
        case .presenceError: .presenceError
        case .messagesChange: .messagesChange
        case .messagesError: .messagesError
        case .callStart: .callStart
        case .callReceive: .callReceive
        case .callStateChange: .callStateChange
        case .callOperation: .callOperation
        case .contactsNew: .contactsNew
        case .contactsChange: .contactsChange
        case .contactsError: .contactsError
        case .directoryChange: .directoryChange
        case .directoryError: .directoryError
        case .usersChange: .usersChange
        case .usersError: .usersError
        case .callHistoryChange: .callHistoryChange
        case .callHistoryError: .callHistoryError
        }
    }

    public enum Name: String, Sendable, Hashable, CaseIterable {
        case authChange = "auth:change"
        case authError = "auth:error"
        case subscriptionChange = "subscription:change"
        case subscriptionResub = "subscription:resub"
        case subscriptionError = "subscription:error"
        case wsChange = "ws:change"
        case notificationReceived = "notification:received"
        case notificationsMissed = "notifications:missed"
        case presenceChange = "presence:change"
        case presenceSelfChange = "presence:selfChange"
        case presenceSubscribe = "presence:subscribe"
        case presenceUnsubscribe = "presence:unsubscribe"
        case presenceError = "presence:error"
        case messagesChange = "messages:change"
        case messagesError = "messages:error"
        case callStart = "call:start"
        case callReceive = "call:receive"
        case callStateChange = "call:stateChange"
        case callOperation = "call:operation"
        case contactsNew = "contacts:new"
        case contactsChange = "contacts:change"
        case contactsError = "contacts:error"
        case directoryChange = "directory:change"
        case directoryError = "directory:error"
        case usersChange = "users:change"
        case usersError = "users:error"
        case callHistoryChange = "callHistory:change"
        case callHistoryError = "callHistory:error"
    }

    /// Why the subscription or credentials ended without being asked to (`disconnectReasons`).
    public enum Reason: String, Sendable, Equatable {
        case gone = "GONE"
        case lostConnection = "LOST_CONNECTION"
    }

    public struct AuthChange: Sendable, Equatable {
        public var forced: Bool
        public var reason: Reason?
        public init(forced: Bool = false, reason: Reason? = nil) {
            self.forced = forced
            self.reason = reason
        }
    }

    public struct SubscriptionChange: Sendable, Equatable {
        public var reason: Reason?
        public init(reason: Reason? = nil) { self.reason = reason }
    }

    public struct CallStateChange: Sendable, Equatable {
        public var callId: String
        public var previous: CallState
        public var state: CallState
        public var transition: CallTransition?
        public var error: KandyError?
    }

    public struct CallOperationEvent: Sendable, Equatable {
        public var callId: String
        public var operation: CallOperationKind
        /// `START` or `FINISH`.
        public var transition: String
        public var isLocal: Bool
        public var error: KandyError?
    }

    public struct Resubscription: Sendable, Equatable {
        public var attemptNum: Int
        public var isFailure: Bool
        public var error: KandyError?
        public init(attemptNum: Int, isFailure: Bool, error: KandyError? = nil) {
            self.attemptNum = attemptNum
            self.isFailure = isFailure
            self.error = error
        }
    }
}
