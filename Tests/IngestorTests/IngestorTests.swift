import Contracts
import Foundation
import KrakenFake
import Messaging
import ServiceKit
import Storage
import TestSupport
import Testing

@testable import Ingestor

@Suite("Candle validation and Kraken parsing")
struct CandleParsingTests {
    static let fixtures = IngestorHarness.dataDirectory + "/kraken_fixtures"

    @Test("the recorded fixtures parse to the exact values in them")
    func fixturesParseExactly() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: Self.fixtures + "/OHLC_XXBTZUSD_interval60_2020-12-05.json"))
        let response = try KrakenClient.parse(data)
        #expect(response.resultKey == "XXBTZUSD")
        #expect(response.rows.count == 720)
        #expect(response.rows[0].openTime == 1_604_599_200)
        #expect(response.rows[0].fields == ["15050.0", "15100.0", "14874.9", "14954.7", "14964.5", "616.14350768"])
        #expect(response.rows[0].trades == "2504")
        // `last` is the second-to-last row: the last row is the open candle.
        #expect(response.last == response.rows[718].openTime)
        #expect(response.rows[719].openTime == 1_607_187_600)

        let daily = try KrakenClient.parse(
            Data(contentsOf: URL(fileURLWithPath: Self.fixtures + "/OHLC_XXBTZEUR_interval1440_2020-07-15.json")))
        #expect(daily.resultKey == "XXBTZEUR")
        #expect(daily.rows.count == 720)
        #expect(daily.rows[0].fields == ["6800.3", "7091.1", "6677.7", "7008.7", "6883.9", "5683.84890472"])
        #expect(daily.last == 1_594_684_800)
    }

    @Test("Kraken errors and broken bodies are typed errors")
    func errorsAreTyped() {
        func kind(_ body: String) -> KrakenError.Code? {
            do {
                _ = try KrakenClient.parse(Data(body.utf8))
                return nil
            } catch {
                return error.code
            }
        }
        #expect(kind(#"{"error":["EAPI:Rate limit exceeded"]}"#) == .rateLimited)
        #expect(kind(#"{"error":["EService:Unavailable"],"result":{}}"#) == .unavailable)
        #expect(kind(#"{"error":["EQuery:Unknown asset pair"]}"#) == .api)
        #expect(kind(#"{"error":[],"result":{"XXBTZUSD":[[1,"1""#) == .malformed)
        #expect(kind(#"{"error":[],"result":{"XXBTZUSD":[]}}"#) == .malformed)
        #expect(kind("<html>oops</html>") == .malformed)
    }

    @Test("every validation rule rejects with its reason")
    func validation() {
        let now = Date(timeIntervalSince1970: 1_735_689_600)
        func reason(_ line: String) -> String? {
            if case .rejected(let row) = OHLCVTLine.parse(Substring(line), pair: "XBTUSD", interval: .oneDay, now: now) {
                return row.reason
            }
            return nil
        }
        #expect(reason("1704067200,42241.1,44187.5,42215.7,44180.8,2457.30419634,19869") == nil)
        #expect(reason("1704067200,-1,44187.5,42215.7,44180.8,2457.3,19869")?.contains("open") == true)
        #expect(reason("1704067200,0,44187.5,0,44180.8,2457.3,19869")?.contains("must be positive") == true)
        #expect(reason("1704067200,42241.1,40000,42215.7,44180.8,2457.3,19869") == "prices out of order: need low <= open, close <= high")
        #expect(reason("1704067200,42241.1,44187.5,42215.7,44180.8,-3,19869")?.contains("volume") == true)
        #expect(reason("1704067201,42241.1,44187.5,42215.7,44180.8,2457.3,19869") == "time 1704067201 is not aligned to the 1d interval")
        #expect(reason("1735689600,1,1,1,1,1,1")?.contains("has not closed yet") == true)
        #expect(reason("1704067200,NaN,44187.5,42215.7,44180.8,2457.3,19869")?.contains("not a non-negative decimal") == true)
        // Exponent forms are Kraken's own: 1e5 is read exactly as 100000, which is above the high.
        #expect(reason("1704067200,1e5,44187.5,42215.7,44180.8,2457.3,19869") == "prices out of order: need low <= open, close <= high")
        #expect(reason("1704067200,-1e5,44187.5,42215.7,44180.8,2457.3,19869")?.contains("not a non-negative decimal") == true)
        #expect(reason("1704067200,42241.1,44187.5") == "expected 7 fields (timestamp,open,high,low,close,volume,trades), found 3")
        #expect(reason("abc,1,1,1,1,1,1") == "time is not an integer")
        #expect(OHLCVTLine.parse("time,open,high,low,close,volume,trades", pair: "XBTUSD", interval: .oneDay, now: now) == .header)
    }
}

