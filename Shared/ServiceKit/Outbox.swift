import Foundation
import Logging
import Messaging
import Metrics
import ServiceLifecycle
import Storage
import Synchronization

/// The transactional outbox: an event that comes from a database change is written in the same
/// transaction as the change, then published by `OutboxRelay` with confirms and marked sent. A broker
/// outage therefore delays events but never loses them; a crash between publish and mark re-sends one
/// (consumers deduplicate by message id).
public enum Outbox {
    /// Creates the `outbox` table in the migrating schema (add it to the service's migrations).
    public static func migration(version: Int) -> Migration {
        Migration(
            version: version, name: "outbox",
            sql: """
                CREATE TABLE outbox (
                    id bigserial PRIMARY KEY,
                    message_id uuid NOT NULL UNIQUE,
                    exchange text NOT NULL,
                    routing_key text NOT NULL,
                    message_type text NOT NULL,
                    schema_version integer NOT NULL,
                    correlation_id text,
                    body text NOT NULL,
                    created_at timestamptz NOT NULL DEFAULT now(),
                    published_at timestamptz
                );
                CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
                """)
    }

    /// Writes the event into `schema.outbox` on `connection`, inside the caller's transaction.
    public static func enqueue<Payload: MessagePayload>(
        _ envelope: Envelope<Payload>, routingKey: String, exchange: String, schema: String, on connection: PostgresConnection
    ) throws {
        let message = try EnvelopeCodec.encode(envelope, exchange: exchange, routingKey: routingKey)
        try connection.query(
            """
            INSERT INTO \(identifier: schema + ".outbox") (message_id, exchange, routing_key, message_type, schema_version, correlation_id, body, created_at)
            VALUES (\(envelope.messageID), \(exchange), \(routingKey), \(Payload.messageType), \(Payload.schemaVersion), \(envelope.correlationID), \(String(decoding: message.body, as: UTF8.self)), \(envelope.timestamp))
            ON CONFLICT (message_id) DO NOTHING
            """)
    }
}

/// Publishes a schema's unsent outbox rows in order, with confirms, and marks them sent.
public struct OutboxRelay: Service {
    let schema: String
    let database: PostgresClient
    let publisher: Publisher
    let logger: Logger
    let batchSize: Int
    let pollInterval: Duration
    private let relayed: Counter
    private let backlog: Gauge
    private let signal = RelaySignal()

    public init(schema: String, database: PostgresClient, publisher: Publisher, logger: Logger, batchSize: Int = 500, pollInterval: Duration = .milliseconds(200)) {
        self.schema = schema
        self.database = database
        self.publisher = publisher
        self.logger = logger
        self.batchSize = batchSize
        self.pollInterval = pollInterval
        self.relayed = Counter(label: "candlecast_outbox_published_total", dimensions: [("schema", schema)])
        self.backlog = Gauge(label: "candlecast_outbox_backlog", dimensions: [("schema", schema)])
    }

    public func run() async throws {
        var failureDelay = Duration.milliseconds(200)
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            do {
                let sent = try await relayOnce()
                failureDelay = .milliseconds(200)
                if sent < batchSize { await signal.wait(upTo: pollInterval) }
            } catch is CancellationError {
                return
            } catch {
                logger.warning("outbox relay failed; retrying", metadata: ["schema": "\(schema)", "error": "\(error)"])
                try? await Task.sleep(for: failureDelay)
                failureDelay = min(failureDelay * 2, .seconds(5))
            }
        }
    }

    /// Relays at once instead of at the next poll: call after committing an outbox row, so that an event
    /// leaves within milliseconds of its transaction (the poll still catches rows written by other processes).
    public func wake() { signal.fire() }

    /// Publishes one batch; returns how many rows were sent.
    @discardableResult
    public func relayOnce() async throws -> Int {
        let schema = self.schema
        let limit = batchSize
        let rows = try await database.query(
            """
            SELECT id, message_id, exchange, routing_key, message_type, schema_version, correlation_id, body, created_at
            FROM \(identifier: schema + ".outbox") WHERE published_at IS NULL ORDER BY id LIMIT \(limit)
            """)
        backlog.record(rows.count)
        guard !rows.isEmpty else { return 0 }
        var ids: [Int64] = []
        var messages: [OutgoingMessage] = []
        for row in rows {
            ids.append(try row.decode("id", as: Int64.self))
            let created = try row.decode("created_at", as: Date.self)
            messages.append(
                OutgoingMessage(
                    exchange: try row.decode("exchange", as: String.self), routingKey: try row.decode("routing_key", as: String.self),
                    body: Array(try row.decode("body", as: String.self).utf8),
                    properties: MessageProperties(
                        contentType: EnvelopeCodec.contentType, deliveryMode: MessageProperties.persistentDeliveryMode,
                        messageID: try row.decode("message_id", as: String.self), correlationID: try row.decode("correlation_id", as: String?.self),
                        type: try row.decode("message_type", as: String.self), timestamp: UInt64(max(0, created.timeIntervalSince1970)),
                        headers: [schemaVersionHeader: .int(Int64(try row.decode("schema_version", as: Int.self)))])))
        }
        try await publisher.publish(contentsOf: messages)
        let idList = "{" + ids.map(String.init).joined(separator: ",") + "}"
        try await database.execute("UPDATE \(identifier: schema + ".outbox") SET published_at = now() WHERE id = ANY(\(idList)::bigint[])")
        relayed.increment(by: ids.count)
        logger.debug("relayed outbox events", metadata: ["schema": "\(schema)", "count": "\(ids.count)"])
        return ids.count
    }
}

/// A wake-up for the relay's wait between polls: `fire` ends the current (or the next) wait early.
final class RelaySignal: Sendable {
    private let state = Mutex<(pending: Bool, waiter: CheckedContinuation<Void, Never>?, generation: UInt64)>((false, nil, 0))

    func fire() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard let waiter = state.waiter else {
                state.pending = true
                return nil
            }
            state.waiter = nil
            return waiter
        }
        waiter?.resume()
    }

    func wait(upTo timeout: Duration) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let generation = state.withLock { state -> UInt64? in
                if state.pending {
                    state.pending = false
                    return nil
                }
                state.generation &+= 1
                state.waiter = continuation
                return state.generation
            }
            guard let generation else {
                continuation.resume()
                return
            }
            Task { [self] in
                try? await Task.sleep(for: timeout)
                let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
                    guard state.generation == generation, let waiter = state.waiter else { return nil }
                    state.waiter = nil
                    return waiter
                }
                waiter?.resume()
            }
        }
    }
}
