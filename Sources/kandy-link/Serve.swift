import ArgumentParser
import Foundation
import KandyLinkServer
import Logging

/// The platform's own defaults, which the options fall back to.
private let defaults = PlatformConfiguration()

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a platform node: HTTPS and WSS on one port.",
        discussion: """
            Exactly one of --dev-tls, --tls-cert/--tls-key or --plaintext chooses how the port is \
            secured. --dev-tls creates a self-signed certificate for localhost and 127.0.0.1 next to \
            the database; trust it once in your browser. SIGTERM or SIGINT closes every channel with a \
            close frame and keeps the subscriptions, so clients resume after a restart.
            """)

    @OptionGroup var database: DatabaseOption

    @Option(help: "Address to listen on.")
    var host: String = env("HOST") ?? defaults.host

    @Option(help: "Port to listen on (0: any free port).")
    var port: Int = env("PORT").flatMap(Int.init) ?? defaults.port

    @Flag(help: "Serve TLS with a self-signed development certificate.")
    var devTLS = env("DEV_TLS") == "1"

    @Option(name: .customLong("tls-cert"), help: ArgumentHelp("PEM certificate chain.", valueName: "file"))
    var tlsCertOption: String?

    @Option(name: .customLong("tls-key"), help: ArgumentHelp("PEM private key of --tls-cert.", valueName: "file"))
    var tlsKeyOption: String?

    var tlsCert: String? { tlsCertOption ?? env("TLS_CERT") }
    var tlsKey: String? { tlsKeyOption ?? env("TLS_KEY") }

    @Flag(help: "Serve plain HTTP and WS: only behind a TLS-terminating proxy.")
    var plaintext = env("PLAINTEXT") == "1"

    @Option(help: "Sessions one user may hold at once; forceLogOut evicts the oldest beyond it.")
    var maxSessionsPerUser: Int = env("MAX_SESSIONS_PER_USER").flatMap(Int.init) ?? defaults.maxSessionsPerUser

    @Option(help: "Shortest subscription lifetime granted, in seconds.")
    var minExpires: Int = env("MIN_EXPIRES").flatMap(Int.init) ?? defaults.minExpires

    @Option(help: "Longest subscription lifetime granted, in seconds.")
    var maxExpires: Int = env("MAX_EXPIRES").flatMap(Int.init) ?? defaults.maxExpires

    @Option(help: "Notifications kept per subscription while its socket is down; beyond it the oldest are dropped.")
    var queueMaxNotifications: Int = env("QUEUE_MAX_NOTIFICATIONS").flatMap(Int.init) ?? defaults.maxQueuedNotifications

    @Option(help: "Bytes of notifications kept per subscription while its socket is down.")
    var queueMaxBytes: Int = env("QUEUE_MAX_BYTES").flatMap(Int.init) ?? defaults.maxQueuedBytes

    @Option(help: ArgumentHelp("Seconds an unanswered call rings before it ends (10–600).", valueName: "seconds"))
    var callRingTimeout: Int = env("CALL_RING_TIMEOUT").flatMap(Int.init) ?? Int(defaults.callRingTimeout)

    @Option(
        name: .customLong("max-sdp-bytes"),
        help: ArgumentHelp("Longest SDP a call request may carry, in bytes (4096–1048576).", valueName: "bytes"))
    var maxSDPBytes: Int = env("MAX_SDP_BYTES").flatMap(Int.init) ?? defaults.maxSDPBytes

    @Option(
        help: ArgumentHelp(
            "Seconds a shutdown (SIGTERM, SIGINT) waits for requests under way before it cancels them (0–300).",
            valueName: "seconds"))
    var shutdownGrace: Int = env("SHUTDOWN_GRACE").flatMap(Int.init) ?? Int(defaults.shutdownGrace.components.seconds)

    @Option(
        help: ArgumentHelp(
            "Secret shared with the TURN servers (coturn static-auth-secret); subscriptions then carry TURN credentials.",
            valueName: "secret"))
    var turnSecret: String?

    @Option(help: ArgumentHelp("File holding the TURN secret (keeps it out of the process list).", valueName: "file"))
    var turnSecretFile: String?

    @Option(
        help: ArgumentHelp(
            "A TURN or STUN URI for clients, e.g. turns:turn.example.com:443 (repeatable).", valueName: "uri"))
    var turnURI: [String] = []

    @Option(help: ArgumentHelp("Seconds a TURN credential stays valid (60–604800).", valueName: "seconds"))
    var turnTTL: Int = env("TURN_TTL").flatMap(Int.init) ?? Int(PlatformConfiguration.Turn.defaultLifetime)

    @Option(
        help: ArgumentHelp(
            "A browser origin allowed to open channels, e.g. https://app.example.org (repeatable; default: any).",
            valueName: "origin"))
    var allowedOrigin: [String] = env("ALLOWED_ORIGINS")?.split(separator: ",").map(String.init) ?? []

    @Option(
        name: .customLong("event-loops"),
        help: ArgumentHelp(
            "Event loop threads (default: one per CPU this process may run on, as taskset or a cgroup allows).",
            valueName: "count"))
    var eventLoopsOption: Int?

    var eventLoops: Int? { eventLoopsOption ?? env("EVENT_LOOPS").flatMap(Int.init) }

    @Option(help: ArgumentHelp("Log level: trace, debug, info, notice, warning, error.", valueName: "level"))
    var logLevel: String = env("LOG_LEVEL") ?? "info"

    func validate() throws {
        let modes = [devTLS, tlsCert != nil || tlsKey != nil, plaintext].filter { $0 }.count
        guard modes == 1 else {
            throw ValidationError("Choose exactly one of --dev-tls, --tls-cert with --tls-key, or --plaintext.")
        }
        if (tlsCert == nil) != (tlsKey == nil) { throw ValidationError("--tls-cert and --tls-key go together.") }
        guard (0...65535).contains(port) else { throw ValidationError("--port must be 0–65535.") }
        guard maxSessionsPerUser >= 1 else { throw ValidationError("--max-sessions-per-user must be at least 1.") }
        guard minExpires >= 1, maxExpires >= minExpires else {
            throw ValidationError("Need 1 ≤ --min-expires ≤ --max-expires.")
        }
        guard queueMaxNotifications >= 1, queueMaxBytes >= 1024 else {
            throw ValidationError("--queue-max-notifications must be at least 1 and --queue-max-bytes at least 1024.")
        }
        guard (10...600).contains(callRingTimeout) else { throw ValidationError("--call-ring-timeout must be 10–600.") }
        guard (4096...1 << 20).contains(maxSDPBytes) else {
            throw ValidationError("--max-sdp-bytes must be 4096–1048576.")
        }
        if let eventLoops, !(1...1024).contains(eventLoops) {
            throw ValidationError("--event-loops must be 1–1024.")
        }
        guard (0...300).contains(shutdownGrace) else { throw ValidationError("--shutdown-grace must be 0–300.") }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("Unknown --log-level \(logLevel).") }
        if turnSecret != nil && turnSecretFile != nil {
            throw ValidationError("Give the TURN secret once: --turn-secret or --turn-secret-file.")
        }
        guard TurnCredentialIssuer.lifetimeRange.contains(TimeInterval(turnTTL)) else {
            throw ValidationError("--turn-ttl must be 60–604800 seconds.")
        }
        for uri in turnURIs where !["turn:", "turns:", "stun:", "stuns:"].contains(where: { uri.hasPrefix($0) }) {
            throw ValidationError("--turn-uri \(uri) must start with turn:, turns:, stun: or stuns:.")
        }
    }

    var turnURIs: [String] {
        turnURI.isEmpty ? (env("TURN_URIS")?.split(separator: ",").map(String.init) ?? []) : turnURI
    }

    /// The secret from --turn-secret, --turn-secret-file or KANDY_LINK_TURN_SECRET.
    func readTurnSecret() throws -> String? {
        if let turnSecretFile {
            guard let text = try? String(contentsOfFile: turnSecretFile, encoding: .utf8) else {
                throw CommandFailure("cannot read the TURN secret file \(turnSecretFile)")
            }
            return text.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        return turnSecret ?? env("TURN_SECRET")
    }

    func run() async throws {
        // First: SwiftNIO's shared group is sized when it is first used.
        let loops = EventLoops.configure(requested: eventLoops)
        var configuration = PlatformConfiguration()
        configuration.host = host
        configuration.port = port
        configuration.database = database.database
        configuration.maxSessionsPerUser = maxSessionsPerUser
        configuration.minExpires = minExpires
        configuration.maxExpires = maxExpires
        configuration.maxQueuedNotifications = queueMaxNotifications
        configuration.maxQueuedBytes = queueMaxBytes
        configuration.callRingTimeout = TimeInterval(callRingTimeout)
        configuration.maxSDPBytes = maxSDPBytes
        configuration.shutdownGrace = .seconds(shutdownGrace)
        configuration.allowedOrigins = allowedOrigin.isEmpty ? nil : Set(allowedOrigin)
        if let tlsCert, let tlsKey {
            configuration.transportSecurity = .certificate(chainPath: tlsCert, keyPath: tlsKey)
        } else if plaintext {
            configuration.transportSecurity = .plaintext
        } else {
            configuration.transportSecurity = .developmentCertificate
        }
        if let secret = try readTurnSecret(), !secret.isEmpty {
            configuration.turn = .init(secret: secret, uris: turnURIs, lifetime: TimeInterval(turnTTL))
        }
        var logger = Logger(label: "kandy-link", factory: LineLogHandler.standardError)
        logger.logLevel = Logger.Level(rawValue: logLevel) ?? .info

        let platform: Platform
        do {
            platform = try await Platform(configuration: configuration, logger: logger)
        } catch {
            throw CommandFailure("\(error)")
        }
        async let running: Void = platform.run(gracefulShutdownSignals: [.sigterm, .sigint])
        do {
            let port = try await platform.listeningPort()
            print(banner(port: port, configuration: configuration, eventLoops: loops))
            fflush(nil)  // the banner must show even when stdout is a pipe
        } catch {
            // run() failed before listening; its error is the one to report.
        }
        do {
            try await running
        } catch let error as PlatformStartError {
            throw CommandFailure("\(error)")
        } catch {
            throw CommandFailure("the platform stopped: \(describe(error))")
        }
    }

    private func banner(port: Int, configuration: PlatformConfiguration, eventLoops: Int) -> String {
        let secure = configuration.transportSecurity != .plaintext
        let publicHost = host == "0.0.0.0" || host == "::" ? "127.0.0.1" : host
        var lines = [
            "KandyLink platform listening on \(secure ? "https" : "http")://\(publicHost):\(port) (WebSocket channels on the same port)",
            "Database: \(PostgresStore.redacted(configuration.database))",
            "Event loops: \(eventLoops)",
        ]
        if configuration.transportSecurity == .developmentCertificate {
            lines.append(
                "Development certificate: "
                    + configuration.dataDirectory.appendingPathComponent(DevelopmentCertificate.chainFileName).path)
        }
        lines += [
            "",
            "Kandy.js configuration for this platform:",
            """
            const client = Kandy.create({
              authentication: { server: { base: '\(publicHost)', port: '\(port)', protocol: '\(secure ? "https" : "http")' } },
              subscription: { websocket: { server: '\(publicHost)', port: '\(port)' } }\(iceServers(configuration))
            })
            """,
        ]
        return lines.joined(separator: "\n")
    }

    private func iceServers(_ configuration: PlatformConfiguration) -> String {
        guard let turn = configuration.turn, !turn.uris.isEmpty else { return "" }
        let servers = turn.uris.map { "{ urls: '\($0)' }" }.joined(separator: ", ")
        return ",\n  call: { serverTurnCredentials: true, iceServers: [\(servers)] }"
    }

    private func describe(_ error: any Error) -> String {
        let text = "\(error)"
        if text.contains("Address already in use") || text.contains("EADDRINUSE") {
            return "port \(port) on \(host) is already in use; choose another with --port."
        }
        return text
    }
}

func env(_ name: String) -> String? {
    ProcessInfo.processInfo.environment["KANDY_LINK_" + name]
}
