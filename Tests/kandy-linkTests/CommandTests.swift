import ArgumentParser
import Foundation
import KandyLink
import Synchronization
import Testing

@testable import kandy_link

@Suite struct CommandParsingTests {
    @Test func demoArguments() throws {
        let plain = try Demo.parse([])
        #expect(plain.server == nil && !plain.interactive)
        let remote = try Demo.parse([
            "--server", "https://127.0.0.1:8443", "--user", "bob@example.com", "--password-stdin", "--trust", "c.pem",
        ])
        #expect(remote.server == "https://127.0.0.1:8443")
        #expect(remote.user == "bob@example.com")
        #expect(remote.passwordStdin)
        #expect(remote.trust == ["c.pem"])
        #expect(try PlatformAddress("https://127.0.0.1:8443") == PlatformAddress("https://127.0.0.1:8443/"))
        let address = try PlatformAddress("https://link.example.com")
        #expect(address.port == 443 && address.host == "link.example.com")
    }

    @Test(arguments: [
        ["--server", "https://127.0.0.1:8443"],
        ["--user", "bob"],
        ["--server", "ftp://x", "--user", "bob"],
        ["--server", "not a url", "--user", "bob"],
        ["--expires", "0"],
        ["--password", "secret"],
        ["--peer", "bob"],
        ["--server", "https://127.0.0.1:8443", "--user", "bob", "--peer", "bob"],
    ])
    func demoRefuses(arguments: [String]) {
        #expect(throws: (any Error).self) { try Demo.parse(arguments) }
    }

    @Test func serveNeedsExactlyOneTransport() throws {
        #expect(throws: (any Error).self) { try Serve.parse([]) }
        #expect(throws: (any Error).self) { try Serve.parse(["--dev-tls", "--plaintext"]) }
        #expect(throws: (any Error).self) { try Serve.parse(["--tls-cert", "a.pem"]) }
        #expect(throws: (any Error).self) { try Serve.parse(["--dev-tls", "--port", "70000"]) }
        #expect(throws: (any Error).self) {
            try Serve.parse(["--dev-tls", "--min-expires", "100", "--max-expires", "10"])
        }
        #expect(throws: (any Error).self) { try Serve.parse(["--dev-tls", "--queue-max-notifications", "0"]) }
        let queue = try Serve.parse(["--dev-tls", "--queue-max-notifications", "50", "--queue-max-bytes", "65536"])
        #expect(queue.queueMaxNotifications == 50 && queue.queueMaxBytes == 65536)
        let calls = try Serve.parse(["--dev-tls", "--call-ring-timeout", "30", "--max-sdp-bytes", "8192"])
        #expect(calls.callRingTimeout == 30 && calls.maxSDPBytes == 8192)
        #expect(throws: (any Error).self) { try Serve.parse(["--dev-tls", "--call-ring-timeout", "5"]) }
        #expect(throws: (any Error).self) { try Serve.parse(["--dev-tls", "--max-sdp-bytes", "100"]) }
        #expect(try Serve.parse(["--dev-tls", "--shutdown-grace", "3"]).shutdownGrace == 3)
        #expect(throws: (any Error).self) { try Serve.parse(["--dev-tls", "--shutdown-grace", "-1"]) }
        let serve = try Serve.parse([
            "--dev-tls", "--port", "0", "--max-sessions-per-user", "3", "--database", "x.sqlite",
        ])
        #expect(
            serve.devTLS && serve.port == 0 && serve.maxSessionsPerUser == 3 && serve.database.database == "x.sqlite")
        let real = try Serve.parse(["--tls-cert", "c.pem", "--tls-key", "k.pem"])
        #expect(real.tlsCert == "c.pem" && real.tlsKey == "k.pem")
    }

    @Test func callAndAnswerTakeAPlatformAUserAndADuration() throws {
        let call = try CallCommand.parse([
            "bob@example.com", "--server", "https://127.0.0.1:8443", "--user", "alice@example.com", "--duration", "3",
            "--tone", "880", "--ice-server", "turn:127.0.0.1:3478", "--relay",
        ])
        #expect(call.destination == "bob@example.com" && call.options.duration == 3 && call.options.tone == 880)
        #expect(call.options.iceServers == ["turn:127.0.0.1:3478"] && call.options.relay && call.options.engine != nil)
        let answer = try AnswerCommand.parse(["--server", "https://h:1", "--user", "bob@example.com", "--wait", "5"])
        #expect(answer.wait == 5 && answer.options.duration == 10)
        #expect(throws: (any Error).self) {
            try CallCommand.parse(["bob", "--server", "ftp://x", "--user", "alice@example.com"])
        }
        #expect(throws: (any Error).self) {
            try AnswerCommand.parse(["--server", "https://h:1", "--user", "b", "--duration", "0"])
        }
        #expect(throws: (any Error).self) {
            try AnswerCommand.parse(["--server", "https://h:1", "--user", "b", "--no-media", "--record", "x.wav"])
        }
        #expect(
            try AnswerCommand.parse(["--server", "https://h:1", "--user", "b", "--no-media"]).options.engine == nil)
    }

    @Test func passwordsNeverComeFromArguments() {
        #expect(throws: (any Error).self) { try Users.Add.parse(["alice", "--password", "secret"]) }
        #expect(throws: (any Error).self) { try Users.Passwd.parse(["alice", "secret"]) }
    }
}

