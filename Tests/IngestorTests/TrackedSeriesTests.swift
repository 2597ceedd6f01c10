import Contracts
import Foundation
import KrakenFake
import Messaging
import ServiceKit
import Storage
import TestSupport
import Testing

@testable import Ingestor

@Suite("Pairs added to a running ingestor", .serialized)
struct TrackedSeriesTests {
    static let recording = IngestorHarness.dataDirectory + "/kraken_fixtures/OHLC_XXBTZEUR_interval1440_2020-07-15.json"

    func addition(_ harness: IngestorHarness) -> SeriesAddition {
        SeriesAddition(
            client: KrakenClient(baseURL: URL(string: "http://127.0.0.1:\(harness.port)")!, timeout: .seconds(2)), database: harness.client,
            logger: harness.logger)
    }

    @Test("adding a pair stores Kraken's recent candles as one history batch with one event, sets its cursor and tracks it")
    func additionIsOneBackfill() async throws {
        let euro = try FakeKraken.Row.load(krakenBody: Self.recording).rows
        let kraken = FakeKraken()
        kraken.addReplay(euro, closed: euro.count - 5, resultKey: "XXBTZEUR")
        let harness = try await IngestorHarness(kraken: kraken)
        let series = TrackedSeries(pair: "XBTEUR", interval: .oneDay)
        let outcome = try await addition(harness).add(series)
        #expect(outcome.newlyTracked)
        #expect(outcome.polled.store.inserted == euro.count - 5 && outcome.polled.store.revised == 0 && outcome.polled.store.rejected == 0)
        #expect(outcome.polled.first == euro[0].time && outcome.polled.last == euro[euro.count - 6].time)
        #expect(try await harness.count("SELECT count(*) FROM ingest.candles WHERE pair = 'XBTEUR'") == euro.count - 5)
        #expect(try await harness.count("SELECT count(*) FROM ingest.outbox WHERE routing_key = 'candle.backfilled.xbteur.1d'") == 1)
        #expect(try await harness.count("SELECT count(*) FROM ingest.outbox WHERE routing_key LIKE 'candle.closed.%'") == 0)
        #expect(
            try await harness.client.withConnection { try CandleStore.cursor(pair: "XBTEUR", interval: .oneDay, on: $0) }
                == euro[euro.count - 6].time)
        // Again: already polled, so only marked tracked (nothing fetched, nothing stored twice).
        let again = try await addition(harness).add(series)
        #expect(!again.newlyTracked && again.polled == LivePoller.Outcome())
        #expect(try await harness.count("SELECT count(*) FROM ingest.outbox") == 1)
        await harness.tearDown()
    }

    @Test("a pair Kraken does not know is refused with nothing stored; without Kraken it is refused unless a file was loaded")
    func refusals() async throws {
        let harness = try await IngestorHarness(kraken: FakeKraken(fixturesDirectory: IngestorHarness.dataDirectory + "/kraken_fixtures"))
        let unknown = TrackedSeries(pair: "NOSUCHPAIR", interval: .oneDay)
        await #expect(throws: KrakenError.self) { try await addition(harness).add(unknown, trackWithoutKraken: true) }
        #expect(try await harness.count("SELECT count(*) FROM ingest.tracked_series") == 0)
        let offline = SeriesAddition(
            client: KrakenClient(baseURL: URL(string: "http://127.0.0.1:9")!, timeout: .seconds(1)), database: harness.client,
            logger: harness.logger)
        let series = TrackedSeries(pair: "XBTEUR", interval: .oneDay)
        await #expect(throws: KrakenError.self) { try await offline.add(series) }
        #expect(try await harness.count("SELECT count(*) FROM ingest.tracked_series") == 0)
        #expect(try await offline.add(series, trackWithoutKraken: true).newlyTracked)
        #expect(try await harness.count("SELECT count(*) FROM ingest.candles") == 0)
        await harness.tearDown()
    }

    @Test("the tracker starts polling a pair added to the table within its refresh, and stops when it is removed")
    func trackerFollowsTheTable() async throws {
        let euro = try FakeKraken.Row.load(krakenBody: Self.recording).rows
        let dollar = Array(try FakeKraken.Row.load(csv: IngestorHarness.history2024).prefix(10))
        let kraken = FakeKraken(replay: dollar, closed: 2)
        kraken.addReplay(euro, closed: euro.count - 10, resultKey: "XXBTZEUR")
        let harness = try await IngestorHarness(kraken: kraken)
        let client = KrakenClient(baseURL: URL(string: "http://127.0.0.1:\(harness.port)")!, timeout: .seconds(2))
        let tracker = SeriesTracker(
            configured: [TrackedSeries(pair: "XBTUSD", interval: .oneDay)], database: harness.client, logger: harness.logger,
            refresh: .milliseconds(200)
        ) { series in
            LivePoller(
                pair: series.pair, interval: series.interval, client: client, database: harness.client, logger: harness.logger,
                pollPeriod: .milliseconds(100), closeDelay: .zero, now: { Date() })
        }
        let running = Task { await tracker.run() }
        @Sendable func stored(_ pair: String) async throws -> Int {
            try await harness.count("SELECT count(*) FROM ingest.candles WHERE pair = \(pair)")
        }
        try await eventually("the configured pair polled") { try await stored("XBTUSD") == 2 }
        #expect(try await stored("XBTEUR") == 0, "not polled before it is added")

        let series = TrackedSeries(pair: "XBTEUR", interval: .oneDay)
        _ = try await addition(harness).add(series)
        #expect(try await stored("XBTEUR") == euro.count - 10)
        kraken.tick(3, resultKey: "XXBTZEUR")
        try await eventually(timeout: .seconds(5), "the added pair polled") { try await stored("XBTEUR") == euro.count - 7 }
        #expect(try await harness.count("SELECT count(*) FROM ingest.outbox WHERE routing_key = 'candle.closed.xbteur.1d'") == 3)

        _ = try await harness.client.withConnection { try TrackedSeriesStore.remove(series, on: $0) }
        try await Task.sleep(for: .milliseconds(600))
        kraken.tick(3)
        try await eventually(timeout: .seconds(5), "the configured pair still polled") { try await stored("XBTUSD") == 5 }
        try await Task.sleep(for: .milliseconds(500))
        #expect(try await stored("XBTEUR") == euro.count - 7, "a removed pair is no longer polled")
        running.cancel()
        await running.value
        await harness.tearDown()
    }
}
