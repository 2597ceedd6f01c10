import Foundation
import Synchronization

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

/// Why a payload's (or any outside input's) values are unacceptable: `code` for programs, `reason` for people,
/// `field` naming the value when one field is to blame.
public struct ValidationFailure: Error, Sendable, Equatable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        let name: String
        public var description: String { name }

        /// A value breaks a rule not covered by a more specific code.
        public static let invalidValue = Code(name: "invalidValue")
        /// A number or time lies outside the range the contract allows.
        public static let outOfRange = Code(name: "outOfRange")
        /// A price or volume is not a plain non-negative decimal.
        public static let notADecimal = Code(name: "notADecimal")
        /// A pair, interval or model name is not spelled as the contract allows.
        public static let invalidName = Code(name: "invalidName")
        /// A time is not aligned to the candle interval.
        public static let misaligned = Code(name: "misaligned")
        /// Values are valid one by one but contradict each other (low above high, lengths differ).
        public static let inconsistent = Code(name: "inconsistent")
        /// Free text is longer (or shorter) than allowed.
        public static let badLength = Code(name: "badLength")
    }

    public let code: Code
    public let reason: String
    /// The field at fault, when there is one (`pair`, `close`, `target_open_time`).
    public let field: String?

    public init(_ reason: String) { self.init(.invalidValue, reason) }

    public init(_ code: Code, _ reason: String, field: String? = nil) {
        self.code = code
        self.reason = reason
        self.field = field
    }

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

/// Why a delivered message could not become a typed envelope. Its description is the dead-letter reason;
/// `code` says which check failed, `found`/`expected` carry what was seen and what was wanted.
public struct EnvelopeDecodingFailure: Error, Sendable, Equatable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        let name: String
        public var description: String { name }

        public static let wrongContentType = Code(name: "wrongContentType")
        public static let unknownType = Code(name: "unknownType")
        public static let unsupportedSchemaVersion = Code(name: "unsupportedSchemaVersion")
        public static let malformedBody = Code(name: "malformedBody")
        /// The body decoded but its values break the contract; `validation` says which rule.
        public static let invalidPayload = Code(name: "invalidPayload")
    }

    public let code: Code
    public let found: String?
    public let expected: String?
    /// The decoder's or validator's own words.
    public let detail: String?
    /// The rule the payload broke, for `invalidPayload`.
    public let validation: ValidationFailure?

    init(_ code: Code, found: String? = nil, expected: String? = nil, detail: String? = nil, validation: ValidationFailure? = nil) {
        self.code = code
        self.found = found
        self.expected = expected
        self.detail = detail
        self.validation = validation
    }

    public static func wrongContentType(_ found: String?) -> Self {
        Self(.wrongContentType, found: found, expected: EnvelopeCodec.contentType)
    }
    public static func unknownType(found: String?, expected: String) -> Self { Self(.unknownType, found: found, expected: expected) }
    public static func unsupportedSchemaVersion(found: Int64?, expected: Int) -> Self {
        Self(.unsupportedSchemaVersion, found: found.map(String.init), expected: String(expected))
    }
    public static func malformedBody(_ detail: String) -> Self { Self(.malformedBody, detail: detail) }
    public static func invalidPayload(_ failure: ValidationFailure) -> Self {
        Self(.invalidPayload, detail: failure.reason, validation: failure)
    }

    public var description: String {
        switch code {
        case .wrongContentType: "content type \(found ?? "missing") is not application/json"
        case .unknownType: "message type \(found ?? "missing") is not \(expected ?? "?")"
        case .unsupportedSchemaVersion: "schema version \(found ?? "missing") is not supported (expected \(expected ?? "?"))"
        case .malformedBody: "malformed JSON body: \(detail ?? "")"
        default: "invalid payload: \(detail ?? "")"
        }
    }
}

/// Encodes envelopes into AMQP messages and decodes deliveries back, the one place where the wire format
/// of the contract (JSON, ISO-8601 dates, headers) is defined.
public enum EnvelopeCodec {
    public static let contentType = "application/json"

    /// Validates the payload with the same rules its consumers apply (a `ValidationFailure` is thrown for a
    /// payload that no consumer would accept), then encodes it.
    public static func encode<Payload: MessagePayload>(_ envelope: Envelope<Payload>, exchange: String, routingKey: String) throws
        -> OutgoingMessage
    {
        try envelope.payload.validate()
        let body = try jsonEncoder.encode(envelope.payload)
        return OutgoingMessage(
            exchange: exchange, routingKey: routingKey, body: Array(body),
            properties: MessageProperties(
                contentType: contentType, deliveryMode: MessageProperties.persistentDeliveryMode,
                messageID: envelope.messageID.uuidString.lowercased(), correlationID: envelope.correlationID,
                type: Payload.messageType, timestamp: amqpTimestamp(envelope.timestamp),
                headers: [schemaVersionHeader: .int(Int64(Payload.schemaVersion))]))
    }

