/// An answer document whose envelope carries the statusCode: which field of each endpoint's
/// answer that is, for a client that reads a failed request's code where Kandy.js reads it.
public protocol StatusEnvelope: Decodable, Sendable {
    var status: ResponseStatus { get }
}

extension SubscribeResponseDocument: StatusEnvelope {
    public var status: ResponseStatus {
        ResponseStatus(statusCode: subscribeResponse.statusCode, reason: subscribeResponse.reason)
    }
}

extension PresenceResponseDocument: StatusEnvelope {
    public var status: ResponseStatus { presenceResponse }
}

extension PresenceWatcherResponseDocument: StatusEnvelope {
    public var status: ResponseStatus { presenceWatcherResponse }
}

extension CallControlResponseDocument: StatusEnvelope {
    public var status: ResponseStatus {
        ResponseStatus(statusCode: callControlResponse.statusCode, reason: callControlResponse.reason)
    }
}

extension AddressBookResponseDocument: StatusEnvelope {
    public var status: ResponseStatus {
        ResponseStatus(statusCode: addressBookResponse.statusCode, reason: addressBookResponse.reason)
    }
}

extension DirectoryResponseDocument: StatusEnvelope {
    public var status: ResponseStatus { ResponseStatus(statusCode: directory.statusCode, reason: directory.reason) }
}

extension UserProfileDataDocument: StatusEnvelope {
    public var status: ResponseStatus {
        ResponseStatus(statusCode: userProfileData.statusCode, reason: userProfileData.reason)
    }
}

extension LogHistoryDocument: StatusEnvelope {
    public var status: ResponseStatus { ResponseStatus(statusCode: logHistory.statusCode, reason: logHistory.reason) }
}

extension LogRecordDocument: StatusEnvelope {
    public var status: ResponseStatus { logRecord }
}

/// The locale has no envelope: an answer is a success.
extension LocalizationDocument: StatusEnvelope {
    public var status: ResponseStatus { .success }
}

extension InstantMessageResponseDocument: StatusEnvelope {
    public var status: ResponseStatus { ResponseStatus(statusCode: imResponse.statusCode, reason: imResponse.reason) }
}
