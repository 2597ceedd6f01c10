import Contracts
import Foundation
import Hummingbird
import KrakenFake
import Logging
import Messaging
import ServiceKit
import Storage
import TestSupport

@testable import Ingestor

/// A fresh database, the ingest schema, a fake Kraken on loopback and a queue that counts `candle.closed` events.
struct IngestorHarness {
    let database: TestDatabase
    let client: PostgresClient
    let kraken: FakeKraken
    let server: Task<Void, Error>
    let port: Int
    let broker: BrokerConfiguration
    let publisher: Publisher
    let eventsQueue: String
    let events: Consumer
    let collector: DeliveryCollector
    let logger = TestEnvironment.logger

    static let dataDirectory = TestEnvironment.sharedDataDirectory
    static let history = dataDirectory + "/kraken_XBTUSD_1440.csv"
    static let history2024 = dataDirectory + "/kraken_XBTUSD_1440_2024.csv"
    private static let nextPort = SharedList<Int>()

    init(kraken: FakeKraken) async throws {
        database = try await TestDatabase.create()
        client = database.client()
        try await client.migrate(IngestSchema.migrations, logger: TestEnvironment.logger)
        self.kraken = kraken
        Self.nextPort.append(0)
        port = 18_200 + Self.nextPort.values.count
        let application = kraken.application(port: port)
        server = Task { try await application.run() }
        broker = try TestEnvironment.broker(heartbeatSeconds: 5)
        eventsQueue = TestEnvironment.uniqueName("test.ingestor-events")
        let topology = ServiceName.ingestor.topology.merged(
            with: Topology(
                queues: [Topology.Queue(name: eventsQueue)],
                bindings: [
                    Topology.Binding(queue: eventsQueue, exchange: Exchange.events, routingKey: "candle.closed.xbtusd.*"),
                    Topology.Binding(queue: eventsQueue, exchange: Exchange.events, routingKey: "candle.backfilled.xbtusd.*"),
                ]))
        publisher = try Publisher(configuration: broker, options: Publisher.Options(topology: topology), logger: TestEnvironment.logger)
        events = try Consumer(
            configuration: broker, options: Consumer.Options(queue: eventsQueue, prefetch: 500, topology: topology),
            logger: TestEnvironment.logger)
        collector = DeliveryCollector(events)
        let listening = port
        let consumer = events
        try await eventually("the fake Kraken to listen") {
            await httpGet("http://127.0.0.1:\(listening)/0/public/OHLC?pair=XBTUSD&interval=1440") != nil
        }
        try await eventually("the events consumer") { consumer.isConnected }
    }

    func poller(timeout: Duration = .seconds(2), pollPeriod: Duration? = nil, interval: CandleInterval = .oneDay) -> LivePoller {
        LivePoller(
            pair: "XBTUSD", interval: interval,
            client: KrakenClient(baseURL: URL(string: "http://127.0.0.1:\(port)")!, timeout: timeout),
            database: client, logger: logger, pollPeriod: pollPeriod, closeDelay: .zero, now: { Date() })
    }

    var relay: OutboxRelay {
        OutboxRelay(schema: IngestSchema.name, database: client, publisher: publisher, logger: logger, pollInterval: .milliseconds(20))
    }

    /// Publishes everything in the outbox.
    func drainOutbox() async throws {
        while try await relay.relayOnce() > 0 {}
    }

    func count(_ sql: PostgresQuery) async throws -> Int {
        try await client.query(sql)[0].decode(0, as: Int.self)
    }

    /// The `candle.closed` events received so far, decoded.
    var candleEvents: [CandleClosed] {
        collector.deliveries.compactMap { try? EnvelopeCodec.decode(CandleClosed.self, from: $0).payload }
    }

    /// The `candle.backfilled` events received so far, decoded (a series' first poll is announced as one).
    var backfilledEvents: [CandlesBackfilled] {
        collector.deliveries.compactMap { try? EnvelopeCodec.decode(CandlesBackfilled.self, from: $0).payload }
    }

    /// How many candles the events announce, and every way they break the rule that each candle is announced
    /// exactly once: the first poll's batch in one `candle.backfilled` event, each later one in its own
    /// `candle.closed` (revision 0) event, never both.
    struct Announced: Equatable, CustomStringConvertible {
        var candles = 0
        var problems: [String] = []
        var description: String { "\(candles) candles\(problems.isEmpty ? "" : ", " + problems.joined(separator: ", "))" }
    }

    func announced() -> Announced {
        let batches = backfilledEvents
        let closed = candleEvents.filter { $0.revision == 0 }
        let batchEnd = batches.map(\.lastOpenTime).max() ?? .min
        var result = Announced(candles: batches.map(\.inserted).reduce(0, +) + closed.count)
        if batches.count > 1 { result.problems.append("\(batches.count) first batches") }
        if !closed.allSatisfy({ $0.openTime > batchEnd }) { result.problems.append("a candle both in the first batch and closed") }
        if Set(closed.map(\.openTime)).count != closed.count { result.problems.append("a candle.closed twice") }
        return result
    }

    func tearDown() async {
        await events.stop()
        await publisher.close()
        try? await BrokerAdmin.delete(queue: eventsQueue, configuration: broker)
        server.cancel()
        await client.close()
        await database.drop()
    }
}
