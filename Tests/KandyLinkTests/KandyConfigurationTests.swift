import Testing

@testable import KandyLink

@Suite struct KandyConfigurationTests {
    static let valid = KandyConfiguration(
        authentication: .init(server: .init(base: "link.example.com")),
        subscription: .init(websocket: .init(server: "ws.example.com")))

    @Test func defaultsAreKandyJS() throws {
        let configuration = Self.valid
        try configuration.validate()
        #expect(configuration.restOrigin == "https://link.example.com:443")
        #expect(configuration.channelOrigin == "wss://ws.example.com:443")
        #expect(configuration.subscription.expires == 3600)
        #expect(configuration.connectivity.keepaliveInterval == .seconds(30))
        #expect(configuration.connectivity.reconnect.limit == 5)
        #expect(configuration.connectivity.reconnect.delay == .seconds(5))
        #expect(configuration.call.serverTurnCredentials)
    }

    @Test(
        arguments: [
            (
                "authentication.server.base",
                { @Sendable (c: inout KandyConfiguration) in c.authentication.server.base = "" }
            ),
            ("authentication.server.protocol", { $0.authentication.server.protocol = "ftp" }),
            ("authentication.server.port", { $0.authentication.server.port = 0 }),
            ("authentication.server.version", { $0.authentication.server.version = "2" }),
            ("subscription.websocket.server", { $0.subscription.websocket.server = "wss://x/y" }),
            ("subscription.websocket.protocol", { $0.subscription.websocket.protocol = "https" }),
            ("subscription.expires", { $0.subscription.expires = 0 }),
            ("connectivity.keepaliveInterval", { $0.connectivity.keepaliveInterval = .zero }),
            ("connectivity.reconnect", { $0.connectivity.reconnect.multiplier = 0.5 }),
            ("call.iceServers", { $0.call.iceServers = [.init(urls: [])] }),
            ("tls.trustedCertificateFiles", { $0.tls.trustedCertificateFiles = ["/nonexistent.pem"] }),
        ] as [(String, @Sendable (inout KandyConfiguration) -> Void)])
    func invalidConfigurationsThrowNamingTheField(field: String, breakIt: @Sendable (inout KandyConfiguration) -> Void)
    {
        var configuration = Self.valid
        breakIt(&configuration)
        do {
            _ = try Kandy.create(configuration)
            Issue.record("accepted a bad \(field)")
        } catch {
            #expect(error.code == .invalidConfiguration)
            #expect(error.message.contains(field), "\(error.message)")
        }
    }
}