@Suite("Ingestor against PostgreSQL, RabbitMQ and a fake Kraken", .serialized)
struct IngestorIntegrationTests {
    @Test("backfill of the shared XBTUSD files stores 4093 candles; a second run stores and publishes nothing")
    func backfillIsIdempotent() async throws {
        let harness = try await IngestorHarness(kraken: FakeKraken())
        let backfill = HistoryBackfill(database: harness.client, logger: harness.logger, batchSize: 1000)
        let first = try await backfill.run(path: IngestorHarness.history, pair: "XBTUSD", interval: .oneDay)
        let second = try await backfill.run(path: IngestorHarness.history2024, pair: "XBTUSD", interval: .oneDay)
        #expect(first.inserted == 3727)
        #expect(second.inserted == 366)
        #expect(try await harness.count("SELECT count(*) FROM ingest.candles") == 4093)
        // Kraken omits days without trades: 12 missing days of 2013-14, reported, none invented.
        #expect(second.missingIntervals == 12)
        #expect(try await harness.count("SELECT sum(missing_intervals)::int FROM ingest.gaps") == 12)
        #expect(try await harness.count("SELECT count(*) FROM ingest.gaps WHERE after_open_time >= 1420070400") == 0)
        // Exact prices: numeric, not float.
        let row = try await harness.client.query("SELECT close::text FROM ingest.candles WHERE open_time = 1704067200")[0]
        #expect(try row.decode(0, as: String.self) == "44180.8")

        try await harness.drainOutbox()
        let summaries = try await harness.collector.waitFor(4 + 1)  // 3727 rows in batches of 1000, then 366
        #expect(summaries.allSatisfy { $0.properties.type == "candle.backfilled" })
        let outboxBefore = try await harness.count("SELECT count(*) FROM ingest.outbox")

        let again = try await backfill.run(path: IngestorHarness.history, pair: "XBTUSD", interval: .oneDay)
        #expect(again.inserted == 0 && again.revised == 0)
        let forced = try await backfill.run(path: IngestorHarness.history, pair: "XBTUSD", interval: .oneDay, restart: true)
        #expect(forced.inserted == 0 && forced.revised == 0 && forced.unchanged == 3727)
        #expect(try await harness.count("SELECT count(*) FROM ingest.candles") == 4093)
        #expect(try await harness.count("SELECT count(*) FROM ingest.outbox") == outboxBefore)
        try await harness.drainOutbox()
        try await Task.sleep(for: .milliseconds(300))
        #expect(harness.collector.deliveries.count == 5)
        await harness.tearDown()
    }

