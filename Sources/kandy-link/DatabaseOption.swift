import ArgumentParser
import Foundation

/// `--database`, shared by every command that opens the platform's data.
struct DatabaseOption: ParsableArguments {
    @Option(
        name: .long,
        help: ArgumentHelp(
            "A SQLite file (created if missing), or postgres://user:password@host:port/database shared by several nodes.",
            valueName: "path-or-url"))
    var database: String = ProcessInfo.processInfo.environment["KANDY_LINK_DATABASE"] ?? "kandy-link.sqlite"
}
