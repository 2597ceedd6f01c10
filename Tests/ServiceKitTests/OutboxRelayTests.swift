import Foundation
import Messaging
import ServiceKit
import Storage
import TestSupport
import Testing

/// A payload of the test's own, so that the outbox is exercised without any service's schema.
private struct RelayProbe: MessagePayload {
    static let messageType = "test.outbox.probe"
    static let schemaVersion = 1
    var sequence: Int
}

/// Two relays on one outbox (the running ingestor's and the backfill command's, in production), against the
/// real PostgreSQL and RabbitMQ: rows are claimed with `FOR UPDATE SKIP LOCKED`, so each is published once.
@Suite("Outbox relay", .serialized)
struct OutboxRelayTests {
    static let schema = "relaytest"
    static let exchange = "test.outbox"

    @Test("two relays on one outbox publish each of 2,000 events exactly once; the backlog gauge reaches 0; pruning keeps the retention")
    func twoRelaysPublishEachEventOnce() async throws {
        let events = 2_000
        let database = try await TestDatabase.create()
        let client = database.client(connections: 4)
        let virtualHost = try await TestVirtualHost.create()
        defer {
            Task {
                await virtualHost.delete()
                await database.drop()
            }
        }
        try await client.migrate(
            SchemaMigrations(schema: Self.schema, migrations: [Outbox.migration(version: 1)]), logger: TestEnvironment.logger)

        let broker = try virtualHost.broker()
        let queue = TestEnvironment.uniqueName("test.outbox-deliveries")
        let topology = Topology(
            exchanges: [Topology.Exchange(name: Self.exchange, kind: .topic)], queues: [Topology.Queue(name: queue)],
            bindings: [Topology.Binding(queue: queue, exchange: Self.exchange, routingKey: "probe.#")])
        let logger = TestEnvironment.logger
        let consumer = try Consumer(
            configuration: broker, options: Consumer.Options(queue: queue, prefetch: 1000, topology: topology), logger: logger)
        let collector = DeliveryCollector(consumer)
        try await eventually("the consumer") { consumer.isConnected }
        // One publisher and one connection pool per relay, as two processes would have.
        let publishers = try (0..<2).map { _ in
            try Publisher(configuration: broker, options: Publisher.Options(topology: topology), logger: logger)
        }
        let pools = [client, database.client(connections: 2)]
        let options = OutboxOptions(
            batchSize: 50, pollInterval: .milliseconds(10), retention: .seconds(3600), pruneInterval: .seconds(3600))
        let relays = (0..<2).map {
            OutboxRelay(schema: Self.schema, database: pools[$0], publisher: publishers[$0], logger: logger, options: options)
        }
        let running = relays.map { relay in Task { try await relay.run() } }

        let started = ContinuousClock.now
        // Written while both relays run, 20 events a transaction, from two writers at once.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for writer in 0..<2 {
                group.addTask {
                    for chunk in stride(from: writer * events / 2, to: (writer + 1) * events / 2, by: 20) {
                        try await client.transaction { connection in
                            for sequence in chunk..<chunk + 20 {
                                try Outbox.enqueue(
                                    Envelope(payload: RelayProbe(sequence: sequence)), routingKey: "probe.\(sequence % 7)",
                                    exchange: Self.exchange,
                                    schema: Self.schema, on: connection)
                            }
                        }
                        relays[chunk / 20 % 2].wake()
                    }
                }
            }
            try await group.waitForAll()
        }
        try await collector.waitFor(events, timeout: .seconds(60))
        let elapsed = ContinuousClock.now - started
        try await eventually(timeout: .seconds(10), "both relays to measure a backlog of 0") {
            relays.allSatisfy { $0.measuredBacklog == 0 }
        }
        // Anything late (a duplicate) would arrive within moments of the last delivery.
        try await Task.sleep(for: .milliseconds(500))
        let ids = collector.deliveries.compactMap(\.properties.messageID)
        let counts = Dictionary(ids.map { ($0, 1) }, uniquingKeysWith: +)
        let duplicates = counts.values.filter { $0 > 1 }.count
        let sequences = Set(
            collector.bodies.compactMap { body -> Int? in
                guard let data = body.data(using: .utf8), let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
                else { return nil }
                let payload = object["payload"] as? [String: Any] ?? object
                return (payload["sequence"] as? NSNumber)?.intValue
            })
        print("outbox relay: \(events) events, \(ids.count) deliveries, \(counts.count) distinct ids, \(duplicates) duplicated, \(elapsed)")
        #expect(ids.count == events)
        #expect(counts.count == events)
        #expect(duplicates == 0)
        #expect(sequences.count == events)
        #expect(try await relays[0].backlogCount() == 0)
        let unpublished = try await client.query("SELECT count(*) FROM relaytest.outbox WHERE published_at IS NULL")[0].decode(
            0, as: Int.self)
        #expect(unpublished == 0)

        // Pruning: rows published 2 hours ago go (retention 1 hour), recent and unpublished ones stay.
        let aged = try await client.execute(
            """
            UPDATE relaytest.outbox SET published_at = now() - interval '2 hours'
            WHERE id IN (SELECT id FROM relaytest.outbox ORDER BY id LIMIT 1500)
            """
        )
        #expect(aged == 1500)
        for task in running { task.cancel() }
        for task in running { _ = try? await task.value }
        try await client.transaction { connection in
            try Outbox.enqueue(
                Envelope(payload: RelayProbe(sequence: -1)), routingKey: "probe.late", exchange: Self.exchange, schema: Self.schema,
                on: connection)
        }
        let pruner = OutboxRelay(
            schema: Self.schema, database: client, publisher: publishers[0], logger: logger,
            options: OutboxOptions(retention: .seconds(3600), pruneBatchSize: 400))
        #expect(try await pruner.prune() == 1500)
        #expect(try await pruner.prune() == 0)
        #expect(try await client.query("SELECT count(*) FROM relaytest.outbox")[0].decode(0, as: Int.self) == events - 1500 + 1)
        #expect(try await pruner.backlogCount() == 1)

        for publisher in publishers { await publisher.close() }
        await consumer.stop()
        for pool in pools { await pool.close() }
    }

    @Test("outbox settings: defaults, overrides, and out-of-range values named")
    func settings() throws {
        let defaults = try OutboxOptions(EnvironmentReader([:]))
        #expect(defaults.retention == .seconds(7 * 86_400))
        #expect(defaults.pruneInterval == .seconds(300))
        let custom = try OutboxOptions(
            EnvironmentReader(["CANDLECAST_OUTBOX_RETENTION_HOURS": "1", "CANDLECAST_OUTBOX_PRUNE_SECONDS": "30"]))
        #expect(custom.retention == .seconds(3600))
        #expect(custom.pruneInterval == .seconds(30))
        #expect(throws: ConfigurationError.self) { try OutboxOptions(EnvironmentReader(["CANDLECAST_OUTBOX_RETENTION_HOURS": "-1"])) }
        #expect(throws: ConfigurationError.self) { try OutboxOptions(EnvironmentReader(["CANDLECAST_OUTBOX_PRUNE_SECONDS": "0"])) }
    }
}
