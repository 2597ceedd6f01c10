import Foundation

/// A payload of Candlecast's message contract: a JSON body with a stable type name and schema version.
public protocol MessagePayload: Codable, Sendable {
    /// The AMQP `type` property, e.g. `forecast.created`.
    static var messageType: String { get }
    /// Bumped on every incompatible change; consumers reject versions they do not know.
    static var schemaVersion: Int { get }
    /// Checks the values beyond what decoding checks (finite numbers, positive prices...).
    func validate() throws(ValidationFailure)
}

extension MessagePayload {
    public func validate() throws(ValidationFailure) {}
}

/// Why a payload's values are unacceptable.
public struct ValidationFailure: Error, Sendable, CustomStringConvertible {
    public let reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}

/// A typed message: the payload plus the identity and tracing fields every Candlecast message carries.
public struct Envelope<Payload: MessagePayload>: Sendable {
    public var messageID: UUID
    public var correlationID: String?
    public var timestamp: Date
    public var payload: Payload

    public init(payload: Payload, messageID: UUID = UUID(), correlationID: String? = nil, timestamp: Date = Date()) {
        self.messageID = messageID
        self.correlationID = correlationID
        self.timestamp = timestamp
        self.payload = payload
    }
}

/// Header that carries the payload's schema version.
public let schemaVersionHeader = "schema_version"

/// Why a delivered message could not become a typed envelope. Its description is the dead-letter reason.
public enum EnvelopeDecodingFailure: Error, Sendable, CustomStringConvertible {
    case wrongContentType(String?)
    case unknownType(found: String?, expected: String)
    case unsupportedSchemaVersion(found: Int64?, expected: Int)
    case malformedBody(String)
    case invalidPayload(String)

    public var description: String {
        switch self {
        case .wrongContentType(let found): "content type \(found ?? "missing") is not application/json"
        case .unknownType(let found, let expected): "message type \(found ?? "missing") is not \(expected)"
        case .unsupportedSchemaVersion(let found, let expected):
            "schema version \(found.map(String.init) ?? "missing") is not supported (expected \(expected))"
        case .malformedBody(let detail): "malformed JSON body: \(detail)"
        case .invalidPayload(let detail): "invalid payload: \(detail)"
        }
    }
}

/// Encodes envelopes into AMQP messages and decodes deliveries back, the one place where the wire format
/// of the contract (JSON, ISO-8601 dates, headers) is defined.
public enum EnvelopeCodec {
    public static let contentType = "application/json"

    public static func encode<Payload: MessagePayload>(_ envelope: Envelope<Payload>, exchange: String, routingKey: String) throws -> OutgoingMessage {
        let body = try jsonEncoder.encode(envelope.payload)
        return OutgoingMessage(
            exchange: exchange, routingKey: routingKey, body: Array(body),
            properties: MessageProperties(
                contentType: contentType, deliveryMode: MessageProperties.persistentDeliveryMode,
                messageID: envelope.messageID.uuidString.lowercased(), correlationID: envelope.correlationID,
                type: Payload.messageType, timestamp: UInt64(max(0, envelope.timestamp.timeIntervalSince1970)),
                headers: [schemaVersionHeader: .int(Int64(Payload.schemaVersion))]))
    }

    public static func decode<Payload: MessagePayload>(_ type: Payload.Type, from body: [UInt8], properties: MessageProperties) throws(EnvelopeDecodingFailure) -> Envelope<Payload> {
        if let contentType = properties.contentType, !contentType.hasPrefix(Self.contentType) {
            throw .wrongContentType(contentType)
        }
        guard properties.type == Payload.messageType else {
            throw .unknownType(found: properties.type, expected: Payload.messageType)
        }
        let version = properties.headers[schemaVersionHeader]?.intValue
        guard version == Int64(Payload.schemaVersion) else {
            throw .unsupportedSchemaVersion(found: version, expected: Payload.schemaVersion)
        }
        let payload: Payload
        do {
            payload = try jsonDecoder.decode(Payload.self, from: Data(body))
        } catch let error as DecodingError {
            throw .malformedBody(describe(error))
        } catch {
            throw .malformedBody("\(error)")
        }
        do {
            try payload.validate()
        } catch {
            throw .invalidPayload(error.reason)
        }
        let messageID = properties.messageID.flatMap(UUID.init(uuidString:)) ?? UUID()
        let timestamp = properties.timestamp.map { Date(timeIntervalSince1970: TimeInterval($0)) } ?? Date()
        return Envelope(payload: payload, messageID: messageID, correlationID: properties.correlationID, timestamp: timestamp)
    }

