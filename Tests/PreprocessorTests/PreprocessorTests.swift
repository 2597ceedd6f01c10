import Contracts
import Forecasting
import Foundation
import KrakenFake
import Messaging
import ServiceKit
import Storage
import TestSupport
import Testing

@testable import Ingestor
@testable import Preprocessor

let dataDirectory = TestEnvironment.sharedDataDirectory

/// The shared XBTUSD files as the preprocessor reads them.
func sharedRows() throws -> [SeriesRow] {
    try BTCDailyV1.fileNames.flatMap { name in
        try FakeKraken.Row.load(csv: dataDirectory + "/" + name).map { SeriesRow(openTime: $0.time, closeText: $0.close, revision: 0) }
    }
}

@Suite("Datasets and windows")
struct DatasetTests {
    @Test("a dataset of the shared 2013-2024 files matches protocol BTC-daily-v1 exactly")
    func matchesProtocol() throws {
        let rows = try sharedRows()
        let snapshot = try DatasetSnapshot(rows: rows, policy: DatasetPolicy())
        let closes = rows.map(\.close)
        print(
            """
            BTC-daily-v1 dataset: rows \(rows.count), training_end \(snapshot.split.trainingEnd), validation \
            \(snapshot.split.validationTargets), test \(snapshot.split.testTargets), scaler min \(snapshot.scaler.minimum) max \
            \(snapshot.scaler.maximum), hash \(snapshot.contentHash)
            """
        )
        #expect(rows.count == 4093)
        #expect(snapshot.split.trainingEnd == 2865)  // Int(4093 * 0.7)
        #expect(snapshot.split.testTargets == 2865..<4093)
        #expect(snapshot.scaler.minimum == closes[0..<2865].min())
        #expect(snapshot.scaler.maximum == closes[0..<2865].max())
        // The test period's prices (up to ~106k USD in 2024) lie outside: the scaler never saw them.
        #expect(snapshot.scaler.maximum < closes[2865...].max()!)
    }

    @Test("no leakage: changing validation-free test rows never changes the scaler; changing training rows does")
    func scalerSeesOnlyTrainingRows() throws {
        let rows = try sharedRows()
        let original = try DatasetSnapshot(rows: rows, policy: DatasetPolicy())
        var future = rows
        for index in 2865..<future.count { future[index].closeText = "999999.9" }
        let withDifferentFuture = try DatasetSnapshot(rows: future, policy: DatasetPolicy())
        #expect(withDifferentFuture.scaler == original.scaler)
        #expect(withDifferentFuture.contentHash != original.contentHash)
        var past = rows
        past[100].closeText = "999999.9"
        #expect(try DatasetSnapshot(rows: past, policy: DatasetPolicy()).scaler != original.scaler)
        #expect(try DatasetSnapshot(rows: rows, policy: DatasetPolicy()).contentHash == original.contentHash)
    }

    @Test("a window ends at its candle, never after, and bridges gaps visibly")
    func windows() throws {
        let rows = try sharedRows()
        let scaler = try MinMaxScaler(minimum: 100, maximum: 200)
        let window = try #require(
            WindowBuilder.window(
                rows: Array(rows[100..<114]), pair: "XBTUSD", interval: .oneDay, windowLength: 14, datasetVersion: 3, scaler: scaler))
        #expect(window.windowEndOpenTime == rows[113].openTime)
        #expect(window.targetOpenTime == rows[113].openTime + 86_400)
        #expect(window.closes == rows[100..<114].map(\.close))
        #expect(window.scaledCloses == rows[100..<114].map { ($0.close - 100) / 100 })
        #expect(window.datasetVersion == 3)
        // The first rows of 2013 hold missing days: the window spans more days than it has closes.
        let early = try #require(
            WindowBuilder.window(
                rows: Array(rows[0..<14]), pair: "XBTUSD", interval: .oneDay, windowLength: 14, datasetVersion: 1, scaler: scaler))
        #expect(early.gapIntervals == Int((rows[13].openTime - rows[0].openTime) / 86_400) + 1 - 14)
        #expect(
            WindowBuilder.window(
                rows: Array(rows[0..<13]), pair: "XBTUSD", interval: .oneDay, windowLength: 14, datasetVersion: 1, scaler: scaler) == nil)
    }
}

