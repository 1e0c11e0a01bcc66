import Foundation
import Synchronization

/// Subscription and channel ids: 128 random bits, URL-safe base64 without padding. The channel id
/// is the capability that authorises a socket (the client sends nothing else), so it must be
/// unguessable.
enum RandomIdentifier {
    static func make() -> String {
        // Two draws of eight bytes: a byte at a time was a getrandom(2) call per byte, 32 for a
        // subscription's two ids.
        var generator = SystemRandomNumberGenerator()
        var words = (generator.next(), generator.next())
        return withUnsafeBytes(of: &words) { TokenIssuer.base64url(Data($0)) }
    }
}

/// Unique, increasing notification ids that stay so across restarts: ids are taken from blocks
/// reserved in the store, one store write per block rather than per notification. With a store
/// shared by several nodes the block is one id, so ids follow time across nodes too.
final class EventSequence: Sendable {
    private struct Block {
        var next: UInt64
        var end: UInt64
    }

    private let store: any PlatformStore
    private let blockSize: UInt64
    private let block: Mutex<Block>

    init(store: any PlatformStore, blockSize: UInt64 = 100_000) {
        self.store = store
        self.blockSize = store.isShared ? 1 : blockSize
        self.block = Mutex(Block(next: 0, end: 0))
    }

    func next() async throws -> UInt64 {
        let taken = block.withLock { block -> UInt64? in
            guard block.next < block.end else { return nil }
            defer { block.next += 1 }
            return block.next
        }
        if let taken { return taken }
        let first = try await store.reserveEventIDs(blockSize)
        block.withLock { block in
            // Two callers may refill at once: keep the newer block, so ids keep increasing.
            if first >= block.end { block = Block(next: first + 1, end: first + blockSize) }
        }
        return first
    }
}
