import Contracts
import Forecasting
import Foundation
import Logging
import Messaging
import Metrics
import ServiceKit
import Storage
import Synchronization

/// Monitor settings beyond the common ones: `CANDLECAST_MONITOR_ROLLING_WINDOW` (30 scored forecasts),
/// `CANDLECAST_MONITOR_RMSE_REFERENCE_USD` (2500: the rolling RMSE an alert compares with, as the old system
/// compared test MSE with a reference), `CANDLECAST_MONITOR_REFRESH_SECONDS` (5: freshness and dead-letter
/// depths), `CANDLECAST_REGISTRY_URL` (http://127.0.0.1:8084, for the dashboard's models and runs).
struct MonitorSettings: Sendable {
    var rollingWindow: Int
    var rmseReference: Double
    var refreshInterval: Duration
    var registryURL: URL

    init(_ environment: EnvironmentReader) throws {
        rollingWindow = try environment.int("CANDLECAST_MONITOR_ROLLING_WINDOW", default: 30, in: 1...10_000)
        rmseReference = try environment.double(
            "CANDLECAST_MONITOR_RMSE_REFERENCE_USD", default: 2500, in: 0.000_001...ContractRules.maximumAmount)
        let refresh = try environment.int("CANDLECAST_MONITOR_REFRESH_SECONDS", default: 5, in: 1...3600)
        refreshInterval = .seconds(refresh)
        let url = environment.string("CANDLECAST_REGISTRY_URL", default: "http://127.0.0.1:8084")
        guard let registryURL = URL(string: url), registryURL.scheme?.hasPrefix("http") == true else {
            throw ConfigurationError(key: "CANDLECAST_REGISTRY_URL", reason: "\(url) is not an http(s) URL")
        }
        self.registryURL = registryURL
    }
}

/// Series freshness and dead-letter depths, shared by the metrics refresher and the dashboard.
final class Freshness: Sendable {
    struct SeriesKey: Hashable, Sendable {
        var pair: String
        var interval: CandleInterval
    }
    private let state = Mutex<(candleCloseTimes: [SeriesKey: Int64], forecastTimes: [SeriesKey: Date], deadLetters: [ServiceName: Int])>(
        ([:], [:], [:]))

    func candleClosed(pair: String, interval: CandleInterval, openTime: Int64) {
        let key = SeriesKey(pair: pair, interval: interval)
        let closeTime = openTime + interval.seconds
        state.withLock { $0.candleCloseTimes[key] = max($0.candleCloseTimes[key] ?? .min, closeTime) }
    }
    /// Returns the newest forecast time of the series, which an older redelivered forecast does not move back.
    @discardableResult
    func forecastProduced(pair: String, interval: CandleInterval, at date: Date) -> Date {
        let key = SeriesKey(pair: pair, interval: interval)
        return state.withLock { state in
            let newest = max(state.forecastTimes[key] ?? .distantPast, date)
            state.forecastTimes[key] = newest
            return newest
        }
    }
    func setDeadLetters(_ counts: [ServiceName: Int]) { state.withLock { $0.deadLetters = counts } }

    var candleCloseTimes: [SeriesKey: Int64] { state.withLock { $0.candleCloseTimes } }
    var forecastTimes: [SeriesKey: Date] { state.withLock { $0.forecastTimes } }
    var deadLetters: [ServiceName: Int] { state.withLock { $0.deadLetters } }
}

/// Turns the events it hears into stored observations and Prometheus metrics.
struct Monitor: Sendable {
    static let absoluteErrorMetric = "candlecast_forecast_absolute_error_usd"
    static let percentageErrorMetric = "candlecast_forecast_absolute_percentage_error"
    static let trainingDurationMetric = "candlecast_training_run_duration_seconds"
    static let histogramBuckets: [String: [Double]] = [
        absoluteErrorMetric: [50, 100, 250, 500, 1000, 2000, 4000, 8000, 16000],
        percentageErrorMetric: [0.25, 0.5, 1, 2, 3, 5, 8, 13, 21],
    ]
    static let durationBuckets: [String: [Duration]] = [
        trainingDurationMetric: [1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600].map { Duration.seconds($0) }
    ]

    /// Scored forecasts the rolling coverage, Winkler and Brier figures are taken over: the "last 60", which the
    /// coverage alert (compose/prometheus/alerts.yml) requires in full.
    static let intervalWindow = 60

