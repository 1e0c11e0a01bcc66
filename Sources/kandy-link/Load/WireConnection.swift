import Foundation
import NIOCore
import NIOPosix
import NIOSSL

/// One load-generator connection on an event loop: HTTP/1.1 requests one at a time, and after an
/// upgrade a WebSocket whose messages (text or binary frames) go to a callback. Parsing is done
/// here by hand, on the bytes, so that a hundred thousand of these cost a handler and a buffer
/// each — no task, stream or pipeline of codecs per connection.
final class WireConnection: Sendable {
    struct Response: Sendable {
        var status: Int
        var body: ByteBuffer
    }

    enum Failure: Error, CustomStringConvertible {
        case closed
        case malformed(String)
        case status(Int, String)

        var description: String {
            switch self {
            case .closed: "the connection closed"
            case .malformed(let what): "malformed answer: \(what)"
            case .status(let code, let body): "HTTP \(code): \(body.prefix(200))"
            }
        }
    }

    let channel: any Channel
    private let handler: NIOLoopBound<WireHandler>
    let host: String

    private init(channel: any Channel, handler: NIOLoopBound<WireHandler>, host: String) {
        self.channel = channel
        self.handler = handler
        self.host = host
    }

    /// Connects to `target` from `source` (any port of that address), with TLS when `tls` is given.
    static func connect(
        to target: SocketAddress, from source: SocketAddress?, tls: NIOSSLContext?, serverName: String?,
        host: String, on loop: any EventLoop
    ) async throws -> WireConnection {
        var bootstrap = ClientBootstrap(group: loop)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(.seconds(30))
        if let source { bootstrap = bootstrap.bind(to: source) }
        // The handler is kept as it is added: a connection the server closes at once has no
        // pipeline left to look it up in.
        let (channel, handler) = try await bootstrap.connect(to: target) { channel in
            channel.eventLoop.makeCompletedFuture {
                if let tls {
                    let handler = try NIOSSLClientHandler(context: tls, serverHostname: serverName)
                    try channel.pipeline.syncOperations.addHandler(handler)
                }
                let wire = WireHandler()
                try channel.pipeline.syncOperations.addHandler(wire)
                return (channel, NIOLoopBound(wire, eventLoop: channel.eventLoop))
            }
        }
        return WireConnection(channel: channel, handler: handler, host: host)
    }

    /// Sends one request and waits for its whole response.
    func request(
        _ method: String, _ path: String, headers: [(String, String)] = [], body: ByteBuffer? = nil
    ) async throws -> Response {
        var head = "\(method) \(path) HTTP/1.1\r\nHost: \(host)\r\n"
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        if let body {
            head += "Content-Type: application/json\r\nContent-Length: \(body.readableBytes)\r\n"
        }
        head += "\r\n"
        var bytes = channel.allocator.buffer(capacity: head.utf8.count + (body?.readableBytes ?? 0))
        bytes.writeString(head)
        if var body { bytes.writeBuffer(&body) }
        return try await exchange(bytes)
    }

    /// Upgrades to a WebSocket on `path`; `onMessage` then receives each frame's payload on the
    /// event loop, and `onClose` once, when the socket ends.
    func upgrade(
        _ path: String, headers: [(String, String)] = [], onMessage: @escaping @Sendable (ByteBuffer) -> Void,
        onClose: @escaping @Sendable () -> Void
    ) async throws {
        // Random bytes are drawn eight at a time: a draw is a getrandom(2) call, and the bench
        // opens a connection per session.
        let key = withUnsafeBytes(of: (UInt64.random(in: .min ... .max), UInt64.random(in: .min ... .max))) {
            Data($0).base64EncodedString()
        }
        var head =
            "GET \(path) HTTP/1.1\r\nHost: \(host)\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + "Sec-WebSocket-Key: \(key)\r\nSec-WebSocket-Version: 13\r\n"
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        head += "\r\n"
        let loop = channel.eventLoop
        let handler = self.handler
        try await loop.submit {
            handler.value.onMessage = onMessage
            handler.value.onClose = onClose
        }.get()
        let response = try await exchange(channel.allocator.buffer(string: head))
        guard response.status == 101 else {
            throw Failure.status(response.status, String(buffer: response.body))
        }
    }

    /// Writes a masked text frame (clients must mask, RFC 6455 §5.3).
    func send(text: String) {
        send(opcode: 0x1, Array(text.utf8))
    }

    /// Writes a masked binary frame.
    func send(binary: [UInt8]) {
        send(opcode: 0x2, binary)
    }

    private func send(opcode: UInt8, _ payload: [UInt8]) {
        let channel = self.channel
        channel.eventLoop.execute {
            channel.writeAndFlush(
                WireHandler.maskedFrame(opcode: opcode, payload, allocator: channel.allocator), promise: nil)
        }
    }

    /// Sends a close frame, then closes the connection.
    func close() async {
        let channel = self.channel
        let frame = WireHandler.maskedFrame(opcode: 0x8, [], allocator: channel.allocator)
        try? await channel.writeAndFlush(frame)
        try? await channel.close()
    }

