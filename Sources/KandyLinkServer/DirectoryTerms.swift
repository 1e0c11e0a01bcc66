import Foundation
import KandyLinkProtocol

/// How the directory finds users: each user has search terms (folded names, phone digits, the
/// username), kept by the store in an index of (kind, term); a search is a prefix range over
/// that index, so it costs the same with 100 users or 100 000. Both stores compare terms byte
/// by byte (SQLite's BINARY, PostgreSQL's "C" collation), which is what makes the range a prefix.
enum DirectoryTerms {
    /// Case and accents folded, whitespace collapsed: "  Zoë  ÅBERG" → "zoe aberg", "Ørsted" →
    /// "orsted".
    static func fold(_ text: String) -> String {
        let folded = text.folding(options: [.caseInsensitive, .diacriticInsensitive, .widthInsensitive], locale: nil)
        var out = ""
        out.reserveCapacity(folded.utf8.count)
        for character in folded {
            // Letters that are not a base letter with a mark: folding leaves them as they are.
            switch character {
            case "ø": out.append("o")
            case "æ": out += "ae"
            case "œ": out += "oe"
            case "ł": out.append("l")
            case "đ", "ð": out.append("d")
            case "þ": out += "th"
            case "ı": out.append("i")
            default: out.append(character)
            }
        }
        return out.split(whereSeparator: \.isWhitespace).joined(separator: " ")
    }

    /// A phone number's digits: "+1 (613) 555-0100" → "16135550100".
    static func digits(_ text: String) -> String {
        String(text.unicodeScalars.filter { ("0"..."9").contains($0) }.map(Character.init))
    }

    /// A phone number's digits from each group on: "+1 613 555-0100" → "16135550100",
    /// "6135550100", "5550100", "0100"; so the number is found without its country code or by
    /// its last group.
    static func phoneTerms(_ text: String) -> [String] {
        var digits: [Character] = []
        var groupStarts: [Int] = []
        var inGroup = false
        for scalar in text.unicodeScalars {
            let isDigit = ("0"..."9").contains(scalar)
            if isDigit && !inGroup { groupStarts.append(digits.count) }
            if isDigit { digits.append(Character(scalar)) }
            inGroup = isDigit
        }
        return groupStarts.map { String(digits[$0...]) }.filter { $0.count >= 2 }
    }

    /// One row of the index: a user is found by `text` in searches of `kind`.
    struct Term: Hashable {
        var kind: DirectorySearchType
        var text: String
    }

    /// The terms a user is found by, each once.
    static func terms(username: String, profile: UserProfile) -> [Term] {
        var terms = [Term(kind: .userName, text: fold(username))]
        if let first = profile.firstName.map(fold), !first.isEmpty { terms.append(Term(kind: .firstName, text: first)) }
        if let last = profile.lastName.map(fold), !last.isEmpty {
            terms += [Term(kind: .lastName, text: last), Term(kind: .name, text: last)]
        }
        if let full = profile.fullName.map(fold) { terms.append(Term(kind: .name, text: full)) }
        terms += profile.phones.flatMap(phoneTerms).map { Term(kind: .phoneNumber, text: $0) }
        // One row per term: a user whose first and last names fold alike, or whose phones share a
        // last group, has one.
        var seen = Set<Term>()
        return terms.filter { seen.insert($0).inserted }
    }

    /// The index range a query covers: the kinds searched and `low ≤ term < high`. Nil when the
    /// query lists everyone (no criteria).
    static func range(of query: DirectoryQuery) -> (kinds: [DirectorySearchType], low: String, high: String)? {
        let low = query.type == .phoneNumber ? digits(query.criteria) : fold(query.criteria)
        guard !low.isEmpty else { return nil }
        // Without a type, names and usernames: first names are prefixes of full names.
        let kinds = query.type.map { [$0] } ?? [.name, .userName]
        return (kinds, low, low + "\u{10FFFF}")
    }
}
