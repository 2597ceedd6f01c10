import Contracts
import Forecasting
import Foundation
import Hummingbird
import PredictorAPI
import ServiceKit
import Storage

/// The predictor's HTTP API: the server side of docs/predictor-openapi.yaml (module PredictorAPI). Decoding and
/// the response shapes are the generated code's; the rules OpenAPI cannot state (pair names, `from` <= `to`, the
/// champion's window) are checked here, and refusals are thrown as `HTTPError`s the document lists.
struct PredictorHTTP: APIProtocol {
    let predictor: Predictor

    /// Adds the operations to `router` (405 with `Allow` for other methods, bodies bounded at 256 KiB).
    func add(to router: Router<BasicRequestContext>) throws {
        try OpenAPIServer.add(to: router) { try registerHandlers(on: $0) }
    }

    // Served from memory: the hot path of every dashboard and client.
    func getLatestForecast(_ input: Operations.GetLatestForecast.Input) async throws -> Operations.GetLatestForecast.Output {
        let (pair, interval) = try Self.target(input.query.pair, input.query.interval)
        guard let forecast = predictor.latest.forecast(pair: pair, interval: interval.name) else {
            throw HTTPError(.notFound, message: "no forecast yet for \(pair) \(interval)")
        }
        return .ok(.init(body: .json(try Self.forecast(forecast))))
    }

    func listForecasts(_ input: Operations.ListForecasts.Input) async throws -> Operations.ListForecasts.Output {
        let (pair, interval) = try Self.target(input.query.pair, input.query.interval)
        let range = try HTTPInput.timeRange(from: input.query.from, to: input.query.to)
        let limit = try HTTPInput.integer(input.query.limit ?? 1000, "query parameter limit", in: 1...10_000)
        let rows = try await predictor.database.query(
            """
            SELECT * FROM (
                SELECT target_open_time, predicted_close, last_close, model_name, model_version, dataset_version, produced_at, stale,
                       actual_close, error, absolute_error, percentage_error, naive_absolute_error, scored_at, intervals::text,
                       probability_up, interval_outcomes::text, naive_interval_outcomes::text, brier, naive_brier
                FROM predictions.forecasts WHERE pair = \(pair) AND interval_seconds = \(Int(interval.seconds))
                    AND target_open_time BETWEEN \(range.lowerBound) AND \(range.upperBound)
                ORDER BY target_open_time DESC, model_version DESC LIMIT \(limit)) newest
            ORDER BY target_open_time, model_version
            """)
        let name = try Self.interval(interval)
        let forecasts = try rows.map { row in
            let intervals = Self.scoredIntervals(
                try StoredJSON.value([ForecastInterval].self, row.decode(14, as: String?.self)),
                outcomes: try StoredJSON.value([IntervalOutcome].self, row.decode(16, as: String?.self)),
                naive: try StoredJSON.value([IntervalOutcome].self, row.decode(17, as: String?.self)))
            return Components.Schemas.ScoredForecast(
                pair: pair, interval: name, targetOpenTime: Date(unixSeconds: try row.decode(0, as: Int64.self)),
                predictedClose: try row.decode(1, as: Double.self), lastClose: try row.decode(2, as: Double.self),
                modelName: try row.decode(3, as: String.self), modelVersion: try row.decode(4, as: Int.self),
                datasetVersion: try row.decode(5, as: Int.self), producedAt: try row.decode(6, as: Date.self),
                stale: try row.decode(7, as: Bool.self),
                actualClose: try row.decode(8, as: Double?.self), error: try row.decode(9, as: Double?.self),
                absoluteError: try row.decode(10, as: Double?.self), percentageError: try row.decode(11, as: Double?.self),
                naiveAbsoluteError: try row.decode(12, as: Double?.self), scoredAt: try row.decode(13, as: Date?.self),
                intervals: intervals, probabilityUp: try row.decode(15, as: Double?.self), brier: try row.decode(18, as: Double?.self),
                naiveBrier: try row.decode(19, as: Double?.self))
        }
        return .ok(.init(body: .json(forecasts)))
    }

