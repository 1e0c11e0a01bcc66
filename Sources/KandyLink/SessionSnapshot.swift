import Foundation
import KandyLinkProtocol
import Synchronization

extension KandySession {
    /// What the synchronous getters of `Kandy` read.
    struct Snapshot: Sendable {
        var username: String?
        var subscribed: [String] = []
        var isPending = false
        var channelOpen = false
        var lastError: KandyError?
        var record: SubscriptionRecord?
        var destroyed = false
        /// Presence of watched and fetched users; forgotten when another user logs in. Kept only
        /// here and changed in place, so a message does not copy its conversation.
        var presence: [String: UserPresence] = [:]
        /// Messages by peer, the latest `Messages.conversationLength` of each.
        var conversations: [String: [InstantMessage]] = [:]
    }

    /// The snapshot, shared between the actor (which writes it) and `Kandy`'s synchronous getters.
    final class SnapshotBox: Sendable {
        let state = Mutex(Snapshot())

        /// `call.iceServers` with the TURN credentials the platform issued, when it issued some
        /// and `serverTurnCredentials` is on (TURN entries only; STUN needs none).
        func iceServers(_ configuration: KandyConfiguration) -> [KandyConfiguration.IceServer] {
            let issued = state.withLock { $0.record?.turnCredentials }
            guard configuration.call.serverTurnCredentials, let issued else { return configuration.call.iceServers }
            return configuration.call.iceServers.map { server in
                guard server.urls.contains(where: { $0.hasPrefix("turn:") || $0.hasPrefix("turns:") }) else {
                    return server
                }
                var server = server
                server.username = issued.username
                server.credential = issued.password
                return server
            }
        }
    }

    /// Handlers registered with `on(_:)` and the open `events` streams.
    final class Observers: Sendable {
        private struct State {
            var handlers: [UUID: (KandyEvent.Name?, @Sendable (KandyEvent) -> Void)] = [:]
            var streams: [UUID: AsyncStream<KandyEvent>.Continuation] = [:]
            var finished = false
        }
        private let state = Mutex(State())

        func add(_ name: KandyEvent.Name?, _ handler: @escaping @Sendable (KandyEvent) -> Void) -> UUID {
            let id = UUID()
            state.withLock { $0.handlers[id] = (name, handler) }
            return id
        }

        func remove(_ id: UUID) { state.withLock { $0.handlers[id] = nil } }

        func stream() -> AsyncStream<KandyEvent> {
            let (stream, continuation) = AsyncStream.makeStream(of: KandyEvent.self)
            let id = UUID()
            let finished = state.withLock { state in
                if !state.finished { state.streams[id] = continuation }
                return state.finished
            }
            if finished { continuation.finish() }
            continuation.onTermination = { [weak self] _ in self?.state.withLock { $0.streams[id] = nil } }
            return stream
        }

        func emit(_ event: KandyEvent) {
            let (handlers, streams) = state.withLock { ($0.handlers.values.map { $0 }, Array($0.streams.values)) }
            for (name, handler) in handlers where name == nil || name == event.name { handler(event) }
            for stream in streams { stream.yield(event) }
        }

        func finish() {
            let streams = state.withLock { state in
                state.finished = true
                state.handlers = [:]
                defer { state.streams = [:] }
                return Array(state.streams.values)
            }
            for stream in streams { stream.finish() }
        }
    }
}
