import Foundation

/// A bench run's result: printed as a table, and written as JSON with `--json`.
struct BenchReport: Codable, Sendable {
    struct Row: Codable, Sendable {
        var name: String
        var value: Double
        var unit: String
    }

    var scenario: String
    var command: String
    var machine: String
    var date: Date
    var rows: [Row] = []
    var steps: [BenchReport]?

    init(scenario: String) {
        self.scenario = scenario
        command = (["kandy-link"] + CommandLine.arguments.dropFirst()).joined(separator: " ")
        machine = Self.describeMachine()
        date = Date()
    }

    mutating func add(_ name: String, _ value: Double, _ unit: String = "") {
        rows.append(Row(name: name, value: value, unit: unit))
    }

    func value(_ name: String) -> Double? { rows.first { $0.name == name }?.value }

    var table: String {
        let width = rows.map(\.name.count).max() ?? 0
        var lines = ["\(scenario) — \(machine)", "  \(command)"]
        for row in rows {
            let value =
                row.value.rounded() == row.value && abs(row.value) < 1e15
                ? String(Int(row.value)) : String(format: row.value < 10 ? "%.2f" : "%.1f", row.value)
            lines.append(
                "  " + row.name.padding(toLength: width, withPad: " ", startingAt: 0) + "  \(value) \(row.unit)")
        }
        return lines.joined(separator: "\n")
    }

    func publish(json path: String?) throws {
        print(table)
        guard let path else { return }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        try encoder.encode(self).write(to: URL(fileURLWithPath: path))
        print("  written to \(path)")
    }

    static func describeMachine() -> String {
        let cores = ProcessInfo.processInfo.activeProcessorCount
        let memory = Double(ProcessInfo.processInfo.physicalMemory) / Double(1 << 30)
        let model =
            (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8))?
            .split(separator: "\n").first { $0.hasPrefix("model name") }?
            .split(separator: ":", maxSplits: 1).last?.trimmingCharacters(in: .whitespaces) ?? "unknown CPU"
        return String(format: "%d cores, %@, %.0f GiB", cores, model, memory)
    }
}

/// Sorted samples and their percentiles.
struct Percentiles {
    let sorted: [Double]

    init(_ samples: [Double]) { sorted = samples.sorted() }

    func at(_ p: Double) -> Double {
        guard !sorted.isEmpty else { return 0 }
        return sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]
    }

    var max: Double { sorted.last ?? 0 }
}

/// Nanoseconds on the machine's monotonic clock: comparable between processes on one machine.
func monotonicNanoseconds() -> UInt64 {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
}
