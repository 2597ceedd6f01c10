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

    /// Compresses new outbox bodies with lz4 instead of PostgreSQL's default pglz: a feature window's body is about
    /// 20 KB of JSON, and pglz took a fifth of both cores while the preprocessor drained a backlog (BENCHMARKS.md).
    public static func lz4Migration(version: Int) -> Migration {
        Migration(
            version: version, name: "outbox bodies compressed with lz4", sql: "ALTER TABLE outbox ALTER COLUMN body SET COMPRESSION lz4;")
    }

    /// One event encoded for the outbox.
    public struct Entry: Sendable {
        let messageID: UUID
        let exchange: String
        let routingKey: String
        let messageType: String
        let schemaVersion: Int
        let correlationID: String?
        let body: String
        let createdAt: Date

        public init<Payload: MessagePayload>(_ envelope: Envelope<Payload>, routingKey: String, exchange: String) throws {
            let message = try EnvelopeCodec.encode(envelope, exchange: exchange, routingKey: routingKey)
            messageID = envelope.messageID
            self.exchange = exchange
            self.routingKey = routingKey
            messageType = Payload.messageType
            schemaVersion = Payload.schemaVersion
            correlationID = envelope.correlationID
            body = String(decoding: message.body, as: UTF8.self)
            createdAt = envelope.timestamp
        }
    }

    /// Writes the event into `schema.outbox` on `connection`, inside the caller's transaction.
    public static func enqueue<Payload: MessagePayload>(
        _ envelope: Envelope<Payload>, routingKey: String, exchange: String, schema: String, on connection: PostgresConnection
    ) throws {
        try enqueue([Entry(envelope, routingKey: routingKey, exchange: exchange)], schema: schema, on: connection)
    }

    /// Writes the events into `schema.outbox` in one statement (one round trip for a batch), in their order.
    public static func enqueue(_ entries: [Entry], schema: String, on connection: PostgresConnection) throws {
        guard !entries.isEmpty else { return }
        // WITH ORDINALITY keeps the batch's order in the ids the relay publishes by.
        try connection.query(
            """
            INSERT INTO \(identifier: schema + ".outbox")
                (message_id, exchange, routing_key, message_type, schema_version, correlation_id, body, created_at)
            SELECT message_id, exchange, routing_key, message_type, schema_version, correlation_id, body, created_at
            FROM unnest(\(PostgresArray(entries.map(\.messageID)))::uuid[], \(PostgresArray(entries.map(\.exchange)))::text[],
                \(PostgresArray(entries.map(\.routingKey)))::text[], \(PostgresArray(entries.map(\.messageType)))::text[],
                \(PostgresArray(entries.map(\.schemaVersion)))::integer[], \(PostgresArray(entries.map(\.correlationID)))::text[],
                \(PostgresArray(entries.map(\.body)))::text[], \(PostgresArray(entries.map(\.createdAt)))::timestamptz[])
                WITH ORDINALITY AS entry (message_id, exchange, routing_key, message_type, schema_version, correlation_id, body,
                    created_at, position)
            ORDER BY position
            ON CONFLICT (message_id) DO NOTHING
            """)
    }
}

/// How an outbox relay polls, and how long published rows are kept before the relay prunes them.
///
/// | variable | default | meaning |
/// |---|---|---|
/// | `CANDLECAST_OUTBOX_RETENTION_HOURS` | `168` | published rows older than this are deleted (0-87600) |
/// | `CANDLECAST_OUTBOX_PRUNE_SECONDS` | `300` | how often the relay prunes (1-86400) |
public struct OutboxOptions: Sendable {
    /// Rows claimed and published per batch.
    public var batchSize: Int
    public var pollInterval: Duration
    /// Published rows older than this are deleted by `OutboxRelay.prune`.
    public var retention: Duration
    /// How often `run` prunes.
    public var pruneInterval: Duration
    /// Rows deleted per pruning statement (each its own short transaction).
    public var pruneBatchSize: Int

    public init(
        batchSize: Int = 500, pollInterval: Duration = .milliseconds(200), retention: Duration = .seconds(7 * 86_400),
        pruneInterval: Duration = .seconds(300), pruneBatchSize: Int = 5_000
    ) {
        self.batchSize = max(1, batchSize)
        self.pollInterval = pollInterval
        self.retention = retention
        self.pruneInterval = pruneInterval
        self.pruneBatchSize = max(1, pruneBatchSize)
    }

