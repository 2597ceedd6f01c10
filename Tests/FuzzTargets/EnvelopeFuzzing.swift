import Contracts
import Foundation
import Messaging

/// Input layout: 8 choice bytes (payload type, content type, `type` property, `schema_version` header,
/// message id, timestamp, correlation id, extra headers; each may pull more bytes for its value), then the
/// JSON body. An input of all-zero choice bytes is the message a producer would send.
public enum EnvelopeFuzzing {
    /// Every payload type of the contract (a test checks this is `MessageCatalog.all`).
    public static let payloadTypes: [any (MessagePayload & Equatable).Type] = [
        CandleClosed.self, CandlesBackfilled.self, FeatureWindow.self, DatasetReady.self, TrainingJob.self, TrainingCompleted.self,
        TrainingEpochMetric.self, ModelPromoted.self, ForecastCreated.self, ForecastScored.self,
    ]

    public static func run(_ bytes: [UInt8]) -> Bool {
        var reader = ByteReader(bytes)
        let type = payloadTypes[Int(reader.byte()) % payloadTypes.count]
        let properties = properties(for: type.messageType, from: &reader)
        return decode(type, body: reader.rest, properties: properties)
    }

    /// The seed of a payload: all-zero choices (a well-formed message) and the JSON of `payload`.
    public static func seed<Payload: MessagePayload>(_ payload: Payload) throws -> [UInt8] {
        guard let index = payloadTypes.firstIndex(where: { $0.messageType == Payload.messageType }) else {
            throw ValidationFailure("\(Payload.messageType) is not a fuzzed payload type")
        }
        let message = try EnvelopeCodec.encode(Envelope(payload: payload), exchange: "candlecast.events", routingKey: "fuzz")
        return [UInt8(index), 0, 0, 0, 0, 0, 0, 0] + message.body
    }

    static func properties(for messageType: String, from reader: inout ByteReader) -> MessageProperties {
        var properties = MessageProperties(deliveryMode: MessageProperties.persistentDeliveryMode)
        switch reader.byte() % 5 {
        case 0: properties.contentType = EnvelopeCodec.contentType
        case 1: properties.contentType = nil
        case 2: properties.contentType = "application/json; charset=utf-8"
        case 3: properties.contentType = "text/plain"
        default: properties.contentType = reader.text()
        }
        switch reader.byte() % 4 {
        case 0: properties.type = messageType
        case 1: properties.type = nil
        case 2: properties.type = MessageCatalog.all[Int(reader.byte()) % MessageCatalog.all.count].type
        default: properties.type = reader.text()
        }
        if let version = headerValue(from: &reader, default: .int(1)) { properties.headers[schemaVersionHeader] = version }
        switch reader.byte() % 4 {
        case 0: properties.messageID = nil
        case 1: properties.messageID = "0f8e7a2c-4b1d-4c3e-9a5f-6d7e8f901234"
        case 2: properties.messageID = "0F8E7A2C-4B1D-4C3E-9A5F-6D7E8F901234"
        default: properties.messageID = reader.text()
        }
        switch reader.byte() % 3 {
        case 0: properties.timestamp = nil
        case 1: properties.timestamp = 1_704_067_200
        default: properties.timestamp = reader.uint64()
        }
        if reader.byte() % 2 == 1 { properties.correlationID = reader.text() }
        for _ in 0..<(reader.byte() % 4) {
            let key = reader.text(limit: 16)
            if let value = headerValue(from: &reader, default: .string("x")) { properties.headers[key] = value }
        }
        return properties
    }

    /// A header value chosen by the next byte; nil means "no header".
    static func headerValue(from reader: inout ByteReader, default value: HeaderValue, depth: Int = 0) -> HeaderValue? {
        switch reader.byte() % 12 {
        case 0: return value
        case 1: return nil
        case 2: return .string("1")
        case 3: return .int(Int64(bitPattern: reader.uint64()))
        case 4: return .double(Double(bitPattern: reader.uint64()))
        case 5: return .string(reader.text())
        case 6: return .bool(reader.byte() % 2 == 1)
        case 7: return .int(2)
        case 8 where depth < 3:
            return .array((0..<(reader.byte() % 3)).compactMap { _ in headerValue(from: &reader, default: value, depth: depth + 1) })
        case 9 where depth < 3:
            return .table(["count": .int(Int64(bitPattern: reader.uint64())), "reason": .string(reader.text())])
        case 10: return .unsupported(kind: reader.byte())
        default: return .int(0)
        }
    }

    static func decode<Payload: MessagePayload & Equatable>(_ type: Payload.Type, body: [UInt8], properties: MessageProperties) -> Bool {
        let envelope: Envelope<Payload>
        do {
            envelope = try EnvelopeCodec.decode(type, from: body, properties: properties)
        } catch {
            _ = error.description  // the dead-letter reason must be printable too
            return false
        }
        checkRoundTrip(envelope)
        return true
    }

    /// What a consumer accepted, a producer must be able to send, and it must arrive the same. "The same" allows
    /// one normalisation (the ISO-8601 wire format has whole seconds: a `produced_at` of `...00.5Z` is accepted
    /// and re-sent as `...00Z`, reported in issue 13), after which a round trip must change nothing.
    static func checkRoundTrip<Payload: MessagePayload & Equatable>(_ envelope: Envelope<Payload>) {
        let once = roundTrip(envelope)
        guard once.payload != envelope.payload else { return }
        let twice = roundTrip(once)
        guard twice.payload == once.payload else {
            fatalError("\(Payload.messageType) keeps changing on round trips: \(once.payload) became \(twice.payload)")
        }
    }

    static func roundTrip<Payload: MessagePayload & Equatable>(_ envelope: Envelope<Payload>) -> Envelope<Payload> {
        let message: OutgoingMessage
        do {
            message = try EnvelopeCodec.encode(envelope, exchange: "candlecast.events", routingKey: "fuzz")
        } catch {
            fatalError("\(Payload.messageType) decoded and validated but does not encode: \(error)")
        }
        do {
            return try EnvelopeCodec.decode(Payload.self, from: message.body, properties: message.properties)
        } catch {
            fatalError("\(Payload.messageType) encoded by EnvelopeCodec does not decode: \(error)")
        }
    }
}
