import Contracts
import Forecasting
import Foundation
import Messaging
import ServiceKit
import Storage
import Synchronization

/// Forecasting and scoring, each a set of statements inside the caller's transaction so that the stored
/// forecast (or score) and its event commit together.
struct Predictions: Sendable {
    /// A model whose newest training candle is older than this makes forecasts flagged `stale` (`ModelStaleness`).
    let maximumModelAge: Duration

    /// Forecasts the window's target with `loaded`; nil when this model already forecast that target.
    func forecast(_ window: FeatureWindow, with loaded: LoadedModel, now: Date = Date(), on connection: PostgresConnection) throws
        -> ForecastCreated?
    {
        // The window carries the most recent closes (up to `ForecastSpec.windows.upperBound`); the model reads the
        // last `spec.window` of them, whatever window its sweep chose.
        let length = loaded.model.spec.window
        guard window.closes.count >= length else {
            throw PermanentFailure("window of \(window.closes.count) closes for a model of window \(length)")
        }
        let closes = Array(window.closes.suffix(length))
        let served = try loaded.forecast(closes: closes)
        guard let lastClose = closes.last else { throw PermanentFailure("an empty window ending \(window.windowEndOpenTime)") }
        do {
            try served.validate()
        } catch {
            throw PermanentFailure("the model's forecast for the window ending \(window.windowEndOpenTime) is refused: \(error.reason)")
        }
        // The reference every forecast is scored beside, on all the closes the window carries (not only the model's).
        let naive = NaiveBaseline.reference(closes: window.closes)
        try lockTarget(pair: window.pair, interval: window.interval, openTime: window.targetOpenTime, on: connection)
        let trainedThrough = try loaded.datasetVersion.flatMap {
            try ModelStaleness.lastOpenTime(pair: window.pair, interval: window.interval, datasetVersion: $0, on: connection)
        }
        let forecast = ForecastCreated(
            pair: window.pair, interval: window.interval, targetOpenTime: window.targetOpenTime, predictedClose: served.point,
            lastClose: lastClose,
            modelName: loaded.name, modelVersion: loaded.version, datasetVersion: window.datasetVersion, producedAt: now,
            stale: ModelStaleness.isStale(
                trainedThrough: trainedThrough, windowEndOpenTime: window.windowEndOpenTime, maximumAge: maximumModelAge),
            intervals: served.intervals, probabilityUp: served.probabilityUp)
        let inserted = try connection.execute(
            """
            INSERT INTO predictions.forecasts (pair, interval_seconds, target_open_time, model_name, model_version, dataset_version,
                window_end_open_time, predicted_close, last_close, stale, produced_at, intervals, probability_up, naive_intervals,
                naive_probability_up)
            VALUES (\(forecast.pair), \(Int(forecast.interval.seconds)), \(forecast.targetOpenTime), \(forecast.modelName),
                \(forecast.modelVersion), \(forecast.datasetVersion), \(window.windowEndOpenTime), \(served.point), \(lastClose),
                \(forecast.stale), \(now), \(try StoredJSON.text(served.intervals))::jsonb, \(served.probabilityUp),
                \(try StoredJSON.text(naive?.intervals))::jsonb, \(naive?.probabilityUp))
            ON CONFLICT DO NOTHING
            """
        ).affectedRows
        guard inserted == 1 else { return nil }
        try Outbox.enqueue(
            Envelope(payload: forecast), routingKey: forecast.routingKey, exchange: Exchange.events, schema: PredictionsSchema.name,
            on: connection)
        let known = try connection.query(
            """
            SELECT close FROM predictions.actuals
            WHERE pair = \(forecast.pair) AND interval_seconds = \(Int(forecast.interval.seconds))
                AND open_time = \(forecast.targetOpenTime)
            """
        ).first
        if let actual = try known?.decode(0, as: Double.self) {
            _ = try score(
                pair: forecast.pair, interval: forecast.interval, openTime: forecast.targetOpenTime, actual: actual, on: connection)
        }
        return forecast
    }

    /// Scores every forecast of the candle's open time (once; again if the candle was revised).
    func score(_ candle: CandleClosed, on connection: PostgresConnection) throws -> [ForecastScored] {
        guard let actual = Double(candle.close), actual.isFinite, actual > 0 else {
            throw PermanentFailure("close \(candle.close) is not a positive number")
        }
        try lockTarget(pair: candle.pair, interval: candle.interval, openTime: candle.openTime, on: connection)
        let current = try connection.execute(
            """
            INSERT INTO predictions.actuals (pair, interval_seconds, open_time, close, revision)
            VALUES (\(candle.pair), \(Int(candle.interval.seconds)), \(candle.openTime), \(actual), \(candle.revision))
            ON CONFLICT (pair, interval_seconds, open_time) DO UPDATE SET close = EXCLUDED.close, revision = EXCLUDED.revision
                WHERE actuals.revision <= EXCLUDED.revision
            """
        ).affectedRows
        // An older revision than the one already recorded (redelivered after it) changes nothing.
        guard current == 1 else { return [] }
        return try score(pair: candle.pair, interval: candle.interval, openTime: candle.openTime, actual: actual, on: connection)
    }