    /// The options from `CANDLECAST_OUTBOX_RETENTION_HOURS` and `CANDLECAST_OUTBOX_PRUNE_SECONDS`.
    public init(_ environment: EnvironmentReader) throws(ConfigurationError) {
        self.init(
            retention: .seconds(try environment.int("CANDLECAST_OUTBOX_RETENTION_HOURS", default: 168, in: 0...87_600) * 3600),
            pruneInterval: .seconds(try environment.int("CANDLECAST_OUTBOX_PRUNE_SECONDS", default: 300, in: 1...86_400)))
    }
}

/// Publishes a schema's unsent outbox rows, with confirms, and marks them sent.
///
/// Several relays may share one outbox (the running ingestor's and the backfill command's): each batch is
/// claimed with `SELECT ... FOR UPDATE SKIP LOCKED` in a transaction that stays open while the batch is
/// published and commits with the rows marked sent, so two relays never publish the same row while both are
/// healthy. A relay that dies mid-batch loses its session, the locks go, and another relay sends the batch
/// (again, if the broker had it already: consumers deduplicate by message id). Each relay publishes its own
/// batches in id order; batches of two relays interleave.
public struct OutboxRelay: Service {
    let schema: String
    let database: PostgresClient
    let publisher: Publisher
    let logger: Logger
    let options: OutboxOptions
    var batchSize: Int { options.batchSize }
    private let relayed: Counter
    private let pruned: Counter
    private let backlog: Gauge
    private let lastBacklog = BacklogCell()
    private let signal = RelaySignal()

    public init(
        schema: String, database: PostgresClient, publisher: Publisher, logger: Logger, batchSize: Int = 500,
        pollInterval: Duration = .milliseconds(200)
    ) {
        self.init(
            schema: schema, database: database, publisher: publisher, logger: logger,
            options: OutboxOptions(batchSize: batchSize, pollInterval: pollInterval))
    }

    public init(schema: String, database: PostgresClient, publisher: Publisher, logger: Logger, options: OutboxOptions) {
        self.schema = schema
        self.database = database
        self.publisher = publisher
        self.logger = logger
        self.options = options
        self.relayed = Counter(label: "candlecast_outbox_published_total", dimensions: [("schema", schema)])
        self.pruned = Counter(label: "candlecast_outbox_pruned_total", dimensions: [("schema", schema)])
        self.backlog = Gauge(label: "candlecast_outbox_backlog", dimensions: [("schema", schema)])
    }

