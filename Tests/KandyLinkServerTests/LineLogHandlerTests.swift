import Logging
import Synchronization
import Testing

@testable import KandyLinkServer

/// ``LineLogHandler`` writes the lines `StreamLogHandler` writes: operators' tools and the tests
/// that read a node's output keep working.
@Suite struct LineLogHandlerTests {
    /// What a handler wrote, line by line.
    final class Lines: TextOutputStream, Sendable {
        private let written = Mutex<[String]>([])
        var all: [String] { written.withLock { $0 } }
        func write(_ string: String) { written.withLock { $0.append(string) } }
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String { "the disk is full" }
    }

    enum Step: Sendable {
        case set(String, Logger.MetadataValue?)
        case log(Logger.Level, String, Logger.Metadata?, (any Error)?)
    }

    static let rows: [(String, [Step])] = [
        ("a message alone", [.log(.info, "Serving.", nil, nil)]),
        (
            "metadata set, sorted, replaced and removed",
            [
                .set("request", "7"), .set("b", "2"), .set("a", .stringConvertible(1)), .set("b", nil),
                .log(.warning, "Slow.", nil, nil),
            ]
        ),
        (
            "a record's own metadata over the logger's",
            [
                .set("request", "7"), .set("user", "alice"),
                .log(.error, "Refused.", ["user": "bob", "list": ["x", "y"], "map": ["k": "v"]], nil),
            ]
        ),
        ("an error", [.set("request", "7"), .log(.error, "Failed.", ["user": "bob"], Failure())]),
        ("below the level: nothing", [.log(.debug, "Noise.", nil, nil), .log(.notice, "Said.", nil, nil)]),
    ]

    @Test(arguments: rows)
    func writesWhatStreamLogHandlerWrites(_ name: String, _ steps: [Step]) {
        let (ours, theirs) = (Lines(), Lines())
        var loggers = [
            Logger(label: "kandy-link") { LineLogHandler(label: $0, write: ours.write) },
            Logger(label: "kandy-link") { StreamLogHandler(label: $0, stream: theirs, metadataProvider: nil) },
        ]
        for step in steps {
            for index in loggers.indices {
                switch step {
                case .set(let key, let value): loggers[index][metadataKey: key] = value
                case .log(let level, let message, let metadata, let error):
                    loggers[index].log(level: level, "\(message)", error: error, metadata: metadata)
                }
            }
        }
        #expect(ours.all.map(Self.withoutTimestamp) == theirs.all.map(Self.withoutTimestamp), "\(name)")
        #expect(!ours.all.isEmpty)
    }

    @Test func startsEachLineWithTheLocalTimeAsStreamLogHandlerDoes() throws {
        let lines = Lines()
        Logger(label: "x") { LineLogHandler(label: $0, write: lines.write) }.info("Hello.")
        let line = try #require(lines.all.first)
        #expect(line.wholeMatch(of: /\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} info x: \[\w+\] Hello.\n/) != nil)
    }

    /// A line without its first word, the time, which may differ between two handlers' lines.
    static func withoutTimestamp(_ line: String) -> Substring {
        line.drop { $0 != " " }
    }
}
