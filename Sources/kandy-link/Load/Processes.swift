import Foundation
import KandyLinkServer
import Synchronization

/// What Linux says about a process: resident memory and CPU time so far (`/proc/PID/…`).
struct ProcessReading: Sendable {
    var residentBytes: Int
    /// User + system CPU time, in seconds.
    var cpuSeconds: Double

    static func of(_ pid: Int32) -> ProcessReading? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let rss = field("VmRSS:", in: status)
        else { return nil }
        // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
        guard let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        return ProcessReading(residentBytes: rss * 1024, cpuSeconds: (user + system) / ticks)
    }

    /// The processes started by `pid`, their children, and so on, as they are now.
    static func descendants(of pid: Int32) -> [Int32] {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        let children = tasks.flatMap { task in
            ((try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/children", encoding: .utf8)) ?? "")
                .split(separator: " ").compactMap { Int32($0) }
        }
        return children.flatMap { [$0] + descendants(of: $0) }
    }

    /// Busy and total jiffies of the whole machine (`/proc/stat`'s cpu line).
    static func machineJiffies() -> (busy: Double, total: Double) {
        guard let stat = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
            let line = stat.split(separator: "\n").first(where: { $0.hasPrefix("cpu ") })
        else { return (0, 0) }
        let values = line.split(separator: " ").dropFirst().compactMap { Double($0) }
        let total = values.reduce(0, +)
        let idle = values.count > 4 ? values[3] + values[4] : 0  // idle + iowait
        return (total - idle, total)
    }

    private static func field(_ name: String, in text: String) -> Int? {
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix(name) }) else { return nil }
        return Int(line.split(separator: " ").dropFirst().first ?? "")
    }

    /// Raises this process's open-files limit to its hard limit (a worker holds many sockets).
    static func raiseOpenFilesLimit() {
        var limit = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        limit.rlim_cur = limit.rlim_max
        setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    }

    /// CPU seconds the processes used between two readings of them.
    static func cpuSeconds(from before: [ProcessReading], to after: [ProcessReading]) -> Double {
        zip(before, after).map { $1.cpuSeconds - $0.cpuSeconds }.reduce(0, +)
    }
}

/// `kandy-link serve` processes started by the bench: nodes on one database, on loopback with
/// the development certificate, each on a free port.
final class ServerProcesses: Sendable {
    struct Node: Sendable {
        var pid: Int32
        var port: Int
    }

    let nodes: [Node]
    let certificatePath: String
    private let processes: [Process]

    private init(nodes: [Node], certificatePath: String, processes: [Process]) {
        self.nodes = nodes
        self.certificatePath = certificatePath
        self.processes = processes
    }

    /// Starts `count` nodes, one after another (the first creates the certificate the others
    /// reuse).
    static func start(count: Int, database: String, directory: URL, secure: Bool, cpu: Int? = nil) async throws
        -> ServerProcesses
    {
        var started: [(Process, Node)] = []
        do {
            for _ in 0..<count {
                started.append(
                    try await startOne(database: database, directory: directory, secure: secure, cpu: cpu))
            }
        } catch {
            for (process, _) in started { process.terminate() }
            throw error
        }
        return ServerProcesses(
            nodes: started.map(\.1),
            certificatePath: directory.appendingPathComponent(DevelopmentCertificate.chainFileName).path,
            processes: started.map(\.0))
    }

    private static func startOne(database: String, directory: URL, secure: Bool, cpu: Int?) async throws
        -> (Process, Node)
    {
        let command = [
            CommandLine.executablePath, "serve", secure ? "--dev-tls" : "--plaintext", "--database", database, "--port",
            "0", "--log-level", "error",
        ]
        let process = Process(command: command, onCPU: cpu)
        process.currentDirectoryURL = directory
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.standardError
        let lines = output.lines()
        try process.run()
        let banner = secure ? "listening on https://127.0.0.1:" : "listening on http://127.0.0.1:"
        for await line in lines {
            guard let range = line.range(of: banner) else { continue }
            if let port = Int(line[range.upperBound...].prefix { $0.isNumber }) {
                return (process, Node(pid: process.processIdentifier, port: port))
            }
        }
        throw CommandFailure("kandy-link serve exited before listening")
    }

    /// SIGTERM, then up to 15 s for each node to finish; one that does not is killed and named
    /// (a node that cannot shut down is a finding, not a reason for the bench to hang).
    func stop() async {
        for process in processes where process.isRunning { process.terminate() }
        let deadline = ContinuousClock.now + .seconds(15)
        while processes.contains(where: \.isRunning), ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(100))
        }
        for process in processes where process.isRunning {
            FileHandle.standardError.write(
                Data(
                    "kandy-link bench: node \(process.processIdentifier) did not stop within 15 s of SIGTERM; killed\n"
                        .utf8))
            kill(process.processIdentifier, SIGKILL)
        }
    }
}

extension Process {
    /// A process for `command` (its executable's path, then its arguments), on CPU `cpu` when
    /// given. taskset execs the command, so the process is the command's own.
    convenience init(command: [String], onCPU cpu: Int?) {
        self.init()
        executableURL = URL(fileURLWithPath: cpu == nil ? command[0] : "/usr/bin/taskset")
        arguments = cpu.map { ["-c", String($0)] + command } ?? Array(command.dropFirst())
    }
}

extension CommandLine {
    /// This program's own binary, to start nodes and workers from.
    static var executablePath: String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? arguments[0]
    }
}
