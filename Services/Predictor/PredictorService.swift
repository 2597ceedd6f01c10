import Contracts
import Forecasting
import Foundation
import Hummingbird
import Logging
import Messaging
import Metrics
import ServiceKit
import Storage

/// Predictor settings beyond the common ones: `CANDLECAST_REGISTRY_URL` (http://127.0.0.1:8084),
/// `CANDLECAST_MODEL_MAX_AGE_DAYS` (30: forecasts of older models are flagged `stale`).
struct PredictorSettings: Sendable {
    var registryURL: URL
    var maximumModelAge: Duration

    init(_ environment: EnvironmentReader) throws {
        let url = environment.string("CANDLECAST_REGISTRY_URL", default: "http://127.0.0.1:8084")
        guard let registryURL = URL(string: url), registryURL.scheme?.hasPrefix("http") == true else {
            throw ConfigurationError(key: "CANDLECAST_REGISTRY_URL", reason: "\(url) is not an http(s) URL")
        }
        self.registryURL = registryURL
        maximumModelAge = .seconds(try environment.int("CANDLECAST_MODEL_MAX_AGE_DAYS", default: 30, in: 1...36_500) * 86_400)
    }
}

/// Everything the predictor's handlers and routes share.
struct Predictor: Sendable {
    let predictions: Predictions
    let source: RegistryModelSource
    let models: ModelHolder
    let latest: LatestForecasts
    let database: PostgresClient
    let logger: Logger
    /// Woken after each commit that wrote outbox rows, so events leave at once.
    var relay: OutboxRelay? = nil

    /// The champion for a pair and interval: in memory, else fetched once from the registry.
    func model(pair: String, interval: CandleInterval) async throws -> LoadedModel? {
        let name = modelName(pair: pair, interval: interval)
        if let loaded = models.current(name) { return loaded }
        guard let loaded = try await source.champion(of: name) else { return nil }
        models.install(loaded)
        logger.info(
            "model loaded",
            metadata: [
                "model": "\(name)", "version": "\(loaded.version)", "kind": "\(loaded.model.family.rawValue)",
                "calibrated": "\(loaded.model.isCalibrated)",
            ])
        return loaded
    }

    func handle(_ window: FeatureWindow) async throws {
        try await handle([window])
    }

    /// Forecasts the windows waiting at once in one transaction: a minute's burst of every pair's window commits once,
    /// not once per pair. Windows without a champion yet are parked in the same transaction. A failure of any window
    /// rolls the whole batch back; the consumer then handles its windows one at a time (`Consumer.handleBatches`), so a
    /// bad window is dead-lettered alone. Forecasting is idempotent per target and model, so a replayed batch changes
    /// nothing twice.
    func handle(_ windows: [FeatureWindow]) async throws {
        let predictions = self.predictions
        var models: [LoadedModel?] = []
        models.reserveCapacity(windows.count)
        for window in windows { models.append(try await model(pair: window.pair, interval: window.interval)) }
        let work = zip(windows, models).map { (window: $0, model: $1) }
        let forecasts = try await database.transaction { connection in
            try predictions.lockTargets(work.map { ($0.window.pair, $0.window.interval, $0.window.targetOpenTime) }, on: connection)
            return try work.compactMap { item -> ForecastCreated? in
                guard let loaded = item.model else {
                    try predictions.park(item.window, on: connection)
                    return nil
                }
                return try predictions.forecast(item.window, with: loaded, on: connection)
            }
        }
        for item in work where item.model == nil {
            logger.info(
                "no champion yet: window kept until one is promoted",
                metadata: ["pair": "\(item.window.pair)", "target": "\(item.window.targetOpenTime)"])
        }
        guard !forecasts.isEmpty else { return }
        relay?.wake()
        for forecast in forecasts {
            latest.record(forecast)
            Counter(label: "candlecast_forecasts_total", dimensions: [("pair", forecast.pair), ("interval", forecast.interval.name)])
                .increment()
        }
    }

    func handle(_ promoted: ModelPromoted) async throws {
        let loaded: LoadedModel
        do {
            var fetched = try await source.load(name: promoted.modelName, version: promoted.version)
            fetched.datasetVersion = promoted.datasetVersion
            loaded = fetched
        } catch let refusal as PermanentFailure {
            logger.error(
                "promoted model refused; keeping the current one",
                metadata: [
                    "model": "\(promoted.modelName)", "version": "\(promoted.version)", "reason": "\(refusal.description)",
                    "current": "\(models.current(promoted.modelName).map { String($0.version) } ?? "-")",
                ])
            throw refusal
        }
        let installed = loaded
        models.install(installed)
        logger.notice(
            "model swapped",
            metadata: [
                "model": "\(promoted.modelName)", "version": "\(promoted.version)",
                "previous": "\(promoted.previousVersion.map(String.init) ?? "-")", "kind": "\(installed.model.family.rawValue)",
                "calibrated": "\(installed.model.isCalibrated)",
            ])
        let predictions = self.predictions
        let forecasts = try await database.transaction {
            try predictions.forecastParked(pair: promoted.pair, interval: promoted.interval, with: installed, on: $0)
        }
        if !forecasts.isEmpty { relay?.wake() }
        forecasts.forEach(latest.record)
    }

