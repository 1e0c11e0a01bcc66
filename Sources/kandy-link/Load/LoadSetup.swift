import ArgumentParser
import Foundation
import KandyLinkServer
import Logging

/// Where a load run points: running nodes (`--server`), or nodes the bench starts itself.
struct LoadOptions: ParsableArguments {
    @Option(
        help: ArgumentHelp(
            "A running node, e.g. https://127.0.0.1:8443; repeat for several (sessions are spread over them). Without it, the bench starts its own nodes.",
            valueName: "url"))
    var server: [String] = []

    @Option(
        help: ArgumentHelp(
            "PID of a --server node, to read its memory and CPU; repeat. Its child processes count too (a node started by a shell or a script).",
            valueName: "pid"))
    var serverPid: [Int32] = []

    @Option(help: ArgumentHelp("PEM certificate to trust for --server.", valueName: "file"))
    var trust: String?

    @Option(
        help: ArgumentHelp(
            "The nodes' database, where the bench adds its users as `kandy-link users` does: a SQLite file or postgres:// URL. Default: a new SQLite file for nodes the bench starts; KANDY_LINK_DATABASE or kandy-link.sqlite with --server.",
            valueName: "path-or-url"))
    var database: String?

    @Option(help: "Nodes to start without --server (more than one needs a postgres:// --database).")
    var nodes = 1

    @Flag(help: "Start the nodes with --plaintext instead of TLS (to see what TLS costs).")
    var plaintext = false

    @Option(help: ArgumentHelp("Also write the result as JSON to this file.", valueName: "file"))
    var json: String?

    @Option(help: "Event-loop threads in each load process.")
    var threads = 1

    @Option(name: .customLong("node-cpu"), help: "Run the nodes the bench starts on this CPU (taskset).")
    var cpu: Int?

    func validate() throws {
        guard nodes >= 1, threads >= 1 else { throw ValidationError("--nodes and --threads must be at least 1.") }
        if server.isEmpty, nodes > 1, !(database.map(PostgresStore.isURL) ?? false) {
            throw ValidationError("Several nodes share a PostgreSQL database: give --database postgres://….")
        }
        for url in server where !(url.hasPrefix("https://") || url.hasPrefix("http://")) {
            throw ValidationError("--server \(url) must be an http:// or https:// URL.")
        }
    }
}

/// The platform under load and the users for it, ready for ``LoadClient``s in this and worker
/// processes.
struct LoadSetup: Sendable {
    let plan: LoadPlan
    let planPath: String
    let pids: [Int32]
    let directory: URL
    private let started: ServerProcesses?

    /// Starts nodes if asked, adds `users` users (`bench-user-000001`, …) that are missing
    /// through the platform's accounts, and writes the plan for workers, in a new folder that goes
    /// with a failure.
    private static func prepare(_ options: LoadOptions, users: Int, extraUsers: [String]) async throws -> LoadSetup {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "kandy-link-bench-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        do {
            return try await prepare(options, users: users, extraUsers: extraUsers, in: directory)
        } catch {
            try? FileManager.default.removeItem(at: directory)
            throw error
        }
    }

    private static func prepare(_ options: LoadOptions, users: Int, extraUsers: [String], in directory: URL)
        async throws -> LoadSetup
    {
        let database =
            options.database
            ?? (options.server.isEmpty
                ? directory.appendingPathComponent("bench.sqlite").path
                : ProcessInfo.processInfo.environment["KANDY_LINK_DATABASE"] ?? "kandy-link.sqlite")
        let names = (0..<users).map { userName($0 + 1) } + extraUsers

        // Users first: nodes started afterwards find them, and a running node reads them from the store.
        let tokens = try await Users.withAccounts(database) { accounts in
            try await accounts.addMissing(usernames: names, password: UUID().uuidString)
            return try await accounts.tokens(for: names)
        }
        let users = zip(names, tokens).map { LoadPlan.User(name: $0, token: $1) }

        var started: ServerProcesses?
        let nodes: [LoadPlan.Node]
        let secure: Bool
        let trust: String?
        let pids: [Int32]
        if options.server.isEmpty {
            let servers = try await ServerProcesses.start(
                count: options.nodes, database: database, directory: directory, secure: !options.plaintext,
                cpu: options.cpu)
            started = servers
            nodes = servers.nodes.map { .init(host: "127.0.0.1", port: $0.port) }
            (secure, trust, pids) = (!options.plaintext, servers.certificatePath, servers.nodes.map(\.pid))
        } else {
            nodes = try options.server.map { url in
                guard let components = URLComponents(string: url), let host = components.host else {
                    throw ValidationError("Cannot read --server \(url).")
                }
                return .init(host: host, port: components.port ?? (url.hasPrefix("https") ? 443 : 80))
            }
            // A PID given may be a wrapper (a shell, a script) whose child is the node: counting only the
            // wrapper would report a busy node as idle.
            let given = options.serverPid.flatMap { [$0] + ProcessReading.descendants(of: $0) }
            (secure, trust, pids) = (options.server[0].hasPrefix("https"), options.trust, given)
        }
        let plan = LoadPlan(nodes: nodes, secure: secure, trust: trust, users: users)
        let planPath = directory.appendingPathComponent("plan.json").path
        try plan.write(to: planPath)
        return LoadSetup(plan: plan, planPath: planPath, pids: pids, directory: directory, started: started)
    }

    /// Prepares a run, runs `body`, and then stops the nodes it started and removes its folder,
    /// whether `body` returns or throws.
    static func with<T>(
        _ options: LoadOptions, users: Int, extraUsers: [String] = [], _ body: (LoadSetup) async throws -> T
    ) async throws -> T {
        let setup = try await prepare(options, users: users, extraUsers: extraUsers)
        return try await withCleanup {
            try await body(setup)
        } cleanup: {
            await setup.finish()
        }
    }

    static func userName(_ index: Int) -> String { String(format: "bench-user-%06d", index) }

    func finish() async {
        await started?.stop()
        try? FileManager.default.removeItem(at: directory)
    }

    func readings() -> [ProcessReading] { pids.compactMap(ProcessReading.of) }
}
