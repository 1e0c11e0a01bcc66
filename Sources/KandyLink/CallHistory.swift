import Foundation
import KandyLinkProtocol
import Synchronization

/// `kandy.call.history`: the calls you made and received, as the platform logged them, and a
/// local copy, newest first.
///
/// ```swift
/// let recent = try await kandy.call.history.fetch(amount: 20)
/// try await kandy.call.history.remove(recent[0].recordId)
/// ```
///
/// Each operation throws a ``KandyError`` (`callHistory:1`, `:2` for a refused request, `:3`
/// for an unknown record) and emits `callHistory:change` or `callHistory:error`. Unlike
/// Kandy.js, a removal leaves the other entries as they were.
public struct CallHistory: Sendable {
    let session: KandySession
    let observers: KandySession.Observers
    let known = Known()

    final class Known: Sendable {
        let logs = Mutex<[CallLog]>([])
    }

    /// Fetches `amount` entries from `offset` on (newest first) and merges them into the local
    /// copy; `callHistory:change`.
    @discardableResult
    public func fetch(amount: Int = 50, offset: Int = 0) async throws -> [CallLog] {
        try await perform { () throws(KandyError) in
            guard (0...CallHistoryStatusCode.maxCount).contains(amount), offset >= 0 else {
                throw KandyError(
                    .callHistoryBadRequest,
                    "Fetch 0–\(CallHistoryStatusCode.maxCount) entries from a non-negative offset.")
            }
            let answer = try await session.request(
                "GET", LinkPath.logHistory(user:),
                query: [("startIndex", String(offset)), ("count", String(amount))], as: LogHistoryDocument.self,
                failure: .callHistoryFailure, verb: "fetch call history")
            let logs = (answer.logHistory.logItems ?? []).filter { $0.type == CallLogItem.callLog }.map(\.params)
            known.logs.withLock { known in
                let fetched = Set(logs.map(\.recordId))
                known = (known.filter { !fetched.contains($0.recordId) } + logs).sorted(by: Self.newestFirst)
            }
            observers.emit(.callHistoryChange)
            return logs
        }
    }

    /// Removes one entry on the platform and here; `callHistory:change`.
    public func remove(_ recordId: String) async throws {
        try await perform { () throws(KandyError) in
            guard LinkRoute.isIdentifier(Substring(recordId)) else {
                throw KandyError(.callHistoryNotFound, "No call log record \(recordId).")
            }
            _ = try await session.request(
                "DELETE", { LinkPath.logRecord(user: $0, id: recordId) }, as: LogRecordDocument.self,
                failure: .callHistoryFailure, verb: "remove call log")
            known.logs.withLock { $0.removeAll { $0.recordId == recordId } }
            observers.emit(.callHistoryChange)
        }
    }

    /// Removes every entry on the platform and here; `callHistory:change`.
    public func clear() async throws {
        try await perform { () throws(KandyError) in
            _ = try await session.request(
                "DELETE", LinkPath.logHistory(user:), as: LogHistoryDocument.self, failure: .callHistoryFailure,
                verb: "clear call history")
            known.logs.withLock { $0 = [] }
            observers.emit(.callHistoryChange)
        }
    }

    /// The local copy, newest first.
    public func get() -> [CallLog] { known.logs.withLock { $0 } }

    /// The local copy, to keep between runs (Kandy.js's `getCache`).
    public func getCache() -> [CallLog] { get() }

    /// Restores a copy kept by ``getCache()``; `callHistory:change`.
    public func setCache(_ logs: [CallLog]) {
        known.logs.withLock { $0 = logs.sorted(by: Self.newestFirst) }
        observers.emit(.callHistoryChange)
    }

    private static func newestFirst(_ a: CallLog, _ b: CallLog) -> Bool {
        (Int64(a.startTime) ?? 0, a.recordId) > (Int64(b.startTime) ?? 0, b.recordId)
    }

    private func perform<T>(_ work: () async throws(KandyError) -> T) async throws -> T {
        do {
            return try await work()
        } catch {
            // The platform's codes, as Kandy.js maps them.
            var error = error
            switch error.statusCode {
            case CallHistoryStatusCode.invalidRequest.rawValue: error.code = .callHistoryBadRequest
            case CallHistoryStatusCode.recordNotFound.rawValue: error.code = .callHistoryNotFound
            default: break
            }
            observers.emit(.callHistoryError(error))
            throw error
        }
    }
}
