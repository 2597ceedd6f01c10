import Contracts
import Foundation
import Hummingbird
import Logging
import Messaging
import PreprocessorAPI
import ServiceKit
import Storage

/// Preprocessor settings beyond the common ones: `CANDLECAST_FEATURE_WINDOW` (14),
/// `CANDLECAST_DATASET_EVERY` (30 new candles), `CANDLECAST_DATASET_MIN_ROWS` (100),
/// `CANDLECAST_TRAIN_FRACTION` (0.7), `CANDLECAST_VALIDATION_FRACTION` (0.1), `CANDLECAST_FEATURES` (close; or close,volume).
/// `CANDLECAST_PREPROCESSOR_BATCH` (128, 1-1024) is read by `Running`: the events taken into one transaction at most.
extension DatasetPolicy {
    init(_ environment: EnvironmentReader) throws {
        self.init()
        window = try environment.int("CANDLECAST_FEATURE_WINDOW", default: window, in: 2...512)
        newVersionEvery = try environment.int("CANDLECAST_DATASET_EVERY", default: newVersionEvery, in: 1...1_000_000)
        minimumRows = try environment.int("CANDLECAST_DATASET_MIN_ROWS", default: minimumRows, in: 4...ContractRules.maximumRows)
        // Open intervals: a fraction of 0 or 1 leaves a split empty.
        trainFraction = try environment.double("CANDLECAST_TRAIN_FRACTION", default: trainFraction, in: 0.01...0.99)
        validationFraction = try environment.double("CANDLECAST_VALIDATION_FRACTION", default: validationFraction, in: 0.01...0.99)
        let features = Set(
            environment.string("CANDLECAST_FEATURES", default: "close").split(separator: ",").map {
                $0.trimmingCharacters(in: .whitespaces)
            })
        guard features.contains("close"), features.isSubset(of: ["close", "volume"]) else {
            throw ConfigurationError(key: "CANDLECAST_FEATURES", reason: "must be close or close,volume")
        }
        includesVolume = features.contains("volume")
        guard minimumRows >= window + 2 else {
            throw ConfigurationError(
                key: "CANDLECAST_DATASET_MIN_ROWS", reason: "\(minimumRows) must be at least CANDLECAST_FEATURE_WINDOW + 2 (\(window + 2))")
        }
    }
}

enum PreprocessorService {
    /// The policy (read once at start) and the outbox relay are shared by the routes and the work.
    static let definition = ServiceDefinition(
        name: .preprocessor, defaultHTTPPort: 8082, migrations: FeaturesSchema.migrations,
        shared: Running.init,
        routes: { router, running in try PreprocessorHTTP(database: running.database, policy: running.policy).add(to: router) },
        work: { running, context in
            let preprocessing = Preprocessing(policy: running.policy)
            let relay = running.relay
            guard let subscription = ServiceName.preprocessor.subscriptions.first else { return }
            let batchSize = running.batchSize
            let consumer = try context.consumer(for: subscription, prefetch: UInt16(batchSize))
            let database = context.database
            let logger = context.logger
            await withTaskGroup(of: Void.self) { group in
                group.addTask { try? await relay.run() }
                group.addTask {
                    await consume(
                        consumer, preprocessing: preprocessing, database: database, logger: logger, relay: relay, batchSize: batchSize)
                }
                await context.waitForShutdown()
                await consumer.stop()
                group.cancelAll()
            }
        })

    /// What a running preprocessor's routes and work share.
    struct Running: Sendable {
        let policy: DatasetPolicy
        let relay: OutboxRelay
        let database: PostgresClient
        let batchSize: Int

        /// Reads the settings; a bad one throws `ConfigurationError` and stops the start.
        init(_ context: ServiceContext) throws {
            policy = try DatasetPolicy(context.configuration.environment)
            batchSize = try context.configuration.environment.int("CANDLECAST_PREPROCESSOR_BATCH", default: defaultBatchSize, in: 1...1024)
            relay = OutboxRelay(
                schema: FeaturesSchema.name, database: context.database, publisher: context.publisher, logger: context.logger,
                options: try OutboxOptions(context.configuration.environment))
            database = context.database
        }
    }

    /// Deliveries taken into one transaction at most, and the consumer's prefetch: a backlog drains that many events
    /// per commit (scripts/bench-preprocessor.sh), while a lone live candle is processed at once. 1 is one
    /// transaction per event, the benchmark's anchor.
    static let defaultBatchSize = 128

    /// What arrives on `preprocessor.candles`.
    enum Event: Sendable {
        case closed(CandleClosed)
        case backfilled(CandlesBackfilled)

        /// A type other than these two is dead-lettered with the decoder's reason.
        init(_ delivery: Delivery) throws {
            if delivery.properties.type == CandlesBackfilled.messageType {
                self = .backfilled(try EnvelopeCodec.decode(CandlesBackfilled.self, from: delivery).payload)
            } else {
                self = .closed(try EnvelopeCodec.decode(CandleClosed.self, from: delivery).payload)
            }
        }

