import Foundation
import KandyLink
import KandyLinkGStreamer
import KandyLinkServer
import KandyLinkTesting
import Testing

/// Real media: two SDK clients with GStreamer engines call each other through a real platform;
/// each records what it receives, and each recording is the other side's tone.
@Suite(.timeLimit(.minutes(1))) struct MediaTests {
    @Test func eachSideHearsTheOthersTone() async throws {
        let fixture = try await PlatformFixture(configure: { $0.callerNotificationGrace = 0 })
        let directory = fixture.directory
        let heardByAlice = directory.appendingPathComponent("alice.wav")
        let heardByBob = directory.appendingPathComponent("bob.wav")
        try await withCleanup {
            let alice = try await Self.client(
                fixture, PlatformFixture.alice, GStreamerMediaEngine(source: .tone(hertz: 440), recording: heardByAlice)
            )
            let bob = try await Self.client(
                fixture, PlatformFixture.bob, GStreamerMediaEngine(source: .tone(hertz: 1000), recording: heardByBob))
            let rings = bob.events
            let call = try await alice.call.make(to: PlatformFixture.bob)
            for await event in rings where event.name == .callReceive { break }
            let incoming = try #require(bob.call.getAll().first)
            let connected = alice.events
            try await bob.call.answer(incoming.id)
            for await event in connected {
                if case .callStateChange(let change) = event, change.state == .connected { break }
            }
            // Until each side has received two seconds of audio.
            let engine = try #require(bob.mediaEngine as? GStreamerMediaEngine)
            let aliceEngine = try #require(alice.mediaEngine as? GStreamerMediaEngine)
            for await _ in Self.ticks() {
                let bobStats = await engine.statistics(callID: incoming.id)
                let aliceStats = await aliceEngine.statistics(callID: call.id)
                // 50 opus packets a second.
                if (bobStats?.packetsReceived ?? 0) > 100 && (aliceStats?.packetsReceived ?? 0) > 100 { break }
            }
            try await alice.call.end(call.id)
            await alice.destroy()
            await bob.destroy()

            let aliceHeard = try Recording(heardByAlice)
            let bobHeard = try Recording(heardByBob)
            #expect(aliceHeard.seconds > 1.5 && bobHeard.seconds > 1.5)
            #expect(abs(aliceHeard.frequency - 1000) < 30, "alice heard \(aliceHeard.frequency) Hz")
            #expect(abs(bobHeard.frequency - 440) < 30, "bob heard \(bobHeard.frequency) Hz")
        } cleanup: {
            try? await fixture.stop()
        }
    }

    static func client(_ fixture: PlatformFixture, _ user: String, _ engine: GStreamerMediaEngine) async throws
        -> Kandy
    {
        let kandy = try Kandy.create(
            KandyConfiguration(
                authentication: .init(server: .init(base: "127.0.0.1", port: fixture.port)),
                subscription: .init(websocket: .init(server: "127.0.0.1", port: fixture.port)),
                tls: .init(trustedCertificateFiles: [fixture.certificatePath])),
            mediaEngine: engine)
        try await kandy.setCredentials(username: user, password: PlatformFixture.password)
        try await kandy.services.subscribe(["call"], forceLogOut: true)
        return kandy
    }

    /// A tick every 100 ms: the statistics are read, not waited for (RTP has no event to await).
    static func ticks() -> AsyncStream<Void> {
        AsyncStream { continuation in
            let task = Task {
                while (try? await Task.sleep(for: .milliseconds(100))) != nil { continuation.yield() }
                continuation.finish()
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }
}

/// A 16-bit mono WAV file as wavenc writes it, and the frequency of its middle second.
struct Recording {
    var samples: [Int16]
    var rate: Int

    init(_ url: URL) throws {
        let data = try Data(contentsOf: url)
        guard data.count > 44, data.prefix(4) == Data("RIFF".utf8) else { throw CocoaError(.fileReadCorruptFile) }
        func word(_ at: Int) -> Int {
            Int(data[at]) | Int(data[at + 1]) << 8 | Int(data[at + 2]) << 16 | Int(data[at + 3]) << 24
        }
        rate = word(24)
        // Chunks follow the 12-byte RIFF header: find "data".
        var offset = 12
        while offset + 8 <= data.count, data[offset..<offset + 4] != Data("data".utf8) {
            offset += 8 + word(offset + 4)
        }
        let start = offset + 8
        let end = min(data.count, start + word(offset + 4))
        samples = stride(from: start, to: end - 1, by: 2).map {
            Int16(bitPattern: UInt16(data[$0]) | UInt16(data[$0 + 1]) << 8)
        }
    }

    var seconds: Double { Double(samples.count) / Double(rate) }

    /// Upward zero crossings per second over the middle second.
    var frequency: Double {
        let middle = samples.count / 2
        let window = samples[max(0, middle - rate / 2)..<min(samples.count, middle + rate / 2)]
        let crossings = zip(window, window.dropFirst()).filter { $0.0 < 0 && $0.1 >= 0 }.count
        return Double(crossings) * Double(rate) / Double(window.count)
    }
}