/// A fresh database with the ingest and features schemas, history up to 2023 backfilled.
struct PipelineDatabase {
    let database: TestDatabase
    let client: PostgresClient

    static func make(backfill: Bool = true) async throws -> PipelineDatabase {
        let database = try await TestDatabase.create()
        let client = database.client()
        try await client.migrate(IngestSchema.migrations, logger: TestEnvironment.logger)
        try await client.migrate(FeaturesSchema.migrations, logger: TestEnvironment.logger)
        if backfill {
            _ = try await HistoryBackfill(database: client, logger: TestEnvironment.logger).run(
                path: dataDirectory + "/kraken_XBTUSD_1440.csv", pair: "XBTUSD", interval: .oneDay)
        }
        return PipelineDatabase(database: database, client: client)
    }

    func count(_ sql: PostgresQuery) async throws -> Int { try await client.query(sql)[0].decode(0, as: Int.self) }

    /// Stores one 2024 candle as the ingestor's live path does and returns its event.
    func storeLive(_ row: FakeKraken.Row) async throws -> CandleClosed {
        let candle = Candle(
            pair: "XBTUSD", interval: .oneDay, openTime: row.time, open: row.open, high: row.high, low: row.low, close: row.close,
            vwap: nil, volume: row.volume, trades: row.trades)
        _ = try await client.transaction { try CandleStore.storeClosed([candle], source: "rest", on: $0) }
        return candle.event(revision: 0)
    }

    func tearDown() async {
        await client.close()
        await database.drop()
    }
}

@Suite("Preprocessor against PostgreSQL and RabbitMQ", .serialized)
struct PreprocessorIntegrationTests {
    @Test("2024 replayed one candle at a time: one window per candle with the right raw closes, a version every 30 candles")
    func replay2024() async throws {
        let pipeline = try await PipelineDatabase.make()
        let preprocessing = Preprocessing(policy: DatasetPolicy())
        let backfilled = try await pipeline.client.transaction { connection in
            try preprocessing.process(
                CandlesBackfilled(
                    pair: "XBTUSD", interval: .oneDay, firstOpenTime: 0, lastOpenTime: 0, inserted: 3727, updated: 0, rejected: 0,
                    source: "test"),
                on: connection)
        }
        #expect(backfilled.createdVersion == 1)
        let history = try sharedRows()
        let rows2024 = try FakeKraken.Row.load(csv: dataDirectory + "/kraken_XBTUSD_1440_2024.csv")
        var windows: [FeatureWindow] = []
        var versions: [Int] = []
        for row in rows2024 {
            let event = try await pipeline.storeLive(row)
            let outcome = try await pipeline.client.transaction { try preprocessing.process(event, on: $0) }
            if let window = outcome.window { windows.append(window) }
            if let version = outcome.createdVersion { versions.append(version) }
            // Delivered twice: nothing more happens.
            #expect(try await pipeline.client.transaction { try preprocessing.process(event, on: $0) }.duplicate)
        }
        #expect(windows.count == 366)
        for (index, window) in windows.enumerated() {
            let end = 3727 + index
            #expect(window.windowEndOpenTime == history[end].openTime)
            // The most recent closes, enough for a model of any window a spec allows (not only CANDLECAST_FEATURE_WINDOW's 14).
            #expect(window.closes == history[(end - DatasetPolicy.windowCloses + 1)...end].map(\.close))
            #expect(window.gapIntervals == 0)
        }
        #expect(versions == Array(2...13))  // 366 new candles: a version after every 30
        #expect(windows.last?.datasetVersion == 13)
        // Older versions stay readable and unchanged.
        let first = try await pipeline.client.query(
            "SELECT row_count, training_end, array_length(closes, 1) FROM features.dataset_versions_v1 WHERE version = 1")[0]
        #expect(try first.decode(0, as: Int.self) == 3727)
        #expect(try first.decode(1, as: Int.self) == Int(3727 * 0.7))
        #expect(try first.decode(2, as: Int.self) == 3727)
        #expect(try await pipeline.count("SELECT count(*) FROM features.outbox WHERE message_type = 'features.window'") == 366 + 1)
        #expect(try await pipeline.count("SELECT count(*) FROM features.outbox WHERE message_type = 'dataset.ready'") == 13)

        // On request, a version of every stored candle: protocol BTC-daily-v1's 4093 rows.
        let full = try await pipeline.client.transaction { connection in
            try FeatureStore.createVersion(pair: "XBTUSD", interval: .oneDay, policy: DatasetPolicy(), reason: "test", on: connection)
        }
        let latest = try await pipeline.client.query(
            """
            SELECT row_count, training_end, scaler_minimum, scaler_maximum
            FROM features.dataset_versions WHERE version = \(full?.0.version ?? -1)
            """
        )[0]
        #expect(try latest.decode(0, as: Int.self) == 4093)
        #expect(try latest.decode(1, as: Int.self) == 2865)
        #expect(full?.created == true)
        await pipeline.tearDown()
    }

