import ArgumentParser
import Foundation
import KandyLinkProtocol
import KandyLinkServer
import Logging

struct Users: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Manage the platform's users (in the same database `serve` uses).",
        discussion:
            "Passwords are read from a prompt without echo, or from standard input with --password-stdin; never from the command line.",
        subcommands: [Add.self, Update.self, Import.self, List.self, Remove.self, Passwd.self, Token.self])

    /// The profile the directory shows; on update, an empty value clears a field.
    struct ProfileOptions: ParsableArguments {
        @Option(help: "First name.") var firstName: String?
        @Option(help: "Last name.") var lastName: String?
        @Option(help: "E-mail address.") var email: String?
        @Option(help: "Work phone number.") var phone: String?
        @Option(help: "Mobile phone number.") var mobilePhone: String?
        @Option(help: "Home phone number.") var homePhone: String?
        @Option(help: "URL of the user's photo.") var photoUrl: String?

        var profile: UserProfile {
            UserProfile(
                firstName: firstName, lastName: lastName, emailAddress: email, photoURL: photoUrl, workPhone: phone,
                mobilePhone: mobilePhone, homePhone: homePhone)
        }
    }

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
        let store = try await openStore(database, logger: logger)
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
        @OptionGroup var profile: ProfileOptions
        @OptionGroup var password: PasswordOption
        @OptionGroup var database: DatabaseOption

        func run() async throws {
            let secret = try password.read(prompt: "Password for \(name): ")
            try await Users.withAccounts(database) { accounts in
                try await accounts.add(username: name, password: secret, authname: authname, profile: profile.profile)
            }
            print("Added \(name).")
        }
    }

    struct Update: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Change a user's profile: the fields given are set, an empty value clears one.")
        @Argument var name: String
        @OptionGroup var profile: ProfileOptions
        @OptionGroup var database: DatabaseOption

        func run() async throws {
            let updated = try await Users.withAccounts(database) { accounts in
                try await accounts.updateProfile(username: name, with: profile.profile)
            }
            print("Updated \(name): \(Users.describe(updated))")
        }
    }

    struct Import: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add many users from a CSV or JSON file.",
            discussion: """
                CSV: a header row naming the columns username, password and optionally first_name, last_name, \
                email, phone, mobile_phone, home_phone, photo_url. JSON: an array of objects with username, \
                password, firstName, lastName, emailAddress, workPhone, mobilePhone, homePhone, photoURL. \
                Every row is checked before any user is added; users that exist already are skipped.
                """)
        @Argument(help: "The file to read; - for standard input.") var file: String
        @OptionGroup var database: DatabaseOption

        func run() async throws {
            let text: String
            if file == "-" {
                text = String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
            } else {
                do {
                    text = try String(contentsOfFile: file, encoding: .utf8)
                } catch {
                    throw ValidationError("Cannot read \(file): \(error.localizedDescription)")
                }
            }
            let entries = try UserImport.parse(text)
            let (added, skipped) = try await Users.withAccounts(database) { try await $0.importUsers(entries) }
            print("Added \(added.count) users" + (skipped.isEmpty ? "." : "; skipped \(skipped.count) that exist."))
        }
    }

    static func describe(_ profile: UserProfile) -> String {
        let fields = profile.fields.compactMap { field in field.value.map { "\(field.name)=\($0)" } }
        return fields.isEmpty ? "no profile" : fields.joined(separator: " ")
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the users.")
        @OptionGroup var database: DatabaseOption

        func run() async throws {
            for user in try await Users.withAccounts(database, { try await $0.list() }) {
                var line = user.username
                if let authname = user.authname { line += "\tauthname=\(authname)" }
                if user.profile != UserProfile() { line += "\t" + Users.describe(user.profile) }
                print(line)
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