    let settings: MonitorSettings
    let database: PostgresClient
    let freshness: Freshness
    let logger: Logger
    let registry: RegistryReader

    func handle(_ forecast: ForecastCreated) async throws {
        guard try await database.transaction({ try Observations.record(forecast, on: $0) }) else { return }
        Counter(
            label: "candlecast_monitor_forecasts_received_total",
            dimensions: Self.labels(forecast.pair, forecast.interval, forecast.modelVersion)
        ).increment()
        recordForecastTime(pair: forecast.pair, interval: forecast.interval, producedAt: forecast.producedAt)
    }

    private func recordForecastTime(pair: String, interval: CandleInterval, producedAt: Date) {
        let newest = freshness.forecastProduced(pair: pair, interval: interval, at: producedAt)
        Gauge(label: "candlecast_last_forecast_timestamp_seconds", dimensions: Self.labels(pair, interval)).record(
            newest.timeIntervalSince1970)
    }

    private func recordChampion(model: String, version: Int) {
        Gauge(label: "candlecast_champion_version", dimensions: [("model", model)]).record(version)
    }

    func handle(_ score: ForecastScored) async throws {
        let series = ModelSeries(pair: score.pair, interval: score.interval, modelVersion: score.modelVersion)
        let window = settings.rollingWindow
        let (firstScore, errors, reported) = try await database.transaction { connection in
            (
                try Observations.record(score, on: connection), try Observations.recentErrors(of: series, limit: window, on: connection),
                try Observations.recentReportedScores(of: series, limit: Self.intervalWindow, on: connection)
            )
        }
        if firstScore {
            let labels = Self.labels(score.pair, score.interval, score.modelVersion)
            Recorder(label: Self.absoluteErrorMetric, dimensions: labels).record(score.absoluteError)
            Recorder(label: Self.percentageErrorMetric, dimensions: labels).record(score.percentageError)
        }
        publishRolling(RollingAccuracy(errors), of: series)
        publishRolling(ReportedScores(reported), of: series)
    }

    func handle(_ candle: CandleClosed) async throws {
        try await database.transaction {
            try Observations.recordCandle(
                pair: candle.pair, interval: candle.interval, openTime: candle.openTime, close: Double(candle.close), on: $0)
        }
        freshness.candleClosed(pair: candle.pair, interval: candle.interval, openTime: candle.openTime)
    }

    func handle(_ batch: CandlesBackfilled) async throws {
        guard batch.inserted + batch.updated > 0 else { return }
        try await database.transaction {
            try Observations.recordCandle(pair: batch.pair, interval: batch.interval, openTime: batch.lastOpenTime, close: nil, on: $0)
        }
        freshness.candleClosed(pair: batch.pair, interval: batch.interval, openTime: batch.lastOpenTime)
    }

    func handle(_ promoted: ModelPromoted) async throws {
        // A promotion of a version the registry does not know is forged or stale: the registry decides. The
        // monitor only shows the champion, so an unreachable registry does not hold the promotion up.
        switch await registry.versionExists(model: promoted.modelName, version: promoted.version) {
        case false?: throw PermanentFailure("\(promoted.modelName) v\(promoted.version) is not in the registry")
        case nil:
            logger.warning(
                "the registry cannot confirm the promoted version; recording it",
                metadata: ["model": "\(promoted.modelName)", "version": "\(promoted.version)"])
        case true?: break
        }
        guard try await database.transaction({ try Observations.record(promoted, on: $0) }) else { return }
        recordChampion(model: promoted.modelName, version: promoted.version)
        Counter(label: "candlecast_promotions_total", dimensions: [("model", promoted.modelName)]).increment()
        logger.info(
            "champion moved",
            metadata: ["model": "\(promoted.modelName)", "version": "\(promoted.version)", "reason": "\(promoted.reason)"])
    }

    /// Training results are counted, not stored: the registry keeps the runs.
    func handle(_ completed: TrainingCompleted) {
        Counter(label: "candlecast_training_runs_total", dimensions: [("result", completed.succeeded ? "succeeded" : "failed")]).increment()
        Timer(label: Self.trainingDurationMetric).recordSeconds(completed.trainSeconds)
        if completed.succeeded, let mase = completed.test?.mase, mase.isFinite {
            Gauge(label: "candlecast_training_last_test_mase").record(mase)
        }
    }