    private func exchange(_ bytes: ByteBuffer) async throws -> Response {
        let loop = channel.eventLoop
        let channel = self.channel
        let handler = self.handler
        return try await loop.flatSubmit {
            let promise = loop.makePromise(of: Response.self)
            handler.value.expect(promise)
            // A connection the server already closed fails the write, not the (gone) read.
            channel.writeAndFlush(bytes).whenFailure { handler.value.fail($0) }
            return promise.futureResult
        }.get()
    }
}

/// The byte-level state of a ``WireConnection``.
final class WireHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var buffer: ByteBuffer?
    private var pending: EventLoopPromise<WireConnection.Response>?
    private var websocket = false
    var onMessage: (@Sendable (ByteBuffer) -> Void)?
    var onClose: (@Sendable () -> Void)?

    func expect(_ promise: EventLoopPromise<WireConnection.Response>) {
        precondition(pending == nil, "one request at a time")
        pending = promise
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        if buffer == nil || buffer!.readableBytes == 0 {
            buffer = incoming
        } else {
            buffer!.writeBuffer(&incoming)
        }
        do {
            while try parse(context: context) {}
        } catch {
            fail(error)
            context.close(promise: nil)
        }
        if let current = buffer, current.readableBytes == 0 { buffer = nil }
    }

    /// Consumes one complete message from the buffer; false when more bytes are needed.
    private func parse(context: ChannelHandlerContext) throws -> Bool {
        guard var view = buffer, view.readableBytes > 0 else { return false }
        if websocket { return parseFrame(&view, context: context) }
        let bytes = view.readableBytesView
        guard let end = bytes.firstRange(of: [13, 10, 13, 10])?.lowerBound else { return false }
        let head = String(decoding: bytes[bytes.startIndex..<end], as: UTF8.self)
        let lines = head.split(separator: "\r\n")
        guard let statusLine = lines.first, statusLine.hasPrefix("HTTP/1.1 "),
            let status = Int(statusLine.dropFirst(9).prefix(3))
        else { throw WireConnection.Failure.malformed(String(head.prefix(80))) }
        var length = 0
        for line in lines.dropFirst() {
            let parts = line.split(separator: ":", maxSplits: 1)
            if parts.count == 2, parts[0].lowercased() == "content-length" {
                length = Int(parts[1].trimmingCharacters(in: .whitespaces)) ?? 0
            }
        }
        let headLength = end + 4 - bytes.startIndex
        if status == 101 { length = 0 }
        guard view.readableBytes >= headLength + length else { return false }
        view.moveReaderIndex(forwardBy: headLength)
        let body = view.readSlice(length: length)!
        buffer = view
        if status == 101 { websocket = true }
        let promise = pending
        pending = nil
        promise?.succeed(.init(status: status, body: body))
        return true
    }

    /// One server frame (unmasked, RFC 6455 §5.2).
    private func parseFrame(_ view: inout ByteBuffer, context: ChannelHandlerContext) -> Bool {
        guard view.readableBytes >= 2, let first = view.getInteger(at: view.readerIndex, as: UInt8.self),
            let second = view.getInteger(at: view.readerIndex + 1, as: UInt8.self)
        else { return false }
        var headerLength = 2
        var length = Int(second & 0x7F)
        if length == 126 {
            guard let extended = view.getInteger(at: view.readerIndex + 2, as: UInt16.self) else { return false }
            length = Int(extended)
            headerLength = 4
        } else if length == 127 {
            guard let extended = view.getInteger(at: view.readerIndex + 2, as: UInt64.self) else { return false }
            length = Int(extended)
            headerLength = 10
        }
        guard view.readableBytes >= headerLength + length else { return false }
        view.moveReaderIndex(forwardBy: headerLength)
        let payload = view.readSlice(length: length)!
        buffer = view
        switch first & 0x0F {
        case 0x1, 0x2: onMessage?(payload)
        case 0x8:
            context.writeAndFlush(
                wrapOutboundOut(Self.maskedFrame(opcode: 0x8, [], allocator: context.channel.allocator)), promise: nil)
            context.close(promise: nil)
        case 0x9:
            context.writeAndFlush(
                wrapOutboundOut(
                    Self.maskedFrame(
                        opcode: 0xA, Array(payload.readableBytesView), allocator: context.channel.allocator)),
                promise: nil)
        default: break
        }
        return true
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail(WireConnection.Failure.closed)
        onClose?()
        onClose = nil
        onMessage = nil
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail(error)
        context.close(promise: nil)
    }

    func fail(_ error: any Error) {
        let promise = pending
        pending = nil
        promise?.fail(error)
    }

    static func maskedFrame(opcode: UInt8, _ payload: [UInt8], allocator: ByteBufferAllocator) -> ByteBuffer {
        var frame = allocator.buffer(capacity: payload.count + 14)
        frame.writeInteger(0x80 | opcode)
        if payload.count < 126 {
            frame.writeInteger(0x80 | UInt8(payload.count))
        } else if payload.count <= UInt16.max {
            frame.writeInteger(UInt8(0x80 | 126))
            frame.writeInteger(UInt16(payload.count))
        } else {
            frame.writeInteger(UInt8(0x80 | 127))
            frame.writeInteger(UInt64(payload.count))
        }
        let mask = withUnsafeBytes(of: UInt32.random(in: .min ... .max)) { Array($0) }
        frame.writeBytes(mask)
        frame.writeBytes(payload.enumerated().map { $0.element ^ mask[$0.offset & 3] })
        return frame
    }
}
