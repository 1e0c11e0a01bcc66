import ArgumentParser
import Foundation
import KandyLink
import Synchronization

struct Demo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the Kandy.js \"User Connect\" tutorial with the Swift SDK.",
        discussion: """
            With no options, starts a platform inside this process (temporary database, development \
            certificate, a free loopback port), creates a demo user, and runs the tutorial: set \
            credentials, subscribe to call, Presence and IM with forceLogOut, one subscription \
            refresh, unsubscribe, destroy. Each message is printed with a timestamp. A second user \
            takes part: bob logs in first and watches alice's presence; alice publishes hers, sends \
            bob a message and calls him; bob answers, alice holds and unholds, bob hangs up (signalling \
            only: the demo has no media engine); bob sees alice go offline when she unsubscribes.

            With --server and --user, runs the same against a running platform; the password is read \
            from a prompt or, with --password-stdin, from standard input. --peer names the second \
            user there (their password is the next prompt or line). A development platform's \
            certificate is trusted with --trust (by default ./dev-tls-certificate.pem when the server \
            is on this machine and the file exists).

            With --interactive, the tutorial's buttons are keys: l = login, s = subscribe, \
            u = unsubscribe, d = destroy, q = quit.
            """)

    @Option(help: ArgumentHelp("A running platform, e.g. https://127.0.0.1:8443.", valueName: "url"))
    var server: String?

    @Option(help: ArgumentHelp("The user to log in as (with --server).", valueName: "name"))
    var user: String?

    @Option(
        help: ArgumentHelp(
            "A second user who watches --user and receives a message (with --server).", valueName: "name"))
    var peer: String?

    @Flag(help: "Read the password (and then --peer's) from standard input, one per line.")
    var passwordStdin = false

    @Option(help: ArgumentHelp("PEM certificate to trust in addition to the system's.", valueName: "file"))
    var trust: [String] = []

    @Option(help: "Subscription lifetime to ask for, in seconds (with --server; refresh comes at half).")
    var expires: Int = 60

    @Flag(help: "Drive the tutorial with keys instead of running it through.")
    var interactive = false

    func validate() throws {
        if server != nil && user == nil { throw ValidationError("--server needs --user.") }
        if server == nil && (user != nil || passwordStdin || peer != nil) {
            throw ValidationError("--user, --peer and --password-stdin go with --server.")
        }
        if interactive && peer != nil { throw ValidationError("--peer does not go with --interactive.") }
        if let peer, peer == user { throw ValidationError("--peer must be another user than --user.") }
        if let server { _ = try PlatformAddress(server) }
        guard expires > 0 else { throw ValidationError("--expires must be positive.") }
    }

    func run() async throws {
        let tutorial = Tutorial(log: { line in
            print(line)
            fflush(nil)
        })
        try await DemoSession.run(
            self, tutorial: tutorial,
            readPassword: { prompt in
                passwordStdin ? readLine(strippingNewline: true) : Terminal.readSecret(prompt: prompt)
            })
    }
}

