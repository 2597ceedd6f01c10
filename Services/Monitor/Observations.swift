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
        let inserted =
            try connection.execute(
                """
                INSERT INTO monitor.forecasts (pair, interval_seconds, target_open_time, model_name, model_version, predicted_close,
                    last_close, stale, produced_at, probability_up)
                VALUES (\(forecast.pair), \(Int(forecast.interval.seconds)), \(forecast.targetOpenTime), \(forecast.modelName),
                    \(forecast.modelVersion), \(forecast.predictedClose), \(forecast.lastClose), \(forecast.stale), \(forecast.producedAt),
                    \(forecast.probabilityUp))
                ON CONFLICT DO NOTHING
                """
            ).affectedRows == 1
        guard inserted else { return false }
        for interval in forecast.intervals ?? [] {
            try connection.execute(
                """
                INSERT INTO monitor.forecast_intervals (pair, interval_seconds, target_open_time, model_version, level, lower, upper)
                VALUES (\(forecast.pair), \(Int(forecast.interval.seconds)), \(forecast.targetOpenTime), \(forecast.modelVersion),
                    \(interval.level), \(interval.lower), \(interval.upper))
                """)
        }
        return true
    }

    /// Stores a score; a revised actual replaces the earlier one. True when the forecast had no score yet.
    /// Interval results and Brier scores are stored with the score and replaced with it; a score without them (an
    /// older predictor) stores none.
    static func record(_ score: ForecastScored, on connection: PostgresConnection) throws -> Bool {
        let rows = try connection.query(
            """
            INSERT INTO monitor.scores (pair, interval_seconds, target_open_time, model_name, model_version, predicted_close, actual_close,
                absolute_error, percentage_error, naive_absolute_error, brier, naive_brier)
            VALUES (\(score.pair), \(Int(score.interval.seconds)), \(score.targetOpenTime), \(score.modelName), \(score.modelVersion),
                \(score.predictedClose), \(score.actualClose), \(score.absoluteError), \(score.percentageError),
                \(score.naiveAbsoluteError), \(score.brier), \(score.naiveBrier))
            ON CONFLICT (pair, interval_seconds, target_open_time, model_version) DO UPDATE SET
                actual_close = excluded.actual_close, absolute_error = excluded.absolute_error,
                percentage_error = excluded.percentage_error, naive_absolute_error = excluded.naive_absolute_error,
                brier = excluded.brier, naive_brier = excluded.naive_brier, scored_at = now()
                WHERE monitor.scores.actual_close IS DISTINCT FROM excluded.actual_close
            RETURNING (xmax = 0) AS inserted
            """)
        // No row: a redelivery of the stored score, which changes nothing.
        guard let inserted = try rows.first?.decode(0, as: Bool.self) else { return false }
        let key = (pair: score.pair, seconds: Int(score.interval.seconds), time: score.targetOpenTime, version: score.modelVersion)
        try connection.execute(
            """
            DELETE FROM monitor.score_intervals
            WHERE pair = \(key.pair) AND interval_seconds = \(key.seconds) AND target_open_time = \(key.time)
                AND model_version = \(key.version)
            """)
        for result in score.intervals ?? [] {
            try connection.execute(
                """
                INSERT INTO monitor.score_intervals (pair, interval_seconds, target_open_time, model_version, level, hit, winkler,
                    naive_hit, naive_winkler)
                VALUES (\(key.pair), \(key.seconds), \(key.time), \(key.version), \(result.level), \(result.hit), \(result.winkler),
                    \(result.naiveHit), \(result.naiveWinkler))
                """)
        }
        return inserted
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

    /// The uncertainty figures of the newest `limit` scores of `series` that carry interval results, newest first.
    static func recentReportedScores(of series: ModelSeries, limit: Int, on connection: PostgresConnection) throws -> [ReportedScore] {
        let rows = try connection.query(
            """
            SELECT s.target_open_time, s.brier, s.naive_brier, i.level, i.hit, i.winkler, i.naive_hit, i.naive_winkler
            FROM (
                SELECT pair, interval_seconds, target_open_time, model_version, brier, naive_brier FROM monitor.scores s
                WHERE pair = \(series.pair) AND interval_seconds = \(Int(series.interval.seconds))
                    AND model_version = \(series.modelVersion)
                    AND EXISTS (SELECT 1 FROM monitor.score_intervals i
                        WHERE (i.pair, i.interval_seconds, i.target_open_time, i.model_version)
                            = (s.pair, s.interval_seconds, s.target_open_time, s.model_version))
                ORDER BY target_open_time DESC LIMIT \(limit)
            ) s
            JOIN monitor.score_intervals i USING (pair, interval_seconds, target_open_time, model_version)
            ORDER BY s.target_open_time DESC, i.level
            """)
        var scores: [(time: Int64, score: ReportedScore)] = []
        for row in rows {
            let time = try row.decode(0, as: Int64.self)
            let result = IntervalResult(
                level: try row.decode(3, as: Double.self), hit: try row.decode(4, as: Bool.self),
                winkler: try row.decode(5, as: Double.self), naiveHit: try row.decode(6, as: Bool?.self),
                naiveWinkler: try row.decode(7, as: Double?.self))
            if scores.last?.time == time {
                scores[scores.count - 1].score.intervals.append(result)
            } else {
                let score = ReportedScore(
                    intervals: [result], brier: try row.decode(1, as: Double?.self), naiveBrier: try row.decode(2, as: Double?.self))
                scores.append((time, score))
            }
        }
        return scores.map(\.score)
    }

    /// The model version of the newest score of a pair and interval that carries interval results.
    static func newestVersionWithIntervals(pair: String, interval: CandleInterval, on connection: PostgresConnection) throws -> Int? {
        try connection.query(
            """
            SELECT model_version FROM monitor.score_intervals
            WHERE pair = \(pair) AND interval_seconds = \(Int(interval.seconds))
            ORDER BY target_open_time DESC, model_version DESC LIMIT 1
            """
        ).first?.decode(0, as: Int.self)
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
