import AsyncHTTPClient
import Foundation
import HTTPTypes
import KandyLinkProtocol
import Logging
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import NIOPosix
import NIOSSL
import KandyLinkTesting
import WSClient

@testable import KandyLinkServer

/// A ``PlatformFixture`` plus an HTTPS client that trusts its development certificate.
final class TestPlatform: Sendable {
    let fixture: PlatformFixture
    let http: HTTPClient
    /// Connections of its own, and redirects are answers rather than followed.
    let unredirected: HTTPClient
    let tls: TLSConfiguration

    static let alice = PlatformFixture.alice
    static let bob = PlatformFixture.bob
    static let password = PlatformFixture.password

    var platform: Platform { fixture.platform }
    var port: Int { fixture.port }
    var clock: ManualPlatformClock { fixture.clock }
    var base: String {
        let scheme = platform.configuration.transportSecurity == .plaintext ? "http" : "https"
        return "\(scheme)://127.0.0.1:\(port)"
    }
    var databasePath: String { fixture.databasePath }

    /// Runs `body` against a fresh platform, and stops it afterwards whatever happens.
    static func with(
        users: [String] = [alice, bob],
        configure: @escaping @Sendable (inout PlatformConfiguration) -> Void = { _ in },
        _ body: (TestPlatform) async throws -> Void
    ) async throws {
        let test = try await TestPlatform(fixture: PlatformFixture(users: users, configure: configure))
        do {
            try await body(test)
        } catch {
            try? await test.stop()
            throw error
        }
        try await test.stop()
    }