    /// Whole unix seconds, clamped to what the AMQP property holds (a date from outside may be anything).
    static func amqpTimestamp(_ date: Date) -> UInt64 {
        let seconds = date.timeIntervalSince1970.rounded(.down)
        guard seconds.isFinite, seconds > 0 else { return 0 }
        return UInt64(exactly: seconds) ?? (seconds >= 1.8e19 ? UInt64.max : UInt64(seconds))
    }

    public static func decode<Payload: MessagePayload>(_ type: Payload.Type, from body: [UInt8], properties: MessageProperties)
        throws(EnvelopeDecodingFailure) -> Envelope<Payload>
    {
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
            throw .invalidPayload(error)
        }
        let messageID = properties.messageID.flatMap(UUID.init(uuidString:)) ?? UUID()
        let timestamp = properties.timestamp.map { Date(timeIntervalSince1970: TimeInterval($0)) } ?? Date()
        return Envelope(payload: payload, messageID: messageID, correlationID: properties.correlationID, timestamp: timestamp)
    }

    public static func decode<Payload: MessagePayload>(_ type: Payload.Type, from delivery: Delivery) throws(EnvelopeDecodingFailure)
        -> Envelope<Payload>
    {
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

    public init<Payload: MessagePayload>(
        _ type: Payload.Type, _ handler: @escaping @Sendable (Envelope<Payload>, Delivery) async throws -> Void
    ) {
        messageType = Payload.messageType
        process = { delivery in
            let envelope = try EnvelopeCodec.decode(type, from: delivery)
            try await handler(envelope, delivery)
        }
    }
}

/// What a consumer does with a message whose handler failed.
///
/// Transient failures (the broker or the database unreachable) are retried with exponential backoff and use
/// none of the message's budget: the message is fine, the world is not. Every other failure uses one of
/// `maximumAttempts`; the last one dead-letters the message with its error as the reason. A
/// `PermanentFailure`, or a message that does not decode or validate, is dead-lettered at once.
public struct RedeliveryPolicy: Sendable {
    /// Attempts a message gets before it is dead-lettered (at least 1).
    public var maximumAttempts: Int
    /// Delay before a message that failed is given back to the queue.
    public var retryDelay: Duration
    /// Longest delay between transient retries.
    public var maximumTransientDelay: Duration
    /// Whether an error means "try again later" rather than "this message fails".
    public var isTransient: @Sendable (any Error) -> Bool

    public init(
        maximumAttempts: Int = 5, retryDelay: Duration = .seconds(1), maximumTransientDelay: Duration = .seconds(30),
        isTransient: @escaping @Sendable (any Error) -> Bool = RedeliveryPolicy.isBrokerProblem
    ) {
        self.maximumAttempts = max(1, maximumAttempts)
        self.retryDelay = retryDelay
        self.maximumTransientDelay = maximumTransientDelay
        self.isTransient = isTransient
    }

    /// The broker's own trouble: lost connections, timeouts and nacks are worth retrying.
    public static let isBrokerProblem: @Sendable (any Error) -> Bool = { error in
        guard let error = error as? BrokerError else { return error is TransientFailure }
        return [.connectionFailed, .connectionLost, .publishNacked, .publishTimedOut].contains(error.code)
    }
}

/// Thrown by a handler when the message is fine but something it needs is not there yet (retried with
/// backoff, without using the message's attempts).
public struct TransientFailure: Error, Sendable, CustomStringConvertible {
    public let reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}

/// How many times each message failed on this consumer, by message id (bounded: the oldest entries go first).
final class AttemptLedger: Sendable {
    private struct State {
        var attempts: [String: Int] = [:]
        var order: [String] = []
    }
    private let state = Mutex(State())
    private let capacity: Int

    init(capacity: Int = 10_000) { self.capacity = capacity }

    /// Records one more failure of `key` and returns how many it has had.
    func recordFailure(_ key: String) -> Int {
        state.withLock { state in
            if let count = state.attempts[key] {
                state.attempts[key] = count + 1
                return count + 1
            }
            if state.order.count >= capacity {
                let evicted = min(state.order.count, max(1, capacity / 10))
                for key in state.order.prefix(evicted) { state.attempts[key] = nil }
                state.order.removeFirst(evicted)
            }
            state.attempts[key] = 1
            state.order.append(key)
            return 1
        }
    }

    func forget(_ key: String) {
        state.withLock { state in
            if state.attempts.removeValue(forKey: key) != nil { state.order.removeAll { $0 == key } }
        }
    }
}

