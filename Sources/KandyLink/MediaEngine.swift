import Foundation
import Synchronization

/// What a call's media needs: audio, video, or both.
public struct CallMedia: Sendable, Equatable {
    public var audio: Bool
    public var video: Bool

    public init(audio: Bool = true, video: Bool = false) {
        self.audio = audio
        self.video = video
    }
}

/// The media side of calls: the SDK signals, an engine makes and applies SDP and carries the
/// media. On Apple platforms an app wraps WebRTC's `RTCPeerConnection`; on Linux
/// `KandyLinkGStreamer` would; ``SignallingOnlyMediaEngine`` carries no media at all.
///
/// Every SDP the engine returns is complete (ICE candidates gathered), as Kandy.js sends it:
/// the platform has no trickle ICE.
public protocol MediaEngine: Sendable {
    /// The media of one call, with the ICE servers it may use (`kandy.iceServers`).
    func session(callID: String, media: CallMedia, iceServers: [KandyConfiguration.IceServer]) async throws
        -> any MediaSession
}

/// One call's media: one peer connection.
public protocol MediaSession: Sendable {
    /// An offer; `hold`: every stream inactive, else send and receive.
    func createOffer(hold: Bool) async throws -> String
    /// The answer to the other side's `offer`; `hold`: this side keeps its streams inactive.
    func createAnswer(to offer: String, hold: Bool) async throws -> String
    /// Applies the other side's answer to this side's last offer.
    func applyAnswer(_ answer: String) async throws
    /// Withdraws this side's last offer (it crossed the other side's and lost).
    func rollback() async
    /// Stops the media and releases the connection.
    func close() async
}

/// An engine for where no media stack is available (the demo, tests, a bot that only signals):
/// it writes SDP that is valid and negotiates directions, but no media flows. Says so in its
/// SDP's session name.
public struct SignallingOnlyMediaEngine: MediaEngine {
    public init() {}

    public func session(callID: String, media: CallMedia, iceServers: [KandyConfiguration.IceServer]) async throws
        -> any MediaSession
    {
        SignallingOnlySession(media: media)
    }
}

private final class SignallingOnlySession: MediaSession {
    private let media: CallMedia
    private let version = Mutex(0)
    private let sessionID = UInt64.random(in: 1..<UInt64(Int64.max))

    init(media: CallMedia) { self.media = media }

    func createOffer(hold: Bool) async throws -> String { sdp(hold: hold, kinds: media) }

    func createAnswer(to offer: String, hold: Bool) async throws -> String {
        // Answer every stream offered, as inactive where either side holds.
        let offered = CallMedia(audio: offer.contains("m=audio"), video: offer.contains("m=video"))
        return sdp(hold: hold || CallMachine.holds(offer), kinds: offered)
    }

    func applyAnswer(_ answer: String) async throws {
        guard answer.hasPrefix("v=0") else { throw MediaFailure(description: "The answer is not SDP.") }
    }

    func rollback() async {}
    func close() async {}

    private func sdp(hold: Bool, kinds: CallMedia) -> String {
        let version = version.withLock { version in
            version += 1
            return version
        }
        var lines = [
            "v=0", "o=- \(sessionID) \(version) IN IP4 127.0.0.1", "s=KandyLink signalling only (no media)", "t=0 0",
        ]
        for (kind, payload, codec) in [("audio", 111, "opus/48000/2"), ("video", 96, "VP8/90000")]
        where kind == "audio" ? kinds.audio : kinds.video {
            lines += [
                "m=\(kind) 9 UDP/TLS/RTP/SAVPF \(payload)", "c=IN IP4 0.0.0.0", "a=rtpmap:\(payload) \(codec)",
                hold ? "a=inactive" : "a=sendrecv",
            ]
        }
        return lines.joined(separator: "\r\n") + "\r\n"
    }
}

struct MediaFailure: Error, CustomStringConvertible {
    var description: String
}
