/// A service a client subscribes to, spelled exactly as the client sent it.
///
/// The Kandy.js client compares service names case-sensitively when it unsubscribes
/// (spec §5.3), so a platform must echo every granted name with the client's own spelling.
/// Granting itself is case-insensitive, as the client's `parseSpidrServices` is.
public struct ServiceName: RawRepresentable, Hashable, Sendable, Codable, CustomStringConvertible,
    ExpressibleByStringLiteral
{
    public let rawValue: String

    public init(rawValue: String) { self.rawValue = rawValue }
    public init(_ rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { self.rawValue = value }

    public var description: String { rawValue }

    public static let call: ServiceName = "call"
    public static let presence: ServiceName = "Presence"
    public static let im: ServiceName = "IM"

    /// The services this platform grants, in their canonical spelling.
    public static let grantable: [ServiceName] = [.call, .presence, .im]

    /// Whether this name denotes `other`, ignoring case as the Kandy.js client does.
    public func denotes(_ other: ServiceName) -> Bool {
        // Stored names are canonical: equal spelling is the usual answer, and needs no copies.
        if rawValue == other.rawValue { return true }
        // Names differ on every watcher's other services under fan-out: ASCII ones are compared
        // in place. Others are lowercased as Kandy.js does (the Kelvin sign lowercases to "k").
        let (mine, theirs) = (rawValue.utf8, other.rawValue.utf8)
        guard mine.allSatisfy({ $0 < 0x80 }), theirs.allSatisfy({ $0 < 0x80 }) else {
            return rawValue.lowercased() == other.rawValue.lowercased()
        }
        return mine.elementsEqual(theirs) { Self.lowercase($0) == Self.lowercase($1) }
    }

    private static func lowercase(_ byte: UInt8) -> UInt8 {
        (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte) ? byte | 0x20 : byte
    }

    /// The grantable service this name denotes, if any.
    public var canonical: ServiceName? {
        Self.grantable.first { denotes($0) }
    }
}
