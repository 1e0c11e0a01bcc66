import Foundation
import KandyLinkProtocol
import Logging

/// How a service's notifications reach channels: each is encoded once under a fresh eventId and
/// written to the sockets held here; a channel whose socket is not here queues it, and the other
/// nodes sharing the store are told, so the one holding the socket writes it.
final class NotificationDelivery: Sendable {
    private let store: any PlatformStore
    private let subscriptions: Subscriptions
    private let hub: NotificationHub
    private let events: EventSequence
    private let metrics: PlatformMetrics
    private let clock: any PlatformClock
    private let logger: Logger

    init(
        store: any PlatformStore, subscriptions: Subscriptions, hub: NotificationHub, events: EventSequence,
        metrics: PlatformMetrics, clock: any PlatformClock, logger: Logger
    ) {
        self.store = store
        self.subscriptions = subscriptions
        self.hub = hub
        self.events = events
        self.metrics = metrics
        self.clock = clock
        self.logger = logger
    }

    /// Sends one notification to every live channel of `users` granted `service`. Returns its
    /// eventId and how many sockets here took it.
    @discardableResult
    func deliver(to users: [String], service: ServiceName, _ make: (String) -> NotificationMessage) async throws
        -> (eventID: UInt64, sockets: Int)
    {
        try await deliver(
            toChannels: subscriptions.channels(of: users, granting: service, now: clock.now()), make)
    }

    /// Sends one notification to these channels.
    @discardableResult
    func deliver(toChannels channelIDs: [String], _ make: (String) -> NotificationMessage) async throws -> (
        eventID: UInt64, sockets: Int
    ) {
        let (eventID, text) = try await notification(make)
        let (sockets, queued) = try await hub.deliver(text, eventID: eventID, to: channelIDs, now: clock.now())
        metrics.notificationsSent.increment(by: Int64(sockets))
        metrics.notificationsQueued.increment(by: Int64(queued.count))
        await signal(.queued(queued))
        return (eventID, sockets)
    }

    /// A notification's fresh eventId and its wire text.
    func notification(_ make: (String) -> NotificationMessage) async throws -> (eventID: UInt64, text: String) {
        let eventID = try await events.next()
        let document = NotificationDocument(notificationMessage: make(String(eventID)))
        return (eventID, try WireJSON.text(document))
    }

    /// Tells the other nodes, if any.
    func signal(_ signal: NodeSignal) async {
        guard store.isShared, !signal.channels.isEmpty else { return }
        do {
            try await store.signal(signal)
        } catch {
            logger.error("Other nodes could not be signalled", metadata: ["error": "\(error)"])
        }
    }
}

/// Runs a store operation for a request; its failure is the platform's, reported without detail.
@discardableResult
func storing<T>(_ failure: String, logger: Logger, _ work: () async throws -> T) async throws(PlatformError) -> T {
    do {
        return try await work()
    } catch let error as PlatformError {
        throw error
    } catch {
        let refusal = PlatformError.store(failure, error)
        logger.log(
            level: refusal.code == .unavailable ? .warning : .error, "\(failure)", metadata: ["error": "\(error)"])
        throw refusal
    }
}

extension PlatformStore {
    /// Throws `userNotFound` naming the first few of `users` that are not users.
    func requireUsers(_ users: [String], logger: Logger) async throws(PlatformError) {
        let existing = try await storing("Users could not be read.", logger: logger) { try await existingUsers(users) }
        let missing = users.filter { !existing.contains($0) }
        guard missing.isEmpty else {
            throw PlatformError(
                .userNotFound,
                "No such user: " + missing.prefix(5).joined(separator: ", ") + (missing.count > 5 ? ", …" : "")
                    + ".")
        }
    }
}
