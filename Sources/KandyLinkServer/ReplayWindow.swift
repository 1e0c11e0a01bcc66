import NIOCore

extension NotificationHub {
    /// The notifications last written to a channel's socket, oldest first, kept for a reconnect
    /// to replay: at most a count of them and a number of bytes of text.
    ///
    /// A ring, so that pushing the oldest out is O(1): as an array, each notification to a full
    /// window moved the whole window down (3 % of a node's CPU under a sustained presence
    /// fan-out). It holds no storage while empty, so an idle channel costs nothing for it.
    struct ReplayWindow {
        private var ring: CircularBuffer<Written>?
        /// The UTF-8 length of the texts held.
        private(set) var bytes = 0

        var isEmpty: Bool { ring?.isEmpty ?? true }
        var count: Int { ring?.count ?? 0 }

        /// Adds `entry`, then pushes out the oldest until at most `maxCount` entries and `maxBytes`
        /// of text are left (the entry itself, when it alone is larger). Returns how many were
        /// pushed out and the newest of them.
        mutating func append(_ entry: Written, keeping maxCount: Int, bytes maxBytes: Int) -> (
            dropped: Int, newest: Written?
        ) {
            var ring = take() ?? CircularBuffer(initialCapacity: 4)
            ring.append(entry)
            bytes += entry.text.utf8.count
            var dropped = 0
            var newest: Written?
            while ring.count > maxCount || bytes > maxBytes, let oldest = ring.popFirst() {
                bytes -= oldest.text.utf8.count
                dropped += 1
                newest = oldest
            }
            put(ring)
            return (dropped, newest)
        }

        /// Forgets the entries written before `time` (milliseconds since 1970).
        mutating func forget(writtenBefore time: Int64) {
            guard var ring = take() else { return }
            while let oldest = ring.first, oldest.at < time {
                ring.removeFirst()
                bytes -= oldest.text.utf8.count
            }
            put(ring)
        }

        /// The entries after `eventID` (all of them when nil), oldest first.
        func entries(after eventID: UInt64?) -> [Written] {
            guard let ring else { return [] }
            guard let eventID else { return Array(ring) }
            return ring.filter { $0.eventID > eventID }
        }

        /// Empties the window and lets its storage go.
        mutating func removeAll() {
            ring = nil
            bytes = 0
        }

        /// The ring, taken out so that changing it does not copy it.
        private mutating func take() -> CircularBuffer<Written>? {
            defer { ring = nil }
            return ring
        }

        /// Puts the ring back, or lets its storage go when nothing is left in it.
        private mutating func put(_ ring: CircularBuffer<Written>) {
            self.ring = ring.isEmpty ? nil : ring
        }
    }
}