    func predict(_ input: Operations.Predict.Input) async throws -> Operations.Predict.Output {
        guard case .json(let body) = input.body else {
            throw HTTPError(.unsupportedMediaType, message: "the body must be application/json")
        }
        let interval = try HTTPInput.interval(body.interval?.rawValue ?? "1d", field: "interval")
        let pair = try HTTPInput.pair(body.pair ?? "XBTUSD")
        // The input is checked before any model is looked up: a bad request is a 400 whether or not a champion exists.
        guard (2...512).contains(body.closes.count) else {
            throw HTTPError(.badRequest, message: "closes must hold 2 to 512 values, oldest first")
        }
        guard body.closes.allSatisfy({ $0.isFinite && $0 > 0 && $0 <= ContractRules.maximumAmount }) else {
            throw HTTPError(.badRequest, message: "closes must be positive finite numbers up to \(ContractRules.maximumAmount)")
        }
        guard let loaded = try await predictor.model(pair: pair, interval: interval) else {
            throw HTTPError(.notFound, message: "no champion model for \(pair) \(interval) yet")
        }
        // Well-formed, but the champion in place now takes another window (a promotion can change it).
        let window = loaded.model.window
        guard body.closes.count == window else {
            throw HTTPError(
                .conflict, message: "the champion (v\(loaded.version)) takes exactly \(window) closes, oldest first; see GET /v1/model")
        }
        // The network's pass blocks its thread: never one of the cooperative pool's.
        let closes = body.closes
        let served = try? await onOwnThread("forecast") { try loaded.forecast(closes: closes) }
        guard let served, (try? served.validate()) != nil else {
            throw HTTPError(.conflict, message: "the champion (v\(loaded.version)) gives no valid forecast for these closes")
        }
        return .ok(
            .init(
                body: .json(
                    .init(
                        pair: pair, interval: try Self.interval(interval), predictedClose: served.point, lastClose: body.closes[window - 1],
                        modelName: loaded.name, modelVersion: loaded.version, intervals: served.intervals.map(Self.intervals),
                        probabilityUp: served.probabilityUp))))
    }

    func getChampion(_ input: Operations.GetChampion.Input) async throws -> Operations.GetChampion.Output {
        let (pair, interval) = try Self.target(input.query.pair, input.query.interval)
        guard let loaded = try await predictor.model(pair: pair, interval: interval) else {
            throw HTTPError(.notFound, message: "no champion model for \(pair) \(interval) yet")
        }
        let epochsRun: Int
        let kind: Components.Schemas.Champion.KindPayload
        switch loaded.model {
        case .lstm(let model):
            epochsRun = model.summary.epochsRun
            kind = .lstm
        case .naive:
            epochsRun = 0
            kind = .naiveEmpirical
        }
        return .ok(
            .init(
                body: .json(
                    .init(
                        modelName: loaded.name, modelVersion: loaded.version, window: loaded.model.window,
                        target: loaded.model.spec.target.rawValue, epochsRun: epochsRun, kind: kind, calibrated: loaded.model.isCalibrated,
                        createdAt: loaded.createdAt))))
    }

    /// The pair and interval of a query (each defaulted when absent, checked when present).
    private static func target(_ pair: String?, _ interval: Components.Schemas.Interval?) throws -> (String, CandleInterval) {
        (
            try HTTPInput.pair(pair ?? "XBTUSD", field: "query parameter pair"),
            try HTTPInput.interval(interval?.rawValue ?? "1d", field: "query parameter interval")
        )
    }

    /// The document's name of an interval; every supported interval has one.
    static func interval(_ interval: CandleInterval) throws -> Components.Schemas.Interval {
        guard let name = Components.Schemas.Interval(rawValue: interval.name) else {
            throw HTTPError(.internalServerError, message: "interval \(interval.name) is not in docs/predictor-openapi.yaml")
        }
        return name
    }

    static func forecast(_ forecast: ForecastCreated) throws -> Components.Schemas.Forecast {
        Components.Schemas.Forecast(
            pair: forecast.pair, interval: try interval(forecast.interval), targetOpenTime: Date(unixSeconds: forecast.targetOpenTime),
            predictedClose: forecast.predictedClose, lastClose: forecast.lastClose, modelName: forecast.modelName,
            modelVersion: forecast.modelVersion, datasetVersion: forecast.datasetVersion, producedAt: forecast.producedAt,
            stale: forecast.stale, intervals: forecast.intervals.map(intervals), probabilityUp: forecast.probabilityUp)
    }

    static func intervals(_ intervals: [ForecastInterval]) -> [Components.Schemas.ForecastInterval] {
        intervals.map { Components.Schemas.ForecastInterval(level: $0.level, lower: $0.lower, upper: $0.upper) }
    }

    /// A stored forecast's intervals with, once scored, each one's outcome and the naive reference's of the same level.
    static func scoredIntervals(_ intervals: [ForecastInterval]?, outcomes: [IntervalOutcome]?, naive: [IntervalOutcome]?)
        -> [Components.Schemas.ScoredInterval]?
    {
        intervals?.map { interval in
            let outcome = outcomes?.first { $0.level == interval.level }
            let reference = naive?.first { $0.level == interval.level }
            return Components.Schemas.ScoredInterval(
                level: interval.level, lower: interval.lower, upper: interval.upper, hit: outcome?.hit, winkler: outcome?.winkler,
                naiveHit: reference?.hit, naiveWinkler: reference?.winkler)
        }
    }
}

extension Date {
    init(unixSeconds: Int64) { self.init(timeIntervalSince1970: TimeInterval(unixSeconds)) }
}
