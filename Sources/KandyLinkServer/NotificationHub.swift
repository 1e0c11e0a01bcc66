import Foundation
import NIOWebSocket
import Synchronization

/// The live sockets of notification channels: at most one per channel.
///
/// Each socket drains its own ordered outbox, so a `gone` written before a close arrives before
/// it, and senders never wait on a slow peer. Liveness is a timestamp per socket checked by the
/// platform's single sweeper: no timer per socket.
final class NotificationHub: Sendable {
    enum Outbound: Sendable {
        case text(String)
        case close(WebSocketErrorCode, String)
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

    private struct State {
        var sockets: [String: Socket] = [:]
        var nextSerial: UInt64 = 1
    }

    private let state = Mutex(State())

    var count: Int { state.withLock { $0.sockets.count } }

    func hasSocket(_ channelID: String) -> Bool { state.withLock { $0.sockets[channelID] != nil } }

    /// Makes a new socket the live one of its channel; an older socket there is closed.
    func attach(channelID: String, now: Date) -> (Socket, AsyncStream<Outbound>) {
        let (stream, continuation) = AsyncStream.makeStream(of: Outbound.self, bufferingPolicy: .unbounded)
        let (socket, replaced) = state.withLock { state in
            let socket = Socket(serial: state.nextSerial, channelID: channelID, outbox: continuation, now: now)
            state.nextSerial += 1
            let replaced = state.sockets.updateValue(socket, forKey: channelID)
            return (socket, replaced)
        }
        replaced?.close(.policyViolation, "Replaced by a newer connection to this channel")
        return (socket, stream)
    }

    /// Forgets `socket` if it is still its channel's live one.
    func detach(_ socket: Socket) {
        state.withLock { state in
            if state.sockets[socket.channelID] === socket { state.sockets[socket.channelID] = nil }
        }
    }

    /// Queues a text frame on the channel's socket; false when no socket is open.
    @discardableResult
    func send(_ text: String, to channelID: String) -> Bool {
        guard let socket = state.withLock({ $0.sockets[channelID] }) else { return false }
        socket.outbox.yield(.text(text))
        return true
    }

    /// Sends `text` (if any), then closes the channel's socket.
    func close(channelID: String, sending text: String? = nil, code: WebSocketErrorCode, reason: String) {
        guard let socket = state.withLock({ $0.sockets.removeValue(forKey: channelID) }) else { return }
        if let text { socket.outbox.yield(.text(text)) }
        socket.close(code, reason)
    }

    /// Closes the channel's socket at `deadline` unless the client closes it first.
    func scheduleClose(channelID: String, at deadline: Date) {
        state.withLock { $0.sockets[channelID] }?.closeAt.store(deadline.milliseconds, ordering: .relaxed)
    }

    /// Closes sockets silent since before `silentSince` and those past a scheduled close.
    /// Returns how many were closed.
    @discardableResult
    func sweep(now: Date, silentSince: Date) -> Int {
        let nowMs = now.milliseconds
        let silentMs = silentSince.milliseconds
        let due = state.withLock { state in
            var due: [(Socket, Bool)] = []
            for socket in state.sockets.values {
                let closeAt = socket.closeAt.load(ordering: .relaxed)
                if closeAt != 0 && closeAt <= nowMs {
                    due.append((socket, false))
                } else if socket.lastSeen.load(ordering: .relaxed) < silentMs {
                    due.append((socket, true))
                }
            }
            for (socket, _) in due { state.sockets[socket.channelID] = nil }
            return due
        }
        for (socket, idle) in due {
            if idle {
                socket.close(.goingAway, "No keepalive received")
            } else {
                socket.close(.normalClosure, "Subscription ended")
            }
        }
        return due.count
    }

    /// Closes every socket, for shutdown. The subscriptions stay; clients reconnect later.
    func closeAll(reason: String) {
        let all = state.withLock { state in
            defer { state.sockets.removeAll() }
            return Array(state.sockets.values)
        }
        for socket in all { socket.close(.goingAway, reason) }
    }
}

extension Date {
    var milliseconds: Int64 { Int64((timeIntervalSince1970 * 1000).rounded(.down)) }
}
