import Foundation
import KandyLinkServer
import NIOCore
import NIOPosix

/// A `kandy-link serve` process: a platform node as an operator runs it, on an ephemeral port.
public final class PlatformNode: Sendable {
    public let port: Int
    private let process: Process
    private let ended: Task<Int32, Never>

    /// The `kandy-link` binary built next to the tests (`KANDY_LINK_BINARY` overrides).
    public static var binary: URL {
        if let path = ProcessInfo.processInfo.environment["KANDY_LINK_BINARY"] { return URL(fileURLWithPath: path) }
        var directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for _ in 0..<4 {
            let candidate = directory.appendingPathComponent("kandy-link")
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
            directory.deleteLastPathComponent()
        }
        return URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
            .appendingPathComponent(".build/debug/kandy-link")
    }

    public struct StartFailure: Error, CustomStringConvertible {
        public var description: String
    }

    /// Starts a node on `database` serving TLS with `certificate`; returns once it listens.
    public static func start(
        database: String, certificate: DevelopmentCertificate.Files, arguments: [String] = []
    ) async throws -> PlatformNode {
        let process = Process()
        process.executableURL = binary
        process.arguments =
            [
                "serve", "--database", database, "--tls-cert", certificate.chainPath, "--tls-key", certificate.keyPath,
                "--port", "0", "--log-level", "warning",
            ] + arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.standardError
        let lines = output.lines()
        let ended = try process.runUntilExit()
        // "KandyLink platform listening on https://127.0.0.1:PORT (…"
        for await line in lines {
            guard let range = line.range(of: "listening on https://127.0.0.1:") else { continue }
            let digits = line[range.upperBound...].prefix { $0.isNumber }
            if let port = Int(digits) { return PlatformNode(port: port, process: process, ended: ended) }
        }
        process.terminate()
        throw StartFailure(description: "kandy-link serve exited before listening (binary: \(binary.path))")
    }

    private init(port: Int, process: Process, ended: Task<Int32, Never>) {
        self.port = port
        self.process = process
        self.ended = ended
    }

    /// Ends the node at once, as a crash or a power cut would: no close frames, nothing flushed.
    public func kill() async {
        Foundation.kill(process.processIdentifier, SIGKILL)
        _ = await ended.value
    }

    /// Stops the node gracefully (SIGTERM).
    public func stop() async {
        guard process.isRunning else { return }
        process.terminate()
        _ = await ended.value
    }
}

extension Process {
    /// Runs the process; the task ends with it, giving its exit status. (Foundation's
    /// `waitUntilExit` spins a run loop on Linux and keeps a core busy while it waits.)
    public func runUntilExit() throws -> Task<Int32, Never> {
        let (exits, exit) = AsyncStream.makeStream(of: Int32.self)
        terminationHandler = { process in
            exit.yield(process.terminationStatus)
            exit.finish()
        }
        try run()
        return Task {
            for await status in exits { return status }
            return -1
        }
    }
}

/// A TCP relay standing in for a load balancer: each connection goes to the first backend that
/// accepts it, bytes passed through untouched (TLS stays end to end).
public final class TCPRelay: Sendable {
    public let port: Int
    private let server: any Channel

    public init(backends: [Int]) async throws {
        let ports = backends
        server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.autoRead, value: false)
            .childChannelInitializer { inbound in
                Self.connect(inbound, to: ports)
            }
            .bind(host: "127.0.0.1", port: 0).get()
        port = server.localAddress?.port ?? 0
    }

    public func close() async {
        try? await server.close()
    }

    private static func connect(_ inbound: any Channel, to ports: [Int]) -> EventLoopFuture<Void> {
        guard let port = ports.first else {
            return inbound.eventLoop.makeFailedFuture(ChannelError.connectTimeout(.seconds(0)))
        }
        return ClientBootstrap(group: inbound.eventLoop)
            .channelInitializer { outbound in
                outbound.pipeline.addHandler(Splice(partner: inbound))
            }
            .connect(host: "127.0.0.1", port: port)
            .flatMap { outbound in
                // Reading starts only now, so nothing arrives before there is somewhere to send it.
                inbound.pipeline.addHandler(Splice(partner: outbound)).flatMap {
                    inbound.setOption(.autoRead, value: true)
                }
            }
            .flatMapError { _ in connect(inbound, to: Array(ports.dropFirst())) }
    }

    /// Writes what one side reads to the other, and closes both when either closes.
    private final class Splice: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        let partner: any Channel

        init(partner: any Channel) { self.partner = partner }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            partner.writeAndFlush(Self.unwrapInboundIn(data), promise: nil)
        }

        func channelInactive(context: ChannelHandlerContext) {
            partner.close(promise: nil)
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            context.close(promise: nil)
        }
    }
}
