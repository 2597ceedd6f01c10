import Contracts
import Forecasting
import Foundation
import Messaging
import ServiceKit
import Storage

/// A stored dataset version's identity and scaler.
struct StoredVersion: Sendable, Equatable {
    var version: Int
    var lastOpenTime: Int64
    var rowCount: Int
    var scaler: MinMaxScaler
}

/// Reads candles through the ingestor's read contract (`ingest.candles_v1`) and writes the `features`
/// schema. Every function runs on a connection inside the caller's transaction.
enum FeatureStore {
    static func rows(
        pair: String, interval: CandleInterval, upTo openTime: Int64? = nil, last limit: Int? = nil, withVolume: Bool = false,
        on connection: PostgresConnection
    ) throws -> [SeriesRow] {
        let seconds = Int(interval.seconds)
        let rows: [PostgresRow]
        if let limit {
            rows = try connection.query(
                """
                SELECT open_time, close::text, revision, volume::text FROM ingest.candles_v1
                WHERE pair = \(pair) AND interval_seconds = \(seconds) AND open_time <= \(openTime ?? Int64.max)
                ORDER BY open_time DESC LIMIT \(limit)
                """
            ).reversed()
        } else {
            rows = try connection.query(
                """
                SELECT open_time, close::text, revision, volume::text FROM ingest.candles_v1
                WHERE pair = \(pair) AND interval_seconds = \(seconds) AND open_time <= \(openTime ?? Int64.max)
                ORDER BY open_time
                """)
        }
        return try rows.map { try SeriesRow($0, withVolume: withVolume) }
    }

    /// Rows stored after `openTime`, counted up to `limit` only: the check runs on every candle, so it must not
    /// grow with the series.
    static func rowCount(pair: String, interval: CandleInterval, after openTime: Int64, upTo limit: Int, on connection: PostgresConnection)
        throws -> Int
    {
        try connection.query(
            """
            SELECT count(*) FROM (SELECT 1 FROM ingest.candles_v1
                WHERE pair = \(pair) AND interval_seconds = \(Int(interval.seconds)) AND open_time > \(openTime)
                ORDER BY open_time LIMIT \(limit)) recent
            """
        )[0].decode(0, as: Int.self)
    }

    static func latestVersion(pair: String, interval: CandleInterval, on connection: PostgresConnection) throws -> StoredVersion? {
        guard
            let row = try connection.query(
                """
                SELECT version, last_open_time, row_count, scaler_minimum, scaler_maximum FROM features.dataset_versions
                WHERE pair = \(pair) AND interval_seconds = \(Int(interval.seconds)) ORDER BY version DESC LIMIT 1
                """
            ).first
        else { return nil }
        return StoredVersion(
            version: try row.decode(0, as: Int.self), lastOpenTime: try row.decode(1, as: Int64.self),
            rowCount: try row.decode(2, as: Int.self),
            scaler: try MinMaxScaler(minimum: try row.decode(3, as: Double.self), maximum: try row.decode(4, as: Double.self)))
    }

    /// Snapshots every stored candle as a new version, unless a version with the same rows exists.
    /// Returns the version and whether it was created now (then its `dataset.ready` is in the outbox).
    static func createVersion(
        pair: String, interval: CandleInterval, policy: DatasetPolicy, reason: String, on connection: PostgresConnection
    ) throws -> (StoredVersion, created: Bool)? {
        let rows = try rows(pair: pair, interval: interval, withVolume: policy.includesVolume, on: connection)
        guard rows.count >= policy.minimumRows, let first = rows.first, let last = rows.last else { return nil }
        let snapshot = try DatasetSnapshot(rows: rows, policy: policy)
        let seconds = Int(interval.seconds)
        if let existing = try connection.query(
            """
            SELECT version FROM features.dataset_versions
            WHERE pair = \(pair) AND interval_seconds = \(seconds) AND content_hash = \(snapshot.contentHash)
            """
        ).first {
            let version = try existing.decode(0, as: Int.self)
            return (StoredVersion(version: version, lastOpenTime: last.openTime, rowCount: rows.count, scaler: snapshot.scaler), false)
        }
        let next = try connection.query(
            "SELECT coalesce(max(version), 0) + 1 FROM features.dataset_versions WHERE pair = \(pair) AND interval_seconds = \(seconds)"
        )[0].decode(0, as: Int.self)
        let openTimes = "{" + rows.map { String($0.openTime) }.joined(separator: ",") + "}"
        let closes = "{" + rows.map(\.closeText).joined(separator: ",") + "}"
        let volumes = policy.includesVolume ? "{" + rows.map { $0.volumeText ?? "NULL" }.joined(separator: ",") + "}" : nil
        let spec = String(decoding: try JSONEncoder().encode(policy.spec), as: UTF8.self)
        try connection.query(
            """
            INSERT INTO features.dataset_versions (pair, interval_seconds, version, feature, window_length, row_count, first_open_time,
                last_open_time, content_hash, training_end, validation_fraction, scaler_minimum, scaler_maximum, open_times, closes,
                volumes, reason, spec)
            VALUES (\(pair), \(seconds), \(next), \(policy.feature), \(policy.window), \(rows.count), \(first.openTime), \(last.openTime),
                \(snapshot.contentHash), \(snapshot.split.trainingEnd), \(policy.validationFraction), \(snapshot.scaler.minimum),
                \(snapshot.scaler.maximum), \(openTimes)::bigint[], \(closes)::numeric[], \(volumes)::numeric[], \(reason), \(spec)::jsonb)
            """)
        let event = snapshot.readyEvent(pair: pair, interval: interval, version: next, policy: policy)
        try Outbox.enqueue(
            Envelope(payload: event), routingKey: event.routingKey, exchange: Exchange.events, schema: FeaturesSchema.name, on: connection)
        return (StoredVersion(version: next, lastOpenTime: last.openTime, rowCount: rows.count, scaler: snapshot.scaler), true)
    }

