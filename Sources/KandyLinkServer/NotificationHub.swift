import Foundation
import KandyLinkProtocol
import Logging
import NIOWebSocket
import Synchronization

/// Notification channels: the live socket of each (at most one), what was recently written to
/// it, and the stored queue of what arrived while it was down.
///
/// Within a subscription's lifetime every notification reaches the client in order, once:
/// - socket open: written at once, and remembered for a while (the replay window) in case the
///   socket turns out to be dead;
/// - socket down: appended to the channel's queue in the store (bounded; a restart keeps it);
/// - on (re)connect: the remembered and the queued ones after the client's `lastEventId` are
///   written first, in eventId order, then new ones. A Kandy.js client sends no `lastEventId`;
///   it drops ids it saw among its last 100, which is why the window holds at most 100.
///
/// Each channel has its own lock, held while a notification is written or queued and while a
/// socket attaches, so a notification is never both replayed and queued, nor lost between them.
/// Liveness is a timestamp per socket checked by the platform's single sweeper: no timer per
/// socket.
final class NotificationHub: Sendable {
    enum Outbound: Sendable {
        case text(String)
        case close(WebSocketErrorCode, String)
    }

    /// Where a notification went.
    enum Delivery: Equatable, Sendable {
        case sent
        case queued
        /// The subscription ended meanwhile.
        case dropped
    }

    struct Policy: Sendable {
        /// Bound of a channel's stored queue.
        var queue = QueueBound(count: 10_000, bytes: 4 << 20)
        /// Notifications remembered per open socket: Kandy.js's duplicate cache is 100 long.
        var replayCount = 100
        var replayBytes = 256 << 10
        /// A remembered notification is forgotten once the client has been heard from this long
        /// after it was written: a connection still carrying the client's frames that much later
        /// has delivered it.
        var replayMargin: TimeInterval = 30
    }

    final class Socket: Sendable {
        let serial: UInt64
        let channelID: String
        let outbox: AsyncStream<Outbound>.Continuation
        /// Milliseconds since 1970 of the last frame received.
        let lastSeen: Atomic<Int64>
        /// When the platform closes this socket unless the client does first; 0 = not scheduled.
        let closeAt: Atomic<Int64>

        init(serial: UInt64, channelID: String, outbox: AsyncStream<Outbound>.Continuation, now: Date) {
            self.serial = serial
            self.channelID = channelID
            self.outbox = outbox
            self.lastSeen = Atomic(now.milliseconds)
            self.closeAt = Atomic(0)
        }

        func touch(_ now: Date) { lastSeen.store(now.milliseconds, ordering: .relaxed) }

        func close(_ code: WebSocketErrorCode, _ reason: String) {
            outbox.yield(.close(code, reason))
            outbox.finish()
        }
    }

    /// A notification written to a socket, kept for replay.
    struct Written: Sendable {
        var eventID: UInt64
        var text: String
        /// Milliseconds since 1970.
        var at: Int64
    }

    final class Channel: Sendable {
        struct State {
            var socket: Socket?
            var window: [Written] = []
            var windowBytes = 0
            /// The highest eventId written or queued here: what follows must be higher.
            var lastEventID: UInt64 = 0
        }

        let id: String
        let state = Mutex(State())

        init(id: String) { self.id = id }
    }

    let policy: Policy
    private let store: any PlatformStore
    private let logger: Logger
    private let channels = Mutex<[String: Channel]>([:])
    private let serials = Atomic<UInt64>(1)
    private let openSockets = Atomic(0)

    init(store: any PlatformStore, policy: Policy = Policy(), logger: Logger) {
        self.store = store
        self.policy = policy
        self.logger = logger
    }

    /// Open sockets.
    var count: Int { openSockets.load(ordering: .relaxed) }

    func hasSocket(_ channelID: String) -> Bool {
        existing(channelID)?.state.withLock { $0.socket != nil } ?? false
    }

    private func existing(_ channelID: String) -> Channel? { channels.withLock { $0[channelID] } }

