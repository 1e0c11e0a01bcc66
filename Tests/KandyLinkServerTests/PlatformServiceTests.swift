import AsyncHTTPClient
import Foundation
import Logging
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
}
