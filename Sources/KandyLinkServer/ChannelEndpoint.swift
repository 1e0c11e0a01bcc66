import Foundation
import KandyLinkProtocol
import Logging
import NIOCore
import NIOWebSocket

/// The notification channel's side of the port: whether an upgrade may open a channel, and the
/// socket an admitted upgrade becomes.
struct ChannelEndpoint: Sendable {
    let subscriptions: Subscriptions
    let authenticator: Authenticator
    let hub: NotificationHub
    let delivery: NotificationDelivery
    let configuration: PlatformConfiguration
    let clock: any PlatformClock
    let logger: Logger
    let outboxes = LoopOutboxes(perform: ChannelSocketHandler.Outgoing.perform)

    /// Whether an upgrade of `target` may open a notification channel: a channel path whose
    /// subscription is live and the user's, from a page the origin allow-list admits. Browsers
    /// send no credentials on an upgrade, so the unguessable channel id is the capability; but
    /// credentials that are sent (Authorization, `access_token`, `token`) must be the owner's.
    func admitChannel(target: String, origins: [String], authorization: String? = nil, address: String = "unknown")
        async -> Result<ChannelAdmission, PlatformError>
    {
        guard case .channel(let user, let channelID)? = try? LinkRoute.parse(target) else {
            return .failure(PlatformError(.notFound, "Not a notification channel path."))
        }
        // A client reconnecting at once as this node stops is sent to try again (elsewhere, or
        // after the restart) rather than upgraded on a node that will not serve it.
        guard !hub.isClosing else {
            return .failure(PlatformError(.unavailable, "The platform is shutting down; reconnect shortly."))
        }
        let record: StoredSubscription?
        do {
            record = try await subscriptions.subscription(channelID: channelID, now: clock.now())
        } catch {
            logger.error("Channel refused: the store is unavailable", metadata: ["error": "\(error)"])
            return .failure(PlatformError(.unavailable))
        }
        guard let record, record.username == user else {
            return .failure(PlatformError(.subscriptionNotFound, "No live subscription has this channel."))
        }
        let token = Self.queryValue("access_token", in: target) ?? Self.queryValue("token", in: target)
        // Credentials that do not verify prove nothing either way (an expired token on a reconnect):
        // the path stays the capability. Valid ones of another user are refused.
        if authorization != nil || token?.isEmpty == false,
            let presented = try? await authenticator.authenticate(
                authorization: authorization, token: token, address: address),
            presented.username != record.username
        {
            logger.notice(
                "Channel refused: another user's credentials",
                metadata: [
                    "owner": .string(record.username), "presented": .string(presented.username),
                    "address": .string(address),
                ])
            return .failure(PlatformError(.forbiddenUser, "The credentials are not the channel owner's."))
        }
        // The allow-list protects against other web pages; an Origin that is not a page's
        // (native clients such as WSClient send their own ws:// or wss:// one) is not checked.
        if let allowed = configuration.allowedOrigins,
            let page = origins.first(where: {
                ($0.hasPrefix("https://") || $0.hasPrefix("http://")) && !allowed.contains($0)
            })
        {
            logger.notice("Channel refused: origin not allowed", metadata: ["origin": .string(page)])
            return .failure(PlatformError(.forbiddenUser, "Pages from this origin may not open channels."))
        }
        return .success(ChannelAdmission(channelID: channelID, lastEventID: Self.lastEventID(in: target)))
    }

    /// `lastEventId=N` in the channel query: the newest notification the client has (our SDK
    /// sends it on reconnect; Kandy.js does not).
    static func lastEventID(in target: String) -> UInt64? {
        queryValue(LinkPath.lastEventIDParameter, in: target).flatMap { UInt64($0) }
    }

    /// The percent-decoded value of `name` in the target's query.
    static func queryValue(_ name: String, in target: String) -> String? {
        guard let query = target.split(separator: "?", maxSplits: 1).dropFirst().first else { return nil }
        for pair in query.split(separator: "&") where pair.hasPrefix(name + "=") {
            return LinkPath.decode(pair.dropFirst(name.count + 1))
        }
        return nil
    }

    /// Makes an upgraded connection an admitted channel's socket (on the connection's event
    /// loop); what it returns attaches the socket to its channel, which writes it what the client
    /// has not had. Keepalives never get an answer (spec §4.4).
    func openChannel(_ admission: ChannelAdmission, on connection: any Channel) throws -> @Sendable () async -> Void {
        let (clock, hub, delivery) = (clock, hub, delivery)
        let backlog = configuration.maxChannelBacklogBytes
        try connection.syncOptions?.setOption(
            ChannelOptions.writeBufferWaterMark, value: .init(low: backlog / 2, high: backlog))
        let handler = NIOLoopBoundBox<ChannelSocketHandler?>(nil, eventLoop: connection.eventLoop)
        let socket = NotificationHub.Socket(
            channelID: admission.channelID,
            connection: ChannelSocketHandler.connection(
                handler: handler, outbox: outboxes.outbox(for: connection.eventLoop)),
            now: clock.now(), peer: connection.remoteAddress)
        let channelSocket = ChannelSocketHandler(
            maxFrameSize: configuration.maxFrameBytes, frameTimeout: .init(configuration.frameTimeout),
            closeTimeout: .seconds(5), logger: logger,
            heard: {
                socket.touch(clock.now())
                hub.changes.signal()
            },
            writable: { socket.writable.store($0, ordering: .relaxed) },
            ended: { hub.detach(socket) })
        handler.value = channelSocket
        // The socket writes through the handler and the handler reports to the socket: each holds
        // the other. Once the connection is gone, the socket lets go, or neither is ever freed.
        connection.closeFuture.whenComplete { _ in handler.value = nil }
        try connection.pipeline.syncOperations.addHandler(channelSocket)
        return {
            await hub.attach(socket, lastEventID: admission.lastEventID, now: clock.now())
            // A connection that closed while attaching found nothing to detach: detach it now.
            // (One closing later is detached by its handler.)
            if !connection.isActive { hub.detach(socket) }
            await delivery.signal(.attached([admission.channelID]))
        }
    }
}
