import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import Testing

@testable import KandyLink

@Suite struct WSClientTransportTests {
    /// A server that accepts the connection and never answers the upgrade: the open fails after
    /// `openTimeout` rather than waiting forever, so the channel's backoff can try again.
    @Test(.timeLimit(.minutes(1))) func anOpenTheServerNeverAnswersFailsAtTheTimeout() async throws {
        let silent = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelOption(.autoRead, value: false)
            .bind(host: "127.0.0.1", port: 0).get()
        let port = try #require(silent.localAddress?.port)
        let transport = WSClientTransport(
            tls: .makeClientConfiguration(), serverName: nil, pingInterval: .seconds(30),
            openTimeout: .milliseconds(300))
        let error = await #expect(throws: WSClientTransport.OpenTimedOut.self) {
            _ = try await transport.connect(url: "ws://127.0.0.1:\(port)/channel", onMessage: { _ in }, onClose: {})
        }
        #expect(error?.limit == .milliseconds(300))
        try await silent.close()
    }

    @Test func theOpenTimeoutMustBePositive() {
        var configuration = KandyConfiguration(
            authentication: .init(server: .init(base: "h")), subscription: .init(websocket: .init(server: "h")))
        configuration.connectivity.openTimeout = .zero
        #expect(throws: KandyError.self) { try configuration.validate() }
    }
}
