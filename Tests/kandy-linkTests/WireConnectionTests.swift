import NIOCore
import NIOPosix
import Testing

@testable import kandy_link

/// The load generator's connection fails its requests when the server is gone, rather than
/// leaving a bench waiting forever.
@Suite(.timeLimit(.minutes(1))) struct WireConnectionTests {
    @Test func aRequestOnAConnectionTheServerClosedFails() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        // A server that closes every connection it accepts.
        let server = try await ServerBootstrap(group: group)
            .childChannelInitializer { $0.close() }
            .bind(host: "127.0.0.1", port: 0).get()
        let connection = try await WireConnection.connect(
            to: try #require(server.localAddress), from: nil, tls: nil, serverName: nil, host: "127.0.0.1",
            on: group.next())
        try await connection.channel.closeFuture.get()  // closed before the request is written
        await #expect(throws: (any Error).self) { _ = try await connection.request("GET", "/health") }
        try await server.close()
    }
}
