/// Presence documents (spec §12.1): a user publishes a status and an activity; watchers learn of
/// changes through `presenceWatcher` notifications.

/// `open` or `closed`. Any other value is refused by the platform and by the SDK before sending.
public struct PresenceStatus: RawRepresentable, Hashable, Sendable, Codable, CustomStringConvertible,
    ExpressibleByStringLiteral
{
    public let rawValue: String

    public init(rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { self.rawValue = value }

    public var description: String { rawValue }

    public static let open: PresenceStatus = "open"
    public static let closed: PresenceStatus = "closed"

    public static let all: [PresenceStatus] = [.open, .closed]

    public var isKnown: Bool { Self.all.contains(self) }
}

/// What a user is doing, from the fixed list Kandy.js offers (`presence.activities`).
public struct PresenceActivity: RawRepresentable, Hashable, Sendable, Codable, CustomStringConvertible,
    ExpressibleByStringLiteral
{
    public let rawValue: String

    public init(rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { self.rawValue = value }

    public var description: String { rawValue }

    public static let active: PresenceActivity = "active"
    public static let idle: PresenceActivity = "idle"
    public static let away: PresenceActivity = "away"
    public static let lunch: PresenceActivity = "lunch"
    public static let other: PresenceActivity = "other"
    public static let busy: PresenceActivity = "busy"
    public static let vacation: PresenceActivity = "vacation"
    public static let onThePhone: PresenceActivity = "on-the-phone"
    public static let unknown: PresenceActivity = "unknown"

    public static let all: [PresenceActivity] = [
        .active, .idle, .away, .lunch, .other, .busy, .vacation, .onThePhone, .unknown,
    ]

    public var isKnown: Bool { Self.all.contains(self) }
}

/// One user's presence as published.
public struct PresenceState: Codable, Sendable, Equatable {
    public var status: PresenceStatus
    public var activity: PresenceActivity
    /// Free text; Kandy.js sends it only when non-empty.
    public var note: String?

    public init(status: PresenceStatus, activity: PresenceActivity, note: String? = nil) {
        self.status = status
        self.activity = activity
        self.note = note
    }

    /// What a user who never published, or whose last session ended, shows.
    public static let offline = PresenceState(status: .closed, activity: .unknown)
}

/// `POST …/user/{u}/presence` body: `{"presenceRequest":{"status","activity","note"?}}`.
public struct PresenceRequestDocument: Codable, Sendable, Equatable {
    public var presenceRequest: PresenceState

    public init(presenceRequest: PresenceState) { self.presenceRequest = presenceRequest }
}

/// `{"statusCode":N,"reason":"…"}` inside an endpoint's own envelope; Kandy.js reads `statusCode`.
public struct ResponseStatus: Codable, Sendable, Equatable {
    public var statusCode: Int
    public var reason: String?

    public init(statusCode: Int, reason: String? = nil) {
        self.statusCode = statusCode
        self.reason = reason
    }

    public static let success = ResponseStatus(statusCode: 0)
}

/// The answer to a presence update, and the envelope of its errors.
public struct PresenceResponseDocument: Codable, Sendable, Equatable {
    public var presenceResponse: ResponseStatus

    public init(presenceResponse: ResponseStatus) { self.presenceResponse = presenceResponse }
}

/// What a watcher asks of `userList`.
public enum PresenceWatcherAction: String, Codable, Sendable, CaseIterable {
    /// Notify me of every change (the current presence comes at once).
    case watch
    /// Stop notifying me.
    case stopwatch
    /// Tell me once, in the answer.
    case get
}

/// `POST …/user/{u}/presenceWatcher` body.
public struct PresenceWatcherRequestDocument: Codable, Sendable, Equatable {
    public var presenceWatcherRequest: PresenceWatcherRequest

    public init(presenceWatcherRequest: PresenceWatcherRequest) {
        self.presenceWatcherRequest = presenceWatcherRequest
    }
}

public struct PresenceWatcherRequest: Codable, Sendable, Equatable {
    public var userList: [String]
    public var action: PresenceWatcherAction

    public init(userList: [String], action: PresenceWatcherAction) {
        self.userList = userList
        self.action = action
    }
}

/// The answer to a watcher request. For `get` the presences come in a **top-level**
/// `presenceContact` list, the only place Kandy.js reads them from.
public struct PresenceWatcherResponseDocument: Codable, Sendable, Equatable {
    public var presenceWatcherResponse: ResponseStatus
    public var presenceContact: [PresenceContact]?
    /// The users a watch or stopwatch was about. Kandy.js reports `presence:unsubscribe` with the
    /// `userIds` it finds here (for `watch` it fills them in itself).
    public var presentityUserId: [String]?

    public init(
        presenceWatcherResponse: ResponseStatus, presenceContact: [PresenceContact]? = nil,
        presentityUserId: [String]? = nil
    ) {
        self.presenceWatcherResponse = presenceWatcherResponse
        self.presenceContact = presenceContact
        self.presentityUserId = presentityUserId
    }
}

/// One user's presence in the PIDF-like shape of a `get` answer:
/// `{"presentityUserId","presence":{"person":{"activities":{"activityValue","other"},
/// "overriding-willingness":{"overridingWillingnessValue"}}}}`.
public struct PresenceContact: Codable, Sendable, Equatable {
    public var presentityUserId: String
    public var presence: Presence

    public init(user: String, state: PresenceState) {
        presentityUserId = user
        presence = Presence(
            person: .init(
                activities: .init(activityValue: state.activity, other: state.note),
                overridingWillingness: .init(overridingWillingnessValue: state.status)))
    }

    public var state: PresenceState {
        PresenceState(
            status: presence.person.overridingWillingness.overridingWillingnessValue,
            activity: presence.person.activities.activityValue, note: presence.person.activities.other)
    }

    public struct Presence: Codable, Sendable, Equatable {
        public var person: Person
    }

    public struct Person: Codable, Sendable, Equatable {
        public var activities: Activities
        public var overridingWillingness: Willingness

        enum CodingKeys: String, CodingKey {
            case activities
            case overridingWillingness = "overriding-willingness"
        }
    }

    public struct Activities: Codable, Sendable, Equatable {
        public var activityValue: PresenceActivity
        /// The note.
        public var other: String?
    }

    public struct Willingness: Codable, Sendable, Equatable {
        public var overridingWillingnessValue: PresenceStatus
    }
}

/// `presenceWatcherNotificationParams`: a watched user's presence changed.
public struct PresenceNotificationParams: Codable, Sendable, Equatable {
    /// The user whose presence this is.
    public var name: String
    public var status: PresenceStatus
    public var activity: PresenceActivity
    public var note: String?

    public init(name: String, state: PresenceState) {
        self.name = name
        self.status = state.status
        self.activity = state.activity
        self.note = state.note
    }

    public var state: PresenceState { PresenceState(status: status, activity: activity, note: note) }
}
