// swift-tools-version: 6.1
import PackageDescription

// Allocation and time benchmarks of the platform's hot paths, kept apart from the main package so
// that its build and CI do not carry the benchmark tooling. Run from this folder:
//   swift package benchmark
let package = Package(
    name: "KandyLinkBenchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "KandyLink", path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/hummingbird-project/swift-websocket", from: "1.6.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
    ],
    targets: [
        .executableTarget(
            name: "HotPaths",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "KandyLinkProtocol", package: "KandyLink"),
                .product(name: "KandyLinkServer", package: "KandyLink"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "WSClient", package: "swift-websocket"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            path: "Benchmarks/HotPaths",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        // A bare SwiftNIO HTTP/1.1 server: the floor scripts/http-floor.py measures the node against.
        .executableTarget(
            name: "HTTPFloor",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "Benchmarks/HTTPFloor"
        ),
    ]
)
