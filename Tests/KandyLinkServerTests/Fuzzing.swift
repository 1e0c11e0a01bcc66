import Foundation
import NIOCore
import NIOPosix
import Synchronization

/// A small, fast generator whose every run is reproduced by its seed (SplitMix64).
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// How long a fuzz run is: `KANDY_LINK_FUZZ_CASES` cases (scaled per suite) within
/// `KANDY_LINK_FUZZ_SECONDS`, from `KANDY_LINK_FUZZ_SEED`. The defaults suit CI; docs/threat-model.md
/// gives the command for a long run.
struct FuzzBudget: CustomStringConvertible {
    var seed: UInt64
    var cases: Int
    var seconds: Int

    static var current: FuzzBudget {
        let environment = ProcessInfo.processInfo.environment
        return FuzzBudget(
            seed: environment["KANDY_LINK_FUZZ_SEED"].flatMap { UInt64($0) } ?? 20_261_205,
            cases: environment["KANDY_LINK_FUZZ_CASES"].flatMap { Int($0) } ?? 3000,
            seconds: environment["KANDY_LINK_FUZZ_SECONDS"].flatMap { Int($0) } ?? 60)
    }

    var description: String { "KANDY_LINK_FUZZ_SEED=\(seed) KANDY_LINK_FUZZ_CASES=\(cases)" }
}

/// Byte-level mutations of a valid input: the kinds of damage a parser meets from a hostile or
/// broken client.
enum Mutation: CaseIterable {
    case flipByte, insertBytes, deleteRange, duplicateRange, truncate, lineFeedsOnly, insertControl,
        insertLongValue

    static func apply(_ count: Int, to input: [UInt8], using random: inout SeededGenerator) -> [UInt8] {
        var bytes = input
        for _ in 0..<count {
            guard let mutation = allCases.randomElement(using: &random) else { break }
            bytes = mutation.apply(to: bytes, using: &random)
        }
        return bytes
    }

    func apply(to input: [UInt8], using random: inout SeededGenerator) -> [UInt8] {
        var bytes = input
        guard !bytes.isEmpty else { return [UInt8.random(in: 0...255, using: &random)] }
        let at = Int.random(in: 0..<bytes.count, using: &random)
        switch self {
        case .flipByte:
            bytes[at] ^= UInt8(1 << Int.random(in: 0..<8, using: &random))
        case .insertBytes:
            bytes.insert(
                contentsOf: (0..<Int.random(in: 1...8, using: &random)).map { _ in
                    UInt8.random(in: 0...255, using: &random)
                }, at: at)
        case .deleteRange:
            bytes.removeSubrange(at..<min(bytes.count, at + Int.random(in: 1...16, using: &random)))
        case .duplicateRange:
            let end = min(bytes.count, at + Int.random(in: 1...64, using: &random))
            bytes.insert(contentsOf: bytes[at..<end], at: end)
        case .truncate:
            bytes.removeSubrange(at...)
        case .lineFeedsOnly:
            bytes = Array(String(decoding: bytes, as: UTF8.self).replacingOccurrences(of: "\r\n", with: "\n").utf8)
        case .insertControl:
            bytes.insert([0, 0x0B, 0x7F, 0x0D, 0x0A, 0x1B].randomElement(using: &random)!, at: at)
        case .insertLongValue:
            bytes.insert(
                contentsOf: [UInt8](
                    repeating: UInt8(ascii: "A"), count: [200, 5000, 70_000].randomElement(using: &random)!), at: at)
        }
        return bytes
    }
}

/// One plaintext TCP connection driven byte by byte, for what no HTTP or WebSocket client would
/// send.
struct RawConnection {
    let channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>

    static func open(port: Int) async throws -> RawConnection {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(.allowRemoteHalfClosure, value: true)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(
                        wrappingChannelSynchronously: channel, configuration: .init(isOutboundHalfClosureEnabled: true))
                }
            }
        return RawConnection(channel: channel)
    }

    /// What the peer sent until it closed, `enough` said so, or `limit` passed; and whether it closed.
    struct Received {
        var bytes: [UInt8]
        var closed: Bool
    }

    /// Writes `bytes` (and, if `finish`, ends our side), then reads.
    func exchange(
        _ bytes: [UInt8], finish: Bool, limit: Duration, enough: @escaping @Sendable ([UInt8]) -> Bool = { _ in false }
    ) async throws -> Received {
        let connection = channel.channel
        return try await channel.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(bytes: bytes))
            if finish { outbound.finish() }
            return await Self.read(inbound, of: connection, limit: limit, enough: enough)
        }
    }

    /// Reads until the peer closes, `enough`, or `limit` (when the connection is closed from here).
    static func read(
        _ inbound: NIOAsyncChannelInboundStream<ByteBuffer>, of connection: any Channel, limit: Duration,
        enough: @escaping @Sendable ([UInt8]) -> Bool
    ) async -> Received {
        let timedOut = Atomic(false)
        let timer = Task {
            try await Task.sleep(for: limit)
            timedOut.store(true, ordering: .relaxed)
            try await connection.close()
        }
        defer { timer.cancel() }
        var received: [UInt8] = []
        do {
            for try await part in inbound {
                received += part.readableBytesView
                if enough(received) { return Received(bytes: received, closed: false) }
            }
        } catch {
            // A reset ends the connection as a close does.
        }
        return Received(bytes: received, closed: !timedOut.load(ordering: .relaxed))
    }
}
