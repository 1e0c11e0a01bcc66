import Foundation
import NIOCore

/// How many event loops a node runs: one per CPU it may run on.
///
/// SwiftNIO sizes its shared group by the machine's cores (or its cgroup's share), not by the
/// process's CPU affinity, so a node started under `taskset -c 0` ran two loops on one core and
/// every request or notification handed between them cost a context switch. Measured with the
/// node pinned, one loop instead of two: a session 622–660 → 487–539 µs of CPU
/// (docs/performance.md).
public enum EventLoops {
    /// The variable SwiftNIO reads its shared group's size from; an operator's setting wins.
    public static let environmentVariable = "NIO_SINGLETON_GROUP_LOOP_COUNT"

    /// Sizes SwiftNIO's shared event loop group: `requested`, else the environment's setting, else
    /// one loop per core this process may run on. Call it once, before anything uses SwiftNIO.
    /// Returns the size.
    public static func configure(requested: Int? = nil) -> Int {
        if requested == nil, let set = ProcessInfo.processInfo.environment[environmentVariable].flatMap(Int.init),
            set > 0
        {
            return set
        }
        let count = requested ?? max(1, min(System.coreCount, allowedCPUs() ?? System.coreCount))
        NIOSingletons.groupLoopCountSuggestion = count
        return count
    }

    /// The CPUs this process may run on, from `/proc/self/status`; nil where that is not known.
    public static func allowedCPUs() -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
        return allowedCPUs(status: status)
    }

    /// The count of CPUs in a `/proc/PID/status` text's `Cpus_allowed_list` ("0-3,8,10-11": 7).
    static func allowedCPUs(status: String) -> Int? {
        guard
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Cpus_allowed_list:") }),
            let list = line.split(separator: ":", maxSplits: 1).last?.trimmingCharacters(in: .whitespaces),
            !list.isEmpty
        else { return nil }
        var count = 0
        for range in list.split(separator: ",") {
            let bounds = range.split(separator: "-", omittingEmptySubsequences: false).map { Int($0) }
            switch bounds.count {
            case 1:
                guard bounds[0] != nil else { return nil }
                count += 1
            case 2:
                guard let low = bounds[0], let high = bounds[1], low <= high else { return nil }
                count += high - low + 1
            default:
                return nil
            }
        }
        return count > 0 ? count : nil
    }
}