    /// Records candle events as processed in one statement. For each event, whether it is new: false when it was
    /// processed before, or appears earlier in the same batch.
    static func markProcessed(_ candles: [CandleClosed], on connection: PostgresConnection) throws -> [Bool] {
        guard !candles.isEmpty else { return [] }
        let inserted = try connection.query(
            """
            INSERT INTO features.processed_candles (pair, interval_seconds, open_time, revision)
            SELECT * FROM unnest(\(PostgresArray(candles.map(\.pair)))::text[],
                \(PostgresArray(candles.map { Int($0.interval.seconds) }))::integer[], \(PostgresArray(candles.map(\.openTime)))::bigint[],
                \(PostgresArray(candles.map(\.revision)))::integer[])
            ON CONFLICT DO NOTHING
            RETURNING pair, interval_seconds, open_time, revision
            """)
        var new = Set(
            try inserted.map {
                ProcessedKey(
                    pair: try $0.decode(0, as: String.self), intervalSeconds: try $0.decode(1, as: Int.self),
                    openTime: try $0.decode(2, as: Int64.self), revision: try $0.decode(3, as: Int.self))
            })
        return candles.map { new.remove(ProcessedKey($0)) != nil }
    }

    /// The rows of every window ending at one of `openTimes` (for each, the `limit` rows at or before it, oldest
    /// first), read in one query: the `limit` rows up to the earliest end, then every row up to the latest. A batch
    /// spread over more than `spanLimit` rows is read window by window instead, so no query grows with the series.
    static func windowRows(
        pair: String, interval: CandleInterval, endingAt openTimes: [Int64], last limit: Int, withVolume: Bool,
        spanLimit: Int = 8_192, on connection: PostgresConnection
    ) throws -> [[SeriesRow]] {
        guard let earliest = openTimes.min(), let latest = openTimes.max() else { return [] }
        let seconds = Int(interval.seconds)
        let rows = try connection.query(
            """
            (SELECT open_time, close::text, revision, volume::text FROM ingest.candles_v1
                WHERE pair = \(pair) AND interval_seconds = \(seconds) AND open_time <= \(earliest) ORDER BY open_time DESC LIMIT \(limit))
            UNION ALL
            (SELECT open_time, close::text, revision, volume::text FROM ingest.candles_v1
                WHERE pair = \(pair) AND interval_seconds = \(seconds) AND open_time > \(earliest) AND open_time <= \(latest)
                ORDER BY open_time LIMIT \(spanLimit + 1))
            ORDER BY open_time
            """
        ).map { try SeriesRow($0, withVolume: withVolume) }
        guard rows.count(where: { $0.openTime > earliest }) <= spanLimit else {
            return try openTimes.map {
                try Self.rows(pair: pair, interval: interval, upTo: $0, last: limit, withVolume: withVolume, on: connection)
            }
        }
        return openTimes.map { end in
            // The first row after `end` (rows are ascending): the window is the `limit` rows before it.
            var low = 0
            var high = rows.count
            while low < high {
                let middle = (low + high) / 2
                if rows[middle].openTime <= end { low = middle + 1 } else { high = middle }
            }
            return Array(rows[max(0, low - limit)..<low])
        }
    }
}

/// A processed candle event's identity: a revised candle is a new event.
struct ProcessedKey: Hashable {
    var pair: String
    var intervalSeconds: Int
    var openTime: Int64
    var revision: Int
}

extension ProcessedKey {
    init(_ candle: CandleClosed) {
        self.init(pair: candle.pair, intervalSeconds: Int(candle.interval.seconds), openTime: candle.openTime, revision: candle.revision)
    }
}

extension SeriesRow {
    /// A row of `SELECT open_time, close::text, revision, volume::text`.
    init(_ row: PostgresRow, withVolume: Bool) throws {
        self.init(
            openTime: try row.decode(0, as: Int64.self), closeText: try row.decode(1, as: String.self),
            revision: try row.decode(2, as: Int.self),
            volumeText: withVolume ? try row.decode(3, as: String.self) : nil)
    }
}

