import CKandyMedia
import Dispatch
import Foundation
import KandyLink
import Synchronization

/// A ``MediaEngine`` on GStreamer's `webrtcbin` (Debian: `gstreamer1.0-plugins-bad`,
/// `gstreamer1.0-nice`): opus audio over DTLS-SRTP, ICE through the call's STUN and TURN servers,
/// hold by renegotiation. What it sends and what it does with what it receives is the caller's
/// choice: a tone or a WAV file out, a WAV file or nothing in.
///
/// ```swift
/// let engine = GStreamerMediaEngine(source: .tone(hertz: 440), recording: URL(fileURLWithPath: "in.wav"))
/// let kandy = try Kandy.create(configuration, mediaEngine: engine)
/// ```
public struct GStreamerMediaEngine: MediaEngine {
    public enum Source: Sendable, Equatable {
        /// A sine tone.
        case tone(hertz: Double)
        /// A WAV file, played once.
        case file(URL)
    }

    public var source: Source
    /// Where what the other side sends is written, as WAV (mono, 48 kHz); nil: dropped.
    public var recording: URL?
    /// Only relayed candidates: the media goes through TURN.
    public var relayOnly: Bool
    /// The sessions made, by call id (for their statistics).
    private let sessions = SessionRegistry()

    public init(source: Source = .tone(hertz: 440), recording: URL? = nil, relayOnly: Bool = false) {
        self.source = source
        self.recording = recording
        self.relayOnly = relayOnly
    }

    public func session(callID: String, media: CallMedia, iceServers: [KandyConfiguration.IceServer]) async throws
        -> any MediaSession
    {
        let (stun, turn) = Self.servers(iceServers)
        let source = source
        let recording = recording
        let relayOnly = relayOnly
        let session = try await GStreamerSession.run { () throws -> GStreamerSession in
            let strings = [stun, turn, source.path, recording?.path].map { $0.map { strdup($0) } ?? nil }
            defer { for string in strings { free(string) } }
            var options = kl_media_options(
                stun_server: strings[0], turn_server: strings[1], relay_only: relayOnly ? 1 : 0,
                play_path: strings[2], tone_hz: source.hertz, record_path: strings[3])
            var error: UnsafeMutablePointer<CChar>?
            guard let handle = kl_media_new(&options, &error) else { throw GStreamerSession.failure(error) }
            return GStreamerSession(handle: handle)
        }
        let sessions = sessions
        session.onClose = { sessions.withLock { _ = $0.removeValue(forKey: callID) } }
        sessions.withLock { $0[callID] = session }
        return session
    }

    /// The RTP counters of call `callID`'s media, while it lasts.
    public func statistics(callID: String) async -> MediaStatistics? {
        guard let session = sessions.withLock({ $0[callID] }) else { return nil }
        return await session.statistics()
    }

    /// webrtcbin takes one STUN and one TURN server as URIs: the first of each, TURN credentials
    /// percent-encoded (a TURN REST username holds a colon).
    static func servers(_ iceServers: [KandyConfiguration.IceServer]) -> (stun: String?, turn: String?) {
        var stun: String?
        var turn: String?
        for server in iceServers {
            for url in server.urls {
                let parts = url.split(separator: ":", maxSplits: 1).map(String.init)
                guard parts.count == 2 else { continue }
                let address = parts[1].split(separator: "?").first.map(String.init) ?? parts[1]
                let transport = url.contains("transport=tcp") ? "?transport=tcp" : ""
                switch parts[0] {
                case "stun" where stun == nil:
                    stun = "stun://" + address
                case "turn" where turn == nil, "turns" where turn == nil:
                    guard let user = server.username, let password = server.credential else { continue }
                    turn = "\(parts[0])://\(escape(user)):\(escape(password))@\(address)\(transport)"
                default:
                    continue
                }
            }
        }
        return (stun, turn)
    }

    private static func escape(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? text
    }
}

extension GStreamerMediaEngine.Source {
    var path: String? { if case .file(let url) = self { url.path } else { nil } }
    var hertz: Double { if case .tone(let hertz) = self { hertz } else { 0 } }
}

