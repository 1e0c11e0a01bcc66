import ArgumentParser
import Foundation

/// `--database`, shared by every command that opens the platform's data.
struct DatabaseOption: ParsableArguments {
    @Option(
        name: .long,
        help: ArgumentHelp(
            "SQLite file holding users and subscriptions (created if missing).", valueName: "path"))
    var database: String = ProcessInfo.processInfo.environment["KANDY_LINK_DATABASE"] ?? "kandy-link.sqlite"
}
