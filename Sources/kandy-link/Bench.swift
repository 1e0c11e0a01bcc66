import ArgumentParser
import Foundation
import KandyLink

struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure the platform and the SDK.",
        discussion: "Build with -c release for numbers worth comparing: swift run -c release kandy-link bench connect",
        subcommands: [Connect.self])

    struct Connect: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "SDK connect time and memory per client, against an embedded platform on loopback.",
            discussion: """
                Connect time is setCredentials → subscribed with the channel open (POST, then the \
                WebSocket upgrade over TLS), measured over --runs connects of one user (each followed, \
                unmeasured, by unsubscribe and destroy). Memory is the growth of this process's resident \
                set per --clients Kandy instances with credentials set.
                """)

        @Option(help: "Connects to time.") var runs = 200
        @Option(help: "Instances to create for the memory figure.") var clients = 1000

        func validate() throws {
            guard runs > 0, clients > 0 else { throw ValidationError("--runs and --clients must be positive.") }
        }

        func run() async throws {
            let embedded = try await EmbeddedPlatform.start(minExpires: 60)
            defer { Task { await embedded.stop() } }
            let address = try PlatformAddress("https://127.0.0.1:\(embedded.port)")
            let configuration = address.configuration(expires: 3600, trust: [embedded.certificatePath])
            let clock = ContinuousClock()
            var samples: [Duration] = []
            for run in 0...runs {
                let kandy = try Kandy.create(configuration)
                let started = clock.now
                try await kandy.setCredentials(username: EmbeddedPlatform.username, password: embedded.password)
                try await kandy.services.subscribe(["call", "Presence", "IM"], forceLogOut: true)
                let elapsed = started.duration(to: clock.now)
                if run > 0 { samples.append(elapsed) }  // the first pays for bcrypt and TLS set-up
                try await kandy.services.unsubscribe(["call", "Presence", "IM"])
                await kandy.destroy()
            }
            samples.sort()
            func percentile(_ p: Double) -> String {
                let sample = samples[min(samples.count - 1, Int(Double(samples.count) * p))]
                return String(
                    format: "%.2f ms",
                    Double(sample.components.attoseconds) / 1e15 + Double(sample.components.seconds) * 1000)
            }

            let before = Self.residentBytes()
            var instances: [Kandy] = []
            for _ in 0..<clients {
                let kandy = try Kandy.create(configuration)
                try await kandy.setCredentials(username: EmbeddedPlatform.username, password: embedded.password)
                instances.append(kandy)
            }
            let after = Self.residentBytes()
            for kandy in instances { await kandy.destroy() }

            print("connect (setCredentials → subscribed, channel open), \(samples.count) runs:")
            print("  p50 \(percentile(0.5))   p99 \(percentile(0.99))   max \(percentile(1))")
            print("memory per client instance, \(clients) instances: \((after - before) / clients / 1024) KB")
        }

        static func residentBytes() -> Int {
            guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
                let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
                let kilobytes = Int(line.split(separator: " ").dropFirst().first ?? "")
            else { return 0 }
            return kilobytes * 1024
        }
    }
}