/// One call's pipeline. Every step blocks inside GStreamer until done, so each runs on a queue of
/// the session's own rather than on Swift's cooperative threads.
final class GStreamerSession: MediaSession, @unchecked Sendable {
    // @unchecked: the handle is used only on `queue`, one step at a time.
    private let handle: Handle
    private let queue = DispatchQueue(label: "kandy-link.gstreamer")
    private var closed = false
    /// Set once, right after it is made: forgets it in its engine's registry.
    var onClose: @Sendable () -> Void = {}

    /// The C session, handed to the session's queue.
    struct Handle: @unchecked Sendable {
        let pointer: OpaquePointer
    }

    init(handle: OpaquePointer) { self.handle = Handle(pointer: handle) }

    /// Runs `work` on a thread of its own and returns its result.
    static func run<T: Sendable>(
        on queue: DispatchQueue = DispatchQueue.global(), _ work: @escaping @Sendable () throws -> T
    )
        async throws -> T
    {
        try await withCheckedThrowingContinuation { continuation in
            queue.async { continuation.resume(with: Result { try work() }) }
        }
    }

    static func failure(_ error: UnsafeMutablePointer<CChar>?) -> MediaEngineFailure {
        defer { kl_media_free_string(error) }
        return MediaEngineFailure(description: error.map { String(cString: $0) } ?? "GStreamer failed")
    }

    private func step(_ work: @escaping @Sendable (OpaquePointer) throws -> String) async throws -> String {
        let handle = handle
        return try await Self.run(on: queue) { [self] in
            guard !closed else { throw MediaEngineFailure(description: "The media session is closed.") }
            return try work(handle.pointer)
        }
    }

    private static func text(_ result: UnsafeMutablePointer<CChar>?, _ error: UnsafeMutablePointer<CChar>?) throws
        -> String
    {
        guard let result else { throw failure(error) }
        defer { kl_media_free_string(result) }
        return String(cString: result)
    }

    func createOffer(hold: Bool) async throws -> String {
        try await step { handle in
            var error: UnsafeMutablePointer<CChar>?
            return try Self.text(kl_media_create_offer(handle, hold ? 1 : 0, &error), error)
        }
    }

    func createAnswer(to offer: String, hold: Bool) async throws -> String {
        try await step { handle in
            var error: UnsafeMutablePointer<CChar>?
            return try Self.text(kl_media_create_answer(handle, offer, hold ? 1 : 0, &error), error)
        }
    }

    func applyAnswer(_ answer: String) async throws {
        _ = try await step { handle in
            var error: UnsafeMutablePointer<CChar>?
            guard kl_media_apply_answer(handle, answer, &error) != 0 else { throw Self.failure(error) }
            return ""
        }
    }

    /// webrtcbin cannot withdraw a local offer; the next negotiation replaces it.
    func rollback() async {}

    func close() async {
        let handle = handle
        _ = try? await Self.run(on: queue) { [self] in
            guard !closed else { return }
            closed = true
            kl_media_free(handle.pointer)
            onClose()
        }
    }

    /// RTP counters, jitter and round-trip time of the moment.
    func statistics() async -> MediaStatistics? {
        let handle = handle
        return try? await Self.run(on: queue) { [self] () throws -> MediaStatistics in
            guard !closed else { throw MediaEngineFailure(description: "closed") }
            var stats = kl_media_stats()
            kl_media_get_stats(handle.pointer, &stats)
            return MediaStatistics(
                packetsSent: stats.packets_sent, bytesSent: stats.bytes_sent, packetsReceived: stats.packets_received,
                bytesReceived: stats.bytes_received, jitter: stats.jitter >= 0 ? stats.jitter : nil,
                roundTripTime: stats.round_trip_time >= 0 ? stats.round_trip_time : nil)
        }
    }
}

public struct MediaStatistics: Sendable, Equatable {
    public var packetsSent: UInt64
    public var bytesSent: UInt64
    public var packetsReceived: UInt64
    public var bytesReceived: UInt64
    /// Seconds.
    public var jitter: Double?
    public var roundTripTime: Double?
}

public struct MediaEngineFailure: Error, CustomStringConvertible {
    public var description: String
}

final class SessionRegistry: Sendable {
    private let sessions = Mutex<[String: GStreamerSession]>([:])

    func withLock<T>(_ body: (inout [String: GStreamerSession]) -> T) -> T { sessions.withLock { body(&$0) } }
}