    public func run() async throws {
        var failureDelay = Duration.milliseconds(200)
        var nextPrune = ContinuousClock.now
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            do {
                if ContinuousClock.now >= nextPrune {
                    nextPrune = ContinuousClock.now + options.pruneInterval
                    try await prune()
                }
                // While the broker is away a claimed batch would hold its transaction (and a pooled connection)
                // until the confirm timeout: wait for the publisher to reconnect instead.
                guard publisher.isConnected else {
                    try await refreshBacklog()
                    await signal.wait(upTo: options.pollInterval)
                    continue
                }
                let sent = try await relayOnce()
                failureDelay = .milliseconds(200)
                if sent < batchSize { await signal.wait(upTo: options.pollInterval) }
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

    /// The backlog this relay last measured (the gauge's value): unpublished rows, nil before the first batch.
    public var measuredBacklog: Int? { lastBacklog.value.withLock { $0 } }

    /// Claims one batch (rows other relays hold are skipped), publishes it and marks it sent in the claiming
    /// transaction, then measures the backlog; returns how many rows were sent. 0 means nothing was left
    /// that another relay is not already sending.
    @discardableResult
    public func relayOnce() async throws -> Int {
        let table = schema + ".outbox"
        let limit = batchSize
        let publisher = self.publisher
        let outcome = try await database.withConnection { connection -> (sent: Int, backlog: Int) in
            try connection.transaction { connection in
                let rows = try connection.query(
                    """
                    SELECT id, message_id, exchange, routing_key, message_type, schema_version, correlation_id, body, created_at
                    FROM \(identifier: table) WHERE published_at IS NULL ORDER BY id LIMIT \(limit) FOR UPDATE SKIP LOCKED
                    """)
                guard !rows.isEmpty else { return (0, try Self.countBacklog(table, on: connection)) }
                var ids: [Int64] = []
                var messages: [OutgoingMessage] = []
                for row in rows {
                    ids.append(try row.decode("id", as: Int64.self))
                    messages.append(try Self.message(from: row))
                }
                // This runs on the connection's own thread (never the cooperative pool): it waits there, locks
                // held, for the confirms, so that the rows are marked sent in the transaction that claimed them.
                let batch = messages
                try BlockingWait.run { try await publisher.publish(contentsOf: batch) }
                let idList = "{" + ids.map(String.init).joined(separator: ",") + "}"
                try connection.query("UPDATE \(identifier: table) SET published_at = now() WHERE id = ANY(\(idList)::bigint[])")
                return (ids.count, try Self.countBacklog(table, on: connection))
            }
        }
        record(backlog: outcome.backlog)
        guard outcome.sent > 0 else { return 0 }
        relayed.increment(by: outcome.sent)
        logger.debug(
            "relayed outbox events", metadata: ["schema": "\(schema)", "count": "\(outcome.sent)", "backlog": "\(outcome.backlog)"])
        return outcome.sent
    }

    /// Deletes rows published more than `options.retention` ago, `pruneBatchSize` rows per statement (rows
    /// another relay has locked are skipped); returns how many were deleted.
    @discardableResult
    public func prune() async throws -> Int {
        let table = schema + ".outbox"
        let limit = options.pruneBatchSize
        let retentionSeconds = Int(options.retention.components.seconds)
        var total = 0
        while !Task.isCancelled {
            let deleted = try await database.execute(
                """
                DELETE FROM \(identifier: table) WHERE id IN (
                    SELECT id FROM \(identifier: table)
                    WHERE published_at < now() - \(retentionSeconds)::double precision * interval '1 second'
                    ORDER BY id LIMIT \(limit) FOR UPDATE SKIP LOCKED)
                """)
            total += deleted
            if deleted < limit { break }
            await Task.yield()
        }
        if total > 0 {
            pruned.increment(by: total)
            logger.info(
                "pruned published outbox rows",
                metadata: ["schema": "\(schema)", "count": "\(total)", "retention_seconds": "\(retentionSeconds)"])
        }
        return total
    }

    /// Counts the unpublished rows now (an index-only scan of the partial index `outbox_unpublished`).
    public func backlogCount() async throws -> Int {
        let table = schema + ".outbox"
        return try await database.withConnection { try Self.countBacklog(table, on: $0) }
    }

    private func refreshBacklog() async throws { record(backlog: try await backlogCount()) }

    private func record(backlog count: Int) {
        lastBacklog.value.withLock { $0 = count }
        backlog.record(count)
    }

    private static func countBacklog(_ table: String, on connection: PostgresConnection) throws -> Int {
        try connection.query("SELECT count(*) FROM \(identifier: table) WHERE published_at IS NULL")[0].decode(0, as: Int.self)
    }

    private static func message(from row: PostgresRow) throws -> OutgoingMessage {
        let created = try row.decode("created_at", as: Date.self)
        return OutgoingMessage(
            exchange: try row.decode("exchange", as: String.self), routingKey: try row.decode("routing_key", as: String.self),
            body: Array(try row.decode("body", as: String.self).utf8),
            properties: MessageProperties(
                contentType: EnvelopeCodec.contentType, deliveryMode: MessageProperties.persistentDeliveryMode,
                messageID: try row.decode("message_id", as: String.self), correlationID: try row.decode("correlation_id", as: String?.self),
                type: try row.decode("message_type", as: String.self), timestamp: UInt64(max(0, created.timeIntervalSince1970)),
                headers: [schemaVersionHeader: .int(Int64(try row.decode("schema_version", as: Int.self)))]))
    }
}

private final class BacklogCell: Sendable {
    let value = Mutex<Int?>(nil)
}

/// Runs async work from a thread that may block (a database connection's own thread, never the cooperative
/// pool) and waits for its result there.
enum BlockingWait {
    static func run(_ work: @escaping @Sendable () async throws -> Void) throws {
        let done = DispatchSemaphore(value: 0)
        let result = ResultBox()
        Task {
            let outcome: Result<Void, any Error>
            do {
                try await work()
                outcome = .success(())
            } catch {
                outcome = .failure(error)
            }
            result.value.withLock { $0 = outcome }
            done.signal()
        }
        done.wait()
        try result.value.withLock { $0 }?.get()
    }

    private final class ResultBox: Sendable {
        let value = Mutex<Result<Void, any Error>?>(nil)
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