    /// Scores a batch of candles in the caller's transaction, in their order (a revision after its candle wins).
    func score(_ candles: [CandleClosed], on connection: PostgresConnection) throws -> [ForecastScored] {
        try lockTargets(candles.map { ($0.pair, $0.interval, $0.openTime) }, on: connection)
        return try candles.flatMap { try score($0, on: connection) }
    }

    /// Takes the target locks of a batch up front, in one order every transaction shares, so that two batches over
    /// the same targets (windows and candles of a backlog) queue behind each other instead of deadlocking. The
    /// per-target calls inside the batch then take a lock already held.
    func lockTargets(_ targets: [(pair: String, interval: CandleInterval, openTime: Int64)], on connection: PostgresConnection) throws {
        guard targets.count > 1 else { return }
        let ordered = Set(targets.map { Self.lockKey(pair: $0.pair, interval: $0.interval, openTime: $0.openTime) }).sorted()
        for key in ordered { try connection.query("SELECT pg_advisory_xact_lock(hashtextextended(\(key), 0))") }
    }

    private static func lockKey(pair: String, interval: CandleInterval, openTime: Int64) -> String {
        "\(pair)/\(Int(interval.seconds))/\(openTime)"
    }

    /// Forecasting a target and recording its actual take this lock first: otherwise each transaction could
    /// miss the other's uncommitted row (the forecast not yet visible to the score, the actual not yet visible
    /// to the forecast) and the forecast would never be scored.
    private func lockTarget(pair: String, interval: CandleInterval, openTime: Int64, on connection: PostgresConnection) throws {
        let key = Self.lockKey(pair: pair, interval: interval, openTime: openTime)
        try connection.query("SELECT pg_advisory_xact_lock(hashtextextended(\(key), 0))")
    }

    /// Scores the forecasts of one target against its actual close (again only if the close changed).
    private func score(pair: String, interval: CandleInterval, openTime: Int64, actual: Double, on connection: PostgresConnection) throws
        -> [ForecastScored]
    {
        // The errors come from the shared rule (ScoredError in Forecasting), as the trainer's, the gate's and the
        // monitor's do; the rows are already serialised by the target's advisory lock.
        let rows = try connection.query(
            """
            SELECT model_name, model_version, predicted_close, last_close, intervals::text, probability_up, naive_intervals::text,
                   naive_probability_up
            FROM predictions.forecasts
            WHERE pair = \(pair) AND interval_seconds = \(Int(interval.seconds)) AND target_open_time = \(openTime)
                AND actual_close IS DISTINCT FROM \(actual)
            ORDER BY model_name, model_version
            """)
        var scores: [ForecastScored] = []
        for row in rows {
            let modelName = try row.decode(0, as: String.self)
            let modelVersion = try row.decode(1, as: Int.self)
            let predicted = try row.decode(2, as: Double.self)
            let lastClose = try row.decode(3, as: Double.self)
            let errors = ScoredError(predicted: predicted, actual: actual, previous: lastClose)
            let model = UncertaintyScore(
                intervals: try StoredJSON.value([ForecastInterval].self, row.decode(4, as: String?.self)),
                probabilityUp: try row.decode(5, as: Double?.self), actual: actual, lastClose: lastClose)
            let naive = UncertaintyScore(
                intervals: try StoredJSON.value([ForecastInterval].self, row.decode(6, as: String?.self)),
                probabilityUp: try row.decode(7, as: Double?.self), actual: actual, lastClose: lastClose)
            try connection.execute(
                """
                UPDATE predictions.forecasts SET actual_close = \(actual), error = \(predicted - actual),
                    absolute_error = \(errors.absoluteError), percentage_error = \(errors.percentageError),
                    naive_absolute_error = \(errors.naiveAbsoluteError), interval_outcomes = \(try StoredJSON.text(model.outcomes))::jsonb,
                    brier = \(model.brier), naive_interval_outcomes = \(try StoredJSON.text(naive.outcomes))::jsonb,
                    naive_brier = \(naive.brier), scored_at = now()
                WHERE pair = \(pair) AND interval_seconds = \(Int(interval.seconds)) AND target_open_time = \(openTime)
                    AND model_name = \(modelName) AND model_version = \(modelVersion)
                """)
            let score = ForecastScored(
                pair: pair, interval: interval, targetOpenTime: openTime, modelName: modelName, modelVersion: modelVersion,
                predictedClose: predicted, actualClose: actual, error: predicted - actual, absoluteError: errors.absoluteError,
                percentageError: errors.percentageError, naiveAbsoluteError: errors.naiveAbsoluteError,
                intervals: IntervalResult.results(model: model.outcomes, naive: naive.outcomes), brier: model.brier,
                naiveBrier: naive.brier)
            try Outbox.enqueue(
                Envelope(payload: score), routingKey: score.routingKey, exchange: Exchange.events, schema: PredictionsSchema.name,
                on: connection)
            scores.append(score)
        }
        return scores
    }