    private init(fixture: PlatformFixture) throws {
        self.fixture = fixture
        var tls = TLSConfiguration.makeClientConfiguration()
        if FileManager.default.fileExists(atPath: fixture.certificatePath) {  // none for a plaintext platform
            tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(fixture.certificatePath))
        }
        self.tls = tls
        var httpConfiguration = HTTPClient.Configuration(tlsConfiguration: tls)
        httpConfiguration.httpVersion = .http1Only
        http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: httpConfiguration)
        httpConfiguration.redirectConfiguration = .disallow
        unredirected = HTTPClient(eventLoopGroupProvider: .singleton, configuration: httpConfiguration)
    }

    func stopPlatform() async throws { try await fixture.stopPlatform() }

    func restart() async throws { try await fixture.restart() }

    func stop() async throws {
        try await fixture.stop()
        try await http.shutdown()
        try await unredirected.shutdown()
    }

    // MARK: HTTP

    /// alice's basic credentials as a header line, for ``exchange(_:)``.
    static var aliceAuthorization: String {
        let field = CredentialHeader.basic(login: alice, password: password).field
        return "\(field.name): \(field.value)"
    }

    /// The responses in what ``exchange(_:)`` returned, each from its status code on.
    static func responses(in output: String) -> [String] {
        output.split(separator: /HTTP\/1\.1 (?=\d{3} )/).map(String.init)
    }

    /// Writes `bytes` as they are on a new TLS connection and returns all the platform writes
    /// back until it closes the connection: for what an HTTP client would never send.
    func exchange(_ bytes: String) async throws -> String {
        let tls = self.tls
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    let handler = try NIOSSLClientHandler(
                        context: try NIOSSLContext(configuration: tls), serverHostname: "localhost")
                    try channel.pipeline.syncOperations.addHandler(handler)
                    return try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        return try await channel.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(string: bytes))
            var received = ByteBuffer()
            for try await var part in inbound { received.writeBuffer(&part) }
            return String(buffer: received)
        }
    }

    struct Reply {
        var status: Int
        var headers: HTTPHeaders
        var body: Data

        func decode<T: Decodable>(_ type: T.Type) throws -> T { try WireJSON.decode(type, from: body) }
        var subscribeResponse: SubscribeResponse? { try? decode(SubscribeResponseDocument.self).subscribeResponse }
        var statusDocument: StatusDocument? { try? decode(StatusDocument.self) }
        var text: String { String(decoding: body, as: UTF8.self) }
    }

    func request(
        _ method: HTTPMethod, _ path: String, body: String? = nil,
        credential: CredentialHeader? = .basic(login: alice, password: password),
        headers extra: [(String, String)] = [], client: HTTPClient? = nil, timeout: TimeAmount = .seconds(30)
    ) async throws -> Reply {
        var request = HTTPClientRequest(url: base + path)
        request.method = method
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "Accept", value: "application/json")
        request.headers.add(name: "X-Cpaas-Agent", value: "link-js-sdk/4.20.0")
        if let credential { request.headers.add(name: credential.field.name, value: credential.field.value) }
        for (name, value) in extra { request.headers.add(name: name, value: value) }
        if let body { request.body = .bytes(ByteBuffer(string: body)) }
        let response = try await (client ?? http).execute(request, timeout: timeout)
        let bytes = try await response.body.collect(upTo: 1 << 20)
        return Reply(status: Int(response.status.code), headers: response.headers, body: Data(buffer: bytes))
    }

    static func subscribeBody(
        services: [String] = ["call", "Presence", "IM"], expires: Int = 3600, forceLogOut: Bool = true
    ) -> String {
        let document = SubscribeRequestDocument(
            subscribeRequest: SubscribeRequest(
                expires: expires, service: services.map(ServiceName.init(rawValue:)),
                supported: ["RingingFeedback"], forceLogOut: ForceLogOut(forceLogOut)))
        return String(decoding: try! WireJSON.encode(document), as: UTF8.self)
    }

    static func refreshBody(services: [String] = ["call", "Presence", "IM"], expires: Int = 3600) -> String {
        let document = SubscribeRequestDocument(
            subscribeRequest: SubscribeRequest(expires: expires, service: services.map(ServiceName.init(rawValue:))))
        return String(decoding: try! WireJSON.encode(document), as: UTF8.self)
    }

    /// POSTs a subscription and returns the granted response, failing the test otherwise.
    func subscribe(
        user: String = alice, services: [String] = ["call", "Presence", "IM"], expires: Int = 3600,
        forceLogOut: Bool = true
    ) async throws -> SubscribeResponse {
        let reply = try await request(
            .POST, LinkPath.subscriptions(user: user),
            body: Self.subscribeBody(services: services, expires: expires, forceLogOut: forceLogOut),
            credential: .basic(login: user, password: Self.password))
        guard reply.status == 200, let response = reply.subscribeResponse, response.subscriptionParams != nil else {
            throw TestFailure("subscribe answered \(reply.status): \(reply.text)")
        }
        return response
    }

    // MARK: Channel

    /// Opens a socket on a channel and waits until the platform holds it.
    func openChannel(_ path: String, query: String = "", origin: String? = nil) async throws -> TestChannel {
        let channel = try await TestChannel.open(
            url: "wss://127.0.0.1:\(port)\(path)\(query)", tls: tls, origin: origin)
        let channelID = String(path.split(separator: "/").last ?? "")
        _ = await platform.waitUntil { platform.hub.hasSocket(channelID) }
        return channel
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A WebSocket client on a notification channel: what it received, and how it was closed.
final class TestChannel: Sendable {
    enum Command: Sendable {
        case text(String)
        case close
    }

    let received: AsyncStream<String>
    private let commands: AsyncStream<Command>.Continuation
    private let running: Task<WebSocketCloseFrame?, any Error>

    private init(
        received: AsyncStream<String>, commands: AsyncStream<Command>.Continuation,
        running: Task<WebSocketCloseFrame?, any Error>
    ) {
        self.received = received
        self.commands = commands
        self.running = running
    }

    /// Opens the socket; throws when the platform refuses the upgrade.
    static func open(url: String, tls: TLSConfiguration, origin: String? = nil) async throws -> TestChannel {
        var headers = HTTPFields()
        if let origin { headers[.origin] = origin }
        let (received, receivedSink) = AsyncStream.makeStream(of: String.self)
        let (commandStream, commands) = AsyncStream.makeStream(of: Command.self)
        let (opened, openedSink) = AsyncStream.makeStream(of: Result<Void, any Error>.self)
        var logger = Logger(label: "test-channel")
        logger.logLevel = .critical
        let running = Task<WebSocketCloseFrame?, any Error> {
            do {
                // WSClient refuses an IP address as TLS SNI; the development certificate also names localhost.
                let frame = try await WebSocketClient.connect(
                    url: url,
                    configuration: .init(additionalHeaders: headers, autoPing: .disabled, sniHostname: "localhost"),
                    tlsConfiguration: tls, logger: logger
                ) { inbound, outbound, _ in
                    openedSink.yield(.success(()))
                    try await withThrowingTaskGroup(of: Void.self) { group in
                        group.addTask {
                            for await command in commandStream {
                                switch command {
                                case .text(let text): try await outbound.write(.text(text))
                                case .close:
                                    try await outbound.close(.normalClosure, reason: nil)
                                    return
                                }
                            }
                        }
                        for try await message in inbound.messages(maxSize: 1 << 20) {
                            if case .text(let text) = message { receivedSink.yield(text) }
                        }
                        group.cancelAll()
                    }
                }
                receivedSink.finish()
                openedSink.yield(.failure(TestFailure("closed before opening")))
                return frame
            } catch {
                receivedSink.finish()
                openedSink.yield(.failure(error))
                throw error
            }
        }
        var iterator = opened.makeAsyncIterator()
        switch await iterator.next() {
        case .success?: return TestChannel(received: received, commands: commands, running: running)
        case .failure(let error)?: throw error
        case nil: throw TestFailure("no open result")
        }
    }

    func send(_ text: String) { commands.yield(.text(text)) }

    func close() { commands.yield(.close) }

    /// Everything received until the socket closed, and the close frame.
    func drain() async throws -> (messages: [String], close: WebSocketCloseFrame?) {
        var messages: [String] = []
        for await message in received { messages.append(message) }
        return (messages, try await running.value)
    }

    func next() async -> String? {
        var iterator = received.makeAsyncIterator()
        return await iterator.next()
    }
}
