import ArgumentParser

@main
struct KandyLinkCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kandy-link",
        abstract: "The Kandy Link communications platform: serve it, and manage its users.",
        discussion: """
            A Kandy Link platform speaks the REST + WebSocket protocol of the public Kandy.js client: \
            apps subscribe to services (call, Presence, IM) and receive notifications on a channel.

            Start one with `kandy-link serve --dev-tls`, add a user with \
            `kandy-link users add alice@example.com`, and point a Kandy.js app at the printed configuration.
            """,
        subcommands: [Demo.self, Serve.self, Users.self, CallCommand.self, AnswerCommand.self, Bench.self])
}

/// A failure to report to the person at the terminal: printed as "Error: …", exit status 1.
struct CommandFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