/// What one candle event led to.
struct CandleOutcome: Sendable, Equatable {
    var duplicate = false
    var createdVersion: Int?
    var window: FeatureWindow?
}

/// The preprocessor's reaction to candles, independent of AMQP so that it can be tested directly.
struct Preprocessing: Sendable {
    let policy: DatasetPolicy

    /// A closed (or revised) candle: maybe a new dataset version, then the window ending at it.
    func process(_ candle: CandleClosed, on connection: PostgresConnection) throws -> CandleOutcome {
        try process([candle], on: connection)[0]
    }

    /// A backfilled batch: maybe a new version, and the window of the newest candle if not yet sent.
    func process(_ batch: CandlesBackfilled, on connection: PostgresConnection) throws -> CandleOutcome {
        guard let candle = try newestCandle(of: batch, on: connection) else { return CandleOutcome() }
        return try process(candle, on: connection)
    }

    /// The candle event a backfilled batch stands for: its series' newest stored candle (nil while there is none).
    func newestCandle(of batch: CandlesBackfilled, on connection: PostgresConnection) throws -> CandleClosed? {
        guard let latest = try FeatureStore.rows(pair: batch.pair, interval: batch.interval, last: 1, on: connection).last else {
            return nil
        }
        return CandleClosed(
            pair: batch.pair, interval: batch.interval, openTime: latest.openTime, open: latest.closeText, high: latest.closeText,
            low: latest.closeText, close: latest.closeText, volume: "0", trades: nil, revision: latest.revision)
    }

    /// Candle events processed together in the caller's transaction, with the outcomes of processing them one
    /// after another: one statement marks them all processed, each series' version is checked once (whether one is
    /// due depends only on the stored candles, which the transaction sees unchanged), one query per series reads
    /// the rows under all its windows, and one statement writes every window to the outbox, in the events' order.
    func process(_ candles: [CandleClosed], on connection: PostgresConnection) throws -> [CandleOutcome] {
        var outcomes = Array(repeating: CandleOutcome(), count: candles.count)
        let new = try FeatureStore.markProcessed(candles, on: connection)
        var seriesOrder: [String] = []
        var eventsBySeries: [String: [Int]] = [:]
        for index in candles.indices {
            guard new[index] else {
                outcomes[index].duplicate = true
                continue
            }
            let series = "\(candles[index].pair)/\(candles[index].interval.seconds)"
            if eventsBySeries[series] == nil { seriesOrder.append(series) }
            eventsBySeries[series, default: []].append(index)
        }
        for series in seriesOrder {
            guard let indices = eventsBySeries[series], let first = indices.first else { continue }
            let (pair, interval) = (candles[first].pair, candles[first].interval)
            let (found, created) = try currentVersion(pair: pair, interval: interval, on: connection)
            outcomes[first].createdVersion = created
            guard let current = found else { continue }
            let windows = try FeatureStore.windowRows(
                pair: pair, interval: interval, endingAt: indices.map { candles[$0].openTime }, last: DatasetPolicy.windowCloses,
                withVolume: policy.includesVolume, on: connection)
            for (index, rows) in zip(indices, windows) {
                // Only the window that ends at this very candle (it may have been revised away meanwhile).
                guard rows.last?.openTime == candles[index].openTime else { continue }
                outcomes[index].window = WindowBuilder.window(
                    rows: rows, pair: pair, interval: interval, windowLength: policy.window, datasetVersion: current.version,
                    scaler: current.scaler)
            }
        }
        let entries = try outcomes.compactMap(\.window).map {
            try Outbox.Entry(Envelope(payload: $0), routingKey: $0.routingKey, exchange: Exchange.events)
        }
        try Outbox.enqueue(entries, schema: FeaturesSchema.name, on: connection)
        return outcomes
    }

    /// The latest version, after creating a new one when the series has grown enough.
    func currentVersion(pair: String, interval: CandleInterval, on connection: PostgresConnection) throws -> (StoredVersion?, created: Int?)
    {
        let latest = try FeatureStore.latestVersion(pair: pair, interval: interval, on: connection)
        let due: Bool
        if let latest {
            due =
                try FeatureStore.rowCount(
                    pair: pair, interval: interval, after: latest.lastOpenTime, upTo: policy.newVersionEvery, on: connection)
                >= policy.newVersionEvery
        } else {
            due = true
        }
        guard due else { return (latest, nil) }
        let reason = latest == nil ? "first version" : "\(policy.newVersionEvery) new candles"
        guard
            let (version, created) = try FeatureStore.createVersion(
                pair: pair, interval: interval, policy: policy, reason: reason, on: connection)
        else {
            return (latest, nil)
        }
        return (version, created ? version.version : nil)
    }
}
