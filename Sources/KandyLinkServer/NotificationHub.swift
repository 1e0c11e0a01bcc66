import Foundation
import KandyLinkProtocol
import Logging
import NIOCore
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
///   it drops ids it saw among its last 100, which is why a reconnect replays at most 100: the
///   window's 99 and the `missed` marker that may come first.
///
/// Each channel takes turns: a notification is queued, a socket attaches, a queue is drained or
/// the channel ends one at a time, so a notification is never both replayed and queued, nor lost
/// between them. Writing to an open socket needs no turn when none is in progress, and no await.
/// Liveness is a timestamp per socket checked by the platform's single sweeper: no timer per
/// socket.
///
/// With several nodes the stored queue is also how a notification reaches a socket held by
/// another node: it is queued, the store signals the nodes, and the holder drains the queue.
final class NotificationHub: Sendable {
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
        /// Notifications a reconnect may replay, the `missed` marker included: Kandy.js's duplicate
        /// cache is 100 long. The window keeps one fewer, for the marker: Kandy.js's cache is first
        /// in, first out, so a marker before a window of 100 pushed the window's oldest id out, that
        /// one came through as new and pushed out the next, and so the whole replay was shown again.
        var replayCount = 100
        /// What the window keeps: the replay less the marker's place.
        var windowCount: Int { max(0, replayCount - 1) }
        var replayBytes = 256 << 10
        /// A remembered notification is forgotten once the client has been heard from this long
        /// after it was written: a connection still carrying the client's frames that much later
        /// has delivered it.
        var replayMargin: TimeInterval = 30
    }

    /// A channel's socket, heard from when it is made; it receives nothing until it is attached.
    final class Socket: Sendable {
        let channelID: String
        /// Where its frames go: written to the connection from wherever a notification is sent,
        /// without a hop through a task per notification.
        let connection: Connection
        /// Milliseconds since 1970 of the last frame received.
        let lastSeen: Atomic<Int64>
        /// When the platform closes this socket unless the client does first; 0 = not scheduled.
        let closeAt: Atomic<Int64>
        /// The client's address, for the log when a newer connection takes the channel over (kept
        /// as the connection has it: spelled out, it would cost every channel a string).
        let peer: SocketAddress?
        /// Whether the connection's backlog is below its high watermark, as its handler last saw.
        /// (Kept here, beside what a delivery reads anyway: under fan-out, asking the connection
        /// was a thirtieth of a delivery's cost.)
        let writable = Atomic(true)

        init(channelID: String, connection: Connection, now: Date, peer: SocketAddress? = nil) {
            self.channelID = channelID
            self.peer = peer
            self.connection = connection
            self.lastSeen = Atomic(now.milliseconds)
            self.closeAt = Atomic(0)
        }

        var peerName: String { peer.map { "\($0)" } ?? "unknown" }

        func touch(_ now: Date) { lastSeen.store(now.milliseconds, ordering: .relaxed) }

        /// False, and not written, while the connection's backlog is past its high watermark:
        /// the client stopped reading.
        @discardableResult
        func send(_ frame: Frame) -> Bool {
            guard writable.load(ordering: .relaxed) else { return false }
            connection.write(frame)
            return true
        }

        /// Writes whatever the backlog: what a reconnecting client has not had, bounded by the
        /// stored queue's bound.
        func replay(_ text: String) { connection.write(Frame(text)) }

        func close(_ code: WebSocketErrorCode, _ reason: String) { connection.close(code, reason) }
    }

    /// Writes to a socket's connection. A close follows every write made before it, and comes once.
    struct Connection: Sendable {
        var write: @Sendable (Frame) -> Void
        var close: @Sendable (WebSocketErrorCode, String) -> Void
    }

    /// A notification as sockets are given it: its text, and its WebSocket frame encoded once for
    /// every socket it goes to.
    struct Frame: Sendable {
        let text: String
        let encoded: ByteBuffer

        init(_ text: String) {
            self.text = text
            encoded = ChannelSocketHandler.textFrame(text, allocator: Self.allocator)
        }

        private static let allocator = ByteBufferAllocator()
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
            var window = ReplayWindow()
            /// Notifications pushed out of the window before the client was heard from long enough
            /// after them to have had them: how many, the newest's eventId, and when it was written.
            /// A reconnect that may lack them is told how many with a `missed` marker.
            var forgotten: (count: Int, eventID: UInt64, at: Int64)?
            /// The highest eventId written or queued here: what follows must be higher.
            var lastEventID: UInt64 = 0
            /// The subscription ended: a socket attaching late is closed at once.
            var ended = false
            var turns = Turns<CheckedContinuation<Void, Never>>()
            /// Callers that took the channel from the table for a turn and have not yet joined its
            /// line: until they have, the channel stays in the table.
            var reservations = 0

            var isForgettable: Bool { socket == nil && turns.isIdle && window.isEmpty && reservations == 0 }
        }

        let id: String
        let state = Mutex(State())

        init(id: String) { self.id = id }

        /// Runs `body` as the channel's only turn in progress. `reserved`: the caller took the
        /// channel with ``NotificationHub/reserve(_:)``, a reservation this turn now redeems.
        func turn<T>(reserved: Bool = false, _ body: () async throws -> T) async rethrows -> T {
            await begin(redeeming: reserved)
            defer { end() }
            return try await body()
        }

        /// Joins the line, and only then lets go of the reservation, under the same lock.
        private func begin(redeeming reserved: Bool) async {
            let took = state.withLock { state in
                guard state.turns.take() else { return false }
                if reserved { state.reservations -= 1 }
                return true
            }
            guard !took else { return }
            await withCheckedContinuation { continuation in
                let took = state.withLock { state in
                    if reserved { state.reservations -= 1 }
                    return state.turns.take(orQueue: continuation)
                }
                if took { continuation.resume() }
            }
        }

        private func end() {
            state.withLock { $0.turns.end() }?.resume()
        }
    }

    /// Gives a notification's text a fresh eventId: (new id, new text).
    typealias Restamp = @Sendable (String) async throws -> (eventID: UInt64, text: String)

    let policy: Policy
    private let store: any PlatformStore
    private let restamp: Restamp
    private let logger: Logger
    private let channels = Mutex<[String: Channel]>([:])
    private let openSockets = Atomic(0)
    /// Told whenever a socket attaches, is closed or is heard from.
    let changes = StateChanges()
    /// Set once the node stops: sockets are closed rather than attached.
    private let closing = Atomic(false)
    var isClosing: Bool { closing.load(ordering: .relaxed) }

    init(store: any PlatformStore, policy: Policy = Policy(), restamp: @escaping Restamp, logger: Logger) {
        self.store = store
        self.policy = policy
        self.restamp = restamp
        self.logger = logger
    }

    /// Open sockets.
    var count: Int { openSockets.load(ordering: .relaxed) }

    private func socketOpened() {
        openSockets.add(1, ordering: .relaxed)
        changes.signal()
    }

    private func socketClosed() {
        openSockets.subtract(1, ordering: .relaxed)
        changes.signal()
    }

    func hasSocket(_ channelID: String) -> Bool { socket(channelID) != nil }

    /// The channel's live socket.
    func socket(_ channelID: String) -> Socket? { existing(channelID)?.state.withLock { $0.socket } }

    private func existing(_ channelID: String) -> Channel? { channels.withLock { $0[channelID] } }

    /// When the client on this channel's socket was last heard from (milliseconds since 1970).
    func lastSeen(channelID: String) -> Int64? {
        existing(channelID)?.state.withLock { $0.socket?.lastSeen.load(ordering: .relaxed) }
    }

    /// The channels whose socket is held here.
    func channelsWithSockets() -> [String] {
        channels.withLock { Array($0.values) }.compactMap { channel in
            channel.state.withLock { $0.socket != nil } ? channel.id : nil
        }
    }

    private static func channel(_ channelID: String, in channels: inout [String: Channel]) -> Channel {
        if let channel = channels[channelID] { return channel }
        let channel = Channel(id: channelID)
        channels[channelID] = channel
        return channel
    }

    /// Drops a channel that holds nothing worth keeping (no socket, nothing to replay).
    private func forgetIfIdle(_ channel: Channel) {
        channels.withLock { channels in
            if channels[channel.id] === channel, channel.state.withLock({ $0.isForgettable }) {
                channels[channel.id] = nil
            }
        }
    }

    // MARK: Sockets

    /// Makes a socket the live one of its channel (an older socket there is closed) and writes to
    /// it, in order, what the client has not had: remembered notifications after `lastEventID`
    /// (all of them when nil) and the stored queue.
    func attach(_ socket: Socket, lastEventID: UInt64?, now: Date) async {
        await attach(socket, to: reserve(socket.channelID), lastEventID: lastEventID, now: now)
    }

    /// Takes a channel from the table for a turn to come: it stays there until that turn has
    /// joined the channel's line. (Forgotten in between, by another node taking the client or a
    /// delivery finding the subscription ended, the socket attached next would sit on a channel
    /// no notification reaches.)
    func reserve(_ channelID: String) -> Channel {
        channels.withLock { channels in
            let channel = Self.channel(channelID, in: &channels)
            channel.state.withLock { $0.reservations += 1 }
            return channel
        }
    }

    /// Attaches `socket` in a turn of `channel`, which ``reserve(_:)`` gave.
    func attach(_ socket: Socket, to channel: Channel, lastEventID: UInt64?, now: Date) async {
        let channelID = socket.channelID
        let nowMs = now.milliseconds
        await channel.turn(reserved: true) {
            var stored: [QueuedNotification] = []
            do {
                stored = try await store.queued(channelID: channelID)
            } catch {
                logger.error("Queued notifications could not be read", metadata: ["error": "\(error)"])
            }
            // Refused, with the close to send, when the subscription ended or the node is stopping
            // (read under the channel's lock, which closeAll takes after setting `closing`).
            let outcome = channel.state.withLock {
                state -> (replaced: Socket?, refusal: (WebSocketErrorCode, String)?) in
                if closing.load(ordering: .relaxed) { return (nil, (.goingAway, "Platform shutting down")) }
                guard !state.ended else { return (nil, (.normalClosure, "Subscription ended")) }
                var replay = state.window.entries(after: lastEventID)
                if let forgotten = state.forgotten, lastEventID.map({ $0 < forgotten.eventID }) ?? true,
                    let text = Self.missedText(eventID: forgotten.eventID, count: forgotten.count)
                {
                    replay.append(Written(eventID: forgotten.eventID, text: text, at: nowMs))
                }
                state.forgotten = nil
                for entry in stored where lastEventID.map({ entry.eventID > $0 }) ?? true {
                    guard let text = entry.text ?? Self.missedText(entry) else { continue }
                    replay.append(Written(eventID: entry.eventID, text: text, at: nowMs))
                }
                replay.sort { $0.eventID < $1.eventID }
                for entry in replay { socket.replay(entry.text) }
                state.window.removeAll()
                for entry in replay { remember(entry, in: &state) }
                state.lastEventID = max(
                    state.lastEventID, lastEventID ?? 0, replay.last?.eventID ?? 0, stored.last?.eventID ?? 0)
                defer { state.socket = socket }
                return (state.socket, nil)
            }
            if let (code, reason) = outcome.refusal {
                socket.close(code, reason)
                return
            }
            if let replaced = outcome.replaced {
                // The path is the capability: a takeover is worth an operator's eye.
                logger.notice(
                    "Channel taken over by a newer connection",
                    metadata: [
                        "channel": .string(channelID), "previous": .string(replaced.peerName),
                        "new": .string(socket.peerName),
                    ])
                replaced.close(.policyViolation, "Replaced by a newer connection to this channel")
                changes.signal()
            } else {
                socketOpened()
            }
            if let newest = stored.last?.eventID {
                do {
                    try await store.dequeue(channelID: channelID, through: newest)
                } catch {
                    // They stay queued and come again next time; the client drops them by eventId.
                    logger.error("Delivered notifications could not be dequeued", metadata: ["error": "\(error)"])
                }
            }
        }
    }

    /// Forgets `socket` if it is still its channel's live one; what it was sent is remembered
    /// for the client's reconnect, unless the subscription has ended: then the channel goes.
    func detach(_ socket: Socket) {
        guard let channel = existing(socket.channelID) else { return }
        let (detached, ended) = channel.state.withLock { state in
            guard state.socket === socket else { return (false, state.ended) }
            state.socket = nil
            return (true, state.ended)
        }
        if detached { socketClosed() }
        if ended { forget(channel) }
    }

    private func forget(_ channel: Channel) {
        channels.withLock { channels in
            if channels[channel.id] === channel { channels[channel.id] = nil }
        }
    }

    /// Channels the hub keeps (with a socket, or a replay window for a reconnect).
    var channelCount: Int { channels.withLock { $0.count } }

    // MARK: Notifications

    /// Writes a notification to the sockets of these channels, and queues it for those with none
    /// here. Returns how many sockets took it and which channels queued it; the others' subscription
    /// had ended.
    ///
    /// A channel's eventIds must increase in the order it gets them (clients and the replay rely
    /// on it). Ids are drawn before the channel is reached, so a notification can find a later
    /// one already written; it is then given a fresh id.
    func deliver(_ text: String, eventID: UInt64, to channelIDs: [String], now: Date) async throws -> (
        sent: Int, queued: [String]
    ) {
        let entry = Written(eventID: eventID, text: text, at: now.milliseconds)
        let frame = Frame(text)
        // One pass, no await, for the sockets free to take it: the common case, and under fan-out
        // the cost of a delivery is what this loop spends per channel.
        let targets = channels.withLock { channels in channelIDs.map { Self.channel($0, in: &channels) } }
        var sent = 0
        var waiting: [Channel] = []
        for channel in targets {
            let written = channel.state.withLock { state in
                guard !state.turns.busy, let socket = state.socket, eventID > state.lastEventID else { return false }
                return write(entry, frame, to: socket, in: &state)
            }
            if written { sent += 1 } else { waiting.append(channel) }
        }
        var queued: [String] = []
        for channel in waiting {
            switch try await deliverInTurn(entry, frame, to: channel) {
            case .sent: sent += 1
            case .queued: queued.append(channel.id)
            case .dropped: forgetIfIdle(channel)
            }
        }
        return (sent, queued)
    }

    /// Delivers in the channel's turn: after a drain or attach under way, with a fresh eventId if
    /// a later one was written meanwhile; queued without a socket.
    private func deliverInTurn(_ entry: Written, _ frame: Frame, to channel: Channel) async throws -> Delivery {
        try await channel.turn { () async throws -> Delivery in
            var (entry, frame) = (entry, frame)
            while entry.eventID <= channel.state.withLock({ $0.lastEventID }) {
                (entry.eventID, entry.text) = try await restamp(entry.text)
                frame = Frame(entry.text)
            }
            let written = channel.state.withLock { state in
                if let socket = state.socket, write(entry, frame, to: socket, in: &state) { return true }
                // Queued instead: later notifications must still exceed it.
                state.lastEventID = entry.eventID
                return false
            }
            if written { return .sent }
            let queued = try await store.enqueue(
                channelID: channel.id, eventID: entry.eventID, text: entry.text, bound: policy.queue)
            // When dropped, the subscription is gone: nothing here is worth keeping. A channel that
            // queued keeps its last id, which later notifications must exceed.
            return queued ? .queued : .dropped
        }
    }

    /// Writes what is queued for the channel to its socket here, if it has one: notifications
    /// another node queued for it.
    func drain(channelID: String, now: Date) async {
        guard let channel = existing(channelID), channel.state.withLock({ $0.socket != nil }) else { return }
        await channel.turn {
            guard channel.state.withLock({ $0.socket != nil }) else { return }
            do {
                let stored = try await store.queued(channelID: channelID)
                guard let newest = stored.last?.eventID else { return }
                var last = channel.state.withLock { $0.lastEventID }
                var batch: [Written] = []
                for entry in stored {
                    guard var text = entry.text ?? Self.missedText(entry) else { continue }
                    var eventID = entry.eventID
                    while eventID <= last { (eventID, text) = try await restamp(text) }
                    last = eventID
                    batch.append(Written(eventID: eventID, text: text, at: now.milliseconds))
                }
                let written = channel.state.withLock { state in
                    guard let socket = state.socket else { return false }
                    // (One refused leaves the rest queued: the socket is then down.)
                    return batch.allSatisfy { write($0, Frame($0.text), to: socket, in: &state) }
                }
                if written { try await store.dequeue(channelID: channelID, through: newest) }
            } catch {
                logger.error("Queued notifications could not be drained", metadata: ["error": "\(error)"])
            }
        }
    }

    /// Writes to the channel's socket; false when its backlog is full: the client stopped reading,
    /// so the socket is taken as down (what follows is queued in the store) and closed.
    private func write(_ entry: Written, _ frame: Frame, to socket: Socket, in state: inout Channel.State) -> Bool {
        guard socket.send(frame) else {
            state.socket = nil
            socketClosed()
            socket.close(.policyViolation, "The client does not read its notifications")
            logger.notice("Channel socket closed: backlog full", metadata: ["channel": .string(socket.channelID)])
            return false
        }
        state.lastEventID = entry.eventID
        remember(entry, in: &state)
        return true
    }

    private func remember(_ entry: Written, in state: inout Channel.State) {
        let (dropped, newest) = state.window.append(
            entry, keeping: policy.windowCount, bytes: policy.replayBytes)
        if let newest {
            state.forgotten = ((state.forgotten?.count ?? 0) + dropped, newest.eventID, newest.at)
        }
    }

    private static func missedText(_ marker: QueuedNotification) -> String? {
        missedText(eventID: marker.eventID, count: marker.missed)
    }

    private static func missedText(eventID: UInt64, count: Int) -> String? {
        try? WireJSON.text(NotificationDocument(notificationMessage: .missed(eventId: String(eventID), count: count)))
    }

    // MARK: Closing

    /// The subscription ended: sends `text` (if any), closes the socket, forgets the channel.
    func close(channelID: String, sending text: String? = nil, code: WebSocketErrorCode, reason: String) async {
        guard let channel = existing(channelID) else { return }
        let socket = await channel.turn {
            channels.withLock { channels in
                if channels[channelID] === channel { channels[channelID] = nil }
            }
            return channel.state.withLock { state in
                state.ended = true
                defer { state.socket = nil }
                return state.socket
            }
        }
        guard let socket else { return }
        socketClosed()
        if let text { socket.send(Frame(text)) }
        socket.close(code, reason)
    }

    /// The subscription ended at the client's request: its socket is closed at `deadline` unless
    /// the client closes it first; without a socket the channel is forgotten now.
    func scheduleClose(channelID: String, at deadline: Date) async {
        guard let channel = existing(channelID) else { return }
        await channel.turn {
            // Ended either way: a socket still open is closed at the deadline or when its client
            // closes it first, and the channel goes with it.
            let socket = channel.state.withLock { state in
                state.ended = true
                return state.socket
            }
            if let socket {
                socket.closeAt.store(deadline.milliseconds, ordering: .relaxed)
            } else {
                channels.withLock { channels in
                    if channels[channelID] === channel { channels[channelID] = nil }
                }
            }
        }
    }

    /// Closes the socket held here for a channel whose client attached on another node.
    func release(channelID: String) {
        guard let channel = existing(channelID) else { return }
        // The client is served elsewhere now: nothing here is for it any more.
        let socket = channel.state.withLock { state in
            defer {
                state.socket = nil
                state.window.removeAll()
                state.forgotten = nil
            }
            return state.socket
        }
        forgetIfIdle(channel)
        guard let socket else { return }
        socketClosed()
        socket.close(.policyViolation, "Replaced by a newer connection to this channel")
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
                if let forgotten = state.forgotten, forgotten.at < lastSeen - marginMs { state.forgotten = nil }
                state.window.forget(writtenBefore: lastSeen - marginMs)
                return nil
            }
            guard let (socket, idle) = due else { continue }
            socketClosed()
            closed += 1
            if idle {
                socket.close(.goingAway, "No keepalive received")
            } else {
                forget(channel)
                socket.close(.normalClosure, "Subscription ended")
            }
        }
        return closed
    }

    /// Closes every socket, for shutdown. The subscriptions and their queues stay; clients
    /// reconnect later.
    func closeAll(reason: String) {
        // First, so a socket attaching from now on is closed too: a client reconnecting at once
        // must not find a node that is stopping still taking it.
        closing.store(true, ordering: .relaxed)
        for channel in channels.withLock({ Array($0.values) }) {
            let socket = channel.state.withLock { state in
                defer { state.socket = nil }
                return state.socket
            }
            guard let socket else { continue }
            socketClosed()
            socket.close(.goingAway, reason)
        }
    }
}

extension Date {
    var milliseconds: Int64 { Int64((timeIntervalSince1970 * 1000).rounded(.down)) }
}

/// Whose turn it is on a channel: one at a time, the others in the order they came. A value, kept
/// under the channel's lock; `Waiter` is what wakes a waiting turn (a continuation).
struct Turns<Waiter> {
    /// A turn is in progress.
    private(set) var busy = false
    private var waiting: [Waiter] = []

    var isIdle: Bool { !busy && waiting.isEmpty }

    /// Takes the turn if it is free.
    mutating func take() -> Bool {
        guard !busy else { return false }
        busy = true
        return true
    }

    /// Takes the turn if it is free; otherwise `waiter` waits in line, and false.
    mutating func take(orQueue waiter: Waiter) -> Bool {
        if take() { return true }
        waiting.append(waiter)
        return false
    }

    /// Ends the turn in progress. The next in line, if any, has the turn now (the caller wakes
    /// it); otherwise none is busy.
    mutating func end() -> Waiter? {
        guard !waiting.isEmpty else {
            busy = false
            return nil
        }
        return waiting.removeFirst()
    }
}