    @Test("a backfill that fills its whole range records no gap without scanning; a stored row beyond the range is still checked")
    func contiguousBackfillGaps() async throws {
        let harness = try await IngestorHarness(kraken: FakeKraken())
        let rows = try FakeKraken.Row.load(csv: IngestorHarness.history2024)
        func file(_ part: ArraySlice<FakeKraken.Row>) throws -> String {
            let path = NSTemporaryDirectory() + "candlecast-contiguous-\(UUID().uuidString).csv"
            try part.map { "\($0.time),\($0.open),\($0.high),\($0.low),\($0.close),\($0.volume),\($0.trades)" }.joined(separator: "\n")
                .write(toFile: path, atomically: true, encoding: .utf8)
            return path
        }
        let backfill = HistoryBackfill(database: harness.client, logger: harness.logger, batchSize: 4)
        let first = try file(rows[0..<10])
        defer { try? FileManager.default.removeItem(atPath: first) }
        let contiguous = try await backfill.run(path: first, pair: "XBTUSD", interval: .oneDay)
        #expect(contiguous.inserted == 10 && contiguous.missingIntervals == 0)
        // A live candle four days after the file's end; the next file fills only the first two of the three missing.
        let live = rows[13]
        let candle = Candle(
            pair: "XBTUSD", interval: .oneDay, openTime: live.time, open: live.open, high: live.high, low: live.low, close: live.close,
            vwap: nil, volume: live.volume, trades: live.trades)
        _ = try await harness.client.transaction { try CandleStore.storeClosed([candle], source: "rest", on: $0) }
        let second = try file(rows[10..<12])
        defer { try? FileManager.default.removeItem(atPath: second) }
        let filled = try await backfill.run(path: second, pair: "XBTUSD", interval: .oneDay)
        #expect(filled.inserted == 2)
        #expect(filled.gaps == [rows[11].time: 1])
        #expect(try await harness.count("SELECT sum(missing_intervals)::int FROM ingest.gaps") == 1)
        await harness.tearDown()
    }

