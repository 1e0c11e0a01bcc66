/// `{"subscribeRequest":{…}}`: the body of the subscribe POST and of the refresh/update PUT
/// (spec §5.2, §6.2).
public struct SubscribeRequestDocument: Codable, Sendable, Equatable {
    public var subscribeRequest: SubscribeRequest

    public init(subscribeRequest: SubscribeRequest) {
        self.subscribeRequest = subscribeRequest
    }
}

public struct SubscribeRequest: Codable, Sendable, Equatable {
    /// Requested lifetime in seconds; the platform may grant less (see `SubscriptionParams.expires`).
    public var expires: Int?
    public var service: [ServiceName]
    public var localization: String?
    public var useTurn: Bool?
    public var notificationType: String?
    public var supported: [String]?
    /// Sent by Kandy.js as the *string* `"true"` or `"false"`, and only in the POST.
    public var forceLogOut: ForceLogOut?

    public init(
        expires: Int? = nil,
        service: [ServiceName],
        localization: String? = "English_US",
        useTurn: Bool? = true,
        notificationType: String? = "WebSocket",
        supported: [String]? = nil,
        forceLogOut: ForceLogOut? = nil
    ) {
        self.expires = expires
        self.service = service
        self.localization = localization
        self.useTurn = useTurn
        self.notificationType = notificationType
        self.supported = supported
        self.forceLogOut = forceLogOut
    }
}

/// The `forceLogOut` flag, which travels as a JSON string (`"true"` / `"false"`), never a boolean.
public enum ForceLogOut: String, Codable, Sendable, Equatable {
    case `true`
    case `false`

    public init(_ value: Bool) { self = value ? .true : .false }

    public var isForced: Bool { self == .true }
}

/// `{"subscribeResponse":{…}}`: the answer to subscribe, refresh, update and unsubscribe, and the
/// envelope of their errors (spec §5.3, §5.5, §6.3, §7.3).
public struct SubscribeResponseDocument: Codable, Sendable, Equatable {
    public var subscribeResponse: SubscribeResponse

    public init(subscribeResponse: SubscribeResponse) {
        self.subscribeResponse = subscribeResponse
    }
}

public struct SubscribeResponse: Codable, Sendable, Equatable {
    public var statusCode: Int
    /// A readable explanation, present on errors.
    public var reason: String?
    /// Absolute path of the subscription resource: the target of later PUT and DELETE.
    public var subscription: String?
    public var subscriptionParams: SubscriptionParams?

    public init(
        statusCode: Int,
        reason: String? = nil,
        subscription: String? = nil,
        subscriptionParams: SubscriptionParams? = nil
    ) {
        self.statusCode = statusCode
        self.reason = reason
        self.subscription = subscription
        self.subscriptionParams = subscriptionParams
    }
}

public struct SubscriptionParams: Codable, Sendable, Equatable {
    /// The services granted, spelled as the client asked for them.
    public var service: [ServiceName]
    /// Absolute path of the WebSocket notification channel.
    public var notificationChannel: String
    /// Granted lifetime in seconds; the client refreshes at half of it.
    public var expires: Int
    public var turnCredentials: TurnCredentials?
    public var localization: String?
    public var useTurn: Bool?
    public var notificationType: String?

    public init(
        service: [ServiceName],
        notificationChannel: String,
        expires: Int,
        turnCredentials: TurnCredentials? = nil,
        localization: String? = nil,
        useTurn: Bool? = nil,
        notificationType: String? = nil
    ) {
        self.service = service
        self.notificationChannel = notificationChannel
        self.expires = expires
        self.turnCredentials = turnCredentials
        self.localization = localization
        self.useTurn = useTurn
        self.notificationType = notificationType
    }
}

/// TURN credentials handed out with a subscription (spec §1.4).
public struct TurnCredentials: Codable, Sendable, Equatable {
    public var username: String
    public var password: String

    public init(username: String, password: String) {
        self.username = username
        self.password = password
    }
}
