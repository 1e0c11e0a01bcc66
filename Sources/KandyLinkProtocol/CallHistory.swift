/// Call history (Kandy.js 4.20's `call.history`): `GET …/user/{u}/logHistory?startIndex=&count=`,
/// `DELETE …/user/{u}/logRecord/{recordId}` and `DELETE …/user/{u}/logHistory`. The platform
/// writes one entry per party of every call that rang, as the call ends.

/// One call, from one party's side, as Kandy.js reads a `CallLog` item's `params`.
public struct CallLog: Codable, Sendable, Equatable, Hashable {
    /// `outgoing`, `incoming`, or `missed` (an incoming call that was not answered), as Kandy.js
    /// names directions in its own logs.
    public enum Direction: String, Codable, Sendable {
        case outgoing, incoming, missed
    }

    /// How the call went for this party.
    public enum Outcome: String, Codable, Sendable, CaseIterable {
        case answered
        /// Nobody answered: the ring timed out, the caller cancelled (the callee's entry), or a
        /// party left.
        case missed
        case rejected
        /// The caller gave up before an answer (the caller's entry).
        case cancelled
    }

    public var recordId: String
    public var direction: Direction
    public var disposition: Outcome
    /// When the call began ringing, in milliseconds since 1970, as a string (Kandy.js compares
    /// it with its own logs' string times).
    public var startTime: String
    /// Milliseconds from the answer to the end; "0" for a call never answered.
    public var duration: String
    public var callerName: String
    public var callerDisplayNumber: String
    public var calleeName: String
    public var calleeDisplayNumber: String
    /// The record's path, for `DELETE`; Kandy.js tells server logs from its own by it being set.
    public var resourceLocation: String

    public init(
        recordId: String, direction: Direction, disposition: Outcome, startTime: String, duration: String,
        callerName: String, callerDisplayNumber: String, calleeName: String, calleeDisplayNumber: String,
        resourceLocation: String
    ) {
        self.recordId = recordId
        self.direction = direction
        self.disposition = disposition
        self.startTime = startTime
        self.duration = duration
        self.callerName = callerName
        self.callerDisplayNumber = callerDisplayNumber
        self.calleeName = calleeName
        self.calleeDisplayNumber = calleeDisplayNumber
        self.resourceLocation = resourceLocation
    }

    /// The other party: the callee of an outgoing call, the caller otherwise.
    public var remoteName: String { direction == .outgoing ? calleeName : callerName }
    public var remoteDisplayNumber: String { direction == .outgoing ? calleeDisplayNumber : callerDisplayNumber }
}

/// `{"type":"CallLog","params":{…}}`: how `logItems` wraps each entry.
public struct CallLogItem: Codable, Sendable, Equatable {
    public var type: String
    public var params: CallLog

    public init(_ log: CallLog) {
        self.type = Self.callLog
        self.params = log
    }

    public static let callLog = "CallLog"
}

/// The answer to a fetch (and to a clear), and the envelope of their errors.
public struct LogHistoryDocument: Codable, Sendable, Equatable {
    public var logHistory: LogHistory

    public init(logHistory: LogHistory) { self.logHistory = logHistory }
}

public struct LogHistory: Codable, Sendable, Equatable {
    public var statusCode: Int
    public var reason: String?
    /// Newest first.
    public var logItems: [CallLogItem]?

    public init(statusCode: Int, reason: String? = nil, logItems: [CallLogItem]? = nil) {
        self.statusCode = statusCode
        self.reason = reason
        self.logItems = logItems
    }
}

/// The answer to removing one entry, and the envelope of its errors.
public struct LogRecordDocument: Codable, Sendable, Equatable {
    public var logRecord: ResponseStatus

    public init(logRecord: ResponseStatus) { self.logRecord = logRecord }
}

/// The codes Kandy.js gives a meaning in call-history answers: 37 is a bad request
/// (`callHistory:2`), 42 an unknown record (`callHistory:3`).
public enum CallHistoryStatusCode: Int, Sendable, Codable {
    case invalidRequest = 37
    case recordNotFound = 42

    public var httpStatus: Int {
        switch self {
        case .invalidRequest: 400
        case .recordNotFound: 404
        }
    }

    public var reason: String {
        switch self {
        case .invalidRequest: "startIndex and count must be whole numbers, count at most 200."
        case .recordNotFound: "No such call log record."
        }
    }

    /// Most entries returned by one fetch.
    public static let maxCount = 200
}
