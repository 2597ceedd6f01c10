import Contracts
import Forecasting
import Foundation
import Storage

/// The errors of one scored forecast and the rolling metrics of the last N of them: the shared definitions
/// (Shared/Forecasting/Metrics.swift), the same formulas the trainer's test metrics and the dashboard use.
typealias ScoredError = Forecasting.ScoredError
typealias RollingAccuracy = ForecastAccuracy

/// A pair, interval and model version: the series the rolling metrics are kept for.
struct ModelSeries: Sendable, Hashable {
    var pair: String
    var interval: CandleInterval
    var modelVersion: Int
}

/// What the monitor stores of each event, inside the caller's transaction; every write is keyed by the
/// event's natural key, so a redelivery returns false and changes nothing.
enum Observations {
    static func record(_ forecast: ForecastCreated, on connection: PostgresConnection) throws -> Bool {
        try connection.execute(
            """
            INSERT INTO monitor.forecasts (pair, interval_seconds, target_open_time, model_name, model_version, predicted_close, last_close,
                stale, produced_at)
            VALUES (\(forecast.pair), \(Int(forecast.interval.seconds)), \(forecast.targetOpenTime), \(forecast.modelName),
                \(forecast.modelVersion), \(forecast.predictedClose), \(forecast.lastClose), \(forecast.stale), \(forecast.producedAt))
            ON CONFLICT DO NOTHING
            """
        ).affectedRows == 1
    }

    /// Stores a score; a revised actual replaces the earlier one. True when the forecast had no score yet.
    static func record(_ score: ForecastScored, on connection: PostgresConnection) throws -> Bool {
        let rows = try connection.query(
            """
            INSERT INTO monitor.scores (pair, interval_seconds, target_open_time, model_name, model_version, predicted_close, actual_close,
                absolute_error, percentage_error, naive_absolute_error)
            VALUES (\(score.pair), \(Int(score.interval.seconds)), \(score.targetOpenTime), \(score.modelName), \(score.modelVersion),
                \(score.predictedClose), \(score.actualClose), \(score.absoluteError), \(score.percentageError),
                \(score.naiveAbsoluteError))
            ON CONFLICT (pair, interval_seconds, target_open_time, model_version) DO UPDATE SET
                actual_close = excluded.actual_close, absolute_error = excluded.absolute_error,
                percentage_error = excluded.percentage_error, naive_absolute_error = excluded.naive_absolute_error, scored_at = now()
                WHERE monitor.scores.actual_close IS DISTINCT FROM excluded.actual_close
            RETURNING (xmax = 0) AS inserted
            """)
        return try rows.first?.decode(0, as: Bool.self) ?? false
    }

    /// Keeps the newest open time per series; older or repeated candles leave it as it is.
    static func recordCandle(pair: String, interval: CandleInterval, openTime: Int64, close: Double?, on connection: PostgresConnection)
        throws
    {
        try connection.execute(
            """
            INSERT INTO monitor.latest_candles (pair, interval_seconds, open_time, close)
            VALUES (\(pair), \(Int(interval.seconds)), \(openTime), \(close))
            ON CONFLICT (pair, interval_seconds) DO UPDATE
                SET open_time = excluded.open_time, close = coalesce(excluded.close, monitor.latest_candles.close)
                WHERE monitor.latest_candles.open_time < excluded.open_time
            """)
    }

    static func record(_ promoted: ModelPromoted, on connection: PostgresConnection) throws -> Bool {
        guard promoted.alias == "champion" else { return false }
        return try connection.execute(
            """
            INSERT INTO monitor.champions (model_name, version, pair, interval_seconds)
            VALUES (\(promoted.modelName), \(promoted.version), \(promoted.pair), \(Int(promoted.interval.seconds)))
            ON CONFLICT (model_name) DO UPDATE SET version = excluded.version, promoted_at = now()
                WHERE monitor.champions.version IS DISTINCT FROM excluded.version
            """
        ).affectedRows == 1
    }

    static func recentErrors(of series: ModelSeries, limit: Int, on connection: PostgresConnection) throws -> [ScoredError] {
        try connection.query(
            """
            SELECT absolute_error, percentage_error, naive_absolute_error FROM monitor.scores
            WHERE pair = \(series.pair) AND interval_seconds = \(Int(series.interval.seconds)) AND model_version = \(series.modelVersion)
            ORDER BY target_open_time DESC LIMIT \(limit)
            """
        ).map { row in
            ScoredError(
                absoluteError: try row.decode(0, as: Double.self), percentageError: try row.decode(1, as: Double.self),
                naiveAbsoluteError: try row.decode(2, as: Double.self))
        }
    }

    static func scoredSeries(on connection: PostgresConnection) throws -> [ModelSeries] {
        try connection.query("SELECT DISTINCT pair, interval_seconds, model_version FROM monitor.scores").map { row in
            ModelSeries(
                pair: try row.decode(0, as: String.self), interval: try CandleInterval(storedSeconds: try row.decode(1, as: Int.self)),
                modelVersion: try row.decode(2, as: Int.self))
        }
    }

    /// The open time of the newest candle of every series.
    static func latestCandles(on connection: PostgresConnection) throws -> [(pair: String, interval: CandleInterval, openTime: Int64)] {
        try connection.query("SELECT pair, interval_seconds, open_time FROM monitor.latest_candles").map { row in
            (
                try row.decode(0, as: String.self), try CandleInterval(storedSeconds: try row.decode(1, as: Int.self)),
                try row.decode(2, as: Int64.self)
            )
        }
    }

    static func latestForecastTimes(on connection: PostgresConnection) throws -> [(
        pair: String, interval: CandleInterval, producedAt: Date
    )] {
        try connection.query("SELECT pair, interval_seconds, max(produced_at) FROM monitor.forecasts GROUP BY pair, interval_seconds").map {
            row in
            (
                try row.decode(0, as: String.self), try CandleInterval(storedSeconds: try row.decode(1, as: Int.self)),
                try row.decode(2, as: Date.self)
            )
        }
    }

    static func champions(on connection: PostgresConnection) throws -> [(model: String, version: Int)] {
        try connection.query("SELECT model_name, version FROM monitor.champions").map { row in
            (try row.decode(0, as: String.self), try row.decode(1, as: Int.self))
        }
    }
}
