import AsyncHTTPClient
import Foundation
import Logging
import NIOEmbedded
import ServiceLifecycle
import Testing

@testable import KandyLinkServer

@Suite struct PlatformServiceTests {
    /// An app runs the platform in its own service group; the group's graceful shutdown stops it.
    @Test(.timeLimit(.minutes(1))) func aPlatformRunsAndStopsAsAServiceOfAnAppsGroup() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(UUID().uuidString)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        var configuration = PlatformConfiguration()
        configuration.port = 0
        configuration.transportSecurity = .plaintext
        configuration.database = directory.appendingPathComponent("platform.sqlite").path
        let platform = try await Platform(configuration: configuration)
        let group = ServiceGroup(services: [platform], logger: Logger(label: "app"))

        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            let port = try await platform.listeningPort()
            let health = try await HTTPClient.shared.execute(
                HTTPClientRequest(url: "http://127.0.0.1:\(port)/health"), timeout: .seconds(10))
            #expect(health.status == .ok)

            await group.triggerGracefulShutdown()
            try await tasks.next()  // the group ends, without an error
        }
    }

    /// What a node closes when its run ends: the connections still open, not those already closed.
    @Test func theConnectionsStillOpenAtTheStopAreClosed() async throws {
        let connections = OpenConnections()
        let (ending, lingering, negotiating) = (EmbeddedChannel(), EmbeddedChannel(), EmbeddedChannel())
        for channel in [ending, lingering, negotiating] {
            try await channel.connect(to: .init(ipAddress: "127.0.0.1", port: 1)).get()
            connections.add(channel)
        }
        try await ending.close()
        ending.embeddedEventLoop.run()  // its close is seen
        #expect(connections.closeAll() == 2)
        #expect(!lingering.isActive && !negotiating.isActive)
        #expect(connections.closeAll() == 0)
    }
}
