import Contracts
import Forecasting
import Foundation
import Hummingbird
import Logging
import MonitorAPI
import ServiceKit
import Storage

/// The web dashboard at `/` (docs/monitor-openapi.yaml, module MonitorAPI): server-rendered HTML and SVG.
/// Query: `pair` (XBTUSD), `interval` (1d), and a range, either `days` (30, 90, 365, or 0 for all) or
/// `from`/`to` (RFC 3339 dates or timestamps). The range ends at the newest candle, so a replayed history is
/// shown where it lies in time.
struct Dashboard: APIProtocol {
    let database: PostgresClient
    let registry: RegistryReader
    let freshness: Freshness
    let rollingWindow: Int
    let logger: Logger

    func add(to router: Router<BasicRequestContext>) throws {
        try OpenAPIServer.add(to: router) { try registerHandlers(on: $0) }
    }

    func getDashboard(_ input: Operations.GetDashboard.Input) async throws -> Operations.GetDashboard.Output {
        let query = try DashboardQuery(input.query)
        let page: DashboardData
        do {
            page = try await load(query)
        } catch {
            logger.error("cannot load the dashboard", metadata: ["error": "\(error)"])
            throw HTTPError(.serviceUnavailable, message: "the dashboard's data cannot be read right now")
        }
        return .ok(.init(headers: .init(cacheControl: "no-store"), body: .html(.init(DashboardPage(data: page).render()))))
    }

    func load(_ query: DashboardQuery) async throws -> DashboardData {
        let pair = query.pair
        let intervalSeconds = Int(query.interval.seconds)
        // Prices come from the ingestor's read contract, which exists once the ingestor has started.
        let candlesReadable =
            try await database.query("SELECT to_regclass('ingest.candles_v1') IS NOT NULL").first?.decode(0, as: Bool.self) ?? false
        let newestCandle: Int64? =
            candlesReadable
            ? try await database.query(
                "SELECT max(open_time) FROM ingest.candles_v1 WHERE pair = \(pair) AND interval_seconds = \(intervalSeconds)"
            )
            .first?.decode(0, as: Int64?.self) : nil
        let newestForecast = try await database.query(
            "SELECT max(target_open_time) FROM monitor.forecasts WHERE pair = \(pair) AND interval_seconds = \(intervalSeconds)"
        ).first?.decode(0, as: Int64?.self)
        let newest = [newestCandle, newestForecast].compactMap { $0 }.max() ?? Int64(Date().timeIntervalSince1970)
        let range = query.range(endingAt: newest)
        let prices =
            !candlesReadable
            ? []
            : try await database.query(
                """
                SELECT open_time, close::float8 FROM ingest.candles_v1
                WHERE pair = \(pair) AND interval_seconds = \(intervalSeconds)
                    AND open_time BETWEEN \(range.lowerBound) AND \(range.upperBound)
                ORDER BY open_time
                """
            ).map { PricePoint(openTime: try $0.decode(0, as: Int64.self), close: try $0.decode(1, as: Double.self)) }
        var forecasts = try await database.query(
            """
            SELECT f.target_open_time, f.model_version, f.predicted_close, f.last_close, f.stale, s.actual_close, s.absolute_error,
                   s.naive_absolute_error
            FROM monitor.forecasts f
            LEFT JOIN monitor.scores s USING (pair, interval_seconds, target_open_time, model_version)
            WHERE f.pair = \(pair) AND f.interval_seconds = \(intervalSeconds)
                AND f.target_open_time BETWEEN \(range.lowerBound) AND \(range.upperBound)
            ORDER BY f.target_open_time, f.model_version
            """
        ).map { row in
            ForecastPoint(
                targetOpenTime: try row.decode(0, as: Int64.self), modelVersion: try row.decode(1, as: Int.self),
                predictedClose: try row.decode(2, as: Double.self), lastClose: try row.decode(3, as: Double.self),
                stale: try row.decode(4, as: Bool.self),
                actualClose: try row.decode(5, as: Double?.self), absoluteError: try row.decode(6, as: Double?.self),
                naiveAbsoluteError: try row.decode(7, as: Double?.self))
        }
        var bands: [ForecastKey: [ForecastInterval]] = [:]
        for row in try await database.query(
            """
            SELECT target_open_time, model_version, level, lower, upper FROM monitor.forecast_intervals
            WHERE pair = \(pair) AND interval_seconds = \(intervalSeconds)
                AND target_open_time BETWEEN \(range.lowerBound) AND \(range.upperBound)
            ORDER BY target_open_time, model_version, level
            """)
        {
            let key = ForecastKey(targetOpenTime: try row.decode(0, as: Int64.self), modelVersion: try row.decode(1, as: Int.self))
            let interval = ForecastInterval(
                level: try row.decode(2, as: Double.self), lower: try row.decode(3, as: Double.self),
                upper: try row.decode(4, as: Double.self))
            bands[key, default: []].append(interval)
        }
        for index in forecasts.indices {
            forecasts[index].intervals = bands[forecasts[index].key] ?? []
        }
        // The same figures as /metrics: the last scored forecasts of the version that made the newest scored interval.
        let intervalScores = try await database.withConnection { connection -> RollingIntervalScores? in
            guard let version = try Observations.newestVersionWithIntervals(pair: pair, interval: query.interval, on: connection) else {
                return nil
            }
            let series = ModelSeries(pair: pair, interval: query.interval, modelVersion: version)
            let scores = ReportedScores(try Observations.recentReportedScores(of: series, limit: Monitor.intervalWindow, on: connection))
            return scores.map { RollingIntervalScores(modelVersion: version, window: Monitor.intervalWindow, scores: $0) }
        }
        let series = try await database.query("SELECT DISTINCT pair, interval_seconds FROM monitor.latest_candles ORDER BY 1, 2").map {
            "\(try $0.decode(0, as: String.self)) \(try CandleInterval(storedSeconds: try $0.decode(1, as: Int.self)).name)"
        }

        let name = modelName(pair: pair, interval: query.interval)
        // The champion as the monitor heard it on model.promoted; history and runs are the registry's.
        let champion = try await database.query("SELECT version FROM monitor.champions WHERE model_name = \(name)").first?.decode(
            0, as: Int.self)
        async let history = registry.aliasHistory(model: name)
        async let runs = registry.recentRuns(limit: 10)
        var registryNote: String?
        var aliasHistory: [RegistryReader.AliasMove] = []
        var recentRuns: [RegistryReader.RunSummary] = []
        do {
            recentRuns = try await runs
            aliasHistory = (try? await history) ?? []
        } catch {
            registryNote = "The registry could not be reached (\(error)); alias history and runs are not shown."
        }
        return DashboardData(
            query: query, range: range, prices: prices, forecasts: forecasts, modelName: name, champion: champion,
            aliasHistory: aliasHistory.reversed(), runs: recentRuns, registryNote: registryNote, knownSeries: series,
            candleCloseTimes: freshness.candleCloseTimes, forecastTimes: freshness.forecastTimes, deadLetters: freshness.deadLetters,
            rollingWindow: rollingWindow, intervalScores: intervalScores, now: Date())
    }
}

