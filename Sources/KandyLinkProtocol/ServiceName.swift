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
        rawValue == other.rawValue || rawValue.lowercased() == other.rawValue.lowercased()
    }

    /// The grantable service this name denotes, if any.
    public var canonical: ServiceName? {
        Self.grantable.first { denotes($0) }
    }
}