    /// Keeps a window that arrived before any champion existed.
    func park(_ window: FeatureWindow, on connection: PostgresConnection) throws {
        let payload = String(decoding: try JSONEncoder().encode(window), as: UTF8.self)
        try connection.query(
            """
            INSERT INTO predictions.pending_windows (pair, interval_seconds, target_open_time, payload)
            VALUES (\(window.pair), \(Int(window.interval.seconds)), \(window.targetOpenTime), \(payload))
            ON CONFLICT (pair, interval_seconds, target_open_time) DO UPDATE SET payload = EXCLUDED.payload
            """)
    }

    /// Forecasts the parked windows of `loaded`'s pair and interval and forgets them.
    func forecastParked(pair: String, interval: CandleInterval, with loaded: LoadedModel, on connection: PostgresConnection) throws
        -> [ForecastCreated]
    {
        let rows = try connection.query(
            """
            DELETE FROM predictions.pending_windows WHERE pair = \(pair) AND interval_seconds = \(Int(interval.seconds))
            RETURNING payload
            """)
        var forecasts: [ForecastCreated] = []
        for row in rows {
            let window = try JSONDecoder().decode(FeatureWindow.self, from: Data(try row.decode(0, as: String.self).utf8))
            if let forecast = try forecast(window, with: loaded, on: connection) { forecasts.append(forecast) }
        }
        return forecasts.sorted { $0.targetOpenTime < $1.targetOpenTime }
    }
}

/// How a forecast's intervals and up probability (the model's or the naive reference's) did against the actual close:
/// the shared per-row rules (`IntervalOutcome`, `brierScore` in Forecasting), nil where the forecast had none.
struct UncertaintyScore {
    var outcomes: [IntervalOutcome]?
    var brier: Double?

    init(intervals: [ForecastInterval]?, probabilityUp: Double?, actual: Double, lastClose: Double) {
        outcomes = intervals?.map { IntervalOutcome($0, actual: actual, lastClose: lastClose) }
        brier = probabilityUp.map { brierScore(probabilityUp: $0, actual: actual, lastClose: lastClose) }
    }
}

extension IntervalResult {
    /// One result per level of the model's outcomes, with the naive reference's of the same level beside it; nil when the
    /// model had no intervals (the naive reference's are still stored and in `naive_brier`).
    static func results(model: [IntervalOutcome]?, naive: [IntervalOutcome]?) -> [IntervalResult]? {
        model?.map { outcome in
            let reference = naive?.first { $0.level == outcome.level }
            return IntervalResult(
                level: outcome.level, hit: outcome.hit, winkler: outcome.winkler, naiveHit: reference?.hit,
                naiveWinkler: reference?.winkler)
        }
    }
}

/// The jsonb columns of the predictions schema hold contract values (`ForecastInterval`, `IntervalOutcome`) as JSON.
enum StoredJSON {
    static func text<Value: Encodable>(_ value: Value?) throws -> String? {
        guard let value else { return nil }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    static func value<Value: Decodable>(_ type: Value.Type, _ text: String?) throws -> Value? {
        guard let text else { return nil }
        return try JSONDecoder().decode(type, from: Data(text.utf8))
    }
}

/// The newest forecast per pair and interval, kept in memory for the latest-forecast endpoint.
final class LatestForecasts: Sendable {
    private let latest = Mutex<[String: ForecastCreated]>([:])

    static func key(pair: String, interval: String) -> String { "\(pair.uppercased())/\(interval)" }

    func record(_ forecast: ForecastCreated) {
        let key = Self.key(pair: forecast.pair, interval: forecast.interval.name)
        latest.withLock { latest in
            if let current = latest[key], current.targetOpenTime > forecast.targetOpenTime { return }
            latest[key] = forecast
        }
    }

    func forecast(pair: String, interval: String) -> ForecastCreated? { latest.withLock { $0[Self.key(pair: pair, interval: interval)] } }
}
