import Foundation
import Logging

/// Writes each log record as one line, in swift-log's `StreamLogHandler` format, formatting its
/// metadata only when a line is written.
///
/// `StreamLogHandler` formats all of its metadata again each time a key is set, and the HTTP
/// server sets a request id on every request's logger: 4 % of a node's CPU under instant-message
/// load, for lines that are almost never written.
public struct LineLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    private let label: String
    private let write: @Sendable (String) -> Void

    /// Lines to standard error.
    public static func standardError(label: String) -> LineLogHandler {
        LineLogHandler(label: label, write: writeToStandardError)
    }

    /// Lines handed to `write`, one call each.
    public init(
        label: String, metadataProvider: Logger.MetadataProvider? = nil, write: @escaping @Sendable (String) -> Void
    ) {
        self.label = label
        self.metadataProvider = metadataProvider
        self.write = write
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var all = metadata
        if let provided = metadataProvider?.get() { all.merge(provided) { $1 } }
        if let explicit = event.metadata { all.merge(explicit) { $1 } }
        if let error = event.error {
            all["error.message"] = "\(error)"
            all["error.type"] = "\(String(reflecting: type(of: error)))"
        }
        let pairs = all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        let name = label.isEmpty ? "" : " \(label)"
        write(
            "\(Self.timestamp()) \(event.level)\(name):\(pairs.isEmpty ? "" : " " + pairs) [\(event.source)] \(event.message)\n"
        )
    }

    /// Local time, as `StreamLogHandler` writes it.
    static func timestamp() -> String {
        var now = time(nil)
        var local = tm()
        guard localtime_r(&now, &local) != nil else { return "<unknown>" }
        var buffer = [CChar](repeating: 0, count: 64)
        let length = strftime(&buffer, buffer.count, "%Y-%m-%dT%H:%M:%S%z", &local)
        return String(decoding: buffer.prefix(length).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

}

/// One `write(2)` per line where it fits, so that lines from several threads never interleave.
private func writeToStandardError(_ line: String) {
    var line = line
    line.withUTF8 { bytes in
        var rest = UnsafeRawBufferPointer(bytes)
        while !rest.isEmpty {
            let written = write(STDERR_FILENO, rest.baseAddress, rest.count)
            if written < 0 {
                if errno == EINTR { continue }
                return
            }
            rest = UnsafeRawBufferPointer(rebasing: rest[written...])
        }
    }
}