        var series: (pair: String, interval: CandleInterval) {
            switch self {
            case .closed(let candle): (candle.pair, candle.interval)
            case .backfilled(let batch): (batch.pair, batch.interval)
            }
        }
    }

    /// Processes candle and backfill events until the consumer stops. The events waiting at once (up to `batchSize`)
    /// commit together, set-based (`Preprocessing.process(_:on:)` for a batch): their effects (processed marks,
    /// dataset versions, windows in the outbox) in one transaction, before their acks. Processing is idempotent per
    /// candle, so a batch replayed after a crash, or handled again one at a time after a failure, changes nothing twice.
    static func consume(
        _ consumer: Consumer, preprocessing: Preprocessing, database: PostgresClient, logger: Logger, relay: OutboxRelay? = nil,
        batchSize: Int = defaultBatchSize
    ) async {
        await consumer.handleBatches(upTo: batchSize, decode: Event.init) { events in
            let outcomes = try await database.transaction { connection in
                let candles = try events.map { event -> CandleClosed? in
                    switch event {
                    case .closed(let candle): candle
                    case .backfilled(let batch): try preprocessing.newestCandle(of: batch, on: connection)
                    }
                }
                var processed = try preprocessing.process(candles.compactMap { $0 }, on: connection).makeIterator()
                return candles.map { candle in candle.flatMap { _ in processed.next() } ?? CandleOutcome() }
            }
            if outcomes.contains(where: { $0.window != nil || $0.createdVersion != nil }) { relay?.wake() }
            for (event, outcome) in zip(events, outcomes) {
                log(outcome, pair: event.series.pair, interval: event.series.interval, logger: logger)
            }
        }
    }

    static func log(_ outcome: CandleOutcome, pair: String, interval: CandleInterval, logger: Logger) {
        if let version = outcome.createdVersion {
            logger.info("dataset version created", metadata: ["pair": "\(pair)", "interval": "\(interval)", "version": "\(version)"])
        }
        if let window = outcome.window {
            logger.debug(
                "window published", metadata: ["pair": "\(pair)", "interval": "\(interval)", "window_end": "\(window.windowEndOpenTime)"])
        }
    }
}

/// The preprocessor's HTTP API: the server side of docs/preprocessor-openapi.yaml (module PreprocessorAPI).
/// `GET /v1/datasets/{pair}/{interval}` lists versions; `POST` cuts one now from every stored candle (or returns
/// the existing version with the same rows).
struct PreprocessorHTTP: APIProtocol {
    let database: PostgresClient
    let policy: DatasetPolicy

    func add(to router: Router<BasicRequestContext>) throws {
        try OpenAPIServer.add(to: router) { try registerHandlers(on: $0) }
    }

    func listDatasetVersions(_ input: Operations.ListDatasetVersions.Input) async throws -> Operations.ListDatasetVersions.Output {
        let (pair, interval) = try Self.target(input.path.pair, input.path.interval)
        let rows = try await database.query(
            """
            SELECT version, row_count, first_open_time, last_open_time, content_hash, training_end, scaler_minimum, scaler_maximum,
                   created_at
            FROM features.dataset_versions WHERE pair = \(pair) AND interval_seconds = \(Int(interval.seconds)) ORDER BY version
            """)
        let versions = try rows.map { row in
            Components.Schemas.DatasetVersion(
                version: try row.decode(0, as: Int.self), rowCount: try row.decode(1, as: Int.self),
                firstOpenTime: Date(timeIntervalSince1970: TimeInterval(try row.decode(2, as: Int64.self))),
                lastOpenTime: Date(timeIntervalSince1970: TimeInterval(try row.decode(3, as: Int64.self))),
                contentHash: try row.decode(4, as: String.self), trainingEnd: try row.decode(5, as: Int.self),
                scalerMinimum: try row.decode(6, as: Double.self), scalerMaximum: try row.decode(7, as: Double.self),
                createdAt: try row.decode(8, as: Date.self))
        }
        return .ok(.init(body: .json(.init(pair: pair, interval: input.path.interval, versions: versions))))
    }

    func cutDatasetVersion(_ input: Operations.CutDatasetVersion.Input) async throws -> Operations.CutDatasetVersion.Output {
        let (pair, interval) = try Self.target(input.path.pair, input.path.interval)
        let policy = self.policy
        let result = try await database.transaction { connection in
            try FeatureStore.createVersion(pair: pair, interval: interval, policy: policy, reason: "requested", on: connection)
        }
        guard let (version, created) = result else {
            throw HTTPError(.conflict, message: "fewer than \(policy.minimumRows) candles stored for \(pair) \(interval)")
        }
        let body = Components.Schemas.CutVersion(pair: pair, interval: input.path.interval, version: version.version, created: created)
        return created ? .created(.init(body: .json(body))) : .ok(.init(body: .json(body)))
    }

    private static func target(_ pair: String, _ interval: Components.Schemas.Interval) throws -> (String, CandleInterval) {
        (
            try HTTPInput.pair(pair, field: "path parameter pair"),
            try HTTPInput.interval(interval.rawValue, field: "path parameter interval")
        )
    }
}