extension Consumer {
    /// Runs `handler` for every delivery that decodes as `Payload`, until the consumer stops.
    public func handle<Payload: MessagePayload>(
        _ type: Payload.Type, _ handler: @escaping @Sendable (Envelope<Payload>, Delivery) async throws -> Void
    ) async {
        await handle([MessageHandler(type, handler)])
    }

    /// Dispatches every delivery to the handler of its `type`, until the consumer stops.
    ///
    /// A delivery of another type, or one that does not decode or validate, is dead-lettered with the
    /// reason and the loop goes on. A handler acks by returning; a `PermanentFailure` dead-letters the
    /// message; other errors follow the consumer's `RedeliveryPolicy` (bounded attempts, transient errors
    /// retried with backoff).
    public func handle(_ handlers: [MessageHandler]) async {
        let byType = Dictionary(handlers.map { ($0.messageType, $0) }) { first, _ in first }
        for await delivery in deliveries {
            guard let handler = delivery.properties.type.flatMap({ byType[$0] }) ?? (byType.count == 1 ? byType.values.first : nil) else {
                await delivery.deadLetter(
                    reason:
                        "message type \(delivery.properties.type ?? "missing") is not handled on this queue "
                        + "(expected \(byType.keys.sorted().joined(separator: ", ")))"
                )
                continue
            }
            await runHandler(for: delivery) { try await handler.process(delivery) }
        }
    }

    /// Runs `body` for one delivery under the consumer's `RedeliveryPolicy` and settles the delivery by how it ended.
    func runHandler(for delivery: Delivery, _ body: () async throws -> Void) async {
        let policy = options.redelivery
        let key = delivery.attemptKey
        var transientDelay = policy.retryDelay
        // A transient failure is retried here, without giving the message back: a requeue would count against
        // the quorum queue's delivery limit, and the message is not at fault.
        while true {
            do {
                try await body()
                delivery.ack()
                attempts.forget(key)
            } catch let failure as EnvelopeDecodingFailure {
                await delivery.deadLetter(reason: failure.description)
            } catch let failure as PermanentFailure {
                attempts.forget(key)
                await delivery.deadLetter(reason: failure.reason)
            } catch is CancellationError {
                // Shutting down: the message goes back to the queue when the connection closes.
                break
            } catch  where policy.isTransient(error) {
                guard isCurrent(delivery), !Task.isCancelled else {
                    // The connection that delivered it is gone: the broker gives the message to a consumer again.
                    logger.warning(
                        "handler failed on a transient error; the message returns to the queue", metadata: ["error": "\(error)"])
                    break
                }
                logger.warning(
                    "handler failed on a transient error; retrying",
                    metadata: [
                        "error": "\(error)", "message.id": "\(delivery.properties.messageID ?? "-")", "retry_in": "\(transientDelay)",
                    ])
                try? await Task.sleep(for: transientDelay)
                transientDelay = min(transientDelay * 2, policy.maximumTransientDelay)
                if Task.isCancelled || !isCurrent(delivery) { break }
                continue
            } catch {
                // Only the handler's failures count here. The broker's count (`x-delivery-count`) also counts returns
                // that were not failures (a restart, a failover, a long outage past the consumer timeout): it drives
                // the quorum queue's delivery limit, the backstop for a message that kills its consumer.
                let attempt = attempts.recordFailure(key)
                if attempt >= policy.maximumAttempts {
                    attempts.forget(key)
                    await delivery.deadLetter(reason: "handler failed \(attempt) times; last error: \(error)")
                } else {
                    logger.warning(
                        "handler failed; requeueing",
                        metadata: [
                            "error": "\(error)", "message.id": "\(delivery.properties.messageID ?? "-")",
                            "attempt": "\(attempt)", "attempts.maximum": "\(policy.maximumAttempts)",
                        ])
                    try? await Task.sleep(for: policy.retryDelay)
                    delivery.reject(requeue: true)
                }
            }
            break
        }
    }
}

extension Delivery {
    /// How many times a quorum queue gave this message out before without an ack (`x-delivery-count`; 0 when
    /// absent, as on a classic queue). Clamped: the header could come from a publisher.
    public var deliveryCount: Int {
        guard case .int(let count) = properties.headers["x-delivery-count"] else { return 0 }
        return Int(min(max(count, 0), 1_000_000))
    }

    /// Identifies the message across redeliveries: its message id, else a hash of its routing key and body.
    var attemptKey: String {
        if let id = properties.messageID, !id.isEmpty { return id }
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in routingKey.utf8 + body {
            hash ^= UInt64(byte)
            hash &*= 0x100_0000_01b3
        }
        return "body:\(hash)"
    }
}

/// Thrown by a handler when a message can never be processed: it is dead-lettered with this reason.
public struct PermanentFailure: Error, Sendable, CustomStringConvertible {
    public let reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}