    @Test("out-of-order delivery still gives each candle the window that ends at it")
    func outOfOrder() async throws {
        let pipeline = try await PipelineDatabase.make()
        let preprocessing = Preprocessing(policy: DatasetPolicy())
        let rows2024 = Array(try FakeKraken.Row.load(csv: dataDirectory + "/kraken_XBTUSD_1440_2024.csv").prefix(3))
        var stored: [CandleClosed] = []
        for row in rows2024 { stored.append(try await pipeline.storeLive(row)) }
        let events = stored
        let late = try await pipeline.client.transaction { try preprocessing.process(events[2], on: $0) }
        let early = try await pipeline.client.transaction { try preprocessing.process(events[0], on: $0) }
        #expect(late.window?.windowEndOpenTime == rows2024[2].time)
        #expect(late.window?.closes.suffix(3) == rows2024.map { Double($0.close)! }[...])
        #expect(early.window?.windowEndOpenTime == rows2024[0].time)
        #expect(early.window?.closes.last == Double(rows2024[0].close))
        await pipeline.tearDown()
    }

    @Test(
        """
        a batch processed set-based has the outcomes and outbox of its events processed one at a time: duplicates in and \
        before the batch, a revised candle, out of order
        """
    )
    func batchEqualsOneAtATime() async throws {
        let single = try await PipelineDatabase.make()
        let batched = try await PipelineDatabase.make()
        let preprocessing = Preprocessing(policy: DatasetPolicy())
        let rows2024 = Array(try FakeKraken.Row.load(csv: dataDirectory + "/kraken_XBTUSD_1440_2024.csv").prefix(40))
        var events: [CandleClosed] = []
        for (index, row) in rows2024.enumerated() {
            events.append(try await single.storeLive(row))
            _ = try await batched.storeLive(row)
            // Seen before the batch: a duplicate in both. It cuts version 1; the 30 candles after it make version 2 due.
            if index == 9 {
                let seenBefore = events[5]
                for pipeline in [single, batched] {
                    _ = try await pipeline.client.transaction { try preprocessing.process(seenBefore, on: $0) }
                }
            }
        }
        var revised = rows2024[20]
        revised.close = revised.close == revised.high ? revised.low : revised.high
        var revisedEvent = try await single.storeLive(revised)
        _ = try await batched.storeLive(revised)
        revisedEvent.revision = 1
        #expect(try await single.count("SELECT max(revision) FROM ingest.candles") == 1)
        let batch = [events[3], events[0], events[5]] + events[6...] + [events[1], events[0], revisedEvent, events[2], events[4]]

        var oneAtATime: [CandleOutcome] = []
        for event in batch { oneAtATime.append(try await single.client.transaction { try preprocessing.process(event, on: $0) }) }
        let together = try await batched.client.transaction { try preprocessing.process(batch, on: $0) }

        #expect(together == oneAtATime)
        #expect(together.filter(\.duplicate).count == 2)
        #expect(together.compactMap(\.createdVersion) == [2])
        #expect(together.compactMap(\.window).count == batch.count - 2)
        let outbox: PostgresQuery = """
            SELECT message_type, routing_key, (body::jsonb -> 'payload' ->> 'windowEndOpenTime'),
                (body::jsonb -> 'payload' ->> 'revision') FROM features.outbox ORDER BY id
            """
        func entries(_ pipeline: PipelineDatabase) async throws -> [[String?]] {
            try await pipeline.client.query(outbox).map { row in try (0..<4).map { try row.decode($0, as: String?.self) } }
        }
        #expect(try await entries(batched) == entries(single))
        for pipeline in [single, batched] { await pipeline.tearDown() }
    }