    private func channel(_ channelID: String) -> Channel {
        channels.withLock { channels in
            if let channel = channels[channelID] { return channel }
            let channel = Channel(id: channelID)
            channels[channelID] = channel
            return channel
        }
    }

    // MARK: Sockets

    /// Makes a new socket the live one of its channel (an older socket there is closed) and
    /// writes to it, in order, what the client has not had: remembered notifications after
    /// `lastEventID` (all of them when nil) and the stored queue.
    func attach(channelID: String, lastEventID: UInt64?, now: Date) -> (Socket, AsyncStream<Outbound>) {
        let (stream, continuation) = AsyncStream.makeStream(of: Outbound.self, bufferingPolicy: .unbounded)
        let socket = Socket(
            serial: serials.add(1, ordering: .relaxed).oldValue, channelID: channelID, outbox: continuation, now: now)
        let nowMs = now.milliseconds
        let replaced = channel(channelID).state.withLock { state in
            var replay = state.window.filter { lastEventID == nil || $0.eventID > lastEventID! }
            var stored: [QueuedNotification] = []
            do {
                stored = try store.queued(channelID: channelID)
            } catch {
                logger.error("Queued notifications could not be read", metadata: ["error": "\(error)"])
            }
            for entry in stored where lastEventID.map({ entry.eventID > $0 }) ?? true {
                guard let text = entry.text ?? Self.missedText(entry) else { continue }
                replay.append(Written(eventID: entry.eventID, text: text, at: nowMs))
            }
            replay.sort { $0.eventID < $1.eventID }
            for entry in replay { continuation.yield(.text(entry.text)) }
            if let newest = stored.last?.eventID {
                do {
                    try store.dequeue(channelID: channelID, through: newest)
                } catch {
                    // They stay queued and come again next time; the client drops them by eventId.
                    logger.error("Delivered notifications could not be dequeued", metadata: ["error": "\(error)"])
                }
            }
            state.window = []
            state.windowBytes = 0
            for entry in replay { remember(entry, in: &state) }
            state.lastEventID = max(state.lastEventID, replay.last?.eventID ?? 0, stored.last?.eventID ?? 0)
            defer { state.socket = socket }
            return state.socket
        }
        if let replaced {
            replaced.close(.policyViolation, "Replaced by a newer connection to this channel")
        } else {
            openSockets.add(1, ordering: .relaxed)
        }
        return (socket, stream)
    }

    /// Forgets `socket` if it is still its channel's live one; what it was sent is remembered
    /// for the client's reconnect.
    func detach(_ socket: Socket) {
        guard let channel = existing(socket.channelID) else { return }
        let detached = channel.state.withLock { state in
            guard state.socket === socket else { return false }
            state.socket = nil
            return true
        }
        if detached { openSockets.subtract(1, ordering: .relaxed) }
    }

    // MARK: Notifications

    /// Writes a notification to the channel's socket, or queues it while there is none.
    ///
    /// A channel's eventIds must increase in the order it gets them (clients and the replay rely
    /// on it). Ids are drawn before the channel is locked, so a notification can find a later
    /// one already written; it is then given a fresh id by `restamp` (new id, its wire text).
    func deliver(
        _ text: String, eventID: UInt64, to channelID: String, now: Date,
        restamp: () throws -> (eventID: UInt64, text: String)
    ) throws -> Delivery {
        try channel(channelID).state.withLock { state in
            var (eventID, text) = (eventID, text)
            if eventID <= state.lastEventID { (eventID, text) = try restamp() }
            state.lastEventID = eventID
            if let socket = state.socket {
                socket.outbox.yield(.text(text))
                remember(Written(eventID: eventID, text: text, at: now.milliseconds), in: &state)
                return .sent
            }
            let queued = try store.enqueue(channelID: channelID, eventID: eventID, text: text, bound: policy.queue)
            return queued ? .queued : .dropped
        }
    }

