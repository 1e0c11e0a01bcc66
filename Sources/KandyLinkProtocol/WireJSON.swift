import Foundation

/// How documents are written and read on the wire: compact, slashes unescaped (paths stay
/// readable as `/rest/version/1/…`), keys in the order a document encodes them. Written by
/// ``WireEncoder``.
public enum WireJSON {
    public static func encode<T: Encodable>(_ value: T) throws -> Data {
        Data(try WireEncoder.encode(value))
    }

    /// The document's UTF-8 bytes, for a buffer of one's own.
    public static func bytes<T: Encodable>(_ value: T) throws -> [UInt8] {
        try WireEncoder.encode(value)
    }

    /// The document as the text of a WebSocket frame.
    public static func text<T: Encodable>(_ value: T) throws -> String {
        String(decoding: try WireEncoder.encode(value), as: UTF8.self)
    }

    public static func decode<T: Decodable>(_ type: T.Type, from data: Data) throws -> T {
        try decoder.decode(type, from: data)
    }

    private static let decoder = JSONDecoder()

    /// A person-readable account of why `data` is not a `T`, naming the field at fault.
    public static func explain(_ error: any Error) -> String {
        guard let error = error as? DecodingError else { return "The body is not valid JSON." }
        func path(_ codingPath: [any CodingKey]) -> String {
            codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
                .replacingOccurrences(of: ".[", with: "[")
        }
        switch error {
        case .dataCorrupted(let context) where context.codingPath.isEmpty:
            return "The body is not valid JSON."
        case .dataCorrupted(let context):
            return "\(path(context.codingPath)) has an invalid value."
        case .keyNotFound(let key, let context):
            let parent = path(context.codingPath)
            return "\(parent.isEmpty ? "" : parent + ".")\(key.stringValue) is missing."
        case .typeMismatch(let type, let context):
            let field = path(context.codingPath)
            return "\(field.isEmpty ? "The body" : field) must be \(describe(type))."
        case .valueNotFound(let type, let context):
            return "\(path(context.codingPath)) must be \(describe(type)), not null."
        @unknown default:
            return "The body does not match the expected document."
        }
    }

    private static func describe(_ type: Any.Type) -> String {
        let name = String(describing: type)
        return switch name {
        case "String": "a string"
        case "Int", "Double", "Int64", "UInt64": "a number"
        case "Bool": "a boolean"
        case _ where name.hasPrefix("Array"): "an array"
        case _ where name.hasPrefix("Dictionary"): "an object"
        default: "an object"
        }
    }
}
