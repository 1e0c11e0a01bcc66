import Foundation

/// Call signalling (call-protocol.md): the REST documents of `…/callControl`,
/// `…/callControl/callSessions/{id}` and `…/calldisposition`, and the parts of a notification
/// that carry a call. The platform relays SDP as it comes; media never passes through it.

/// `{"callControlRequest":{…}}`: the body of every `callControl` request.
public struct CallControlRequestDocument: Codable, Sendable, Equatable {
    public var callControlRequest: CallControlRequest

    public init(callControlRequest: CallControlRequest) {
        self.callControlRequest = callControlRequest
    }
}

public struct CallControlRequest: Codable, Sendable, Equatable {
    public var type: CallControlType
    /// `callStart`: the callee, as `sip:bob@example.com` (§2.3).
    public var to: String?
    /// `callStart`: the caller, `sip:alice@…` or `Alice<sip:alice@…>`.
    public var from: String?
    /// An offer (`callStart`, `startCallUpdate`) or an answer (`callAnswer`, `respondCallUpdate`).
    public var sdp: String?
    /// `["earlymedia"]` when the caller accepts early media.
    public var supported: [String]?
    public var customParameters: [CustomParameter]?
    /// `transfer` (consultative): the other call.
    public var sessionData: String?
    /// `transfer`: where to.
    public var address: String?

    public init(
        type: CallControlType, to: String? = nil, from: String? = nil, sdp: String? = nil,
        supported: [String]? = nil, customParameters: [CustomParameter]? = nil, sessionData: String? = nil,
        address: String? = nil
    ) {
        self.type = type
        self.to = to
        self.from = from
        self.sdp = sdp
        self.supported = supported
        self.customParameters = customParameters
        self.sessionData = sessionData
        self.address = address
    }
}

/// What a `callControl` request asks for. Open: a type this platform does not know is decoded
/// and then refused, rather than failing the whole body.
public struct CallControlType: RawRepresentable, Hashable, Sendable, Codable, ExpressibleByStringLiteral {
    public let rawValue: String

