import Foundation
import KandyLinkProtocol
import Logging

/// Subscriptions from start to end: subscribe (which may log older sessions out), refresh and
/// unsubscribe as the REST endpoints ask, expiry, and what follows a subscription's end wherever
/// its socket is (`gone` and a close, the user's presence and calls).
struct SubscriptionService: Sendable {
    let subscriptions: Subscriptions
    let hub: NotificationHub
    let delivery: NotificationDelivery
    let presence: PresenceService
    let calls: CallService
    let metrics: PlatformMetrics
    let turn: TurnCredentialIssuer?
    /// How long an unsubscribed channel's socket may stay open for the client to close it.
    let unsubscribeCloseDelay: TimeInterval
    let clock: any PlatformClock
    let logger: Logger

    /// Live subscriptions, on every node sharing the store.
    func count() async throws -> Int { try await subscriptions.count(now: clock.now()) }

    // MARK: The endpoints

    /// A new subscription; with `forceLogOut`, or past the user's session limit, older ones end.
    func subscribe(_ request: SubscribeRequest, user: String) async throws -> SubscribeResponseDocument {
        let (record, evicted) = try await subscriptions.subscribe(
            user: user, services: request.service, expires: request.expires,
            forceLogOut: request.forceLogOut?.isForced ?? false, now: clock.now())
        await endChannels(evicted.map(\.channelID), reason: "Logged out by a newer session")
        metrics.evictions.increment(by: Int64(evicted.count))
        if !evicted.isEmpty { await sessionsEnded(for: [user]) }
        logger.info(
            "Subscribed",
            metadata: [
                "user": .string(user), "services": .string(record.services.joined(separator: ",")),
                "expires": .stringConvertible(record.expires), "evicted": .stringConvertible(evicted.count),
            ])
        return document(record, request: request)
    }

    func refresh(_ request: SubscribeRequest, user: String, id: String) async throws -> SubscribeResponseDocument {
        let record = try await subscriptions.refresh(
            user: user, id: id, services: request.service, expires: request.expires, now: clock.now())
        return document(record, request: request)
    }

    func unsubscribe(user: String, id: String) async throws {
        let record = try await subscriptions.unsubscribe(user: user, id: id, now: clock.now())
        await unsubscribed([record.channelID])
        logger.info("Unsubscribed", metadata: ["user": .string(user)])
        await sessionsEnded(for: [user])
    }

    /// The full record, with fresh TURN credentials when the platform has a TURN secret.
    private func document(_ record: StoredSubscription, request: SubscribeRequest) -> SubscribeResponseDocument {
        SubscribeResponseDocument(
            subscribeResponse: .init(
                statusCode: StatusCode.success.rawValue,
                subscription: LinkPath.subscription(user: record.username, id: record.id),
                subscriptionParams: .init(
                    service: record.services.map(ServiceName.init(rawValue:)),
                    notificationChannel: LinkPath.channel(user: record.username, channelID: record.channelID),
                    expires: record.expires,
                    turnCredentials: turn?.credentials(for: record.username, now: clock.now()),
                    localization: request.localization,
                    useTurn: request.useTurn,
                    notificationType: request.notificationType)))
    }

    // MARK: Endings

    /// Ends the subscriptions not refreshed in time.
    func expire(now: Date) async {
        do {
            let expired = try await subscriptions.expire(now: now)
            for record in expired {
                logger.info("Subscription expired", metadata: ["user": .string(record.username)])
            }
            await endChannels(expired.map(\.channelID), reason: "Subscription expired")
            metrics.expirations.increment(by: Int64(expired.count))
            await sessionsEnded(for: Set(expired.map(\.username)))
        } catch {
            logger.error("Expiring subscriptions failed", metadata: ["error": "\(error)"])
        }
    }

    /// Sessions of `users` ended (unsubscribe, expiry, a forced logout): a user left without any
    /// goes offline, and calls a user can no longer be reached in end.
    private func sessionsEnded(for users: Set<String>) async {
        for user in users { await presence.sessionsEnded(for: user) }
        await calls.sessionsEnded(for: users)
    }

    /// The subscriptions of these channels ended: wherever a socket of theirs is open (here or
    /// on another node), it gets `gone` and is closed.
    private func endChannels(_ channelIDs: [String], reason: String) async {
        guard !channelIDs.isEmpty else { return }
        for channelID in channelIDs { await endChannel(channelID, reason: reason) }
        await delivery.signal(.ended(channelIDs))
    }

    /// Sends `gone` on the channel's socket here (if one is open) and closes it.
    func endChannel(_ channelID: String, reason: String) async {
        guard hub.hasSocket(channelID) else {
            await hub.close(channelID: channelID, code: .goingAway, reason: reason)
            return
        }
        let gone = try? await delivery.notification { .gone(eventId: $0) }.text
        await hub.close(
            channelID: channelID, sending: gone, code: gone == nil ? .goingAway : .normalClosure, reason: reason)
    }

    /// These subscriptions ended at the client's request: their sockets, wherever they are, are
    /// closed unless the client closes them first.
    private func unsubscribed(_ channelIDs: [String]) async {
        await scheduleCloses(channelIDs)
        await delivery.signal(.unsubscribed(channelIDs))
    }

    /// Closes these channels' sockets here after the unsubscribe grace delay.
    func scheduleCloses(_ channelIDs: [String]) async {
        let deadline = clock.now() + unsubscribeCloseDelay
        for channelID in channelIDs { await hub.scheduleClose(channelID: channelID, at: deadline) }
    }
}