/// The demo's runs, separate from argument parsing so tests drive them with their own output.
enum DemoSession {
    static func run(
        _ demo: Demo, tutorial: Tutorial, readPassword: @Sendable (String) -> String?
    ) async throws {
        if let server = demo.server, let user = demo.user {
            let address = try PlatformAddress(server)
            guard let password = readPassword("Password for \(user): "), !password.isEmpty else {
                throw CommandFailure("no password given")
            }
            let trust = demo.trust.isEmpty ? defaultTrust(for: address) : demo.trust
            let configuration = address.configuration(expires: demo.expires, trust: trust)
            var peer: Tutorial.Peer?
            if let name = demo.peer {
                guard let peerPassword = readPassword("Password for \(name): "), !peerPassword.isEmpty else {
                    throw CommandFailure("no password given for \(name)")
                }
                peer = Tutorial.Peer(kandy: try Kandy.create(configuration), username: name, password: peerPassword)
            }
            let kandy = try Kandy.create(configuration)
            tutorial.say("Platform: \(server) as \(user)" + (demo.peer.map { ", with \($0)" } ?? ""))
            if demo.interactive {
                try await InteractiveTutorial(tutorial: tutorial).run(kandy, username: user, password: password)
            } else {
                try await tutorial.run(
                    kandy, username: user, password: password, resubscribeWithin: .seconds(demo.expires), peer: peer)
            }
            return
        }
        try await EmbeddedPlatform.with { embedded in
            tutorial.say(
                "Embedded platform on https://127.0.0.1:\(embedded.port), users \(EmbeddedPlatform.username) and "
                    + EmbeddedPlatform.peerUsername)
            let address = try PlatformAddress("https://127.0.0.1:\(embedded.port)")
            // A 4 s grant, refreshed at half: the refresh shows within seconds, and a busy machine
            // has 2 s of slack before the subscription would expire under a call in progress.
            let configuration = address.configuration(
                expires: 4, trust: [embedded.certificatePath], minimumRefresh: .seconds(1))
            let kandy = try Kandy.create(configuration)
            if demo.interactive {
                try await InteractiveTutorial(tutorial: tutorial).run(
                    kandy, username: EmbeddedPlatform.username, password: embedded.password)
            } else {
                // bob only watches: a minute's grant, so a busy machine cannot make his expire.
                let peer = Tutorial.Peer(
                    kandy: try Kandy.create(address.configuration(expires: 60, trust: [embedded.certificatePath])),
                    username: EmbeddedPlatform.peerUsername, password: embedded.password)
                try await tutorial.run(
                    kandy, username: EmbeddedPlatform.username, password: embedded.password,
                    resubscribeWithin: .seconds(10), peer: peer)
            }
        }
    }

    /// `serve --dev-tls` keeps its certificate next to the default database, in the current
    /// directory: trust it for a platform on this machine.
    static func defaultTrust(for address: PlatformAddress) -> [String] {
        let local = ["127.0.0.1", "localhost", "::1"].contains(address.host)
        let path = FileManager.default.currentDirectoryPath + "/dev-tls-certificate.pem"
        return local && address.scheme == "https" && FileManager.default.fileExists(atPath: path) ? [path] : []
    }
}

/// The tutorial page as a terminal screen: the state line, the keys, the message log below.
struct InteractiveTutorial {
    let tutorial: Tutorial

    private final class Screen: Sendable {
        let lines = Mutex<[String]>([])
        let subscribed = Mutex(false)

        func redraw() {
            let (log, state) = (lines.withLock { $0.suffix(20) }, subscribed.withLock { $0 })
            var text = "\u{1B}[H\u{1B}[2J"
            text += "Subscribed: \(state)\r\n"
            text += "[l] Login  [s] Subscribe  [u] Unsubscribe  [d] Destroy  [q] Quit\r\n\r\n"
            text += log.joined(separator: "\r\n") + "\r\n"
            FileHandle.standardOutput.write(Data(text.utf8))
        }
    }

    func run(_ kandy: Kandy, username: String, password: String) async throws {
        let screen = Screen()
        var tutorial = Tutorial(log: { line in
            screen.lines.withLock { $0.append(line) }
            screen.redraw()
        })
        tutorial.stateChanged = { state in screen.subscribed.withLock { $0 = state } }
        tutorial.wire(kandy)
        screen.redraw()
        let restore = Terminal.enterRawMode()
        defer { restore() }
        for await key in Terminal.keys() {
            switch key {
            case "l":
                try? await kandy.setCredentials(username: username, password: password)
            case "s":
                Task { try? await kandy.services.subscribe(Tutorial.services, forceLogOut: true) }
            case "u":
                Task { try? await kandy.services.unsubscribe(Tutorial.services) }
            case "d":
                await kandy.destroy()
                tutorial.say("Kandy SDK has been uninitialized.")
            case "q":
                await kandy.destroy()
                return
            default:
                break
            }
        }
        await kandy.destroy()
    }
}
