import Foundation

package extension Pipe {
    /// The lines written to this pipe, as they come; the stream ends with the writer.
    ///
    /// Read by a thread of its own in blocking reads rather than with `readabilityHandler`: its
    /// dispatch read sources were the only ones in use when a test process once crashed in
    /// libdispatch's manager thread (`_dispatch_event_loop_drain`), with node processes ending.
    func lines() -> AsyncStream<String> {
        let (lines, sink) = AsyncStream.makeStream(of: String.self)
        let handle = fileHandleForReading
        let reader = Thread {
            var partial = ""
            while case let chunk = handle.availableData, !chunk.isEmpty {
                partial += String(decoding: chunk, as: UTF8.self)
                var complete = partial.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
                partial = complete.removeLast()
                for line in complete { sink.yield(line) }
            }
            if !partial.isEmpty { sink.yield(partial) }
            sink.finish()
        }
        reader.name = "pipe reader"
        reader.start()
        return lines
    }

    /// Reads and drops what is written to this pipe until the writer ends, so that a chatty child
    /// never blocks on a full pipe.
    func drain() {
        let handle = fileHandleForReading
        let reader = Thread { while !handle.availableData.isEmpty {} }
        reader.name = "pipe drain"
        reader.start()
    }
}
