import ArgumentParser
import Foundation
import KandyLinkServer
import Logging

struct Users: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Manage the platform's users (in the same database `serve` uses).",
        discussion:
            "Passwords are read from a prompt without echo, or from standard input with --password-stdin; never from the command line.",
        subcommands: [Add.self, List.self, Remove.self, Passwd.self, Token.self])

    struct PasswordOption: ParsableArguments {
        @Flag(help: "Read the password from the first line of standard input.")
        var passwordStdin = false

        func read(prompt: String) throws -> String {
            let password = passwordStdin ? readLine(strippingNewline: true) : Terminal.readSecret(prompt: prompt)
            guard let password, !password.isEmpty else { throw ValidationError("No password given.") }
            return password
        }
    }

    /// Opens the database for `body` and closes it afterwards, whether `body` returns or throws.
    static func withAccounts<T>(_ database: DatabaseOption, _ body: (Accounts) async throws -> T) async throws -> T {
        try await withAccounts(database.database, body)
    }

    static func withAccounts<T>(_ database: String, _ body: (Accounts) async throws -> T) async throws -> T {
        var configuration = PlatformConfiguration()
        configuration.database = database
        var logger = Logger(label: "kandy-link.users")
        logger.logLevel = .warning
        let store = try await openStore(database, listen: false, logger: logger)
        return try await withCleanup {
            try await body(try await Accounts(store: store, configuration: configuration))
        } cleanup: {
            await store.close()
        }
    }

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add a user.")
        @Argument(help: "The username, as clients put it in paths (e.g. alice@example.com).") var name: String
        @Option(help: "An alternative login name for Basic credentials.") var authname: String?
        @OptionGroup var password: PasswordOption
        @OptionGroup var database: DatabaseOption

        func run() async throws {
            let secret = try password.read(prompt: "Password for \(name): ")
            try await Users.withAccounts(database) { accounts in
                try await accounts.add(username: name, password: secret, authname: authname)
            }
            print("Added \(name).")
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the users.")
        @OptionGroup var database: DatabaseOption

        func run() async throws {
            for user in try await Users.withAccounts(database, { try await $0.list() }) {
                print(user.authname.map { "\(user.username)\tauthname=\($0)" } ?? user.username)
            }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a user and their subscriptions.")
        @Argument var name: String
        @OptionGroup var database: DatabaseOption

        func run() async throws {
            try await Users.withAccounts(database) { try await $0.remove(username: name) }
            print("Removed \(name).")
        }
    }

    struct Passwd: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Set a user's password.")
        @Argument var name: String
        @OptionGroup var password: PasswordOption
        @OptionGroup var database: DatabaseOption

        func run() async throws {
            let secret = try password.read(prompt: "New password for \(name): ")
            try await Users.withAccounts(database) { try await $0.setPassword(username: name, password: secret) }
            print("Password of \(name) changed.")
        }
    }

    struct Token: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print a bearer token for a user (for Authorization: Bearer or x-token).")
        @Argument var name: String
        @OptionGroup var database: DatabaseOption

        func run() async throws {
            print(try await Users.withAccounts(database) { try await $0.token(for: name).token })
        }
    }
}

enum Terminal {
    /// Puts standard input in raw mode (no line buffering, no echo); returns the undo.
    static func enterRawMode() -> @Sendable () -> Void {
        guard isatty(STDIN_FILENO) == 1 else { return {} }
        var original = termios()
        tcgetattr(STDIN_FILENO, &original)
        var raw = original
        raw.c_lflag &= ~tcflag_t(ECHO | ICANON)
        tcsetattr(STDIN_FILENO, TCSANOW, &raw)
        let saved = original
        return {
            var restore = saved
            tcsetattr(STDIN_FILENO, TCSANOW, &restore)
        }
    }

    /// Single keys from standard input, read on a thread of their own.
    static func keys() -> AsyncStream<Character> {
        AsyncStream { continuation in
            Thread.detachNewThread {
                var byte: UInt8 = 0
                while read(STDIN_FILENO, &byte, 1) == 1 {
                    continuation.yield(Character(UnicodeScalar(byte)))
                }
                continuation.finish()
            }
        }
    }

    /// Reads a line with echo off when standard input is a terminal.
    static func readSecret(prompt: String) -> String? {
        FileHandle.standardError.write(Data(prompt.utf8))
        guard isatty(STDIN_FILENO) == 1 else { return readLine(strippingNewline: true) }
        var original = termios()
        tcgetattr(STDIN_FILENO, &original)
        var silent = original
        silent.c_lflag &= ~tcflag_t(ECHO)
        tcsetattr(STDIN_FILENO, TCSANOW, &silent)
        defer {
            tcsetattr(STDIN_FILENO, TCSANOW, &original)
            FileHandle.standardError.write(Data("\n".utf8))
        }
        return readLine(strippingNewline: true)
    }
}
