import Foundation
import KandyLinkServer
import NIOCore
import NIOPosix

/// A notification server the comparison measures the platform against, started from its Debian
/// package with a configuration written to the bench's folder: nginx with nchan (WebSocket
/// subscribers, HTTP POST publishers) or mosquitto (MQTT over WebSocket).
final class PeerServer: Sendable {
    enum Kind: String, CaseIterable, Sendable {
        case nchan, mosquitto

        var title: String {
            switch self {
            case .nchan: "nginx + nchan"
            case .mosquitto: "mosquitto"
            }
        }

        /// The Debian packages it comes from, for the message when it is missing.
        var packages: String {
            switch self {
            case .nchan: "nginx libnginx-mod-nchan"
            case .mosquitto: "mosquitto"
            }
        }
    }

    /// TLS files for the peer's WebSocket listener (the platform's development certificate).
    struct TLSFiles: Sendable {
        var chain: String
        var key: String
    }

    let kind: Kind
    let port: Int
    /// The processes whose CPU and memory are the server's: nginx's master and its one worker.
    let pids: [Int32]
    private let process: Process

    private init(kind: Kind, port: Int, pids: [Int32], process: Process) {
        self.kind = kind
        self.port = port
        self.pids = pids
        self.process = process
    }

    static let nginx = "/usr/sbin/nginx"
    static let nchanModule = "/usr/lib/nginx/modules/ngx_nchan_module.so"
    static let mosquitto = "/usr/sbin/mosquitto"

    static func isInstalled(_ kind: Kind) -> Bool {
        switch kind {
        case .nchan:
            FileManager.default.isExecutableFile(atPath: nginx) && FileManager.default.fileExists(atPath: nchanModule)
        case .mosquitto: FileManager.default.isExecutableFile(atPath: mosquitto)
        }
    }

    /// Starts `kind` on a free loopback port, on CPU `cpu` when given; returns once it accepts
    /// connections. A port found free can be taken before the server binds it (the bench's own
    /// connections draw their local ports from the same range), so a server that exits at start
    /// is started again on another, twice at most.
    static func start(_ kind: Kind, in directory: URL, tls: TLSFiles?, cpu: Int?) async throws -> PeerServer {
        guard isInstalled(kind) else {
            throw CommandFailure("\(kind.title) is not installed (apt-get install \(kind.packages))")
        }
        let folder = directory.appendingPathComponent(kind.rawValue)
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        var attempt = 1
        while true {
            do {
                return try await launch(kind, in: folder, tls: tls, cpu: cpu)
            } catch let failure as ExitedAtStart {
                guard attempt < 3 else { throw CommandFailure(failure.description) }
                FileHandle.standardError.write(Data("\(failure.description); starting it again\n".utf8))
                attempt += 1
            }
        }
    }

    private static func launch(_ kind: Kind, in folder: URL, tls: TLSFiles?, cpu: Int?) async throws -> PeerServer {
        let port = try await freePort()
        let config = folder.appendingPathComponent("\(kind.rawValue).conf")
        let command: [String]
        switch kind {
        case .nchan:
            try nginxConfiguration(port: port, folder: folder, tls: tls).write(
                to: config, atomically: true, encoding: .utf8)
            command = [nginx, "-c", config.path, "-p", folder.path, "-g", "daemon off;"]
        case .mosquitto:
            try mosquittoConfiguration(port: port, plainPort: try await freePort(), tls: tls)
                .write(to: config, atomically: true, encoding: .utf8)
            command = [mosquitto, "-c", config.path]
        }
        let process = Process(command: command, onCPU: cpu)
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.standardError
        try process.run()
        do {
            try await waitUntilAccepting(port: port, while: { process.isRunning })
        } catch {
            process.terminate()
            throw error
        }
        var pids = [process.processIdentifier]
        if kind == .nchan { pids += try await workers(of: process.processIdentifier) }
        return PeerServer(kind: kind, port: port, pids: pids, process: process)
    }

    /// The server ended before it accepted a connection (its error is on standard error).
    private struct ExitedAtStart: Error, CustomStringConvertible {
        var description: String { "the server exited at start (its error is above)" }
    }

    func stop() async {
        guard process.isRunning else { return }
        process.terminate()
        let ended = ContinuousClock.now + .seconds(10)
        while process.isRunning, ContinuousClock.now < ended { try? await Task.sleep(for: .milliseconds(20)) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }

    /// One worker process, as one event loop: the platform's node is measured on one core too
    /// when pinned. nchan keeps its default message buffer (it stores what it publishes, as the
    /// platform queues what it delivers).
    private static func nginxConfiguration(port: Int, folder: URL, tls: TLSFiles?) -> String {
        let listen =
            tls.map {
                "listen 127.0.0.1:\(port) ssl;\n    ssl_certificate \($0.chain);\n    ssl_certificate_key \($0.key);"
            }
            ?? "listen 127.0.0.1:\(port);"
        let path = folder.path
        return """
            load_module \(nchanModule);
            worker_processes 1;
            worker_rlimit_nofile 20000;
            pid \(path)/nginx.pid;
            error_log \(path)/error.log warn;
            events { worker_connections 20000; }
            http {
              access_log off;
              client_body_temp_path \(path)/body;
              proxy_temp_path \(path)/proxy;
              fastcgi_temp_path \(path)/fastcgi;
              uwsgi_temp_path \(path)/uwsgi;
              scgi_temp_path \(path)/scgi;
              server {
                \(listen)
                location ~ ^/sub/(\\w+)$ { nchan_subscriber websocket; nchan_channel_id $1; }
                location ~ ^/pub/(\\w+)$ { nchan_publisher http; nchan_channel_id $1; }
              }
            }

            """
    }

    /// mosquitto 2.0 starts no WebSocket listener unless it has a plain one too. Started as root
    /// it would read the TLS key only after becoming its own user, who may not read the bench's key.
    private static func mosquittoConfiguration(port: Int, plainPort: Int, tls: TLSFiles?) -> String {
        let certificate = tls.map { "certfile \($0.chain)\nkeyfile \($0.key)\n" } ?? ""
        return """
            user \(geteuid() == 0 ? "root" : "mosquitto")
            persistence false
            log_type error
            log_type warning
            listener \(plainPort) 127.0.0.1
            listener \(port)
            protocol websockets
            \(certificate)allow_anonymous true

            """
    }

    /// nginx's worker processes, once the master has started them.
    private static func workers(of master: Int32) async throws -> [Int32] {
        for _ in 0..<500 {
            let children =
                (try? String(contentsOfFile: "/proc/\(master)/task/\(master)/children", encoding: .utf8)) ?? ""
            let pids = children.split(separator: " ").compactMap { Int32($0) }
            if !pids.isEmpty { return pids }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw CommandFailure("nginx started no worker")
    }

    /// A port nothing listens on now (the kernel's choice for a socket bound to port 0).
    private static func freePort() async throws -> Int {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: 0).get()
        let port = channel.localAddress?.port ?? 0
        try await channel.close()
        return port
    }

    /// A peer started from its package says nothing when it is ready; its port does.
    private static func waitUntilAccepting(port: Int, while running: () -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            guard running() else { throw ExitedAtStart() }
            if let channel = try? await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connect(host: "127.0.0.1", port: port).get()
            {
                try? await channel.close()
                return
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw CommandFailure("the server did not listen on port \(port) within 10 s")
    }
}
