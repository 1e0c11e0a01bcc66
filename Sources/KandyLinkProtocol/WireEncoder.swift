import Foundation

/// Writes a document's JSON in one pass, as its `encode(to:)` walks it: no tree of values built
/// first and serialized after, as `JSONEncoder` does (an instant message's two documents cost
/// 7 % of a node's CPU through it).
///
/// The output is what `WireJSON` promises: compact, slashes unescaped, strings escaped as
/// `JSONEncoder` escapes them, object keys in the order the document encodes them. Two
/// containers asked of one encoder write into one object, as with `JSONEncoder` (a document that
/// encodes its parts one after another relies on it).
enum WireEncoder {
    static func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        let output = Output()
        let encoder = ValueEncoder(output: output)
        try value.encode(to: encoder)
        guard encoder.wroteSomething else {
            throw EncodingError.invalidValue(
                value, .init(codingPath: [], debugDescription: "Top-level \(T.self) did not encode any values."))
        }
        encoder.close()
        return output.bytes
    }

    /// The bytes written so far, shared by every encoder of one document.
    final class Output {
        /// Unchecked: one document's encoders run on one thread, one after another, and the
        /// runtime's check of each access was 7 % of an encode.
        @exclusivity(unchecked) var bytes: [UInt8] = []

        init() { bytes.reserveCapacity(256) }

        func append(_ byte: UInt8) { bytes.append(byte) }

        func append(_ literal: StaticString) {
            literal.withUTF8Buffer { bytes.append(contentsOf: $0) }
        }

        func string(_ text: String) {
            append(UInt8(ascii: "\""))
            var text = text
            text.withUTF8 { utf8 in
                var start = 0
                for (index, byte) in utf8.enumerated() where byte < 0x20 || byte == 0x22 || byte == 0x5C {
                    bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[start..<index]))
                    escape(byte)
                    start = index + 1
                }
                bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[start...]))
            }
            append(UInt8(ascii: "\""))
        }

        private func escape(_ byte: UInt8) {
            switch byte {
            case 0x22: append("\\\"")
            case 0x5C: append("\\\\")
            case 0x08: append("\\b")
            case 0x09: append("\\t")
            case 0x0A: append("\\n")
            case 0x0C: append("\\f")
            case 0x0D: append("\\r")
            default:
                let hex: StaticString = "0123456789abcdef"
                append("\\u00")
                append(hex.utf8Start[Int(byte >> 4)])
                append(hex.utf8Start[Int(byte & 0xF)])
            }
        }

        func integer(_ value: some FixedWidthInteger) {
            bytes.append(contentsOf: String(value).utf8)
        }

        func number(
            _ value: some BinaryFloatingPoint & LosslessStringConvertible,
            codingPath: @autoclosure () -> [any CodingKey]
        ) throws {
            guard value.isFinite else {
                throw EncodingError.invalidValue(
                    value, .init(codingPath: codingPath(), debugDescription: "\(value) is not a JSON number."))
            }
            bytes.append(contentsOf: String(value).utf8)
        }
    }

    /// The encoder of one value: it opens an object, an array or nothing as it is first asked,
    /// and what it opened is closed once the value is written.
    final class ValueEncoder: Encoder {
        enum Opened { case nothing, object, array, single, closed }

        let output: Output
        /// Where this value sits, kept as its parent and key: a coding path is only needed for an
        /// error, and building one for every value was an allocation each.
        private let parent: ValueEncoder?
        private let key: (any CodingKey)?
        var userInfo: [CodingUserInfoKey: Any] { [:] }
        @exclusivity(unchecked) private var opened = Opened.nothing
        /// Members written into what was opened: a comma goes before each after the first.
        @exclusivity(unchecked) private var members = 0
        /// A nested container or super encoder handed out: closed when the next member is written,
        /// or this value is.
        @exclusivity(unchecked) private var handedOut: ValueEncoder?

        init(output: Output, parent: ValueEncoder? = nil, key: (any CodingKey)? = nil) {
            self.output = output
            self.parent = parent
            self.key = key
        }

        var wroteSomething: Bool { opened != .nothing }

        var codingPath: [any CodingKey] {
            var path: [any CodingKey] = []
            var encoder: ValueEncoder? = self
            while let current = encoder {
                if let key = current.key { path.append(key) }
                encoder = current.parent
            }
            return path.reversed()
        }

        func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
            switch opened {
            case .nothing:
                output.append(UInt8(ascii: "{"))
                opened = .object
            case .object: break
            case .array, .single, .closed:
                preconditionFailure("A value asked for an object after writing something else.")
            }
            return KeyedEncodingContainer(Keyed(encoder: self))
        }

        func unkeyedContainer() -> any UnkeyedEncodingContainer {
            guard opened == .nothing else { preconditionFailure("A value asked for an array after writing.") }
            output.append(UInt8(ascii: "["))
            opened = .array
            return Unkeyed(encoder: self)
        }

        func singleValueContainer() -> any SingleValueEncodingContainer {
            Single(encoder: self)
        }

        /// Closes what the value opened; a value that wrote nothing is an empty object, as with
        /// `JSONEncoder`.
        func close() {
            closeHandedOut()
            switch opened {
            case .nothing: output.append("{}")
            case .object: output.append(UInt8(ascii: "}"))
            case .array: output.append(UInt8(ascii: "]"))
            case .single, .closed: break
            }
            opened = .closed
        }

        private func closeHandedOut() {
            handedOut?.close()
            handedOut = nil
        }

        /// Before each member of an object or array.
        func member() {
            precondition(opened == .object || opened == .array, "A container was written to after its value closed.")
            closeHandedOut()
            if members > 0 { output.append(UInt8(ascii: ",")) }
            members += 1
        }

        func key(_ key: some CodingKey) {
            member()
            output.string(key.stringValue)
            output.append(UInt8(ascii: ":"))
        }

        /// Before the one value of a single value container.
        func single() {
            guard opened == .nothing else { preconditionFailure("A single value was written after something else.") }
            opened = .single
        }

        /// An encoder for the member just begun (its key or comma written), closed with the next.
        func handOut(at key: any CodingKey) -> ValueEncoder {
            let child = ValueEncoder(output: output, parent: self, key: key)
            handedOut = child
            return child
        }

        /// A value of its own: strings, flags and numbers directly, anything else through its
        /// `encode(to:)`.
        func nested<T: Encodable>(_ value: T, at key: (any CodingKey)?) throws {
            if T.self == String.self {
                output.string(value as! String)
            } else if T.self == Int.self {
                output.integer(value as! Int)
            } else if T.self == Bool.self {
                output.append(value as! Bool ? "true" : "false")
            } else if T.self == Data.self || T.self == URL.self || T.self == Decimal.self {
                // JSONEncoder writes these its own way; no wire document has one.
                throw EncodingError.invalidValue(
                    value,
                    .init(
                        codingPath: codingPath + (key.map { [$0] } ?? []),
                        debugDescription: "\(T.self) is not a wire type."))
            } else {
                let child = ValueEncoder(output: output, parent: self, key: key)
                try value.encode(to: child)
                child.close()
            }
        }
    }

    struct Keyed<Key: CodingKey>: KeyedEncodingContainerProtocol {
        let encoder: ValueEncoder
        var codingPath: [any CodingKey] { encoder.codingPath }

        func encodeNil(forKey key: Key) throws {
            encoder.key(key)
            encoder.output.append("null")
        }
        func encode(_ value: Bool, forKey key: Key) throws {
            encoder.key(key)
            encoder.output.append(value ? "true" : "false")
        }
        func encode(_ value: String, forKey key: Key) throws {
            encoder.key(key)
            encoder.output.string(value)
        }
        func encode(_ value: Double, forKey key: Key) throws {
            encoder.key(key)
            try encoder.output.number(value, codingPath: codingPath + [key])
        }
        func encode(_ value: Float, forKey key: Key) throws {
            encoder.key(key)
            try encoder.output.number(value, codingPath: codingPath + [key])
        }
        func encode(_ value: Int, forKey key: Key) throws { integer(value, key) }
        func encode(_ value: Int8, forKey key: Key) throws { integer(value, key) }
        func encode(_ value: Int16, forKey key: Key) throws { integer(value, key) }
        func encode(_ value: Int32, forKey key: Key) throws { integer(value, key) }
        func encode(_ value: Int64, forKey key: Key) throws { integer(value, key) }
        func encode(_ value: UInt, forKey key: Key) throws { integer(value, key) }
        func encode(_ value: UInt8, forKey key: Key) throws { integer(value, key) }
        func encode(_ value: UInt16, forKey key: Key) throws { integer(value, key) }
        func encode(_ value: UInt32, forKey key: Key) throws { integer(value, key) }
        func encode(_ value: UInt64, forKey key: Key) throws { integer(value, key) }

        private func integer(_ value: some FixedWidthInteger, _ key: Key) {
            encoder.key(key)
            encoder.output.integer(value)
        }

        func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
            encoder.key(key)
            try encoder.nested(value, at: key)
        }

        func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key)
            -> KeyedEncodingContainer<NestedKey>
        {
            superEncoder(forKey: key).container(keyedBy: keyType)
        }
        func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
            superEncoder(forKey: key).unkeyedContainer()
        }
        func superEncoder() -> any Encoder { handOut(at: Super()) }
        func superEncoder(forKey key: Key) -> any Encoder { handOut(at: key) }

        private func handOut(at key: some CodingKey) -> ValueEncoder {
            encoder.key(key)
            return encoder.handOut(at: key)
        }
    }

    struct Unkeyed: UnkeyedEncodingContainer {
        let encoder: ValueEncoder
        var codingPath: [any CodingKey] { encoder.codingPath }
        private(set) var count = 0

        init(encoder: ValueEncoder) { self.encoder = encoder }

        mutating func encodeNil() throws {
            encoder.member()
            count += 1
            encoder.output.append("null")
        }

        mutating func encode<T: Encodable>(_ value: T) throws {
            encoder.member()
            count += 1
            try encoder.nested(value, at: Index(intValue: count - 1))
        }

        mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type)
            -> KeyedEncodingContainer<NestedKey>
        {
            superEncoder().container(keyedBy: keyType)
        }
        mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer { superEncoder().unkeyedContainer() }
        mutating func superEncoder() -> any Encoder {
            encoder.member()
            count += 1
            return encoder.handOut(at: Index(intValue: count - 1))
        }
    }

    /// The key `JSONEncoder` gives a super encoder.
    struct Super: CodingKey {
        var stringValue: String { "super" }
        var intValue: Int? { nil }
        init() {}
        init?(stringValue: String) { nil }
        init?(intValue: Int) { nil }
    }

    struct Index: CodingKey {
        let intValue: Int?
        var stringValue: String { "Index \(intValue ?? 0)" }
        init(intValue: Int) { self.intValue = intValue }
        init?(stringValue: String) { nil }
    }

    struct Single: SingleValueEncodingContainer {
        let encoder: ValueEncoder
        var codingPath: [any CodingKey] { encoder.codingPath }

        func encodeNil() throws {
            encoder.single()
            encoder.output.append("null")
        }
        func encode(_ value: Bool) throws {
            encoder.single()
            encoder.output.append(value ? "true" : "false")
        }
        func encode(_ value: String) throws {
            encoder.single()
            encoder.output.string(value)
        }
        func encode(_ value: Double) throws {
            encoder.single()
            try encoder.output.number(value, codingPath: codingPath)
        }
        func encode(_ value: Float) throws {
            encoder.single()
            try encoder.output.number(value, codingPath: codingPath)
        }
        func encode(_ value: Int) throws { integer(value) }
        func encode(_ value: Int8) throws { integer(value) }
        func encode(_ value: Int16) throws { integer(value) }
        func encode(_ value: Int32) throws { integer(value) }
        func encode(_ value: Int64) throws { integer(value) }
        func encode(_ value: UInt) throws { integer(value) }
        func encode(_ value: UInt8) throws { integer(value) }
        func encode(_ value: UInt16) throws { integer(value) }
        func encode(_ value: UInt32) throws { integer(value) }
        func encode(_ value: UInt64) throws { integer(value) }

        private func integer(_ value: some FixedWidthInteger) {
            encoder.single()
            encoder.output.integer(value)
        }

        func encode<T: Encodable>(_ value: T) throws {
            encoder.single()
            try encoder.nested(value, at: nil)
        }
    }
}