    @Test("the rows under many windows read in one query are those read window by window, also when spread too far for one")
    func windowRowsInOneQuery() async throws {
        let pipeline = try await PipelineDatabase.make()
        let history = try sharedRows().prefix(3727)
        let ends = [
            history[3726].openTime, history[100].openTime, history[5].openTime, history[0].openTime - 86_400,
            history[2000].openTime + 3_600, history[3000].openTime,
        ]
        for spanLimit in [8_192, 50] {
            let together = try await pipeline.client.transaction { connection in
                try FeatureStore.windowRows(
                    pair: "XBTUSD", interval: .oneDay, endingAt: ends, last: DatasetPolicy.windowCloses, withVolume: true,
                    spanLimit: spanLimit, on: connection)
            }
            let separately = try await pipeline.client.transaction { connection in
                try ends.map {
                    try FeatureStore.rows(
                        pair: "XBTUSD", interval: .oneDay, upTo: $0, last: DatasetPolicy.windowCloses, withVolume: true, on: connection)
                }
            }
            #expect(together == separately, "span limit \(spanLimit)")
            #expect(together.map(\.count) == [512, 101, 6, 0, 512, 512])
        }
        await pipeline.tearDown()
    }

    @Test("with the volume feature configured, windows and dataset versions carry exact volumes too")
    func volumeFeature() async throws {
        let pipeline = try await PipelineDatabase.make()
        var policy = DatasetPolicy()
        policy.includesVolume = true
        let preprocessing = Preprocessing(policy: policy)
        let row = try FakeKraken.Row.load(csv: dataDirectory + "/kraken_XBTUSD_1440_2024.csv")[0]
        let event = try await pipeline.storeLive(row)
        let outcome = try await pipeline.client.transaction { try preprocessing.process(event, on: $0) }
        let window = try #require(outcome.window)
        #expect(window.volumes?.count == DatasetPolicy.windowCloses)
        #expect(window.volumes?.count == window.closes.count)
        #expect(window.volumes?.last == Double(row.volume))
        let stored = try await pipeline.client.query(
            "SELECT feature, array_length(volumes, 1), volumes[array_length(volumes, 1)]::text FROM features.dataset_versions_v1")[0]
        #expect(try stored.decode(0, as: String.self) == "close,volume")
        #expect(try stored.decode(1, as: Int.self) == 3728)
        #expect(try stored.decode(2, as: String.self) == row.volume)
        // Without the feature, windows carry no volumes.
        let plain = try WindowBuilder.window(
            rows: sharedRows().prefix(14).map { $0 }, pair: "XBTUSD", interval: .oneDay, windowLength: 14, datasetVersion: 1,
            scaler: MinMaxScaler(minimum: 1, maximum: 2))
        #expect(plain?.volumes == nil)
        await pipeline.tearDown()
    }