    func handle(_ epoch: TrainingEpochMetric) {
        Counter(label: "candlecast_training_epochs_total").increment()
    }

    func publishRolling(_ accuracy: RollingAccuracy?, of series: ModelSeries) {
        guard let accuracy else { return }
        let labels = Self.labels(series.pair, series.interval, series.modelVersion)
        Gauge(label: "candlecast_forecast_rolling_mae_usd", dimensions: labels).record(accuracy.mae)
        Gauge(label: "candlecast_forecast_rolling_rmse_usd", dimensions: labels).record(accuracy.rmse)
        Gauge(label: "candlecast_forecast_rolling_mape", dimensions: labels).record(accuracy.mape)
        Gauge(label: "candlecast_naive_rolling_mae_usd", dimensions: labels).record(accuracy.naiveMAE)
        Gauge(label: "candlecast_forecast_rolling_window_forecasts", dimensions: labels).record(accuracy.count)
        if let mase = accuracy.mase { Gauge(label: "candlecast_forecast_rolling_mase", dimensions: labels).record(mase) }
    }

    /// The rolling interval figures of a series, model and naive baseline under separate names (as MAE is), so a rule
    /// or panel compares `candlecast_forecast_…` with `candlecast_naive_…` of the same labels.
    func publishRolling(_ scores: ReportedScores?, of series: ModelSeries) {
        guard let scores else { return }
        let labels = Self.labels(series.pair, series.interval, series.modelVersion)
        Gauge(label: "candlecast_forecast_coverage_window_forecasts", dimensions: labels).record(scores.count)
        let byForecaster = [
            (coverage: "candlecast_forecast_rolling_coverage", winkler: "candlecast_forecast_rolling_winkler_usd", levels: scores.model),
            (coverage: "candlecast_naive_rolling_coverage", winkler: "candlecast_naive_rolling_winkler_usd", levels: scores.naive),
        ]
        for names in byForecaster {
            for level in names.levels {
                let dimensions = labels + [("level", String(level.level))]
                Gauge(label: names.coverage, dimensions: dimensions).record(level.coverage)
                Gauge(label: names.winkler, dimensions: dimensions).record(level.winkler)
            }
        }
        if let brier = scores.brier { Gauge(label: "candlecast_forecast_rolling_brier", dimensions: labels).record(brier) }
        if let brier = scores.naiveBrier { Gauge(label: "candlecast_naive_rolling_brier", dimensions: labels).record(brier) }
    }

    /// Rebuilds the gauges from the monitor's tables, so that a restart does not blank them.
    func restore() async throws {
        let window = settings.rollingWindow
        let restored = try await database.withConnection { connection in
            let rolling = try Observations.scoredSeries(on: connection).map { series in
                (
                    series, RollingAccuracy(try Observations.recentErrors(of: series, limit: window, on: connection)),
                    ReportedScores(try Observations.recentReportedScores(of: series, limit: Self.intervalWindow, on: connection))
                )
            }
            return (
                rolling, try Observations.champions(on: connection), try Observations.latestCandles(on: connection),
                try Observations.latestForecastTimes(on: connection)
            )
        }
        for (series, accuracy, intervals) in restored.0 {
            publishRolling(accuracy, of: series)
            publishRolling(intervals, of: series)
        }
        for champion in restored.1 { recordChampion(model: champion.model, version: champion.version) }
        for candle in restored.2 { freshness.candleClosed(pair: candle.pair, interval: candle.interval, openTime: candle.openTime) }
        for forecast in restored.3 { recordForecastTime(pair: forecast.pair, interval: forecast.interval, producedAt: forecast.producedAt) }
        Gauge(label: "candlecast_forecast_rmse_reference_usd").record(settings.rmseReference)
    }

