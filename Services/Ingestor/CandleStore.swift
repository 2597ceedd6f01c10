import Contracts
import Foundation
import Messaging
import ServiceKit
import Storage

/// What storing a set of candles changed.
struct StoreOutcome: Sendable, Equatable {
    var inserted = 0
    var revised = 0
    var unchanged = 0
    var rejected = 0
}

/// Writes candles, rejected rows, gaps and cursors into the `ingest` schema. Every function runs on a
/// connection inside the caller's transaction, so the rows and their outbox events commit together.
enum CandleStore {
    static let schema = IngestSchema.name

    /// Stores live candles one by one: a new candle or a revised one (different values) gets a `candle.closed`
    /// event in the outbox. An identical repeat (most polls re-send the last closed candle) writes nothing: an
    /// insert that meets the stored row does nothing and the update's condition is false, so no row is locked and
    /// a poll that brings nothing new commits without a WAL flush. (One `ON CONFLICT DO UPDATE ... WHERE` would lock
    /// the row, hence write, even when its condition is false.)
    static func storeClosed(_ candles: [Candle], source: String, on connection: PostgresConnection) throws -> StoreOutcome {
        var outcome = StoreOutcome()
        for candle in candles {
            let seconds = candle.interval.minutes * 60
            let revision: Int
            if try !connection.query(
                """
                INSERT INTO ingest.candles (pair, interval_seconds, open_time, open, high, low, close, vwap, volume, trades, source)
                VALUES (\(candle.pair), \(seconds), \(candle.openTime), \(candle.open)::numeric, \(candle.high)::numeric,
                        \(candle.low)::numeric, \(candle.close)::numeric, \(candle.vwap)::numeric, \(candle.volume)::numeric,
                        \(candle.trades), \(source))
                ON CONFLICT (pair, interval_seconds, open_time) DO NOTHING
                RETURNING revision
                """
            ).isEmpty {
                revision = 0
            } else {
                let revised = try connection.query(
                    """
                    UPDATE ingest.candles AS c
                    SET open = \(candle.open)::numeric, high = \(candle.high)::numeric, low = \(candle.low)::numeric,
                        close = \(candle.close)::numeric, vwap = \(candle.vwap)::numeric, volume = \(candle.volume)::numeric,
                        trades = \(candle.trades), source = \(source), revision = c.revision + 1, revised_at = now()
                    WHERE pair = \(candle.pair) AND interval_seconds = \(seconds) AND open_time = \(candle.openTime)
                      AND (c.open, c.high, c.low, c.close, c.volume, c.trades) IS DISTINCT FROM
                          (\(candle.open)::numeric, \(candle.high)::numeric, \(candle.low)::numeric, \(candle.close)::numeric,
                           \(candle.volume)::numeric, \(candle.trades)::integer)
                    RETURNING revision
                    """)
                guard let row = revised.first else {
                    outcome.unchanged += 1
                    continue
                }
                revision = try row.decode(0, as: Int.self)
            }
            if revision == 0 { outcome.inserted += 1 } else { outcome.revised += 1 }
            let event = candle.event(revision: revision)
            try Outbox.enqueue(
                Envelope(payload: event), routingKey: event.routingKey, exchange: Exchange.events, schema: schema, on: connection)
        }
        return outcome
    }

    /// Loads a batch of historical candles through COPY into a staging table, then one upsert. Returns
    /// inserted and revised counts; history batches announce themselves with one summary event (the caller's).
    static func storeHistory(_ candles: [Candle], source: String, on connection: PostgresConnection) throws -> StoreOutcome {
        guard !candles.isEmpty else { return StoreOutcome() }
        // A batch may repeat an open time (a file that lists a candle twice): the last one wins, as an upsert
        // cannot touch the same row twice in one statement.
        var latestIndex: [Int64: Int] = [:]
        latestIndex.reserveCapacity(candles.count)
        for (index, candle) in candles.enumerated() { latestIndex[candle.openTime] = index }
        let unique = latestIndex.count == candles.count ? candles : latestIndex.values.sorted().map { candles[$0] }
        if let copied = try copyIntoEmptyRange(unique, source: source, on: connection) {
            return StoreOutcome(inserted: copied, revised: 0, unchanged: candles.count - copied)
        }
        try connection.executeScript(
            """
            CREATE TEMP TABLE IF NOT EXISTS candle_staging (
                pair text, interval_seconds integer, open_time bigint, open numeric, high numeric, low numeric, close numeric,
                vwap numeric, volume numeric, trades integer, source text
            ) ON COMMIT DELETE ROWS
            """)
        try connection.copy(
            into: "candle_staging", columns: historyColumns, binaryRows: unique.lazy.map { historyRow($0, source: source) })
        // One summary row back instead of one row per candle.
        let counts = try connection.query(
            """
            WITH upserted AS (
                INSERT INTO ingest.candles AS c (pair, interval_seconds, open_time, open, high, low, close, vwap, volume, trades, source)
                SELECT pair, interval_seconds, open_time, open, high, low, close, vwap, volume, trades, source FROM candle_staging
                ON CONFLICT (pair, interval_seconds, open_time) DO UPDATE
                    SET open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close, vwap = EXCLUDED.vwap,
                        volume = EXCLUDED.volume, trades = EXCLUDED.trades, source = EXCLUDED.source,
                        revision = c.revision + 1, revised_at = now()
                    WHERE (c.open, c.high, c.low, c.close, c.volume, c.trades) IS DISTINCT FROM
                          (EXCLUDED.open, EXCLUDED.high, EXCLUDED.low, EXCLUDED.close, EXCLUDED.volume, EXCLUDED.trades)
                RETURNING revision
            )
            SELECT count(*) FILTER (WHERE revision = 0)::bigint, count(*) FILTER (WHERE revision > 0)::bigint FROM upserted
            """)[0]
        var outcome = StoreOutcome()
        outcome.inserted = try counts.decode(0, as: Int.self)
        outcome.revised = try counts.decode(1, as: Int.self)
        outcome.unchanged = candles.count - outcome.inserted - outcome.revised
        return outcome
    }

