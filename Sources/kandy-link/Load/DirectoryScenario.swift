import ArgumentParser
import Foundation
import KandyLink
import KandyLinkServer

extension Bench {
    /// Directory search time against a small and a large directory, in one run: the index
    /// should make the large one cost what the small one does.
    struct DirectorySearch: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "directory",
            abstract: "Directory search time with --small and then --users users, through the SDK, embedded platform.",
            discussion: """
                Users get generated profiles (first and last names with accents, a phone number). For \
                each search type, --searches searches with varied prefixes are timed from the SDK's \
                call to its answer (REST over TLS on loopback, SQLite), first with --small users, then \
                with --users; the ratio of the two p50s shows how search cost grows with the directory.
                """)

        @Option(help: "Users in the large directory.") var users = 100_000
        @Option(help: "Users in the small directory.") var small = 1_000
        @Option(help: "Searches per search type and directory size.") var searches = 200
        @Option(help: ArgumentHelp("Also write the result as JSON to this file.", valueName: "file")) var json: String?
        @Option(help: "An empty PostgreSQL database (postgres://…) to use instead of SQLite.") var database: String?

        func validate() throws {
            guard small > 0, users > small, searches > 0 else {
                throw ValidationError("--small must be positive, --users larger, --searches positive.")
            }
        }

        static let firstNames = ["Alice", "Zoë", "Érin", "Bjørn", "Chloé", "Dmitri", "Åsa", "Noah", "Léa", "Omar"]
        static let lastNames = ["Åberg", "Ørsted", "Müller", "Nguyen", "García", "Smith", "Łukasz", "O'Neil", "Kim"]

        /// The `index`th generated user.
        static func user(_ index: Int) -> (String, UserProfile) {
            let first = firstNames[index % firstNames.count]
            let last = lastNames[(index / firstNames.count) % lastNames.count] + String(index % 997)
            return (
                "user\(index)@example.com",
                UserProfile(
                    firstName: first, lastName: last, emailAddress: "user\(index)@example.com",
                    workPhone:
                        "+1 613 \(String(format: "%03d", index / 10_000 % 1000)) \(String(format: "%04d", index % 10_000))"
                )
            )
        }

        func run() async throws {
            try await EmbeddedPlatform.with(minExpires: 60, database: database) { embedded in
                let address = try PlatformAddress("https://127.0.0.1:\(embedded.port)")
                let configuration = address.configuration(expires: 3600, trust: [embedded.certificatePath])
                let store = database == nil ? "SQLite" : "PostgreSQL"
                var report = BenchReport(scenario: "directory search (SDK → platform → \(store) index)")
                var p50s: [String: [Double]] = [:]
                var seeded = 0
                for size in [small, users] {
                    let seeding = ContinuousClock.now
                    let batch = (seeded..<size).map(Self.user)
                    try await embedded.platform.accounts.addMissing(
                        usernames: batch.map(\.0), password: embedded.password,
                        profiles: Dictionary(uniqueKeysWithValues: batch))
                    seeded = size
                    print("seeded \(size) users in \(Bench.seconds(ContinuousClock.now - seeding)) s")
                    try await Kandy.using(configuration) { kandy in
                        try await kandy.setCredentials(username: EmbeddedPlatform.username, password: embedded.password)
                        for (name, type, criteria) in Self.queries {
                            var samples: [Double] = []
                            for run in 0...searches {
                                let started = ContinuousClock.now
                                _ = try await kandy.user.search(type, criteria(run))
                                if run > 0 { samples.append(Bench.seconds(ContinuousClock.now - started) * 1000) }
                            }
                            let times = Percentiles(samples)
                            report.add("\(name), \(size) users, p50", times.at(0.5), "ms")
                            report.add("\(name), \(size) users, p99", times.at(0.99), "ms")
                            p50s[name, default: []].append(times.at(0.5))
                        }
                    }
                }
                for (name, _, _) in Self.queries {
                    let pair = p50s[name] ?? []
                    if pair.count == 2 { report.add("\(name): p50 at \(users) / at \(small)", pair[1] / pair[0], "×") }
                }
                try report.publish(json: json)
            }
        }

        /// One search per type, its criteria varied by run so that no answer is the last one's.
        static let queries: [(String, DirectorySearchType?, @Sendable (Int) -> String)] = [
            ("first name", .firstName, { firstNames[$0 % firstNames.count].prefix(3).lowercased() }),
            (
                "last name", .lastName,
                { lastNames[$0 % lastNames.count] + String($0 % 10) }
            ),
            (
                "name", .name,
                { firstNames[$0 % firstNames.count] + " " + String(lastNames[$0 % lastNames.count].prefix(1)) }
            ),
            ("phone number", .phoneNumber, { String(format: "%04d", $0 * 37 % 10_000) }),
            ("user name", .userName, { "user\($0 * 13 % 1000)@" }),
        ]
    }
}
