// swift-tools-version: 6.1
import Foundation
import PackageDescription

/// GStreamer's and GLib's headers, where Debian puts them on this machine's architecture.
let gstreamerIncludes: [String] = {
    let architectures = ["x86_64-linux-gnu", "aarch64-linux-gnu", "arm-linux-gnueabihf", "i386-linux-gnu"]
    let glibConfig = architectures.map { "/usr/lib/\($0)/glib-2.0/include" }
        .first { FileManager.default.fileExists(atPath: $0) }
    return ["/usr/include/gstreamer-1.0", "/usr/include/glib-2.0"] + (glibConfig.map { [$0] } ?? [])
}()

let package = Package(
    name: "KandyLink",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "KandyLinkProtocol", targets: ["KandyLinkProtocol"]),
        .library(name: "KandyLink", targets: ["KandyLink"]),
        .library(name: "KandyLinkServer", targets: ["KandyLinkServer"]),
        .library(name: "KandyLinkGStreamer", targets: ["KandyLinkGStreamer"]),
        .executable(name: "kandy-link", targets: ["kandy-link"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-auth", from: "2.5.0"),
        .package(url: "https://github.com/hummingbird-project/swift-websocket", from: "1.6.2"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
        .package(url: "https://github.com/apple/swift-certificates", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-asn1", from: "1.7.4"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
    ],
    targets: [
        .target(name: "KandyLinkProtocol"),
        .target(
            name: "KandyLink",
            dependencies: [
                "KandyLinkProtocol",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "WSClient", package: "swift-websocket"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "KandyLinkServer",
            dependencies: [
                "KandyLinkProtocol",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "HummingbirdBcrypt", package: "hummingbird-auth"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                // For ConnectionPoolError: PostgresClient passes its pool's errors through as they are.
                .product(name: "_ConnectionPoolModule", package: "postgres-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "NIOHTTPTypesHTTP1", package: "swift-nio-extras"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ]
        ),
        .executableTarget(
            name: "kandy-link",
            dependencies: [
                "KandyLinkGStreamer",
                "KandyLink",
                "KandyLinkServer",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "WSClient", package: "swift-websocket"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]
        ),
        // GStreamer's webrtcbin as the SDK's media engine on Linux (Debian: libgstreamer-plugins-bad1.0-dev,
        // gstreamer1.0-plugins-bad, gstreamer1.0-plugins-good, gstreamer1.0-nice); the SDK itself does not
        // need it. Its include paths are given here: pkg-config's carry -pthread, which SwiftPM refuses
        // with a warning.
        .target(
            name: "CKandyMedia",
            cSettings: [.define("GST_USE_UNSTABLE_API"), .unsafeFlags(gstreamerIncludes.map { "-I" + $0 })],
            linkerSettings: ["gstwebrtc-1.0", "gstsdp-1.0", "gstreamer-1.0", "gobject-2.0", "glib-2.0"].map {
                .linkedLibrary($0)
            }),
        .target(name: "KandyLinkGStreamer", dependencies: ["KandyLink", "CKandyMedia"]),
        .target(
            name: "KandyLinkTesting",
            dependencies: [
                "KandyLinkServer",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "Tests/KandyLinkTesting"
        ),
        .testTarget(name: "KandyLinkProtocolTests", dependencies: ["KandyLinkProtocol"]),
        .testTarget(
            name: "kandy-linkTests",
            dependencies: [
                "kandy-link",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "KandyLinkTests",
            dependencies: [
                "KandyLink",
                "KandyLinkServer",
                "KandyLinkTesting",
                // Built for the tests that run platform nodes as processes.
                "kandy-link",
            ]
        ),
        .testTarget(
            name: "KandyLinkGStreamerTests",
            dependencies: ["KandyLinkGStreamer", "KandyLink", "KandyLinkServer", "KandyLinkTesting"]
        ),
        .testTarget(
            name: "KandyLinkServerTests",
            dependencies: [
                "KandyLinkServer",
                "KandyLinkTesting",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "WSClient", package: "swift-websocket"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "GRDB", package: "GRDB.swift"),
            ]
        ),
    ]
)