@Suite(.timeLimit(.minutes(1))) struct DemoRunTests {
    final class Output: Sendable {
        let lines = Mutex<[String]>([])
        var messages: [String] {
            // Drop the timestamp: "HH:MM:SS.mmm message".
            lines.withLock { $0.map { String($0.dropFirst(13)) } }
        }
        var tutorial: Tutorial { Tutorial(log: { [self] line in lines.withLock { $0.append(line) } }) }
    }

    @Test func theEmbeddedDemoPrintsTheTutorialInOrder() async throws {
        let output = Output()
        try await DemoSession.run(try Demo.parse([]), tutorial: output.tutorial, readPassword: { _ in nil })
        let messages = output.messages
        #expect(messages.first?.hasPrefix("Embedded platform on https://127.0.0.1:") == true)
        let expected = [
            "Credentials set",
            "Subscription state changed.", "Subscribed services: ",
            "Subscription state changed.", "Subscribed services: call,Presence,IM",
            "Resubscribed to services",
            "Subscription state changed.", "Subscribed services: call,Presence,IM",
            "Subscription state changed.", "Subscribed services: ",
            "Kandy SDK has been uninitialized.",
        ]
        let peer = EmbeddedPlatform.peerUsername
        let tutorialLines = messages.filter {
            !$0.hasPrefix("Embedded") && !$0.hasPrefix("Waiting") && !$0.hasPrefix(peer)
                && !$0.hasPrefix("Publishing") && !$0.hasPrefix("Sending") && !$0.hasPrefix("Call")
        }
        #expect(tutorialLines == expected)
        // alice's call to bob, whatever the refresh does meanwhile.
        #expect(
            messages.filter { $0.hasPrefix("Call") } == [
                "Calling \(EmbeddedPlatform.peerUsername) (signalling only: the demo carries no media; "
                    + "kandy-link call does)",
                "Call state: Initiating → Initiated", "Call state: Initiated → Ringing",
                "Call state: Ringing → Connected", "Call state: Connected → On Hold", "Call state: On Hold → Connected",
                "Call state: Connected → Ended (Call ended by the remote party)",
            ])
        // The second user: watches alice, sees her presence, gets her message and her call, sees
        // her leave.
        let alice = EmbeddedPlatform.username
        let peerLines = messages.filter { $0.hasPrefix(peer) }.map {
            $0.replacing(/message \d+ from/, with: "message from")
        }
        #expect(
            peerLines == [
                "\(peer) subscribed and watches \(alice)'s presence",
                "\(peer) sees \(alice): closed, unknown",
                "\(peer) sees \(alice): open, active — “\(Tutorial.Peer.note)”",
                "\(peer) received message from \(alice): \(Tutorial.Peer.message)",
                "\(peer)'s phone rings: sip:\(alice) calls; answering",
                "\(peer) hangs up",
                "\(peer) sees \(alice): closed, unknown",
            ])
        for line in output.lines.withLock({ $0 }) {
            #expect(line.range(of: #"^\d\d:\d\d:\d\d\.\d\d\d "#, options: .regularExpression) != nil, "\(line)")
        }
    }

    @Test func aWrongPasswordFailsWithTheReason() async throws {
        let platform = try await EmbeddedPlatform.start()
        let demo = try Demo.parse([
            "--server", "https://127.0.0.1:\(platform.port)", "--user", EmbeddedPlatform.username,
            "--password-stdin", "--trust", platform.certificatePath,
        ])
        let output = Output()
        do {
            try await DemoSession.run(demo, tutorial: output.tutorial, readPassword: { _ in "wrong" })
            Issue.record("the demo succeeded with a wrong password")
        } catch {
            let text = "\(error)"
            #expect(text.contains("Wrong username or password"))
            #expect(text.contains("authentication:4"))
            #expect(KandyLinkCommand.exitCode(for: error) != .success)
        }
        #expect(output.messages.contains { $0.hasPrefix("Subscription error: Failed to subscribe user. Code: 21.") })
        await platform.stop()
    }

    @Test func aPeerOnARunningPlatformLogsInWithTheSecondPassword() async throws {
        let platform = try await EmbeddedPlatform.start()
        let demo = try Demo.parse([
            "--server", "https://127.0.0.1:\(platform.port)", "--user", EmbeddedPlatform.username,
            "--peer", EmbeddedPlatform.peerUsername, "--password-stdin", "--trust", platform.certificatePath,
        ])
        let output = Output()
        let prompts = Mutex<[String]>([])
        do {
            // alice's password is right, bob's is not: bob, who logs in first, fails.
            try await DemoSession.run(
                demo, tutorial: output.tutorial,
                readPassword: { prompt in
                    let count = prompts.withLock {
                        $0.append(prompt)
                        return $0.count
                    }
                    return count == 1 ? platform.password : "wrong"
                })
            Issue.record("the demo succeeded with the peer's wrong password")
        } catch {
            #expect("\(error)".contains("Wrong username or password"))
        }
        #expect(
            prompts.withLock { $0 } == [
                "Password for \(EmbeddedPlatform.username): ", "Password for \(EmbeddedPlatform.peerUsername): ",
            ])
        #expect(
            output.messages.first
                == "Platform: https://127.0.0.1:\(platform.port) as \(EmbeddedPlatform.username), with \(EmbeddedPlatform.peerUsername)"
        )
        await platform.stop()
    }
}

/// `bench compare --rounds`: each ratio's median over the rounds, with its range.
@Suite struct CompareRoundsTests {
    static func round(_ ratios: [(String, Double)]) -> BenchReport {
        var report = BenchReport(scenario: "kandy-link / peer, measured together (plaintext)")
        for (name, value) in ratios { report.add(name, value, "×") }
        return report
    }

    @Test func givesEachRatioItsMedianLowestAndHighest() {
        let summary = Bench.Compare.medians(of: [
            Self.round([("message", 3)]),  // a round where a peer's CPU read 0: no session ratio
            Self.round([("message", 1), ("session", 30)]),
            Self.round([("message", 2), ("session", 20)]),
        ])
        #expect(summary.scenario == "kandy-link / peer, median of 3 rounds (plaintext)")
        #expect(
            summary.rows.map(\.name) == [
                "message", "message, lowest", "message, highest", "session", "session, lowest", "session, highest",
            ])
        #expect(summary.rows.map(\.value) == [2, 1, 3, 25, 20, 30])
        #expect(summary.rows.allSatisfy { $0.unit == "×" })
    }

    @Test func refusesNoRounds() {
        #expect(throws: (any Error).self) { try Bench.Compare.parse(["--rounds", "0"]) }
    }
}
