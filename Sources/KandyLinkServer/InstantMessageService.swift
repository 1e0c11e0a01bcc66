import Foundation
import KandyLinkProtocol
import Logging

/// Instant messages (spec §12.2): delivered to every channel of the recipient granted `IM`, or
/// refused at once when there is none (messages are kept only for sessions).
final class InstantMessageService: Sendable {
    private let store: any PlatformStore
    private let subscriptions: Subscriptions
    private let delivery: NotificationDelivery
    private let metrics: PlatformMetrics
    private let maxMessageBytes: Int
    private let clock: any PlatformClock
    private let logger: Logger

    init(
        store: any PlatformStore, subscriptions: Subscriptions, delivery: NotificationDelivery,
        metrics: PlatformMetrics, maxMessageBytes: Int, clock: any PlatformClock, logger: Logger
    ) {
        self.store = store
        self.subscriptions = subscriptions
        self.delivery = delivery
        self.metrics = metrics
        self.maxMessageBytes = maxMessageBytes
        self.clock = clock
        self.logger = logger
    }

    /// Delivers a message to every `IM` channel of its recipient; returns the message's id.
    func send(_ request: InstantMessageRequest, from sender: String) async throws(PlatformError) -> String {
        if let charset = request.charset, charset.uppercased() != "UTF-8" {
            throw PlatformError(.invalidField, "imRequest.charset must be UTF-8.")
        }
        let recipient = request.recipient
        guard LinkRoute.isAcceptableUsername(recipient) else {
            throw PlatformError(.invalidField, "imRequest.toUrl must name a user.")
        }
        guard !request.message.isEmpty else {
            throw PlatformError(.invalidField, "imRequest.message is empty.")
        }
        let size = request.message.utf8.count
        guard size <= maxMessageBytes else {
            throw PlatformError(
                .messageTooLarge, "The message is \(size) bytes; at most \(maxMessageBytes) are accepted.")
        }
        let now = clock.now()
        let live = try await storing("The recipient's sessions could not be read.", logger: logger) {
            try await subscriptions.live(of: [recipient], now: now)
        }
        let channels = Subscriptions.channels(of: live, granting: .im)
        if channels.isEmpty {
            // A user with a live subscription exists; only otherwise ask the store.
            if live.isEmpty { try await store.requireUsers([recipient], logger: logger) }
            // Said now rather than accepted and never delivered: messages are kept only for sessions.
            throw PlatformError(
                .recipientUnavailable, "\(recipient) has no session subscribed to IM; the message was not sent.")
        }
        let time = now.milliseconds
        let (eventID, _) = try await storing("The message could not be delivered.", logger: logger) {
            try await delivery.deliver(toChannels: channels) {
                .instantMessage(eventId: $0, from: sender, text: request.message, time: time)
            }
        }
        metrics.instantMessages.increment()
        return String(eventID)
    }
}
