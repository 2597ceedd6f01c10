import Contracts
import Foundation
import Messaging
import TestSupport

/// A structured companion of `envelope`: random bytes rarely make JSON that decodes, so this target starts
/// from the sample message of a payload type and replaces fields (top level or one level down) with values
/// from a palette of edge cases (extreme integers, huge or tiny doubles, long, empty or odd strings, wrong
/// types, nulls, big arrays, extreme dates, unsupported intervals), then decodes with correct properties.
///
/// Input layout: payload type byte, then pairs of (field byte, value byte) with the bytes a value needs.
public enum PayloadFieldFuzzing {
    /// The sample message body of every payload type, in `EnvelopeFuzzing.payloadTypes` order.
    static let samples: [Data] = EnvelopeFuzzing.payloadTypes.map { type in
        guard let sample = ContractSamples.all.first(where: { Swift.type(of: $0).messageType == type.messageType }),
            let message = try? encodeSample(sample)
        else { fatalError("no sample of \(type.messageType)") }
        return Data(message.body)
    }

    static func encodeSample<Payload: MessagePayload>(_ payload: Payload) throws -> OutgoingMessage {
        try EnvelopeCodec.encode(Envelope(payload: payload), exchange: "candlecast.events", routingKey: "fuzz")
    }

    public static func run(_ bytes: [UInt8]) -> Bool {
        var reader = ByteReader(bytes)
        let index = Int(reader.byte()) % EnvelopeFuzzing.payloadTypes.count
        let type = EnvelopeFuzzing.payloadTypes[index]
        guard var object = (try? JSONSerialization.jsonObject(with: samples[index])) as? [String: Any] else {
            fatalError("a sample is not an object")
        }
        var edits = 0
        while !reader.bytes.isEmpty, edits < 16 {
            edits += 1
            let keys = object.keys.sorted()
            guard !keys.isEmpty else { break }  // every field removed
            let choice = Int(reader.byte())
            let key = keys[choice % keys.count]
            if choice >= 128, var nested = object[key] as? [String: Any], !nested.isEmpty {
                let nestedKeys = nested.keys.sorted()
                let nestedKey = nestedKeys[Int(reader.byte()) % nestedKeys.count]
                nested[nestedKey] = value(from: &reader)
                object[key] = nested
            } else {
                object[key] = value(from: &reader)
            }
        }
        guard let body = try? JSONSerialization.data(withJSONObject: object) else { return false }
        let properties = MessageProperties(
            contentType: EnvelopeCodec.contentType, deliveryMode: MessageProperties.persistentDeliveryMode, messageID: UUID().uuidString,
            type: type.messageType, timestamp: 1_704_067_200, headers: [schemaVersionHeader: .int(Int64(type.schemaVersion))])
        return EnvelopeFuzzing.decode(type, body: Array(body), properties: properties)
    }

    /// An edge-case JSON value; nil removes the field.
    static func value(from reader: inout ByteReader) -> Any? {
        switch reader.byte() % 24 {
        case 0: return Int64.max
        case 1: return Int64.min
        case 2: return -1
        case 3: return 0
        case 4: return 1e300
        case 5: return -1e300
        case 6: return 4_102_444_800 + Int64(reader.byte() % 3) - 1
        case 7: return reader.text()
        case 8:
            return ["99999999999999999d", "0d", "-1d", "1440", "9223372036854775807", "1w", "15d", "21600", "7m", "1D"][
                Int(reader.byte()) % 10]
        case 9: return ""
        case 10: return nil
        case 11: return NSNull()
        case 12: return reader.byte() % 2 == 1
        case 13:
            // Up to 254 elements, or 4097: one more than a window may hold (large inputs slow the fuzzer down).
            let length = reader.byte()
            let count = length == 255 ? ContractRules.maximumWindow + 1 : Int(length)
            let element = Double(bitPattern: reader.uint64())
            return Array(repeating: element.isFinite ? element : 1, count: count)
        case 14:
            let double = Double(bitPattern: reader.uint64())
            return double.isFinite ? double : 0.5
        case 15: return ["1m", "5m", "15m", "30m", "1h", "4h", "1d", "1w", "15d"][Int(reader.byte()) % 9]
        case 16: return Int64(bitPattern: reader.uint64())
        case 17: return String(repeating: "é", count: Int(reader.byte()) * 40)
        case 18:
            return ["00000000-0000-0000-0000-000000000000", "not-a-uuid", "0F8E7A2C-4B1D-4C3E-9A5F-6D7E8F901234"][Int(reader.byte()) % 3]
        case 19:
            return [
                "9999-12-31T23:59:59Z", "0000-01-01T00:00:00Z", "1969-12-31T23:59:59Z", "2100-01-01T00:00:01Z", "2024-02-30T00:00:00Z",
                "2024-01-01T00:00:00.5Z",
            ][
                Int(reader.byte()) % 6]
        case 20:
            return ["1", "0", "0.0", "1e5", "NaN", "inf", "-1", "1.", ".5", "99999999999999999", String(repeating: "9", count: 41)][
                Int(reader.byte()) % 11]
        case 21: return [Any]()
        case 22: return ["a": 1]
        default: return 4_294_967_296 + Int64(reader.byte())  // just past UInt32 and Int32
        }
    }
}
