import NIOCore

/// The few MQTT 3.1.1 packets the comparison with mosquitto sends, each written as one binary
/// WebSocket message (as MQTT-over-WebSocket clients do), and the packet types in what it gets.
enum MQTTPacket {
    static let connackType: UInt8 = 2
    static let publishType: UInt8 = 3
    static let subackType: UInt8 = 9

    /// CONNECT with a clean session and a 60 s keepalive.
    static func connect(clientID: String) -> [UInt8] {
        var body: [UInt8] = string("MQTT") + [4, 0x02, 0, 60]
        body += string(clientID)
        return packet(0x10, body)
    }

    /// SUBSCRIBE to one topic at QoS 0.
    static func subscribe(topic: String, packetID: UInt16) -> [UInt8] {
        packet(0x82, [UInt8(packetID >> 8), UInt8(packetID & 0xFF)] + string(topic) + [0])
    }

    /// PUBLISH at QoS 0 (no acknowledgement, as nchan's and the platform's deliveries have none).
    static func publish(topic: String, payload: some Collection<UInt8>) -> [UInt8] {
        packet(0x30, string(topic) + payload)
    }

    static let disconnect: [UInt8] = [0xE0, 0]

    /// The types of the packets in one WebSocket message.
    static func types(in message: ByteBuffer) -> [UInt8] {
        var view = message
        var types: [UInt8] = []
        while let first = view.readInteger(as: UInt8.self) {
            var length = 0
            var shift = 0
            while let byte = view.readInteger(as: UInt8.self) {
                length |= Int(byte & 0x7F) << shift
                shift += 7
                if byte & 0x80 == 0 { break }
            }
            guard view.readableBytes >= length else { break }
            view.moveReaderIndex(forwardBy: length)
            types.append(first >> 4)
        }
        return types
    }

    private static func packet(_ header: UInt8, _ body: [UInt8]) -> [UInt8] {
        var bytes = [header]
        var length = body.count
        repeat {
            var byte = UInt8(length & 0x7F)
            length >>= 7
            if length > 0 { byte |= 0x80 }
            bytes.append(byte)
        } while length > 0
        return bytes + body
    }

    private static func string(_ text: String) -> [UInt8] {
        let utf8 = Array(text.utf8)
        return [UInt8(utf8.count >> 8), UInt8(utf8.count & 0xFF)] + utf8
    }
}