    /// A batch of one series whose time range holds no stored candle yet (a first backfill, the usual case) is
    /// copied straight into the table: one write instead of COPY into staging plus an upsert. Returns the rows
    /// inserted, or nil when the range holds candles or a concurrent writer got there first (the caller upserts).
    private static func copyIntoEmptyRange(_ candles: [Candle], source: String, on connection: PostgresConnection) throws -> Int? {
        guard let first = candles.first, candles.allSatisfy({ $0.pair == first.pair && $0.interval == first.interval }),
            let low = candles.map(\.openTime).min(), let high = candles.map(\.openTime).max()
        else { return nil }
        let occupied = try connection.query(
            """
            SELECT EXISTS (SELECT 1 FROM ingest.candles WHERE pair = \(first.pair) AND interval_seconds = \(first.interval.minutes * 60)
                           AND open_time BETWEEN \(low) AND \(high))
            """
        )[0].decode(0, as: Bool.self)
        guard !occupied else { return nil }
        try connection.executeScript("SAVEPOINT copy_into_empty_range")
        do {
            let copied = try connection.copy(
                into: "candles", schema: schema, columns: historyColumns, binaryRows: candles.lazy.map { historyRow($0, source: source) })
            try connection.executeScript("RELEASE SAVEPOINT copy_into_empty_range")
            return copied
        } catch {
            // A live poll stored one of these candles since the check: upsert the batch instead.
            guard error.sqlState == PostgresError.uniqueViolation else { throw error }
            try connection.executeScript("ROLLBACK TO SAVEPOINT copy_into_empty_range")
            return nil
        }
    }

    static let historyColumns = [
        "pair", "interval_seconds", "open_time", "open", "high", "low", "close", "vwap", "volume", "trades", "source",
    ]

    /// A candle as a COPY binary row of `historyColumns`: PostgreSQL then parses no text (the numeric columns'
    /// `numeric_in` was an eighth of its time in a backfill). `trades` is within 0...1e9 (`ContractRules.count`).
    static func historyRow(_ candle: Candle, source: String) -> [BinaryCopyValue] {
        [
            .text(candle.pair), .int32(Int32(candle.interval.minutes * 60)), .int64(candle.openTime), .numeric(candle.open),
            .numeric(candle.high), .numeric(candle.low), .numeric(candle.close), candle.vwap.map(BinaryCopyValue.numeric) ?? .null,
            .numeric(candle.volume), candle.trades.map { .int32(Int32(clamping: $0)) } ?? .null, .text(source),
        ]
    }

    /// Enqueues the one `candle.backfilled` event of a stored history batch, when it changed something.
    static func announceHistory(
        _ candles: [Candle], pair: String, interval: CandleInterval, outcome: StoreOutcome, source: String,
        on connection: PostgresConnection
    ) throws {
        guard outcome.inserted + outcome.revised > 0, let first = candles.map(\.openTime).min(),
            let last = candles.map(\.openTime).max()
        else { return }
        let event = CandlesBackfilled(
            pair: pair, interval: interval, firstOpenTime: first, lastOpenTime: last, inserted: outcome.inserted,
            updated: outcome.revised, rejected: outcome.rejected, source: source)
        try Outbox.enqueue(
            Envelope(payload: event), routingKey: event.routingKey, exchange: Exchange.events, schema: schema, on: connection)
    }

