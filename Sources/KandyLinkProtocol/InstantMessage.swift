/// Instant message documents (spec §12.2).

/// `POST …/user/{u}/instantmessage` body: `{"imRequest":{"charset","toUrl","message","type"}}`.
public struct InstantMessageRequestDocument: Codable, Sendable, Equatable {
    public var imRequest: InstantMessageRequest

    public init(imRequest: InstantMessageRequest) { self.imRequest = imRequest }
}

public struct InstantMessageRequest: Codable, Sendable, Equatable {
    /// Kandy.js always sends `UTF-8`, the only one accepted.
    public var charset: String?
    /// The recipient's username, optionally as `sip:<username>`.
    public var toUrl: String
    public var message: String
    /// Kandy.js sends `A2`; not otherwise used.
    public var type: String?

    public init(toUrl: String, message: String, charset: String? = "UTF-8", type: String? = "A2") {
        self.charset = charset
        self.toUrl = toUrl
        self.message = message
        self.type = type
    }

    /// `toUrl` without a `sip:` scheme.
    public var recipient: String {
        toUrl.hasPrefix("sip:") ? String(toUrl.dropFirst(4)) : toUrl
    }
}

/// The answer to a send, and the envelope of its errors. Kandy.js counts a send as done only
/// when `messageId` is present.
public struct InstantMessageResponseDocument: Codable, Sendable, Equatable {
    public var imResponse: InstantMessageResponse

    public init(imResponse: InstantMessageResponse) { self.imResponse = imResponse }
}

public struct InstantMessageResponse: Codable, Sendable, Equatable {
    public var statusCode: Int
    public var reason: String?
    /// The message's id: also the `eventId` of the `IM` notification the recipient receives.
    public var messageId: String?

    public init(statusCode: Int, reason: String? = nil, messageId: String? = nil) {
        self.statusCode = statusCode
        self.reason = reason
        self.messageId = messageId
    }
}

/// `imnotificationParams`: a message for the channel's user.
public struct InstantMessageNotificationParams: Codable, Sendable, Equatable {
    public var msgText: String
    /// `sip:<sender>`; Kandy.js takes the sender from after `sip:`.
    public var primaryContact: String
    /// When the platform accepted the message, in milliseconds since 1970. Kandy.js ignores it
    /// and uses its own receive time.
    public var time: Int64?

    public init(msgText: String, sender: String, time: Int64?) {
        self.msgText = msgText
        self.primaryContact = "sip:" + sender
        self.time = time
    }

    /// The sender, as Kandy.js reads it: what follows `sip:`.
    public var sender: String? {
        guard let range = primaryContact.range(of: "sip:") else { return nil }
        return String(primaryContact[range.upperBound...])
    }
}