    @Test("bad rows go to the rejected table with reasons; the rest of the file is stored")
    func backfillRejectsBadRows() async throws {
        let harness = try await IngestorHarness(kraken: FakeKraken())
        let file = NSTemporaryDirectory() + "candlecast-bad-\(UUID().uuidString).csv"
        try """
        time,open,high,low,close,volume,trades
        1704067200,42241.1,44187.5,42215.7,44180.8,2457.30419634,19869
        1704153600,44180.8,45913.4,44113.2,NaN,6462.5537177,45964
        1704240000,44975.4,45509.3,39501.0,42849.5,-7003.5579979,59410
        1704326400,42849.5,44729.8,42625.0,44151.7
        1704412800,44151.7,44357.5,42434.1,44145.1,4726.41855275,32442
        """.write(toFile: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: file) }
        let summary = try await HistoryBackfill(database: harness.client, logger: harness.logger).run(
            path: file, pair: "XBTUSD", interval: .oneDay)
        #expect(summary.inserted == 2)
        #expect(summary.rejected == 3)
        let reasons = try await harness.client.query("SELECT reason FROM ingest.rejected_candles ORDER BY id").map {
            try $0.decode(0, as: String.self)
        }
        #expect(reasons.count == 3)
        #expect(reasons[0].contains("close"))
        #expect(reasons[1].contains("volume"))
        #expect(reasons[2].contains("expected 7 fields"))
        // The day between the two good rows is missing from the file: 3 gaps intervals are recorded.
        #expect(summary.missingIntervals == 3)
        await harness.tearDown()
    }

    @Test("replaying 2024 day by day: every closed candle stored once and announced once, the open candle never")
    func liveReplay() async throws {
        let rows = try FakeKraken.Row.load(csv: IngestorHarness.history2024)
        let harness = try await IngestorHarness(kraken: FakeKraken(replay: rows))
        let poller = harness.poller()
        let first = try await poller.pollOnce()  // nothing closed yet: only the open candle
        #expect(first.store == StoreOutcome())
        #expect(first.skippedOpenCandle)
        var day = 0
        while harness.kraken.closedCount < rows.count {
            harness.kraken.tick(day % 10 == 9 ? 3 : 1)  // sometimes several candles close between polls
            _ = try await poller.pollOnce()
            if day % 30 == 0 { try await harness.drainOutbox() }
            day += 1
        }
        _ = try await poller.pollOnce()  // a repeat poll changes nothing
        try await harness.drainOutbox()
        try await harness.collector.waitFor(366, timeout: .seconds(30))
        try await Task.sleep(for: .milliseconds(300))

        let stored = try await harness.client.query(
            """
            SELECT open_time, open::text, high::text, low::text, close::text, volume::text, trades, revision
            FROM ingest.candles ORDER BY open_time
            """
        )
        #expect(stored.count == 366)
        for (row, expected) in zip(stored, rows) {
            #expect(try row.decode(0, as: Int64.self) == expected.time)
            #expect(try row.decode(1, as: String.self) == expected.open)
            #expect(try row.decode(2, as: String.self) == expected.high)
            #expect(try row.decode(3, as: String.self) == expected.low)
            #expect(try row.decode(4, as: String.self) == expected.close)
            #expect(try row.decode(5, as: String.self) == expected.volume)
            #expect(try row.decode(6, as: Int.self) == expected.trades)
            #expect(try row.decode(7, as: Int.self) == 0, "a candle was stored before it closed, then revised")
        }
        let events = harness.candleEvents
        #expect(events.count == 366)
        #expect(Set(events.map(\.openTime)).count == 366)
        #expect(events.map(\.close) == rows.map(\.close))
        #expect(try await harness.count("SELECT count(*) FROM ingest.gaps") == 0)
        await harness.tearDown()
    }

    @Test("every Kraken fault: the poller backs off, recovers, and nothing is lost or duplicated")
    func faultsAreSurvived() async throws {
        let rows = Array(try FakeKraken.Row.load(csv: IngestorHarness.history2024).prefix(60))
        let harness = try await IngestorHarness(kraken: FakeKraken(replay: rows, closed: 10, timeoutDelay: .milliseconds(1500)))
        let poller = harness.poller(timeout: .milliseconds(500))
        for fault in FakeKraken.Fault.allCases where fault != .outOfOrder {
            harness.kraken.inject([fault])
            await #expect(throws: KrakenError.self, "fault \(fault)") { _ = try await poller.pollOnce() }
            harness.kraken.tick(2)
        }
        #expect(try await harness.count("SELECT count(*) FROM ingest.candles") == 0)
        // The scheduled loop keeps going through a burst of faults.
        harness.kraken.inject([.rateLimited, .unavailable, .serverError, .truncated, .timeout, .rateLimited])
        let looping = harness.poller(timeout: .milliseconds(500), pollPeriod: .milliseconds(30))
        let running = Task { await looping.run() }
        for _ in 0..<20 {
            harness.kraken.tick()
            try await Task.sleep(for: .milliseconds(60))
        }
        harness.kraken.tick(rows.count)
        try await eventually(timeout: .seconds(20), "all 60 candles stored") {
            try await harness.count("SELECT count(*) FROM ingest.candles") == 60
        }
        running.cancel()
        await running.value
        try await harness.drainOutbox()
        // The first successful poll found several closed candles: they came as the series' first batch.
        try await eventually("every candle announced") { harness.announced() == .init(candles: 60) }
        try await Task.sleep(for: .milliseconds(300))
        #expect(harness.announced() == .init(candles: 60))
        #expect(try await harness.count("SELECT max(revision) FROM ingest.candles") == 0)
        await harness.tearDown()
    }

    /// Reliability scenario 5: an hour of 1-minute candles while Kraken fails, limits, stalls, reorders,
    /// revises and keeps moving its open candle.
    @Test(
        """
        Kraken misbehaving for an hour of 1-minute candles: backoff, every candle stored once with Kraken's final values, the open one never
        """
    )
    func misbehavingHour() async throws {
        let daily = try FakeKraken.Row.load(csv: IngestorHarness.history2024)
        let start: Int64 = 1_704_067_200
        // 61 rows re-timed one minute apart: 60 close during the hour, the 61st is the open candle at its end.
        var rows = daily.prefix(61).enumerated().map { index, row in
            var minute = row
            minute.time = start + Int64(index) * 60
            return minute
        }
        let harness = try await IngestorHarness(
            kraken: FakeKraken(replay: rows, closed: 0, intervalMinutes: 1, timeoutDelay: .milliseconds(800)))
        var generator = SeededGenerator(seed: 11)
        var injected = 0
        let looping = harness.poller(timeout: .milliseconds(300), pollPeriod: .milliseconds(25), interval: .oneMinute)
        let running = Task { await looping.run() }
        for _ in 0..<60 {
            if Double.random(in: 0..<1, using: &generator) < 0.4 {
                harness.kraken.inject([FakeKraken.Fault.allCases.randomElement(using: &generator)!])
                injected += 1
            }
            harness.kraken.tick()
            try await Task.sleep(for: .milliseconds(40))
        }
        try await eventually(timeout: .seconds(30), "60 candles stored") {
            try await harness.count("SELECT count(*) FROM ingest.candles") == 60
        }
        // Then Kraken revises a candle closed fifty minutes earlier and re-sends it (the cursor is moved back until
        // a poll sees it: a poll already in flight may move it forward again).
        rows[10].close = String(format: "%.1f", Double(rows[10].close)! + 1)
        harness.kraken.revise(time: rows[10].time, close: rows[10].close)
        let rewound = rows[5].time
        try await eventually(timeout: .seconds(30), "the revision applied") {
            let revised = try await harness.count("SELECT count(*) FROM ingest.candles WHERE revision = 1")
            if revised == 0 { try await harness.client.execute("UPDATE ingest.cursors SET since = \(rewound)") }
            return revised == 1
        }
        running.cancel()
        await running.value
        // Kraken's final values, exactly; the open candle's moving values never.
        let stored = try await harness.client.query("SELECT open_time, close::text, revision FROM ingest.candles ORDER BY open_time")
        for (row, expected) in zip(stored, rows.prefix(60)) {
            #expect(try row.decode(0, as: Int64.self) == expected.time)
            #expect(Double(try row.decode(1, as: String.self)) == Double(expected.close))
        }
        #expect(try await harness.count("SELECT count(*) FROM ingest.candles WHERE open_time = \(rows[60].time)") == 0)
        #expect(try await harness.count("SELECT count(*) FROM ingest.rejected_candles") == 0)
        // Every fault was answered to a request and polling went on after it (each poll reads all closed candles since
        // its cursor, so fewer polls than candles is fine).
        #expect(injected >= 15 && harness.kraken.requestCount > injected, "\(injected) faults, \(harness.kraken.requestCount) requests")
        try await harness.drainOutbox()
        try await eventually("every candle announced") { harness.announced() == .init(candles: 60) }
        try await Task.sleep(for: .milliseconds(300))
        #expect(harness.announced() == .init(candles: 60), "60 closes, each announced once")
        #expect(harness.candleEvents.filter { $0.revision == 1 }.map(\.openTime) == [rows[10].time], "and one revision")
        print(
            """
            reliability | Kraken misbehaving for an hour of 1-minute candles: \(injected) faults (rate limits, unavailable, HTTP 500, \
            timeouts, truncated and reordered bodies), a revision, an open candle moving on every request | 60 candles, \
            \(harness.kraken.requestCount) requests | lost 0 | duplicated 0, open candle stored 0 | the poller backed off and caught up by \
            itself
            """
        )
        await harness.tearDown()
    }

    @Test("a revised candle is an update with an event, not a duplicate")
    func revisedCandle() async throws {
        let rows = Array(try FakeKraken.Row.load(csv: IngestorHarness.history2024).prefix(10))
        let harness = try await IngestorHarness(kraken: FakeKraken(replay: rows, closed: 5))
        let poller = harness.poller()
        #expect(try await poller.pollOnce().store.inserted == 5)
        harness.kraken.revise(time: rows[4].time, close: "44000.1")
        // Kraken re-sends recent candles when `since` is older: simulate by rewinding the cursor.
        try await harness.client.execute("UPDATE ingest.cursors SET since = \(rows[2].time)")
        let outcome = try await poller.pollOnce()
        #expect(outcome.store.revised == 1)
        #expect(outcome.store.unchanged == 1)
        let row = try await harness.client.query("SELECT close::text, revision FROM ingest.candles WHERE open_time = \(rows[4].time)")[0]
        #expect(try row.decode(0, as: String.self) == "44000.1")
        #expect(try row.decode(1, as: Int.self) == 1)
        #expect(try await harness.count("SELECT count(*) FROM ingest.candles") == 5)
        try await harness.drainOutbox()
        // The first poll's 5 candles as one batch, then the revision as its own event.
        try await harness.collector.waitFor(2)
        #expect(harness.backfilledEvents.map(\.inserted) == [5])
        let revisions = harness.candleEvents.filter { $0.openTime == rows[4].time }.map(\.revision)
        #expect(revisions == [1])
        await harness.tearDown()
    }

    @Test("a poll that brings nothing new writes nothing: no candle row locked, no cursor rewritten, no gap scan")
    func quietPollWritesNothing() async throws {
        let rows = Array(try FakeKraken.Row.load(csv: IngestorHarness.history2024).prefix(10))
        let harness = try await IngestorHarness(kraken: FakeKraken(replay: rows, closed: 5))
        let poller = harness.poller()
        #expect(try await poller.pollOnce().store.inserted == 5)
        harness.kraken.tick(1)
        #expect(try await poller.pollOnce().store.inserted == 1)
        // xmin changes when a row is written, xmax when it is locked or deleted.
        let versions: PostgresQuery = "SELECT string_agg(xmin::text || '/' || xmax::text, ',' ORDER BY open_time) FROM ingest.candles"
        let cursorVersion: PostgresQuery = "SELECT xmin::text || '/' || xmax::text FROM ingest.cursors"
        let candlesBefore = try await harness.client.query(versions)[0].decode(0, as: String.self)
        let cursorBefore = try await harness.client.query(cursorVersion)[0].decode(0, as: String.self)
        for _ in 0..<3 {
            let outcome = try await poller.pollOnce()
            #expect(outcome.store.inserted + outcome.store.revised == 0)
            #expect(outcome.newGaps == 0)
        }
        #expect(try await harness.client.query(versions)[0].decode(0, as: String.self) == candlesBefore)
        #expect(try await harness.client.query(cursorVersion)[0].decode(0, as: String.self) == cursorBefore)
        // A revision still gets through after quiet polls (Kraken re-sends recent candles for an older `since`).
        try await harness.client.execute("UPDATE ingest.cursors SET since = \(rows[4].time)")
        harness.kraken.revise(time: rows[5].time, close: "44000.1")
        #expect(try await poller.pollOnce().store.revised == 1)
        #expect(try await harness.count("SELECT count(*) FROM ingest.candles WHERE revision = 1") == 1)
        await harness.tearDown()
    }

    @Test("with RabbitMQ stopped, candles still land in Postgres and their events follow once it returns, none twice")
    func brokerOutage() async throws {
        let rows = Array(try FakeKraken.Row.load(csv: IngestorHarness.history2024).prefix(20))
        let harness = try await IngestorHarness(kraken: FakeKraken(replay: rows, closed: 5))
        let poller = harness.poller()
        _ = try await poller.pollOnce()
        try await harness.drainOutbox()
        try await harness.collector.waitFor(1)  // the first poll's 5 candles, one batch

        let relaying = Task { try await harness.relay.run() }
        try await TestEnvironment.servers("rabbit-stop-app")
        for _ in 0..<10 {
            harness.kraken.tick()
            _ = try await poller.pollOnce()
        }
        #expect(try await harness.count("SELECT count(*) FROM ingest.candles") == 15)
        #expect(try await harness.count("SELECT count(*) FROM ingest.outbox WHERE published_at IS NULL") == 10)
        try await TestEnvironment.servers("rabbit-start-app")
        try await eventually(timeout: .seconds(30), "the outbox to drain") {
            try await harness.count("SELECT count(*) FROM ingest.outbox WHERE published_at IS NULL") == 0
        }
        try await harness.collector.waitFor(11, timeout: .seconds(30))
        try await Task.sleep(for: .milliseconds(500))
        relaying.cancel()
        #expect(harness.candleEvents.count == 10)
        #expect(harness.announced() == .init(candles: 15))
        await harness.tearDown()
    }
}

/// A deterministic random source, so a fault schedule is the same on every run.
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