    func handle(_ candle: CandleClosed) async throws {
        try await handle([candle])
    }

    /// Scores the candles waiting at once in one transaction (a minute's burst of every pair's candle commits once);
    /// a failure falls back to one candle at a time, as for windows.
    func handle(_ candles: [CandleClosed]) async throws {
        let predictions = self.predictions
        let scores = try await database.transaction { try predictions.score(candles, on: $0) }
        if !scores.isEmpty { relay?.wake() }
        for score in scores {
            Counter(label: "candlecast_forecasts_scored_total", dimensions: [("pair", score.pair), ("interval", score.interval.name)])
                .increment()
        }
    }

    /// Fills the latest-forecast cache from the database at start.
    func warmUp() async throws {
        let rows = try await database.query(
            """
            SELECT DISTINCT ON (pair, interval_seconds) pair, interval_seconds, target_open_time, predicted_close, last_close, model_name,
                   model_version, dataset_version, produced_at, stale, intervals::text, probability_up
            FROM predictions.forecasts ORDER BY pair, interval_seconds, target_open_time DESC, model_version DESC
            """)
        for row in rows {
            latest.record(
                ForecastCreated(
                    pair: try row.decode(0, as: String.self), interval: try CandleInterval(storedSeconds: try row.decode(1, as: Int.self)),
                    targetOpenTime: try row.decode(2, as: Int64.self), predictedClose: try row.decode(3, as: Double.self),
                    lastClose: try row.decode(4, as: Double.self), modelName: try row.decode(5, as: String.self),
                    modelVersion: try row.decode(6, as: Int.self),
                    datasetVersion: try row.decode(7, as: Int.self), producedAt: try row.decode(8, as: Date.self),
                    stale: try row.decode(9, as: Bool.self),
                    intervals: try StoredJSON.value([ForecastInterval].self, row.decode(10, as: String?.self)),
                    probabilityUp: try row.decode(11, as: Double?.self)))
        }
    }

    /// Windows forecast in one transaction at most, and the windows consumer's prefetch.
    static let windowBatch: UInt16 = 64
    /// Candles scored in one transaction at most, and the candles consumer's prefetch.
    static let candleBatch: UInt16 = 64

    func consume(windows: Consumer, models promotions: Consumer, candles: Consumer) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                await windows.handleBatches(
                    upTo: Int(Self.windowBatch), decode: { try EnvelopeCodec.decode(FeatureWindow.self, from: $0).payload }
                ) { windows in try await self.handle(windows) }
            }
            group.addTask { await promotions.handle(ModelPromoted.self) { envelope, _ in try await self.handle(envelope.payload) } }
            group.addTask {
                await candles.handleBatches(
                    upTo: Int(Self.candleBatch), decode: { try EnvelopeCodec.decode(CandleClosed.self, from: $0).payload }
                ) { candles in try await self.handle(candles) }
            }
        }
    }
}

enum PredictorService {
    /// One `Predictor` (one model holder, one latest-forecast cache, one outbox relay) is made at start and
    /// handed to both the routes and the work.
    static let definition = ServiceDefinition(
        name: .predictor, defaultHTTPPort: 8085, migrations: PredictionsSchema.migrations,
        shared: makePredictor,
        routes: { router, predictor in try PredictorHTTP(predictor: predictor).add(to: router) },
        work: work)

    /// Reads the settings (a bad one throws `ConfigurationError`) and makes the predictor and its outbox relay.
    static func makePredictor(_ context: ServiceContext) throws -> Predictor {
        let settings = try PredictorSettings(context.configuration.environment)
        let relay = OutboxRelay(
            schema: PredictionsSchema.name, database: context.database, publisher: context.publisher, logger: context.logger,
            options: try OutboxOptions(context.configuration.environment))
        return Predictor(
            predictions: Predictions(maximumModelAge: settings.maximumModelAge),
            source: RegistryModelSource(baseURL: settings.registryURL, http: context.http), models: ModelHolder(),
            latest: LatestForecasts(),
            database: context.database, logger: context.logger, relay: relay)
    }

    /// Forecasts each window, swaps champions on promotion and scores forecasts as candles close, until shutdown.
    static func work(_ predictor: Predictor, _ context: ServiceContext) async throws {
        context.logger.info("matrix kernel", metadata: BLASKernel.current.logMetadata.mapValues { .string($0) })
        try await predictor.warmUp()
        let subscriptions = ServiceName.predictor.subscriptions
        guard subscriptions.count == 3 else { return }
        let windows = try context.consumer(for: subscriptions[0], prefetch: Predictor.windowBatch)
        let promotions = try context.consumer(for: subscriptions[1], prefetch: 1)
        let candles = try context.consumer(for: subscriptions[2], prefetch: Predictor.candleBatch)
        await withTaskGroup(of: Void.self) { group in
            if let relay = predictor.relay { group.addTask { try? await relay.run() } }
            group.addTask { await predictor.consume(windows: windows, models: promotions, candles: candles) }
            await context.waitForShutdown()
            for consumer in [windows, promotions, candles] { await consumer.stop() }
            group.cancelAll()
        }
    }
}
