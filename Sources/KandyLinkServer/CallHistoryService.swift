import Foundation
import KandyLinkProtocol
import Logging

/// Each user's call history (Kandy.js's `call.history`): an entry per party of every call that
/// rang, written as the call ends by the node that ends it (the store hands each ended call to
/// one node), newest first, the newest ``Policy/length`` kept.
final class CallHistoryService: Sendable {
    private let store: any PlatformStore
    private let length: Int
    private let clock: any PlatformClock
    private let logger: Logger

    init(store: any PlatformStore, length: Int, clock: any PlatformClock, logger: Logger) {
        self.store = store
        self.length = length
        self.clock = clock
        self.logger = logger
    }

    /// How a call ended, which decides each party's entry.
    enum Ending: Sendable {
        /// An answered call ended, whoever hung up.
        case hungUp
        /// The caller cancelled, or left, before an answer.
        case cancelled
        /// The callee rejected or declined.
        case rejected
        /// The ring timed out, or the callee left before answering.
        case unanswered
    }

    /// Writes the call's two entries. A failure is logged, not thrown: the call has ended either way.
    func record(_ call: CallRecord, _ ending: Ending) async {
        let entries = Self.entries(call, ending, endedAt: clock.now())
        do {
            try await store.appendCallLogs(entries, keep: length)
        } catch {
            logger.error(
                "A call's history could not be written", metadata: ["call": .string(call.id), "error": "\(error)"])
        }
    }

    /// The caller's and the callee's entries for a call ended at `endedAt`.
    static func entries(_ call: CallRecord, _ ending: Ending, endedAt: Date) -> [(owner: String, log: CallLog)] {
        let (caller, callee): (CallLog.Outcome, CallLog.Outcome) =
            switch ending {
            case .hungUp: (.answered, .answered)
            case .cancelled: (.cancelled, .missed)
            case .rejected: (.rejected, .rejected)
            case .unanswered: (.missed, .missed)
            }
        let start = String(Int64((call.createdAt.timeIntervalSince1970 * 1000).rounded()))
        let duration = call.answeredAt.map { String(max(0, Int64((endedAt.timeIntervalSince($0) * 1000).rounded()))) }
        func entry(_ owner: String, _ direction: CallLog.Direction, _ outcome: CallLog.Outcome) -> CallLog {
            let id = RandomIdentifier.make()
            return CallLog(
                recordId: id, direction: direction, disposition: outcome, startTime: start, duration: duration ?? "0",
                callerName: call.callerName ?? call.caller, callerDisplayNumber: CallAddress.sip(call.caller),
                calleeName: call.callee, calleeDisplayNumber: CallAddress.sip(call.callee),
                resourceLocation: LinkPath.logRecord(user: owner, id: id))
        }
        return [
            (call.caller, entry(call.caller, .outgoing, caller)),
            (call.callee, entry(call.callee, callee == .missed ? .missed : .incoming, callee)),
        ]
    }

    /// `GET …/logHistory?startIndex=&count=`: Kandy.js sends both (its defaults 0 and 50).
    func logs(of owner: String, query items: [String: String]) async throws(PlatformError) -> [CallLog] {
        guard let page = items.page(defaultCount: 50, counts: 0...CallHistoryStatusCode.maxCount) else {
            throw PlatformError(history: .invalidRequest)
        }
        guard page.count > 0 else { return [] }
        return try await storing("The call history could not be read.", logger: logger) {
            try await store.callLogs(of: owner, startIndex: page.startIndex, count: page.count)
        }
    }

    func remove(_ id: String, of owner: String) async throws(PlatformError) {
        let removed = try await storing("The call log record could not be removed.", logger: logger) {
            try await store.deleteCallLog(id, of: owner)
        }
        guard removed else { throw PlatformError(history: .recordNotFound) }
    }

    func clear(of owner: String) async throws(PlatformError) {
        try await storing("The call history could not be cleared.", logger: logger) {
            try await store.clearCallLogs(of: owner)
        }
    }
}