    @Test("through RabbitMQ: candle events in, window events out, poison dead-lettered")
    func throughTheBroker() async throws {
        let pipeline = try await PipelineDatabase.make()
        let broker = try TestEnvironment.broker()
        let logger = TestEnvironment.logger
        let suffix = UUID().uuidString.prefix(8).lowercased()
        let inputQueue = "test.preprocessor-candles.\(suffix)"
        let outputQueue = "test.preprocessor-windows.\(suffix)"
        let topology = ServiceName.preprocessor.topology.merged(
            with: Topology(
                queues: [
                    Topology.Queue(name: inputQueue, deadLetterExchange: Exchange.deadLetters, deadLetterRoutingKey: "test-\(suffix)"),
                    Topology.Queue(name: outputQueue), Topology.Queue(name: "test.dead.\(suffix)"),
                ],
                bindings: [
                    Topology.Binding(queue: outputQueue, exchange: Exchange.events, routingKey: "features.window.xbtusd.1d"),
                    Topology.Binding(queue: "test.dead.\(suffix)", exchange: Exchange.deadLetters, routingKey: "test-\(suffix)"),
                ]))
        let publisher = try Publisher(configuration: broker, options: Publisher.Options(topology: topology), logger: logger)
        let input = try Consumer(
            configuration: broker,
            options: Consumer.Options(
                queue: inputQueue, topology: topology,
                deadLetterRoute: DeadLetterRoute(exchange: Exchange.deadLetters, routingKey: "test-\(suffix)")),
            deadLetterPublisher: publisher, logger: logger)
        let output = try Consumer(configuration: broker, options: Consumer.Options(queue: outputQueue, topology: topology), logger: logger)
        let dead = try Consumer(
            configuration: broker, options: Consumer.Options(queue: "test.dead.\(suffix)", topology: topology), logger: logger)
        let windows = DeliveryCollector(output)
        let deadLetters = DeliveryCollector(dead)
        let preprocessing = Preprocessing(policy: DatasetPolicy())
        let consuming = Task {
            await PreprocessorService.consume(input, preprocessing: preprocessing, database: pipeline.client, logger: logger)
        }
        let relay = OutboxRelay(
            schema: FeaturesSchema.name, database: pipeline.client, publisher: publisher, logger: logger, pollInterval: .milliseconds(20))
        let relaying = Task { try await relay.run() }

        let rows2024 = Array(try FakeKraken.Row.load(csv: dataDirectory + "/kraken_XBTUSD_1440_2024.csv").prefix(40))
        var messages: [OutgoingMessage] = []
        for row in rows2024 {
            let event = try await pipeline.storeLive(row)
            let message = try EnvelopeCodec.encode(Envelope(payload: event), exchange: "", routingKey: inputQueue)
            messages.append(message)
            if row.time == rows2024[5].time { messages.append(message) }  // a redelivery
        }
        var poison = messages[0]
        poison.body = Array(
            #"{"pair":"XBTUSD","interval":"1d","open_time":1,"open":"-1","high":"1","low":"1","close":"1","volume":"1","revision":0}"#.utf8)
        messages.insert(poison, at: 3)
        try await publisher.publish(contentsOf: messages)

        let received = try await windows.waitFor(40, timeout: .seconds(30))
        try await Task.sleep(for: .milliseconds(300))
        #expect(windows.deliveries.count == 40)
        let decoded = try received.map { try EnvelopeCodec.decode(FeatureWindow.self, from: $0).payload }
        #expect(decoded.map(\.windowEndOpenTime) == rows2024.map(\.time))
        #expect(decoded.map { $0.closes.last! } == rows2024.map { Double($0.close)! })
        let deadReasons = try await deadLetters.waitFor(1).map { $0.properties.headers[DeadLetterHeader.reason]?.stringValue ?? "" }
        #expect(deadReasons.first?.contains("invalid payload") == true)

        await input.stop()
        await consuming.value
        relaying.cancel()
        await output.stop()
        await dead.stop()
        await publisher.close()
        for queue in [inputQueue, outputQueue, "test.dead.\(suffix)"] { try? await BrokerAdmin.delete(queue: queue, configuration: broker) }
        await pipeline.tearDown()
    }
}