    private func remember(_ entry: Written, in state: inout Channel.State) {
        state.window.append(entry)
        state.windowBytes += entry.text.utf8.count
        var drop = 0
        var bytes = state.windowBytes
        while drop < state.window.count
            && (state.window.count - drop > policy.replayCount || bytes > policy.replayBytes)
        {
            bytes -= state.window[drop].text.utf8.count
            drop += 1
        }
        if drop > 0 {
            state.window.removeFirst(drop)
            state.windowBytes = bytes
        }
    }

    private static func missedText(_ marker: QueuedNotification) -> String? {
        let document = NotificationDocument(
            notificationMessage: .missed(eventId: String(marker.eventID), count: marker.missed))
        return (try? WireJSON.encode(document)).map { String(decoding: $0, as: UTF8.self) }
    }

    // MARK: Closing

    /// The subscription ended: sends `text` (if any), closes the socket, forgets the channel.
    func close(channelID: String, sending text: String? = nil, code: WebSocketErrorCode, reason: String) {
        guard let channel = channels.withLock({ $0.removeValue(forKey: channelID) }) else { return }
        let socket = channel.state.withLock { state in
            defer { state.socket = nil }
            return state.socket
        }
        guard let socket else { return }
        openSockets.subtract(1, ordering: .relaxed)
        if let text { socket.outbox.yield(.text(text)) }
        socket.close(code, reason)
    }

    /// The subscription ended at the client's request: its socket is closed at `deadline` unless
    /// the client closes it first; without a socket the channel is forgotten now.
    func scheduleClose(channelID: String, at deadline: Date) {
        guard let channel = existing(channelID) else { return }
        let socket = channel.state.withLock { $0.socket }
        if let socket {
            socket.closeAt.store(deadline.milliseconds, ordering: .relaxed)
        } else {
            channels.withLock { _ = $0.removeValue(forKey: channelID) }
        }
    }

    /// Closes sockets silent since before `silentSince` (their channel stays, for a reconnect)
    /// and those past a scheduled close (their channel goes); forgets remembered notifications
    /// the client has been heard from long enough after. Returns how many sockets were closed.
    @discardableResult
    func sweep(now: Date, silentSince: Date) -> Int {
        let nowMs = now.milliseconds
        let silentMs = silentSince.milliseconds
        let marginMs = Int64(policy.replayMargin * 1000)
        var closed = 0
        for channel in channels.withLock({ Array($0.values) }) {
            let due: (Socket, idle: Bool)? = channel.state.withLock { state in
                guard let socket = state.socket else {
                    return nil
                }
                let lastSeen = socket.lastSeen.load(ordering: .relaxed)
                let closeAt = socket.closeAt.load(ordering: .relaxed)
                if closeAt != 0 && closeAt <= nowMs {
                    state.socket = nil
                    return (socket, false)
                }
                if lastSeen < silentMs {
                    state.socket = nil
                    return (socket, true)
                }
                if let first = state.window.first, first.at < lastSeen - marginMs {
                    let keep = state.window.firstIndex { $0.at >= lastSeen - marginMs } ?? state.window.count
                    state.windowBytes -= state.window[..<keep].reduce(0) { $0 + $1.text.utf8.count }
                    state.window.removeFirst(keep)
                }
                return nil
            }
            guard let (socket, idle) = due else { continue }
            openSockets.subtract(1, ordering: .relaxed)
            closed += 1
            if idle {
                socket.close(.goingAway, "No keepalive received")
            } else {
                channels.withLock { _ = $0.removeValue(forKey: channel.id) }
                socket.close(.normalClosure, "Subscription ended")
            }
        }
        return closed
    }

    /// Closes every socket, for shutdown. The subscriptions and their queues stay; clients
    /// reconnect later.
    func closeAll(reason: String) {
        for channel in channels.withLock({ Array($0.values) }) {
            let socket = channel.state.withLock { state in
                defer { state.socket = nil }
                return state.socket
            }
            guard let socket else { continue }
            openSockets.subtract(1, ordering: .relaxed)
            socket.close(.goingAway, reason)
        }
    }
}

extension Date {
    var milliseconds: Int64 { Int64((timeIntervalSince1970 * 1000).rounded(.down)) }
}
