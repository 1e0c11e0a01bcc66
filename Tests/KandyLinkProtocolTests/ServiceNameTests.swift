import KandyLinkProtocol
import Testing

/// Service names match as Kandy.js matches them: ignoring case.
struct ServiceNameTests {
    static let cases: [(name: String, other: String, denotes: Bool)] = [
        ("Presence", "Presence", true),
        ("presence", "Presence", true),
        ("PRESENCE", "presence", true),
        ("im", "IM", true),
        ("IM", "call", false),
        ("Presence", "Presences", false),
        ("", "", true),
        ("", "IM", false),
        // Only letters have case: these pairs differ by the case bit alone.
        ("@", "`", false),
        ("[", "{", false),
        ("call1", "CALL1", true),
        // Not ASCII: lowercased as a whole. The Kelvin sign lowercases to "k".
        ("\u{212A}all", "kall", true),
        ("ÇALL", "çall", true),
        ("çall", "call", false),
    ]

    @Test(arguments: cases)
    func denotes(_ row: (name: String, other: String, denotes: Bool)) {
        #expect(ServiceName(row.name).denotes(ServiceName(row.other)) == row.denotes)
        #expect(ServiceName(row.other).denotes(ServiceName(row.name)) == row.denotes)
    }
}