    /// Candle ages move with the clock and dead letters are only visible on the broker: both are refreshed
    /// on a timer rather than on events.
    func refresh(broker: BrokerConfiguration) async {
        let now = Int64(Date().timeIntervalSince1970)
        for (series, closeTime) in freshness.candleCloseTimes {
            Gauge(label: "candlecast_candle_age_seconds", dimensions: Self.labels(series.pair, series.interval)).record(
                max(0, now - closeTime))
        }
        let services = ServiceName.allCases
        do {
            let depths = try await BrokerAdmin.messageCounts(queues: services.map(\.deadLetterQueue), configuration: broker)
            var byService: [ServiceName: Int] = [:]
            for service in services {
                let depth = depths[service.deadLetterQueue] ?? 0
                byService[service] = depth
                Gauge(label: "candlecast_dead_letter_queue_messages", dimensions: [("service", service.rawValue)]).record(depth)
            }
            freshness.setDeadLetters(byService)
        } catch {
            logger.warning("cannot read dead-letter queue depths", metadata: ["error": "\(error)"])
        }
    }

    /// Counts every event on the bus by the service that produces its type.
    func count(_ delivery: Delivery) {
        // Types outside the contract are counted together, so a hostile publisher cannot mint label values.
        let type = delivery.properties.type ?? ""
        let producer = MessageCatalog.producer(ofType: type)
        Counter(
            label: "candlecast_events_total",
            dimensions: [("producer", producer?.rawValue ?? "unknown"), ("type", producer == nil ? "other" : type)]
        )
        .increment()
        delivery.ack()
    }

    static func labels(_ pair: String, _ interval: CandleInterval, _ modelVersion: Int? = nil) -> [(String, String)] {
        var labels = [("pair", pair), ("interval", interval.name)]
        if let modelVersion { labels.append(("model_version", String(modelVersion))) }
        return labels
    }
}

enum MonitorService {
    static let definition = ServiceDefinition(
        name: .monitor, defaultHTTPPort: 8086, migrations: MonitorSchema.migrations,
        histogramBuckets: Monitor.histogramBuckets, durationBuckets: Monitor.durationBuckets,
        shared: Running.init,
        routes: { router, running in try running.dashboard.add(to: router) },
        work: { running, context in
            let monitor = running.monitor
            let settings = monitor.settings
            try await monitor.restore()
            let queues = try ServiceName.monitor.subscriptions.map { try context.consumer(for: $0, prefetch: 64) }
            guard queues.count == 5 else { return }
            let (metrics, forecasts, candles, models, events) = (queues[0], queues[1], queues[2], queues[3], queues[4])
            await withTaskGroup(of: Void.self) { group in
                group.addTask {
                    await metrics.handle([
                        MessageHandler(ForecastScored.self) { envelope, _ in try await monitor.handle(envelope.payload) },
                        MessageHandler(TrainingCompleted.self) { envelope, _ in monitor.handle(envelope.payload) },
                        MessageHandler(TrainingEpochMetric.self) { envelope, _ in monitor.handle(envelope.payload) },
                    ])
                }
                group.addTask { await forecasts.handle(ForecastCreated.self) { envelope, _ in try await monitor.handle(envelope.payload) } }
                group.addTask {
                    await candles.handle([
                        MessageHandler(CandleClosed.self) { envelope, _ in try await monitor.handle(envelope.payload) },
                        MessageHandler(CandlesBackfilled.self) { envelope, _ in try await monitor.handle(envelope.payload) },
                    ])
                }
                group.addTask { await models.handle(ModelPromoted.self) { envelope, _ in try await monitor.handle(envelope.payload) } }
                group.addTask { for await delivery in events.deliveries { monitor.count(delivery) } }
                group.addTask {
                    while !Task.isCancelled {
                        await monitor.refresh(broker: context.configuration.broker)
                        try? await Task.sleep(for: settings.refreshInterval)
                    }
                }
                await context.waitForShutdown()
                for consumer in queues { await consumer.stop() }
                group.cancelAll()
            }
        })

    /// What a running monitor's dashboard and work share: its settings, one view of freshness, one registry reader.
    struct Running: Sendable {
        let monitor: Monitor
        let dashboard: Dashboard

        /// Reads the settings; a bad one throws `ConfigurationError` and stops the start.
        init(_ context: ServiceContext) throws {
            let settings = try MonitorSettings(context.configuration.environment)
            let freshness = Freshness()
            let registry = RegistryReader(baseURL: settings.registryURL, http: context.http)
            monitor = Monitor(
                settings: settings, database: context.database, freshness: freshness, logger: context.logger, registry: registry)
            dashboard = Dashboard(
                database: context.database, registry: registry, freshness: freshness, rollingWindow: settings.rollingWindow,
                logger: context.logger)
        }
    }
}
