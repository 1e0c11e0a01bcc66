import Foundation
import HTTPTypes
import Hummingbird
import KandyLinkProtocol
import Logging
import NIOCore
import NIOHTTP1

/// Request context carrying the client address, which login throttling keys on.
public struct PlatformRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public let remoteAddress: String

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        remoteAddress = source.channel.remoteAddress?.ipAddress ?? "unknown"
    }
}

/// The platform's HTTP side: CORS, the subscription endpoints, `/metrics` and `/health`.
///
/// Paths are parsed by ``LinkRoute`` rather than a router, so the username segment is decoded
/// exactly once and traversal or malformed encoding is refused with a JSON error. Every response,
/// errors included, carries `Access-Control-Allow-Origin` (spec §3.3).
struct LinkResponder: HTTPResponder {
    typealias Context = PlatformRequestContext

    let authenticator: Authenticator
    let subscriptions: SubscriptionService
    let presence: PresenceService
    let messages: InstantMessageService
    let calls: CallService
    let addressBook: AddressBookService
    let directory: DirectoryService
    let callHistory: CallHistoryService
    /// Whether the database is reachable, and the count of calls for `/metrics`.
    let store: any PlatformStore
    /// The open channels, for `/metrics`.
    let hub: NotificationHub
    let metrics: PlatformMetrics
    /// Body limits and timeouts.
    let configuration: PlatformConfiguration
    let logger: Logger

    func respond(to request: Request, context: Context) async throws -> Response {
        let target = request.head.path ?? "/"
        let path = String(LinkRoute.path(of: target))
        var response: Response
        do {
            response = try await route(request, path: path, context: context)
        } catch let error as PlatformError {
            response = Self.errorResponse(error, path: path)
            // Rather than read, to discard it, whatever the client still sends.
            if error.endsConnection { response.headers[.connection] = "close" }
        } catch  where isDatabaseUnavailability(error) {
            logger.warning("Request failed: the database is unavailable", metadata: ["error": "\(error)"])
            response = Self.errorResponse(Self.databaseUnavailable, path: path)
        } catch {
            logger.error("Request failed", metadata: ["error": "\(error)"])
            response = Self.errorResponse(PlatformError(.internalError), path: path)
        }
        response.headers[.accessControlAllowOrigin] = CrossOrigin.allowOrigin(for: request.headers[.origin])
        response.headers[values: .vary] = ["Origin"]
        metrics.countRequest(status: response.status.code)
        return response
    }

    static let databaseUnavailable = PlatformError(
        .unavailable, "The platform cannot reach its database; try again shortly.")

    private func route(_ request: Request, path: String, context: Context) async throws -> Response {
        if request.method == .options {
            guard path.hasPrefix("/rest/") else { throw PlatformError(.notFound, "No such resource: \(path)") }
            return Self.preflight(request)
        }
        // While the database is known to be away, answering at once beats queueing for it (a load
        // balancer's health check sees it too).
        guard store.isReachable else { throw Self.databaseUnavailable }
        switch path {
        case "/metrics":
            guard request.method == .get else { throw Self.methodNotAllowed(request, allowed: "GET") }
            let text = metrics.render(
                subscriptionCount: try await subscriptions.count(), channelCount: hub.count,
                callCount: try await store.callCount())
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                body: .init(byteBuffer: ByteBuffer(string: text)))
        case "/health":
            return try Self.json(StatusDocument(statusCode: 0, reason: "Serving."), status: .ok)
        default:
            break
        }

        let route: LinkRoute
        do {
            route = try LinkRoute.parse(path)
        } catch .invalidUser {
            throw PlatformError(.invalidPath, "The username segment of the path is malformed or too long.")
        } catch .unsupportedVersion {
            throw PlatformError(.notFound, "Only REST version \(LinkPath.version) is served.")
        } catch .invalidContactID {
            throw PlatformError(
                .invalidPath,
                "The contact id segment must be 1–\(Contact.maxContactIDBytes) bytes without '/', '\\' or control characters."
            )
        } catch {
            throw PlatformError(.notFound, "No such resource: \(path)")
        }