    public static func decode<Payload: MessagePayload>(_ type: Payload.Type, from delivery: Delivery) throws(EnvelopeDecodingFailure) -> Envelope<Payload> {
        try decode(type, from: delivery.body, properties: delivery.properties)
    }

    private static var jsonEncoder: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.sortedKeys]
        return encoder
    }

    private static var jsonDecoder: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }

    private static func describe(_ error: DecodingError) -> String {
        func path(_ context: DecodingError.Context) -> String {
            let path = context.codingPath.map(\.stringValue).joined(separator: ".")
            return path.isEmpty ? "" : " at \(path)"
        }
        switch error {
        case .keyNotFound(let key, let context): return "missing field \(key.stringValue)\(path(context))"
        case .typeMismatch(_, let context): return "wrong type\(path(context)): \(context.debugDescription)"
        case .valueNotFound(_, let context): return "null value\(path(context))"
        case .dataCorrupted(let context): return "not valid JSON\(path(context)): \(context.debugDescription)"
        @unknown default: return "\(error)"
        }
    }
}

/// Handles one message type of a queue's contract.
public struct MessageHandler: Sendable {
    let messageType: String
    /// Decodes and handles; a delivery that does not decode throws `EnvelopeDecodingFailure`.
    let process: @Sendable (Delivery) async throws -> Void

    public init<Payload: MessagePayload>(_ type: Payload.Type, _ handler: @escaping @Sendable (Envelope<Payload>, Delivery) async throws -> Void) {
        messageType = Payload.messageType
        process = { delivery in
            let envelope = try EnvelopeCodec.decode(type, from: delivery)
            try await handler(envelope, delivery)
        }
    }
}

extension Consumer {
    /// Runs `handler` for every delivery that decodes as `Payload`, until the consumer stops.
    public func handle<Payload: MessagePayload>(
        _ type: Payload.Type, retryDelay: Duration = .seconds(1),
        _ handler: @escaping @Sendable (Envelope<Payload>, Delivery) async throws -> Void
    ) async {
        await handle([MessageHandler(type, handler)], retryDelay: retryDelay)
    }

    /// Dispatches every delivery to the handler of its `type`, until the consumer stops.
    ///
    /// A delivery of another type, or one that does not decode or validate, is dead-lettered with the
    /// reason and the loop goes on. A handler acks by returning; a `PermanentFailure` dead-letters the
    /// message; any other error requeues it after `retryDelay` (a transient failure such as a database
    /// restart).
    public func handle(_ handlers: [MessageHandler], retryDelay: Duration = .seconds(1)) async {
        let byType = Dictionary(handlers.map { ($0.messageType, $0) }) { first, _ in first }
        for await delivery in deliveries {
            guard let handler = delivery.properties.type.flatMap({ byType[$0] }) ?? (byType.count == 1 ? byType.values.first : nil) else {
                await delivery.deadLetter(reason: "message type \(delivery.properties.type ?? "missing") is not handled on this queue (expected \(byType.keys.sorted().joined(separator: ", ")))")
                continue
            }
            do {
                try await handler.process(delivery)
                delivery.ack()
            } catch let failure as EnvelopeDecodingFailure {
                await delivery.deadLetter(reason: failure.description)
            } catch let failure as PermanentFailure {
                await delivery.deadLetter(reason: failure.reason)
            } catch {
                logger.warning("handler failed; requeueing", metadata: ["error": "\(error)", "message.id": "\(delivery.properties.messageID ?? "-")"])
                try? await Task.sleep(for: retryDelay)
                delivery.reject(requeue: true)
            }
        }
    }
}

/// Thrown by a handler when a message can never be processed: it is dead-lettered with this reason.
public struct PermanentFailure: Error, Sendable, CustomStringConvertible {
    public let reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}
