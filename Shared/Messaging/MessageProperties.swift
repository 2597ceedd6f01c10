import Foundation

/// A header value as AMQP field tables carry it. Nested tables and arrays appear in broker-set headers
/// such as `x-death`.
public enum HeaderValue: Sendable, Equatable, CustomStringConvertible {
    case string(String)
    case int(Int64)
    case double(Double)
    case bool(Bool)
    case array([HeaderValue])
    case table([String: HeaderValue])
    case unsupported(kind: UInt8)

    public var stringValue: String? {
        if case .string(let value) = self { return value }
        return nil
    }

    public var intValue: Int64? {
        switch self {
        case .int(let value): return value
        case .string(let text): return Int64(text)
        default: return nil
        }
    }

    public var description: String {
        switch self {
        case .string(let value): return value
        case .int(let value): return String(value)
        case .double(let value): return String(value)
        case .bool(let value): return String(value)
        case .array(let values): return "[" + values.map(\.description).joined(separator: ", ") + "]"
        case .table(let entries):
            return "{" + entries.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", ") + "}"
        case .unsupported(let kind): return "<field kind \(kind)>"
        }
    }
}

/// The basic properties of an AMQP message that Candlecast uses.
public struct MessageProperties: Sendable, Equatable {
    public var contentType: String?
    /// 2 = persistent (survives a broker restart in a durable queue).
    public var deliveryMode: UInt8?
    public var messageID: String?
    public var correlationID: String?
    public var type: String?
    /// Seconds since 1970, as AMQP carries it.
    public var timestamp: UInt64?
    public var headers: [String: HeaderValue]

    public init(
        contentType: String? = nil, deliveryMode: UInt8? = nil, messageID: String? = nil, correlationID: String? = nil,
        type: String? = nil, timestamp: UInt64? = nil, headers: [String: HeaderValue] = [:]
    ) {
        self.contentType = contentType
        self.deliveryMode = deliveryMode
        self.messageID = messageID
        self.correlationID = correlationID
        self.type = type
        self.timestamp = timestamp
        self.headers = headers
    }

    public static let persistentDeliveryMode: UInt8 = 2
}

/// A message ready to publish.
public struct OutgoingMessage: Sendable, Equatable {
    public var exchange: String
    public var routingKey: String
    public var body: [UInt8]
    public var properties: MessageProperties

    public init(exchange: String, routingKey: String, body: [UInt8], properties: MessageProperties) {
        self.exchange = exchange
        self.routingKey = routingKey
        self.body = body
        self.properties = properties
    }
}
