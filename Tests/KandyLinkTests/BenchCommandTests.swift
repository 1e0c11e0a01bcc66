import Foundation
import KandyLinkTesting
import Testing

/// `kandy-link bench` scenarios, run as an operator runs them: the load generator against nodes
/// it starts itself, each a `kandy-link serve` process, with the result read from `--json`.
@Suite(.timeLimit(.minutes(2))) struct BenchCommandTests {
    struct Report: Decodable {
        struct Row: Decodable {
            var name: String
            var value: Double
        }

        var scenario: String
        var rows: [Row]
        var steps: [Report]?

        func value(_ name: String) -> Double? { rows.first { $0.name == name }?.value }
    }

    static func bench(_ arguments: [String]) async throws -> Report {
        let json = FileManager.default.temporaryDirectory.appendingPathComponent("bench-\(UUID().uuidString).json")
        // What the bench printed, kept to say why when it fails.
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("bench-\(UUID().uuidString).log")
        defer {
            try? FileManager.default.removeItem(at: json)
            try? FileManager.default.removeItem(at: output)
        }
        _ = FileManager.default.createFile(atPath: output.path, contents: nil)
        let log = try FileHandle(forWritingTo: output)
        let process = Process()
        process.executableURL = PlatformNode.binary
        process.arguments = ["bench"] + arguments + ["--json", json.path]
        process.standardOutput = log
        process.standardError = log
        let ended = try process.runUntilExit()
        let status = await ended.value
        try log.close()
        let printed = (try? String(contentsOf: output, encoding: .utf8)) ?? ""
        #expect(status == 0, "kandy-link bench \(arguments.joined(separator: " ")) printed:\n\(printed.suffix(4000))")
        return try JSONDecoder().decode(Report.self, from: Data(contentsOf: json))
    }

    @Test func channelsOpenAndIdleWithoutLoss() async throws {
        let report = try await Self.bench(["channels", "--count", "40", "--rate", "400", "--idle", "1"])
        #expect(report.value("sessions opened") == 40)
        #expect(report.value("sessions failed") == 0)
        #expect(report.value("channels closed while idle") == 0)
        // The node's memory was read before and after: forty channels cost it something.
        #expect((report.value("node KB per channel") ?? 0) > 0)
    }

    @Test(arguments: ["im", "presence"]) func fanoutDeliversEveryNotificationOnce(via: String) async throws {
        let report = try await Self.bench([
            "fanout", "--via", via, "--subscribers", "20", "--rate", "200", "--duration", "1",
        ])
        let expected = try #require(report.value("notifications expected"))
        #expect(expected >= 200)
        #expect(report.value("delivered") == expected)
        #expect(report.value("lost") == 0)
        #expect(report.value("duplicates") == 0)
        #expect(report.value("send errors") == 0)
        #expect((report.value("latency p50") ?? 0) > 0)
    }

    @Test func churnCompletesSessionsWithoutErrors() async throws {
        let report = try await Self.bench(["churn", "--workers", "4", "--duration", "1"])
        #expect((report.value("sessions completed") ?? 0) > 0)
        #expect(report.value("errors") == 0)
    }

    @Test func churnWithMessagesStopsAfterItsSessions() async throws {
        let report = try await Self.bench([
            "churn", "--workers", "4", "--duration", "60", "--sessions", "20", "--messages", "2",
        ])
        #expect(report.value("sessions completed") == 20)
        #expect(report.value("errors") == 0)
        #expect(report.value("nodes RSS after") != nil)
    }

    @Test func stalledConsumersAreClosedByTheNode() async throws {
        // 16 MB to each: more than the node's backlog bound and the kernel's buffers together.
        let report = try await Self.bench(["stalled", "--consumers", "2", "--messages", "2000", "--size", "8000"])
        #expect(report.value("send errors") == 0)
        #expect(report.value("channels the node closed") == 2)
        #expect((report.value("RSS per stalled consumer") ?? 0) > 0)
    }

    /// The peers from their Debian packages; CI sets KANDY_LINK_REQUIRE_PEERS=1, so that missing
    /// ones fail there instead of skipping.
    static var peersInstalled: Bool {
        ["/usr/sbin/nginx", "/usr/lib/nginx/modules/ngx_nchan_module.so", "/usr/sbin/mosquitto"]
            .allSatisfy(FileManager.default.fileExists(atPath:))
            || ProcessInfo.processInfo.environment["KANDY_LINK_REQUIRE_PEERS"] == "1"
    }

    @Test(.enabled(if: peersInstalled)) func compareMeasuresThePlatformAndBothPeersAlike() async throws {
        let report = try await Self.bench([
            "compare", "--duration", "1", "--workers", "2", "--subscribers", "10", "--rate", "200", "--fanout", "20",
            "--fanout-rate", "10", "--idle", "50", "--lanes", "4",
        ])
        let servers = try #require(report.steps)
        #expect(servers.map(\.scenario) == ["kandy-link", "nginx + nchan", "mosquitto"])
        for server in servers {
            #expect((server.value("sessions/s") ?? 0) > 0, "\(server.scenario)")
            #expect(server.value("session errors") == 0, "\(server.scenario)")
            #expect(server.value("messages sent") == 200, "\(server.scenario)")
            #expect(server.value("messages lost") == 0, "\(server.scenario)")
            #expect(server.value("fan-out deliveries") == 200, "\(server.scenario)")
            #expect(server.value("fan-out lost") == 0, "\(server.scenario)")
            #expect(server.value("memory per idle channel") != nil, "\(server.scenario)")
        }
        #expect(servers[0].value("CPU per GET /health") != nil)
        // Ours over each peer's, for each figure both measured. (A peer can use less than one
        // clock tick of CPU, 10 ms, on runs this short: then there is no ratio to give.)
        for peer in servers.dropFirst() {
            for figure in [
                "CPU per session set up and torn down", "CPU per message", "CPU per fan-out delivery",
                "memory per idle channel",
            ] {
                let (ours, theirs) = (servers[0].value(figure) ?? 0, peer.value(figure) ?? 0)
                let ratio = report.value("\(figure): kandy-link / \(peer.scenario)")
                if ours > 0, theirs > 0 {
                    #expect(abs((ratio ?? 0) - ours / theirs) < 1e-9 * ours / theirs, "\(figure), \(peer.scenario)")
                } else {
                    #expect(ratio == nil, "\(figure), \(peer.scenario)")
                }
            }
        }
    }
}