        switch (route, request.method) {
        case (.subscriptions(let user), .post):
            try await authorize(request, user: user, context: context)
            return try await subscribe(request, user: user)
        case (.subscription(let user, let id), .put):
            try await authorize(request, user: user, context: context)
            return try await refresh(request, user: user, id: id)
        case (.subscription(let user, let id), .delete):
            try await authorize(request, user: user, context: context)
            return try await unsubscribe(user: user, id: id)
        case (.presence(let user), .post):
            try await authorize(request, user: user, context: context)
            let body = try await decode(request, as: PresenceRequestDocument.self)
            try await presence.update(of: user, to: body.presenceRequest)
            return try Self.json(PresenceResponseDocument(presenceResponse: .success), status: .ok)
        case (.presenceWatcher(let user), .post):
            try await authorize(request, user: user, context: context)
            let body = try await decode(request, as: PresenceWatcherRequestDocument.self)
            let request = body.presenceWatcherRequest
            let contacts = try await presence.watcher(request, by: user)
            return try Self.json(
                PresenceWatcherResponseDocument(
                    presenceWatcherResponse: .success, presenceContact: contacts,
                    presentityUserId: request.action == .get ? nil : request.userList),
                status: .ok)
        case (.instantMessage(let user), .post):
            try await authorize(request, user: user, context: context)
            let body = try await decode(request, as: InstantMessageRequestDocument.self)
            let messageID = try await messages.send(body.imRequest, from: user)
            return try Self.json(
                InstantMessageResponseDocument(imResponse: .init(statusCode: 0, messageId: messageID)), status: .ok)
        case (.callControl(let user), .post):
            try await authorize(request, user: user, context: context)
            let body = try await decodeCall(request, as: CallControlRequestDocument.self)
            let id = try await calls.start(body.callControlRequest, by: user)
            return try Self.json(
                CallControlResponseDocument(callControlResponse: .init(statusCode: 0, sessionData: id)), status: .ok)
        case (.callSession(let user, let id), .put):
            try await authorize(request, user: user, context: context)
            let body = try await decodeCall(request, as: CallControlRequestDocument.self)
            try await calls.update(body.callControlRequest, session: id, by: user)
            return try Self.json(CallControlResponseDocument(callControlResponse: .init(statusCode: 0)), status: .ok)
        case (.callSession(let user, let id), .get):
            try await authorize(request, user: user, context: context)
            let state = try await calls.state(session: id, of: user)
            return try Self.json(
                CallControlResponseDocument(callControlResponse: .init(statusCode: 0, state: state)), status: .ok)
        case (.callSession(let user, let id), .delete):
            try await authorize(request, user: user, context: context)
            try await calls.end(session: id, by: user)
            return try Self.json(CallControlResponseDocument(callControlResponse: .init(statusCode: 0)), status: .ok)
        case (.callDisposition(let user), .post):
            try await authorize(request, user: user, context: context)
            let body = try await decodeCall(request, as: CallDispositionRequestDocument.self)
            try await calls.dispose(body.callDispositionRequest, by: user)
            return try Self.json(CallDispositionResponseDocument(callDispositionResponse: .success), status: .ok)
        case (.addressBook(let user), .get):
            try await authorize(request, user: user, context: context)
            let contacts = try await addressBook.contacts(of: user)
            return try Self.json(Self.addressBook(contacts), status: .ok)
        case (.contacts(let user), .post):
            try await authorize(request, user: user, context: context)
            let body = try await decode(request, as: AddressBookRequestDocument.self)
            let contact = try await addressBook.add(body.addressBookRequest, by: user)
            return try Self.json(Self.addressBook([contact]), status: .ok)
        case (.contact(let user, let id), .get):
            try await authorize(request, user: user, context: context)
            let contact = try await addressBook.contact(id, of: user)
            return try Self.json(Self.addressBook([contact]), status: .ok)
        case (.contact(let user, let id), .put):
            try await authorize(request, user: user, context: context)
            let body = try await decode(request, as: AddressBookRequestDocument.self)
            let contact = try await addressBook.update(id, with: body.addressBookRequest, by: user)
            return try Self.json(Self.addressBook([contact]), status: .ok)
        case (.contact(let user, let id), .delete):
            try await authorize(request, user: user, context: context)
            try await addressBook.remove(id, by: user)
            return try Self.json(Self.addressBook(nil), status: .ok)
        case (.directory(let user), .get):
            try await authorize(request, user: user, context: context)
            let (page, query) = try await directory.search(query: Self.queryItems(request))
            return try Self.json(
                DirectoryResponseDocument(
                    directory: .init(
                        statusCode: 0, directoryItems: page.users, startIndex: query.startIndex,
                        moreResults: page.moreResults)),
                status: .ok)
        case (.userProfileData(let user), .get):
            try await authorize(request, user: user, context: context)
            let profile = try await directory.profile(of: user)
            return try Self.json(
                UserProfileDataDocument(userProfileData: .init(statusCode: 0, user: profile)), status: .ok)
        case (.logHistory(let user), .get):
            try await authorize(request, user: user, context: context)
            let logs = try await callHistory.logs(of: user, query: Self.queryItems(request))
            return try Self.json(
                LogHistoryDocument(logHistory: .init(statusCode: 0, logItems: logs.map(CallLogItem.init))), status: .ok)
        case (.logHistory(let user), .delete):
            try await authorize(request, user: user, context: context)
            try await callHistory.clear(of: user)
            return try Self.json(LogHistoryDocument(logHistory: .init(statusCode: 0)), status: .ok)
        case (.logRecord(let user, let id), .delete):
            try await authorize(request, user: user, context: context)
            try await callHistory.remove(id, of: user)
            return try Self.json(LogRecordDocument(logRecord: .success), status: .ok)
        case (.localization, .get):
            _ = try await authenticate(request, context: context)
            return try Self.json(LocalizationDocument(acceptLanguage: Self.localization), status: .ok)
        case (.subscriptions, _), (.presence, _), (.presenceWatcher, _), (.instantMessage, _), (.callControl, _),
            (.callDisposition, _), (.contacts, _):
            throw Self.methodNotAllowed(request, allowed: "POST")
        case (.addressBook, _), (.directory, _), (.userProfileData, _), (.localization, _):
            throw Self.methodNotAllowed(request, allowed: "GET")
        case (.contact, _):
            throw Self.methodNotAllowed(request, allowed: "GET, PUT, DELETE")
        case (.logHistory, _):
            throw Self.methodNotAllowed(request, allowed: "GET, DELETE")
        case (.logRecord, _):
            throw Self.methodNotAllowed(request, allowed: "DELETE")
        case (.subscription, _):
            throw Self.methodNotAllowed(request, allowed: "PUT, DELETE")
        case (.callSession, _):
            throw Self.methodNotAllowed(request, allowed: "GET, PUT, DELETE")
        case (.channel, _):
            throw PlatformError(.upgradeRequired, "The notification channel is a WebSocket: open it with an upgrade.")
        }
    }

    // MARK: Endpoints

    private func subscribe(_ request: Request, user: String) async throws -> Response {
        let body = try await decode(request, as: SubscribeRequestDocument.self)
        return try Self.json(
            try await subscriptions.subscribe(try Self.validate(body.subscribeRequest), user: user), status: .ok)
    }

    private func refresh(_ request: Request, user: String, id: String) async throws -> Response {
        let body = try await decode(request, as: SubscribeRequestDocument.self)
        return try Self.json(
            try await subscriptions.refresh(try Self.validate(body.subscribeRequest), user: user, id: id), status: .ok)
    }

    private func unsubscribe(user: String, id: String) async throws -> Response {
        try await subscriptions.unsubscribe(user: user, id: id)
        return try Self.json(SubscribeResponseDocument(subscribeResponse: .init(statusCode: 0)), status: .ok)
    }

    // MARK: Pieces

    /// The locale every user gets: the one Kandy.js subscribes with by default.
    static let localization = "English_US"

    private static func addressBook(_ contacts: [Contact]?) -> AddressBookResponseDocument {
        AddressBookResponseDocument(addressBookResponse: .init(statusCode: 0, addressBookEntries: contacts))
    }

    /// The query string's parameters, percent-decoded; the last of a repeated name wins.
    private static func queryItems(_ request: Request) -> [String: String] {
        var items: [String: String] = [:]
        for (name, value) in request.uri.queryParameters { items[String(name)] = String(value) }
        return items
    }

    /// Who sent the request.
    private func authenticate(_ request: Request, context: Context) async throws -> AuthenticatedUser {
        try await authenticator.authenticate(
            authorization: request.headers[.authorization], token: request.headers[Self.tokenField],
            address: context.remoteAddress)
    }

    /// The request is from the user in its path.
    private func authorize(_ request: Request, user: String, context: Context) async throws {
        guard try await authenticate(request, context: context).username == user else {
            throw PlatformError(.forbiddenUser, "The credentials are for another user than the one in the path.")
        }
    }

    static let tokenField = HTTPField.Name(CredentialHeader.tokenHeaderName)!

    private func decode<T: Decodable>(_ request: Request, as type: T.Type) async throws -> T {
        try await Self.decodeBody(
            request, as: type, limit: configuration.maxBodyBytes, timeout: configuration.bodyTimeout)
    }

    /// Call requests carry SDP, which may be larger than other bodies.
    private func decodeCall<T: Decodable>(_ request: Request, as type: T.Type) async throws -> T {
        let configuration = configuration
        return try await Self.decodeBody(
            request, as: type, limit: max(configuration.maxBodyBytes, configuration.maxSDPBytes + 16 * 1024),
            timeout: configuration.bodyTimeout)
    }

    static func decodeBody<T: Decodable>(_ request: Request, as type: T.Type, limit: Int, timeout: Duration)
        async throws -> T
    {
        if let length = request.headers[.contentLength].flatMap(Int.init), length > limit {
            throw PlatformError(
                .bodyTooLarge, "The body is \(length) bytes; at most \(limit) are accepted.", endsConnection: true)
        }
        let buffer: ByteBuffer
        do {
            buffer = try await request.body.collect(upTo: limit)
        } catch is NIOTooManyBytesError {
            throw PlatformError(
                .bodyTooLarge, "The body is larger than the \(limit) bytes accepted.", endsConnection: true)
        } catch let error as HTTPParserError {
            throw PlatformError(.malformedRequest, "The body is not valid HTTP/1.1 (\(error)).", endsConnection: true)
        } catch is RequestScreen.BodyTimedOut {
            throw PlatformError(
                .bodyTimedOut, "The body did not arrive within \(timeout) of its first bytes.", endsConnection: true)
        }
        guard buffer.readableBytes > 0 else {
            throw PlatformError(.malformedRequest, "The body is empty; a JSON document is expected.")
        }
        do {
            return try WireJSON.decode(type, from: Data(buffer: buffer))
        } catch {
            throw PlatformError(.malformedRequest, WireJSON.explain(error))
        }
    }

    static func validate(_ request: SubscribeRequest) throws(PlatformError) -> SubscribeRequest {
        if let expires = request.expires, expires <= 0 {
            throw PlatformError(.invalidField, "subscribeRequest.expires must be a positive number of seconds.")
        }
        guard !request.service.isEmpty else {
            throw PlatformError(.noGrantableService, "subscribeRequest.service is empty.")
        }
        guard request.service.count <= 32, request.service.allSatisfy({ (1...64).contains($0.rawValue.utf8.count) })
        else {
            throw PlatformError(.invalidField, "subscribeRequest.service holds at most 32 names of 1–64 bytes.")
        }
        for text in [request.localization, request.notificationType].compactMap({ $0 }) where text.utf8.count > 64 {
            throw PlatformError(.invalidField, "localization and notificationType are at most 64 bytes.")
        }
        return request
    }

    static func json<T: Encodable>(_ value: T, status: HTTPResponse.Status) throws -> Response {
        Response(
            status: status, headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(bytes: try WireJSON.bytes(value))))
    }

    /// The error in the envelope of the path's endpoint, or as a bare status document. (The
    /// envelope is looked for here, on errors only: a request that succeeds needs none.)
    private static func errorResponse(_ error: PlatformError, path: String) -> Response {
        let status = HTTPResponse.Status(code: error.httpStatus)
        var response: Response
        do {
            if let envelope = EnvelopedStatus.Envelope(resource: LinkRoute.resource(of: path)) {
                response = try json(
                    EnvelopedStatus(envelope, ResponseStatus(statusCode: error.statusCode, reason: error.reason)),
                    status: status)
            } else {
                response = try json(StatusDocument(statusCode: error.statusCode, reason: error.reason), status: status)
            }
        } catch {
            response = Response(status: status)
        }
        if let retryAfter = error.retryAfter { response.headers[.retryAfter] = String(retryAfter) }
        return response
    }

    private static func methodNotAllowed(_ request: Request, allowed: String) -> PlatformError {
        PlatformError(.methodNotAllowed, "\(request.method.rawValue) is not allowed here; use \(allowed).")
    }

    private static func preflight(_ request: Request) -> Response {
        Response(
            status: .noContent,
            headers: [
                .accessControlAllowMethods: "GET, POST, PUT, DELETE, OPTIONS",
                .accessControlAllowHeaders: "authorization, content-type, accept, x-cpaas-agent, x-token",
                .accessControlMaxAge: "600",
            ])
    }
}

/// The one CORS rule for every response, refusals included: the page's origin is echoed (with
/// `Vary: Origin`), or `*` for a request without one. Credentials are headers, never cookies, so
/// echoing grants nothing `*` would not.
enum CrossOrigin {
    static func allowOrigin(for requestOrigin: String?) -> String { requestOrigin ?? "*" }
}

/// A query string's parameters, as ``LinkResponder`` hands them to the services.
extension [String: String] {
    /// Where a page of results starts at the latest.
    static let maxStartIndex = 1_000_000

    /// The page asked for by `startIndex` (default 0) and `count` (default `defaultCount`); nil
    /// when either is not a whole number in its range.
    func page(defaultCount: Int, counts: ClosedRange<Int>) -> (startIndex: Int, count: Int)? {
        func number(_ name: String, _ value: Int, in range: ClosedRange<Int>) -> Int? {
            guard let text = self[name] else { return value }
            return Int(text).flatMap { range.contains($0) ? $0 : nil }
        }
        guard let startIndex = number("startIndex", 0, in: 0...Self.maxStartIndex),
            let count = number("count", defaultCount, in: counts)
        else { return nil }
        return (startIndex, count)
    }
}