    /// Records rejected rows once each (the same raw row rejected again is not a new rejection).
    static func reject(_ rows: [RejectedRow], pair: String, interval: CandleInterval, source: String, on connection: PostgresConnection)
        throws -> Int
    {
        var recorded = 0
        for row in rows {
            recorded += try connection.execute(
                """
                INSERT INTO ingest.rejected_candles (pair, interval_seconds, source, raw, reason)
                VALUES (\(pair), \(interval.minutes * 60), \(source), \(row.raw), \(row.reason))
                ON CONFLICT (pair, interval_seconds, source, md5(raw)) DO NOTHING
                """
            ).affectedRows
        }
        return recorded
    }

    /// Finds runs of missing candles at or after `from` and records the new ones. Returns them as
    /// (after_open_time, missing_intervals).
    @discardableResult
    static func recordGaps(pair: String, interval: CandleInterval, from: Int64, on connection: PostgresConnection) throws -> [(Int64, Int)]
    {
        let seconds = interval.minutes * 60
        // As many candles as the span has intervals: no gap, and no need for the window scan (a backfill of a
        // million candles ends with this check, about a tenth of the scan's time).
        let span = try connection.query(
            """
            SELECT count(*)::bigint, coalesce(min(open_time), 0), coalesce(max(open_time), 0) FROM ingest.candles
            WHERE pair = \(pair) AND interval_seconds = \(seconds) AND open_time >= \(from)
            """
        )[0]
        let count = try span.decode(0, as: Int64.self)
        if try count == 0 || (span.decode(2, as: Int64.self) - span.decode(1, as: Int64.self)) / Int64(seconds) + 1 == count { return [] }
        let rows = try connection.query(
            """
            INSERT INTO ingest.gaps (pair, interval_seconds, after_open_time, missing_intervals)
            SELECT pair, interval_seconds, open_time, ((next_open_time - open_time) / interval_seconds - 1)::integer
            FROM (
                SELECT pair, interval_seconds, open_time, lead(open_time) OVER (ORDER BY open_time) AS next_open_time
                FROM ingest.candles WHERE pair = \(pair) AND interval_seconds = \(seconds) AND open_time >= \(from)
            ) ordered
            WHERE next_open_time - open_time > interval_seconds
            ON CONFLICT (pair, interval_seconds, after_open_time) DO NOTHING
            RETURNING after_open_time, missing_intervals
            """)
        return try rows.map { (try $0.decode(0, as: Int64.self), try $0.decode(1, as: Int.self)) }
    }

    /// True when `insertedRows` distinct candles, all inside `range`, fill every interval of it and the series holds
    /// nothing outside it: then the series has no gap and `recordGaps` need not read it. (After a first backfill of a
    /// million rows that read also sets every fresh row's hint bits: a tenth of the backfill's time.)
    static func isExactly(
        pair: String, interval: CandleInterval, insertedRows: Int, filling range: ClosedRange<Int64>, on connection: PostgresConnection
    ) throws -> Bool {
        let seconds = interval.minutes * 60
        guard (range.upperBound - range.lowerBound) / Int64(seconds) + 1 == Int64(insertedRows) else { return false }
        return try connection.query(
            """
            SELECT NOT (EXISTS (SELECT 1 FROM ingest.candles WHERE pair = \(pair) AND interval_seconds = \(seconds)
                    AND open_time < \(range.lowerBound))
                OR EXISTS (SELECT 1 FROM ingest.candles WHERE pair = \(pair) AND interval_seconds = \(seconds)
                    AND open_time > \(range.upperBound)))
            """
        )[0].decode(0, as: Bool.self)
    }

    static func cursor(pair: String, interval: CandleInterval, on connection: PostgresConnection) throws -> Int64? {
        try connection.query("SELECT since FROM ingest.cursors WHERE pair = \(pair) AND interval_seconds = \(interval.minutes * 60)")
            .first?.decode(0, as: Int64.self)
    }

    static func setCursor(_ since: Int64, pair: String, interval: CandleInterval, on connection: PostgresConnection) throws {
        try connection.query(
            """
            INSERT INTO ingest.cursors (pair, interval_seconds, since) VALUES (\(pair), \(interval.minutes * 60), \(since))
            ON CONFLICT (pair, interval_seconds) DO UPDATE SET since = EXCLUDED.since, updated_at = now()
            """)
    }

    /// The open time of the newest stored candle.
    static func latestOpenTime(pair: String, interval: CandleInterval, on connection: PostgresConnection) throws -> Int64? {
        try connection.query(
            "SELECT max(open_time) FROM ingest.candles WHERE pair = \(pair) AND interval_seconds = \(interval.minutes * 60)"
        )
        .first?.decode(0, as: Int64?.self)
    }
}
