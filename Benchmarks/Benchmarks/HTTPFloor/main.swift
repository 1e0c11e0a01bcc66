import NIOCore
import NIOHTTP1
import NIOPosix

// The floor of SwiftNIO's HTTP/1.1 for `scripts/http-floor.py`: every request is answered from a
// channel handler on the event loop, with no async channel and no router, and a body as small as
// the platform's `GET /health`. What the platform's own `GET /health` costs above this is what its
// HTTP layer (Hummingbird, the async channel per connection) adds.

/// Answers each request, once it has ended, with a fixed JSON body.
final class Floor: ChannelInboundHandler, Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private static let body = ByteBuffer(string: #"{"statusCode":0,"reason":"Serving."}"#)
    private static let head = HTTPResponseHead(
        version: .http1_1, status: .ok,
        headers: ["Content-Type": "application/json", "Content-Length": "\(body.readableBytes)"])

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .end = unwrapInboundIn(data) else { return }
        context.write(wrapOutboundOut(.head(Self.head)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(Self.body))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }
}

let port = CommandLine.arguments.dropFirst().first.flatMap(Int.init) ?? 18081
let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup(numberOfThreads: 1))
    .serverChannelOption(.backlog, value: 256)
    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
    .childChannelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.configureHTTPServerPipeline()
            try channel.pipeline.syncOperations.addHandler(Floor())
        }
    }
    .bind(host: "127.0.0.1", port: port).get()
print("listening on \(port)")
try await server.closeFuture.get()
