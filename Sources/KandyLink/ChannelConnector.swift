import Foundation
import KandyLinkProtocol

/// The notification channel's socket as the session holds it: its URL, the socket being opened
/// and the one open. Every socket is numbered; an event of a socket since superseded is known by
/// its number and dropped, so a late frame or close of an old socket never reaches a machine.
struct ChannelConnector {
    enum Event: Sendable {
        case opened(any WebSocketConnection)
        case failed
        case text(String)
        case closed
    }

    private let websocket: any WebSocketTransport
    private var current = 0
    private var connection: (any WebSocketConnection)?
    private var connecting: Task<Void, Never>?

    init(websocket: any WebSocketTransport) {
        self.websocket = websocket
    }

    /// The channel's URL (spec §4.1): the first open carries the token as `access_token` when so
    /// configured; a reconnect carries it as `token`, and the newest eventId received on this
    /// channel, so that the platform replays only what follows.
    static func url(
        origin: String, path: String, query: ChannelMachine.Query, token: String?, tokenOnFirstOpen: Bool,
        lastEventID: UInt64?
    ) -> String {
        var url = origin + path
        switch query {
        case .firstOpen:
            if let token, tokenOnFirstOpen { url += "?access_token=" + RestExchange.queryEncode(token) }
        case .reconnect:
            url += token.map { "?token=" + RestExchange.queryEncode($0) } ?? "?"
            if let lastEventID {
                url += (url.hasSuffix("?") ? "" : "&") + "\(LinkPath.lastEventIDParameter)=\(lastEventID)"
            }
        }
        return url
    }

    /// Opens a socket to `url`, superseding any other. Its events reach `deliver` one at a time:
    /// frames in arrival order, the close after them; `opened` or `failed` once the open ends.
    /// Returns the socket's number.
    @discardableResult
    mutating func open(_ url: String, deliver: @escaping @Sendable (Event, _ socket: Int) async -> Void) -> Int {
        current += 1
        let socket = current
        let websocket = self.websocket
        let (inbound, sink) = AsyncStream.makeStream(of: Event.self)
        Task {
            for await event in inbound { await deliver(event, socket) }
        }
        // One superseded by a newer socket finishes by itself and is dropped by its number.
        connecting = Task {
            do {
                let connection = try await websocket.connect(
                    url: url,
                    onMessage: { text in sink.yield(.text(text)) },
                    onClose: {
                        sink.yield(.closed)
                        sink.finish()
                    })
                await deliver(.opened(connection), socket)
            } catch {
                sink.finish()
                await deliver(.failed, socket)
            }
        }
        return socket
    }

    /// `event` if it belongs to the current socket, with the bookkeeping done (an opened socket
    /// becomes the open one, a closed one is forgotten); nil for a superseded socket's event,
    /// and a superseded socket that opened is closed.
    mutating func admit(_ event: Event, of socket: Int) -> Event? {
        guard socket == current else {
            if case .opened(let connection) = event { Task { await connection.close() } }
            return nil
        }
        switch event {
        case .opened(let connection): self.connection = connection
        case .closed: connection = nil
        case .failed, .text: break
        }
        return event
    }

    /// The keepalive frame (spec §4.5), on the open socket if there is one.
    func sendKeepalive() {
        guard let connection else { return }
        Task { try? await connection.send(KeepaliveMessage.text) }
    }

    /// Supersedes every socket and closes the open one.
    mutating func disconnect() {
        current += 1
        if let connection {
            self.connection = nil
            Task { await connection.close() }
        }
    }

    /// For `destroy`: supersedes every socket, stops an open in progress, and gives the open
    /// socket to close.
    mutating func shutdown() -> (any WebSocketConnection)? {
        current += 1
        connecting?.cancel()
        connecting = nil
        defer { connection = nil }
        return connection
    }
}

/// Which notifications a channel has had. Platform eventIds increase on each channel, so one
/// number covers them; ids that are not numbers are remembered, the last 100, as Kandy.js does.
struct ReceivedEvents: Sendable, Equatable {
    private var channelPath: String?
    private var newest: UInt64?
    private var others: [String] = []

    /// The newest numeric id received on `path`.
    func newest(on path: String) -> UInt64? { channelPath == path ? newest : nil }

    /// Records `eventId`; false when it was had already. A new channel starts afresh.
    mutating func isNew(_ eventId: String, on path: String) -> Bool {
        if channelPath != path { self = ReceivedEvents(channelPath: path) }
        if let number = UInt64(eventId) {
            if let newest, number <= newest { return false }
            newest = number
            return true
        }
        if others.contains(eventId) { return false }
        others.append(eventId)
        if others.count > 100 { others.removeFirst() }
        return true
    }

    private init(channelPath: String) { self.channelPath = channelPath }
    init() {}
}
