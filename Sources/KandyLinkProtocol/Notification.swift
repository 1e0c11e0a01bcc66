/// `{"notificationMessage":{…}}`: the only shape a platform may push on a notification channel
/// (spec §4.5). Anything else restarts the Kandy.js notification processor.
public struct NotificationDocument: Codable, Sendable, Equatable {
    public var notificationMessage: NotificationMessage

    public init(notificationMessage: NotificationMessage) {
        self.notificationMessage = notificationMessage
    }

    /// The one place `"eventId":"` occurs in a notification's text: no other object in it has
    /// that key, and a quote inside a string value is always escaped.
    private static let eventIDKey: StaticString = #""eventId":""#

    /// A notification's text under another eventId, without decoding and encoding it again (a
    /// notification that finds a later one already on its channel is sent under a fresh id).
    /// Nil for a text that is not a notification.
    public static func restamped(_ text: String, eventID: String) -> String? {
        var text = text
        var eventID = eventID
        return text.withUTF8 { bytes -> String? in
            let key = UnsafeBufferPointer(start: eventIDKey.utf8Start, count: eventIDKey.utf8CodeUnitCount)
            guard let valueStart = end(of: key, in: bytes),
                let valueEnd = bytes[valueStart...].firstIndex(of: UInt8(ascii: "\""))
            else { return nil }
            return eventID.withUTF8 { id in
                let count = valueStart + id.count + (bytes.count - valueEnd)
                return String(unsafeUninitializedCapacity: count) { output in
                    var at = output.initialize(fromContentsOf: bytes[..<valueStart])
                    at = output[at...].initialize(fromContentsOf: id)
                    return output[at...].initialize(fromContentsOf: bytes[valueEnd...])
                }
            }
        }
    }

    /// Where the first occurrence of `key` in `bytes` ends. By hand: `firstRange(of:)` on a buffer
    /// of bytes resolves to Foundation's generic DataProtocol search, hundreds of allocations.
    private static func end(of key: UnsafeBufferPointer<UInt8>, in bytes: UnsafeBufferPointer<UInt8>) -> Int? {
        guard let first = key.first, bytes.count >= key.count else { return nil }
        var index = 0
        while index <= bytes.count - key.count {
            if bytes[index] == first, UnsafeBufferPointer(rebasing: bytes[index..<index + key.count]).elementsEqual(key)
            {
                return index + key.count
            }
            index += 1
        }
        return nil
    }
}

public struct NotificationMessage: Codable, Sendable, Equatable {
    public var eventType: NotificationEventType
    /// Unique per notification; Kandy.js drops any id it saw among the last 100.
    public var eventId: String
    /// With `presenceWatcher`.
    public var presenceWatcherNotificationParams: PresenceNotificationParams?
    /// With `IM`.
    public var imnotificationParams: InstantMessageNotificationParams?
    /// With `missedNotifications`.
    public var missedNotificationsParams: MissedNotificationsParams?
    /// With every call eventType: which call, and its SDP or end.
    public var sessionParams: SessionParams?
    /// With call eventTypes: the other party.
    public var callNotificationParams: CallNotificationParams?
    /// With call eventTypes: the other party's custom parameters, relayed.
    public var customParameters: [CustomParameter]?

    public init(
        eventType: NotificationEventType, eventId: String,
        presenceWatcherNotificationParams: PresenceNotificationParams? = nil,
        imnotificationParams: InstantMessageNotificationParams? = nil,
        missedNotificationsParams: MissedNotificationsParams? = nil,
        sessionParams: SessionParams? = nil,
        callNotificationParams: CallNotificationParams? = nil,
        customParameters: [CustomParameter]? = nil
    ) {
        self.eventType = eventType
        self.eventId = eventId
        self.presenceWatcherNotificationParams = presenceWatcherNotificationParams
        self.imnotificationParams = imnotificationParams
        self.missedNotificationsParams = missedNotificationsParams
        self.sessionParams = sessionParams
        self.callNotificationParams = callNotificationParams
        self.customParameters = customParameters
    }

