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

/// SDP that a WebRTC stack accepts (ICE credentials, a DTLS fingerprint, BUNDLE, rtcp-mux), so a
/// browser on the other side negotiates normally; its ICE then finds no candidate to pair with.
private final class SignallingOnlySession: MediaSession {
    private let media: CallMedia
    private let version = Mutex(0)
    private let sessionID = UInt64.random(in: 1..<UInt64(Int64.max))
    private let ufrag = SignallingOnlySession.token(8)
    private let password = SignallingOnlySession.token(24)
    /// This side's DTLS role once negotiated: an answer must keep it (RFC 5763 §5).
    private let role = Mutex<String?>(nil)
    private let fingerprint = (0..<32).map { _ in String(format: "%02X", UInt8.random(in: 0...255)) }
        .joined(separator: ":")

    init(media: CallMedia) { self.media = media }

    func createOffer(hold: Bool) async throws -> String {
        var sections: [Section] = []
        if media.audio {
            sections.append(
                Section(
                    kind: "audio", mid: "\(sections.count)", formats: ["111"], attributes: ["a=rtpmap:111 opus/48000/2"]
                ))
        }
        if media.video {
            sections.append(
                Section(kind: "video", mid: "\(sections.count)", formats: ["96"], attributes: ["a=rtpmap:96 VP8/90000"])
            )
        }
        return sdp(sections, setup: "actpass", direction: { _ in hold ? "a=inactive" : "a=sendrecv" })
    }

    func createAnswer(to offer: String, hold: Bool) async throws -> String {
        let offered = Section.parse(offer)
        guard !offered.isEmpty else { throw MediaFailure(description: "The offer has no media section.") }
        let setup = role.withLock { role in
            if role == nil { role = "active" }
            return role!
        }
        return sdp(offered, setup: setup) { section in
            // The answer's direction mirrors the offer's (RFC 3264 §6.1), inactive where this side holds.
            switch (section.direction, hold) {
            case ("a=inactive", _), ("a=recvonly", true): "a=inactive"
            case ("a=sendonly", _): "a=recvonly"
            case ("a=recvonly", false): "a=sendonly"
            case (_, true): "a=sendonly"
            default: "a=sendrecv"
            }
        }
    }

    func applyAnswer(_ answer: String) async throws {
        guard answer.hasPrefix("v=0") else { throw MediaFailure(description: "The answer is not SDP.") }
        // The answerer took one DTLS role; this side has the other.
        if answer.contains("a=setup:active") {
            role.withLock { $0 = "passive" }
        } else if answer.contains("a=setup:passive") {
            role.withLock { $0 = "active" }
        }
    }

    func rollback() async {}
    func close() async {}

    private func sdp(_ sections: [Section], setup: String, direction: (Section) -> String) -> String {
        let version = version.withLock { version in
            version += 1
            return version
        }
        var lines = [
            "v=0", "o=- \(sessionID) \(version) IN IP4 127.0.0.1", "s=KandyLink signalling only (no media)", "t=0 0",
            "a=group:BUNDLE " + sections.map(\.mid).joined(separator: " "),
        ]
        for section in sections {
            lines +=
                [
                    "m=\(section.kind) 9 UDP/TLS/RTP/SAVPF " + section.formats.joined(separator: " "),
                    "c=IN IP4 0.0.0.0",
                    "a=ice-ufrag:\(ufrag)", "a=ice-pwd:\(password)", "a=fingerprint:sha-256 \(fingerprint)",
                    "a=setup:\(setup)", "a=mid:\(section.mid)", direction(section), "a=rtcp-mux",
                ] + section.attributes
        }
        return lines.joined(separator: "\r\n") + "\r\n"
    }

    private static func token(_ count: Int) -> String {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
        return String((0..<count).map { _ in alphabet.randomElement()! })
    }

    /// One media section: what an answer must mirror.
    struct Section {
        var kind: String
        var mid: String
        /// The first format offered, which the answer takes.
        var formats: [String]
        /// Its rtpmap and fmtp lines.
        var attributes: [String]
        var direction = "a=sendrecv"

        static func parse(_ sdp: String) -> [Section] {
            var sections: [Section] = []
            for line in sdp.split(whereSeparator: \.isNewline).map(String.init) {
                if line.hasPrefix("m=") {
                    let fields = line.dropFirst(2).split(separator: " ")
                    guard fields.count >= 4 else { continue }
                    sections.append(
                        Section(
                            kind: String(fields[0]), mid: "\(sections.count)", formats: [String(fields[3])],
                            attributes: []))
                } else if !sections.isEmpty {
                    let format = sections[sections.count - 1].formats[0]
                    if line.hasPrefix("a=mid:") {
                        sections[sections.count - 1].mid = String(line.dropFirst(6))
                    } else if ["a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive"].contains(line) {
                        sections[sections.count - 1].direction = line
                    } else if line.hasPrefix("a=rtpmap:\(format) ") || line.hasPrefix("a=fmtp:\(format) ") {
                        sections[sections.count - 1].attributes.append(line)
                    }
                }
            }
            return sections
        }
    }
}

struct MediaFailure: Error, CustomStringConvertible {
    var description: String
}
