import Foundation
import KandyLinkProtocol

/// The SDK's REST exchanges with the platform: each builds its request (origin, path, headers,
/// body) and classifies the answer as spec §3.2 says, into the answer document or a `KandyError`
/// with the platform's statusCode and reason. It keeps no state: callers pass the credentials of
/// the moment.
struct RestExchange: Sendable {
    let http: any HTTPTransport
    /// `https://host:port`, to which the platform's paths are appended.
    let origin: String

    // MARK: The subscription (spec §5–§7)

    func subscribe(
        as credentials: Credentials?, services: [String], forceLogOut: Bool, expires: Int
    ) async -> Result<SubscriptionRecord, KandyError> {
        let request = HTTPRequestSpec(
            method: "POST", url: origin + LinkPath.subscriptions(user: credentials?.username ?? ""),
            headers: Self.headers(credentials),
            body: try? WireJSON.encode(
                SubscribeRequestDocument(
                    subscribeRequest: .init(
                        expires: expires, service: services.map { ServiceName($0) },
                        supported: ["RingingFeedback"], forceLogOut: ForceLogOut(forceLogOut)))))
        return await subscription(request, failure: .subscribeFailure, verb: "subscribe user").flatMap {
            $0.map { .success($0) } ?? .failure(Self.noRecord(.subscribeFailure))
        }
    }

    /// A service update or a refresh: a PUT of the subscription's services and lifetime. The
    /// answer's record may be absent (Kandy.js counts statusCode 2 as success).
    func update(
        as credentials: Credentials?, url: String, services: [String], expires: Int
    ) async -> Result<SubscriptionRecord?, KandyError> {
        let request = HTTPRequestSpec(
            method: "PUT", url: origin + url, headers: Self.headers(credentials),
            body: try? WireJSON.encode(
                SubscribeRequestDocument(
                    subscribeRequest: .init(expires: expires, service: services.map { ServiceName($0) }))))
        return await subscription(request, failure: .updateSubscriptionFailure, verb: "update user subscription")
    }

    func unsubscribe(as credentials: Credentials?, url: String) async -> Result<Void, KandyError> {
        let request = HTTPRequestSpec(method: "DELETE", url: origin + url, headers: Self.headers(credentials))
        return await subscription(request, failure: .unsubscribeFailure, verb: "unsubscribe user").map { _ in () }
    }

    static func noRecord(_ code: KandyError.Code) -> KandyError {
        KandyError(code, "The platform's answer has no subscription record.")
    }

    /// One subscription exchange: the record on success (DELETE's success has none).
    private func subscription(
        _ request: HTTPRequestSpec, failure: KandyError.Code, verb: String
    ) async -> Result<SubscriptionRecord?, KandyError> {
        // Kandy.js counts statusCode 2 as success on PUT.
        let result = await send(
            request, as: SubscribeResponseDocument.self, failure: failure, verb: verb,
            succeeded: { $0 == 0 || (request.method == "PUT" && $0 == 2) })
        return result.flatMap { document in
            if request.method == "DELETE" { return .success(nil) }
            let answer = document.subscribeResponse
            guard let url = answer.subscription, let params = answer.subscriptionParams else {
                return .failure(KandyError(failure, "Failed to \(verb): the platform's answer has no subscription."))
            }
            return .success(
                SubscriptionRecord(
                    url: url, services: params.service.map(\.rawValue), channelPath: params.notificationChannel,
                    expires: params.expires, turnCredentials: params.turnCredentials))
        }
    }

    // MARK: The user's other resources

    /// A request on one of the user's paths, with an optional query and body.
    func request(
        _ method: String, as credentials: Credentials, path: String, query: [(name: String, value: String)] = [],
        body: (some Encodable)?, failure: KandyError.Code, verb: String
    ) throws(KandyError) -> HTTPRequestSpec {
        let encodedQuery = query.map { "\($0.name)=\(Self.queryEncode($0.value))" }.joined(separator: "&")
        let encoded: Data?
        do {
            encoded = try body.map { try WireJSON.encode($0) }
        } catch {
            throw KandyError(failure, "Failed to \(verb): the request cannot be encoded (\(error)).")
        }
        return HTTPRequestSpec(
            method: method, url: origin + path + (encodedQuery.isEmpty ? "" : "?" + encodedQuery),
            headers: Self.headers(credentials), body: encoded)
    }

    /// One call request. A 2xx is success whatever its body says (as Kandy.js: DELETE's body is
    /// not read); otherwise the `callControlResponse` statusCode, or the HTTP status.
    func call(
        _ method: String, as credentials: Credentials, path: String, body: Data?
    ) async -> Result<CallControlResponse, KandyError> {
        let request = HTTPRequestSpec(
            method: method, url: origin + path, headers: Self.headers(credentials), body: body)
        let response: HTTPResponseSpec
        do {
            response = try await http.send(request)
        } catch {
            return .failure(KandyError(.callFailure, "The call request failed: \(error)."))
        }
        let answer = try? WireJSON.decode(CallControlResponseDocument.self, from: response.body)
        guard (200..<300).contains(response.status) else {
            var error = Self.refusal(
                response, envelope: answer?.status, failure: .callFailure, verb: "send the call request")
            // Kandy.js reports the HTTP status where no statusCode came (§2.4).
            error.statusCode = error.statusCode ?? response.status
            return .failure(error)
        }
        return .success(answer?.callControlResponse ?? CallControlResponse(statusCode: 0))
    }

    // MARK: Building and classifying

    static func queryEncode(_ value: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return value.addingPercentEncoding(withAllowedCharacters: allowed) ?? value
    }

    private static func headers(_ credentials: Credentials?) -> [String: String] {
        var headers = [
            "Content-Type": "application/json", "Accept": "application/json",
            "X-Cpaas-Agent": "link-swift-sdk/\(Kandy.version)",
        ]
        if let field = credentials?.header.field { headers[field.name] = field.value }
        return headers
    }

    /// The answer when it is a 2xx whose envelope's statusCode `succeeded`; otherwise a refusal.
    func send<Answer: StatusEnvelope>(
        _ request: HTTPRequestSpec, as: Answer.Type, failure: KandyError.Code, verb: String,
        succeeded: (Int) -> Bool = { $0 == 0 }
    ) async -> Result<Answer, KandyError> {
        let response: HTTPResponseSpec
        do {
            response = try await http.send(request)
        } catch {
            return .failure(KandyError(failure, "Failed to \(verb): \(error)."))
        }
        let answer = try? WireJSON.decode(Answer.self, from: response.body)
        guard (200..<300).contains(response.status), let answer, succeeded(answer.status.statusCode) else {
            return .failure(Self.refusal(response, envelope: answer?.status, failure: failure, verb: verb))
        }
        return .success(answer)
    }

    /// A refused exchange as a `KandyError`: the statusCode and reason of the endpoint's envelope,
    /// or of the bare status document other paths answer with, or else the HTTP status.
    private static func refusal(
        _ response: HTTPResponseSpec, envelope: ResponseStatus?, failure: KandyError.Code, verb: String
    ) -> KandyError {
        let status =
            envelope
            ?? (try? WireJSON.decode(StatusDocument.self, from: response.body)).map {
                ResponseStatus(statusCode: $0.statusCode, reason: $0.reason)
            }
        let code = status.map { " Code: \($0.statusCode)." } ?? " HTTP \(response.status)."
        return KandyError(
            failure, "Failed to \(verb).\(code)" + (status?.reason.map { " \($0)" } ?? ""),
            statusCode: status?.statusCode)
    }
}