/// The dashboard's validated query parameters.
struct DashboardQuery: Sendable {
    var pair: String
    var interval: CandleInterval
    var days: Int?
    var from: Int64?
    var to: Int64?

    init(_ query: Operations.GetDashboard.Input.Query) throws {
        pair = try HTTPInput.pair(query.pair ?? "XBTUSD", field: "query parameter pair")
        interval = try HTTPInput.interval(query.interval?.rawValue ?? "1d", field: "query parameter interval")
        from = try query.from.map { try HTTPInput.instant($0, field: "from") }
        to = try query.to.map { try HTTPInput.instant($0, field: "to", endOfDay: true) }
        if let from, let to, from > to { throw HTTPError(.badRequest, message: "from must not be after to") }
        if let days = query.days {
            self.days = try HTTPInput.integer(days, "query parameter days", in: 0...36_500)
        } else if from == nil && to == nil {
            days = 90
        }
    }

    /// Open times shown: `from`...`to`, else the last `days` before the newest candle (0: everything).
    func range(endingAt newest: Int64) -> ClosedRange<Int64> {
        let end = to ?? newest
        let start = from ?? (days.map { $0 == 0 ? Int64.min / 2 : end - Int64($0) * 86_400 } ?? Int64.min / 2)
        return start...max(start, end)
    }
}

struct PricePoint: Sendable {
    var openTime: Int64
    var close: Double
}

struct ForecastKey: Hashable, Sendable {
    var targetOpenTime: Int64
    var modelVersion: Int
}

struct ForecastPoint: Sendable {
    var targetOpenTime: Int64
    var modelVersion: Int
    var predictedClose: Double
    var lastClose: Double
    var stale: Bool
    var actualClose: Double?
    var absoluteError: Double?
    var naiveAbsoluteError: Double?
    /// The forecast's ranges by level (`IntervalLevels.all` order); none from a producer that sends none.
    var intervals: [ForecastInterval] = []

    var key: ForecastKey { ForecastKey(targetOpenTime: targetOpenTime, modelVersion: modelVersion) }

    func interval(_ level: Double) -> ForecastInterval? { intervals.first { $0.level == level } }
}

/// The coverage card's figures, also embedded in the page as JSON (`#interval-scores`): the last `window` scored
/// forecasts with intervals of one model version, as `/metrics` exports them.
struct RollingIntervalScores: Sendable, Encodable {
    var modelVersion: Int
    var window: Int
    var scores: ReportedScores

    enum CodingKeys: String, CodingKey {
        case window, scores
        case modelVersion = "model_version"
    }
}

struct DashboardData: Sendable {
    var query: DashboardQuery
    var range: ClosedRange<Int64>
    var prices: [PricePoint]
    var forecasts: [ForecastPoint]
    var modelName: String
    var champion: Int?
    var aliasHistory: [RegistryReader.AliasMove]
    var runs: [RegistryReader.RunSummary]
    var registryNote: String?
    var knownSeries: [String]
    var candleCloseTimes: [Freshness.SeriesKey: Int64]
    var forecastTimes: [Freshness.SeriesKey: Date]
    var deadLetters: [ServiceName: Int]
    var rollingWindow: Int
    var intervalScores: RollingIntervalScores?
    var now: Date
}