    /// The platform ended the subscription; the client forgets its credentials (spec §4.6).
    public static func gone(eventId: String) -> NotificationMessage {
        NotificationMessage(eventType: .gone, eventId: eventId)
    }

    /// Stands where `count` notifications were dropped from a full queue while the socket was
    /// down. Its eventId is the newest dropped one's, so it sorts before those that were kept.
    public static func missed(eventId: String, count: Int) -> NotificationMessage {
        NotificationMessage(
            eventType: .missedNotifications, eventId: eventId, missedNotificationsParams: .init(count: count))
    }

    /// A watched user's presence (spec §12.1).
    public static func presence(eventId: String, user: String, state: PresenceState) -> NotificationMessage {
        NotificationMessage(
            eventType: .presenceWatcher, eventId: eventId,
            presenceWatcherNotificationParams: PresenceNotificationParams(name: user, state: state))
    }

    /// A message for the channel's user; Kandy.js uses the eventId as the message's id (spec §12.2).
    public static func instantMessage(eventId: String, from sender: String, text: String, time: Int64?)
        -> NotificationMessage
    {
        NotificationMessage(
            eventType: .im, eventId: eventId,
            imnotificationParams: InstantMessageNotificationParams(msgText: text, sender: sender, time: time))
    }
}

public struct NotificationEventType: RawRepresentable, Hashable, Sendable, Codable, ExpressibleByStringLiteral {
    public let rawValue: String

    public init(rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { self.rawValue = value }

    public static let gone: NotificationEventType = "gone"
    public static let presenceWatcher: NotificationEventType = "presenceWatcher"
    public static let im: NotificationEventType = "IM"
    /// Ours: notifications were dropped while the socket was down. Kandy.js emits
    /// `notification:received` for it and otherwise ignores it.
    public static let missedNotifications: NotificationEventType = "missedNotifications"

    /// To the callee: a new call, with the caller's offer.
    public static let call: NotificationEventType = "call"
    /// To the caller: the callee's device rings.
    public static let ringing: NotificationEventType = "ringing"
    /// An offer (hold, unhold, media change) from the other party.
    public static let startCallUpdate: NotificationEventType = "startCallUpdate"
    /// The answer to an offer; to the caller, the answer to its call.
    public static let respondCallUpdate: NotificationEventType = "respondCallUpdate"
    /// The other party ended the call, or the platform did.
    public static let callEnd: NotificationEventType = "callEnd"
    /// To the callee: the call stopped ringing here (cancelled, or taken on another device).
    public static let callCancel: NotificationEventType = "callCancel"
    /// To the caller: early media (a provisional answer). Never sent by this platform.
    public static let sessionProgress: NotificationEventType = "sessionProgress"
}

extension NotificationMessage {
    /// A call notification of `type` for `session`.
    public static func call(
        _ type: NotificationEventType, eventId: String, session: SessionParams,
        party: CallNotificationParams? = nil, customParameters: [CustomParameter]? = nil
    ) -> NotificationMessage {
        NotificationMessage(
            eventType: type, eventId: eventId, sessionParams: session, callNotificationParams: party,
            customParameters: customParameters)
    }
}

public struct MissedNotificationsParams: Codable, Sendable, Equatable {
    /// How many notifications were dropped.
    public var count: Int

    public init(count: Int) { self.count = count }
}

/// The keepalive a Link client sends on its channel: `{"message_type":"ping"}` (spec §4.3).
/// A platform must never answer it.
public struct KeepaliveMessage: Codable, Sendable, Equatable {
    public var messageType: String

    public init() { self.messageType = "ping" }

    enum CodingKeys: String, CodingKey {
        case messageType = "message_type"
    }

    public static let text = #"{"message_type":"ping"}"#
}
