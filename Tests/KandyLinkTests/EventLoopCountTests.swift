import Foundation
import KandyLinkServer
import KandyLinkTesting
import NIOCore
import Testing

/// `kandy-link serve` runs one event loop per CPU it may run on: under `taskset -c 0`, one.
@Suite struct EventLoopCountTests {
    /// The count the node's banner gives, started under `taskset -c cpus` when given.
    static func eventLoops(taskset cpus: String?, arguments: [String] = []) async throws -> Int? {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("loops-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let serve =
            [
                PlatformNode.binary.path, "serve", "--plaintext", "--port", "0", "--log-level", "warning",
                "--database", directory.appendingPathComponent("db.sqlite").path,
            ] + arguments
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = (cpus.map { ["taskset", "-c", $0] } ?? []) + serve
        process.environment = ProcessInfo.processInfo.environment.filter { $0.key != EventLoops.environmentVariable }
        let output = Pipe()
        process.standardOutput = output
        let lines = output.lines()
        let ended = try process.runUntilExit()
        var count: Int?
        for await line in lines where line.hasPrefix("Event loops: ") {
            count = Int(line.dropFirst("Event loops: ".count))
            break
        }
        process.terminate()
        _ = await ended.value
        return count
    }

    @Test func oneCPUOneLoop() async throws {
        #expect(try await Self.eventLoops(taskset: "0") == 1)
    }

    @Test func anOperatorsCountWins() async throws {
        #expect(try await Self.eventLoops(taskset: "0", arguments: ["--event-loops", "3"]) == 3)
    }

    @Test func unpinnedOnePerCPU() async throws {
        // Every CPU it may run on, unless a cgroup's CPU quota allows fewer.
        let allowed = try #require(EventLoops.allowedCPUs())
        #expect(try await Self.eventLoops(taskset: nil) == min(allowed, System.coreCount))
    }
}
