import ArgumentParser
import Foundation
import KandyLink
import KandyLinkGStreamer

/// What `call` and `answer` share: the platform, the user, and printing the call as it goes.
struct CallOptions: ParsableArguments {
    @Option(help: ArgumentHelp("The platform, e.g. https://127.0.0.1:8443.", valueName: "url"))
    var server: String

    @Option(help: ArgumentHelp("The user to log in as.", valueName: "name"))
    var user: String

    @Flag(help: "Read the password from standard input.")
    var passwordStdin = false

    @Option(help: ArgumentHelp("PEM certificate to trust in addition to the system's.", valueName: "file"))
    var trust: [String] = []

    @Option(help: ArgumentHelp("Seconds to stay in the call once connected; then hang up.", valueName: "seconds"))
    var duration: Int = 10

    @Option(help: ArgumentHelp("A WAV file to send (default: a tone).", valueName: "file"))
    var play: String?

    @Option(help: ArgumentHelp("The tone to send, in hertz, when no --play file is given.", valueName: "hertz"))
    var tone: Double = 440

    @Option(help: ArgumentHelp("A WAV file to record what the other side sends into.", valueName: "file"))
    var record: String?

    @Option(
        name: .customLong("ice-server"),
        help: ArgumentHelp(
            "A STUN or TURN server for the media, e.g. turn:turn.example.com:3478 (repeatable); TURN credentials "
                + "come from the platform.", valueName: "uri"))
    var iceServers: [String] = []

    @Flag(help: "Send and receive media only through the TURN server.")
    var relay = false

    @Flag(help: "Signal only: exchange SDP, carry no media (no GStreamer needed at run time).")
    var noMedia = false

    func validate() throws {
        _ = try PlatformAddress(server)
        guard duration > 0 else { throw ValidationError("--duration must be positive.") }
        guard (20...20_000).contains(tone) else { throw ValidationError("--tone must be 20–20000 Hz.") }
        if noMedia && (play != nil || record != nil || relay) {
            throw ValidationError("--play, --record and --relay need media: leave out --no-media.")
        }
        if let play, !FileManager.default.isReadableFile(atPath: play) {
            throw ValidationError("--play: cannot read \(play).")
        }
    }

    var engine: GStreamerMediaEngine? {
        noMedia
            ? nil
            : GStreamerMediaEngine(
                source: play.map { .file(URL(fileURLWithPath: $0)) } ?? .tone(hertz: tone),
                recording: record.map { URL(fileURLWithPath: $0) }, relayOnly: relay)
    }

    /// Logs in, subscribes to call, runs `body`, and leaves: unsubscribe, destroy.
    func session(_ body: (Kandy, Tutorial) async throws -> Void) async throws {
        let address = try PlatformAddress(server)
        let password =
            passwordStdin ? readLine(strippingNewline: true) : Terminal.readSecret(prompt: "Password for \(user): ")
        guard let password, !password.isEmpty else { throw CommandFailure("no password given") }
        var configuration = address.configuration(
            expires: 3600, trust: trust.isEmpty ? DemoSession.defaultTrust(for: address) : trust)
        configuration.call.iceServers = iceServers.map { KandyConfiguration.IceServer(url: $0) }
        let tutorial = Tutorial(log: { line in
            print(line)
            fflush(nil)
        })
        let engine = self.engine
        try await Kandy.using(configuration, mediaEngine: engine) { kandy in
            tutorial.wire(kandy)
            try await kandy.setCredentials(username: user, password: password)
            try await kandy.services.subscribe(["call"], forceLogOut: true)
            tutorial.say(
                engine == nil
                    ? "Signalling only (--no-media): SDP is exchanged, no media flows."
                    : "Media: GStreamer webrtcbin, sending " + (play ?? "a \(Int(tone)) Hz tone")
                        + (record.map { ", recording into \($0)" } ?? ""))
            do {
                try await body(kandy, tutorial)
            } catch {
                tutorial.say("Call failed: \(Tutorial.describe(error))")
                try? await kandy.services.unsubscribe(["call"])
                throw ExitCode.failure
            }
            try? await kandy.services.unsubscribe(["call"])
        }
    }

    /// Stays in call `id` for --duration (or until the other side ends it), printing the media's
    /// statistics every second, then hangs up.
    func stay(in id: String, _ kandy: Kandy, _ tutorial: Tutorial) async throws {
        let ended = kandy.events
        let engine = kandy.mediaEngine as? GStreamerMediaEngine
        let statistics = Task {
            guard let engine else { return }
            while (try? await Task.sleep(for: .seconds(1))) != nil {
                guard let stats = await engine.statistics(callID: id) else { continue }
                tutorial.say(Self.describe(stats))
            }
        }
        defer { statistics.cancel() }
        let endedEarly = try await Tutorial.first(in: ended, within: .seconds(duration)) { event in
            if case .callStateChange(let change) = event { change.callId == id && change.state.isFinal } else { false }
        }
        if !endedEarly && kandy.call.getById(id)?.state.isFinal == false {
            tutorial.say("Hanging up after \(duration) s")
            try await kandy.call.end(id)
        }
    }
}

extension CallOptions {
    static func describe(_ stats: MediaStatistics) -> String {
        "RTP sent \(stats.packetsSent) packets / \(stats.bytesSent) bytes, received \(stats.packetsReceived) / "
            + "\(stats.bytesReceived)" + (stats.jitter.map { String(format: ", jitter %.1f ms", $0 * 1000) } ?? "")
            + (stats.roundTripTime.map { String(format: ", RTT %.1f ms", $0 * 1000) } ?? "")
    }
}

struct CallCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "call", abstract: "Call a user through a platform and print the call as it goes.")

    @Argument(help: "Who to call, e.g. bob@example.com.")
    var destination: String

    @OptionGroup var options: CallOptions

    func run() async throws {
        try await options.session { kandy, tutorial in
            let connected = kandy.events
            let call = try await kandy.call.make(
                to: destination, media: CallMedia(audio: true, video: false))
            tutorial.say("Calling \(destination): session \(call.sessionID ?? "-")")
            let answered = try await Tutorial.first(in: connected, within: .seconds(120)) { event in
                if case .callStateChange(let change) = event {
                    change.callId == call.id && (change.state == .connected || change.state.isFinal)
                } else {
                    false
                }
            }
            guard answered, kandy.call.getById(call.id)?.state == .connected else {
                throw CommandFailure("the call was not answered")
            }
            try await options.stay(in: call.id, kandy, tutorial)
        }
    }
}

struct AnswerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "answer", abstract: "Wait for a call, answer it, and print the call as it goes.")

    @Option(help: ArgumentHelp("Seconds to wait for a call.", valueName: "seconds"))
    var wait: Int = 120

    @OptionGroup var options: CallOptions

    func run() async throws {
        try await options.session { kandy, tutorial in
            let rings = kandy.events
            tutorial.say("Waiting for a call…")
            guard try await Tutorial.first(in: rings, within: .seconds(wait), where: { $0.name == .callReceive }),
                let call = kandy.call.getAll().last(where: { $0.direction == .incoming })
            else { throw CommandFailure("no call came within \(wait) s") }
            tutorial.say("\(call.remoteParticipant.displayNumber) calls; answering")
            try await kandy.call.answer(call.id)
            try await options.stay(in: call.id, kandy, tutorial)
        }
    }
}
