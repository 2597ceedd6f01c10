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
        return try rows.map {
            SeriesRow(
                openTime: try $0.decode(0, as: Int64.self), closeText: try $0.decode(1, as: String.self),
                revision: try $0.decode(2, as: Int.self),
                volumeText: withVolume ? try $0.decode(3, as: String.self) : nil)
        }
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

    /// Records that a candle event was processed; false when it already was.
    static func markProcessed(pair: String, interval: CandleInterval, openTime: Int64, revision: Int, on connection: PostgresConnection)
        throws -> Bool
    {
        try connection.execute(
            """
            INSERT INTO features.processed_candles (pair, interval_seconds, open_time, revision)
            VALUES (\(pair), \(Int(interval.seconds)), \(openTime), \(revision)) ON CONFLICT DO NOTHING
            """
        ).affectedRows == 1
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

    /// Series whose dataset version was already checked in the current transaction, and the version found. Whether a
    /// version is due depends only on the stored candles, which a transaction sees unchanged (but for a concurrent
    /// ingest, then picked up by the next transaction), so the events of one batch check once per series.
    struct CheckedVersions {
        fileprivate var bySeries: [String: StoredVersion?] = [:]
    }

    /// A closed (or revised) candle: maybe a new dataset version, then the window ending at it.
    func process(_ candle: CandleClosed, on connection: PostgresConnection) throws -> CandleOutcome {
        var checked = CheckedVersions()
        return try process(candle, on: connection, checked: &checked)
    }

    /// `process(_:on:)` as one event of a batch sharing `checked`.
    func process(_ candle: CandleClosed, on connection: PostgresConnection, checked: inout CheckedVersions) throws -> CandleOutcome {
        guard
            try FeatureStore.markProcessed(
                pair: candle.pair, interval: candle.interval, openTime: candle.openTime, revision: candle.revision, on: connection)
        else {
            return CandleOutcome(duplicate: true)
        }
        var outcome = CandleOutcome()
        let series = "\(candle.pair)/\(candle.interval.seconds)"
        let found: StoredVersion?
        if let known = checked.bySeries[series] {
            found = known
        } else {
            let (latest, created) = try currentVersion(pair: candle.pair, interval: candle.interval, on: connection)
            outcome.createdVersion = created
            checked.bySeries[series] = latest
            found = latest
        }
        guard let current = found else { return outcome }
        let rows = try FeatureStore.rows(
            pair: candle.pair, interval: candle.interval, upTo: candle.openTime, last: DatasetPolicy.windowCloses,
            withVolume: policy.includesVolume,
            on: connection)
        // Only the window that ends at this very candle (it may have been revised away meanwhile).
        guard rows.last?.openTime == candle.openTime,
            let window = WindowBuilder.window(
                rows: rows, pair: candle.pair, interval: candle.interval, windowLength: policy.window, datasetVersion: current.version,
                scaler: current.scaler)
        else { return outcome }
        try Outbox.enqueue(
            Envelope(payload: window), routingKey: window.routingKey, exchange: Exchange.events, schema: FeaturesSchema.name, on: connection
        )
        outcome.window = window
        return outcome
    }

    /// A backfilled batch: maybe a new version, and the window of the newest candle if not yet sent.
    func process(_ batch: CandlesBackfilled, on connection: PostgresConnection) throws -> CandleOutcome {
        var checked = CheckedVersions()
        return try process(batch, on: connection, checked: &checked)
    }

    /// `process(_:on:)` as one event of a batch sharing `checked`.
    func process(_ batch: CandlesBackfilled, on connection: PostgresConnection, checked: inout CheckedVersions) throws -> CandleOutcome {
        let latest = try FeatureStore.rows(pair: batch.pair, interval: batch.interval, last: 1, on: connection).last
        guard let latest else { return CandleOutcome() }
        let candle = CandleClosed(
            pair: batch.pair, interval: batch.interval, openTime: latest.openTime, open: latest.closeText, high: latest.closeText,
            low: latest.closeText, close: latest.closeText, volume: "0", trades: nil, revision: latest.revision)
        return try process(candle, on: connection, checked: &checked)
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