    public init(rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { self.rawValue = value }

    public static let callStart: CallControlType = "callStart"
    public static let ringing: CallControlType = "ringing"
    public static let callAnswer: CallControlType = "callAnswer"
    public static let startCallUpdate: CallControlType = "startCallUpdate"
    public static let respondCallUpdate: CallControlType = "respondCallUpdate"
    public static let audit: CallControlType = "audit"
    public static let sendCustomHeaders: CallControlType = "sendCustomHeaders"
    public static let transfer: CallControlType = "transfer"
    public static let join: CallControlType = "join"

    public init(from decoder: any Decoder) throws {
        rawValue = try decoder.singleValueContainer().decode(String.self)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
}

/// `{name, value}`: meant as a SIP header; relayed into the matching notification.
public struct CustomParameter: Codable, Sendable, Equatable {
    public var name: String
    public var value: String

    public init(name: String, value: String) {
        self.name = name
        self.value = value
    }
}

/// `{"callControlResponse":{…}}`: the answer to every `callControl` request, errors included.
/// Kandy.js reads only `sessionData` (of `callStart`) and `state` (of a GET) on success, and
/// `statusCode` on failure.
public struct CallControlResponseDocument: Codable, Sendable, Equatable {
    public var callControlResponse: CallControlResponse

    public init(callControlResponse: CallControlResponse) {
        self.callControlResponse = callControlResponse
    }
}

public struct CallControlResponse: Codable, Sendable, Equatable {
    public var statusCode: Int
    public var reason: String?
    /// `callStart`: the call session's id, which every later request and notification names.
    public var sessionData: String?
    /// GET: `RINGING` or `ANSWERED`.
    public var state: String?

    public init(statusCode: Int, reason: String? = nil, sessionData: String? = nil, state: String? = nil) {
        self.statusCode = statusCode
        self.reason = reason
        self.sessionData = sessionData
        self.state = state
    }
}

/// `{"callDispositionRequest":{"action":"reject","sessionData":"{id}"}}`.
public struct CallDispositionRequestDocument: Codable, Sendable, Equatable {
    public var callDispositionRequest: CallDispositionRequest

    public init(callDispositionRequest: CallDispositionRequest) {
        self.callDispositionRequest = callDispositionRequest
    }
}

public struct CallDispositionRequest: Codable, Sendable, Equatable {
    /// `reject` or `forward`.
    public var action: String
    public var sessionData: String
    /// `forward`: where to.
    public var address: String?

    public init(action: String, sessionData: String, address: String? = nil) {
        self.action = action
        self.sessionData = sessionData
        self.address = address
    }

    public static let reject = "reject"
    public static let forward = "forward"
}

public struct CallDispositionResponseDocument: Codable, Sendable, Equatable {
    public var callDispositionResponse: ResponseStatus

    public init(callDispositionResponse: ResponseStatus) {
        self.callDispositionResponse = callDispositionResponse
    }
}

/// The call's part of a call notification; Kandy.js reads it on every call eventType.
public struct SessionParams: Codable, Sendable, Equatable {
    public var sessionData: String
    public var sdp: String?
    /// `callEnd`: why (0 is a plain hang-up and is not shown).
    public var statusCode: Int?
    public var reasonText: String?

    public init(sessionData: String, sdp: String? = nil, statusCode: Int? = nil, reasonText: String? = nil) {
        self.sessionData = sessionData
        self.sdp = sdp
        self.statusCode = statusCode
        self.reasonText = reasonText
    }
}

/// The other party: `caller…` to the callee, `remote…` to the caller (§3.3).
public struct CallNotificationParams: Codable, Sendable, Equatable {
    public var callerName: String?
    public var callerDisplayNumber: String?
    public var calleeDisplayNumber: String?
    public var remoteName: String?
    public var remoteDisplayNumber: String?

    public init(
        callerName: String? = nil, callerDisplayNumber: String? = nil, calleeDisplayNumber: String? = nil,
        remoteName: String? = nil, remoteDisplayNumber: String? = nil
    ) {
        self.callerName = callerName
        self.callerDisplayNumber = callerDisplayNumber
        self.calleeDisplayNumber = calleeDisplayNumber
        self.remoteName = remoteName
        self.remoteDisplayNumber = remoteDisplayNumber
    }
}

/// The `statusCode` vocabulary of calls, SIP's where SIP has one: why a call request failed (in
/// `callControlResponse`) and why a call ended (in `callEnd`). Two values mean something to
/// Kandy.js itself: 42 on an audit and 47 on a GET ("this session no longer exists").
public enum CallStatusCode: Int, Sendable, CaseIterable, Codable {
    /// A plain hang-up.
    case ended = 0
    /// The session is unknown, ended, or not the user's (an audit then ends the call).
    case sessionNotFound = 42
    /// The same, answering a GET of the session.
    case sessionStateNotFound = 47
    /// The callee is not a user of the platform.
    case unknownCallee = 404
    /// Nobody answered in time.
    case noAnswer = 408
    /// The other party has no session that takes calls (offline, or its last one ended).
    case unavailable = 480
    /// The callee is in another call.
    case busy = 486
    /// Both sides renegotiated at once; this offer lost (§4.8).
    case glare = 491
    /// The callee rejected the call.
    case declined = 603

    /// The HTTP status of a request that failed with this code.
    public var httpStatus: Int {
        switch self {
        case .ended: 200
        case .sessionNotFound, .sessionStateNotFound, .unknownCallee: 404
        case .noAnswer: 408
        case .unavailable, .busy, .declined: 409
        case .glare: 409
        }
    }

    /// What a person is told, in a failed request's `reason` or a `callEnd`'s `reasonText`.
    public var reason: String {
        switch self {
        case .ended: "Call ended by the remote party"
        case .sessionNotFound, .sessionStateNotFound: "No such call session: unknown, ended or another user's."
        case .unknownCallee: "Unknown callee"
        case .noAnswer: "No answer"
        case .unavailable: "Remote party not available"
        case .busy: "Busy here"
        case .glare: "The other party is renegotiating the call; retry."
        case .declined: "Declined"
        }
    }
}

/// SIP-style addresses as Kandy.js writes them (§2.3).
public enum CallAddress {
    /// The username an address names: `Alice<sip:alice@example.com;tag=1>` → `alice@example.com`.
    /// Nil when nothing is left.
    public static func username(_ address: String) -> String? {
        var text = Substring(address)
        if let open = text.lastIndex(of: "<"), let close = text[open...].firstIndex(of: ">") {
            text = text[text.index(after: open)..<close]
        }
        text = text.drop { $0 == " " }
        for scheme in ["sip:", "sips:", "tel:"] where text.lowercased().hasPrefix(scheme) {
            text = text.dropFirst(scheme.count)
            break
        }
        if let parameters = text.firstIndex(of: ";") { text = text[..<parameters] }
        let user = text.trimmingCharacters(in: .whitespaces)
        return user.isEmpty ? nil : user
    }

    /// The display name before `<…>`, if any: `Alice<sip:alice@…>` → `Alice`.
    public static func displayName(_ address: String) -> String? {
        guard let open = address.firstIndex(of: "<") else { return nil }
        let name = address[..<open].trimmingCharacters(in: .whitespaces)
            .trimmingCharacters(in: CharacterSet(charactersIn: "\""))
        return name.isEmpty ? nil : name
    }

    /// `alice@example.com` → `sip:alice@example.com`.
    public static func sip(_ username: String) -> String { "sip:" + username }
}
