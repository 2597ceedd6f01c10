import Contracts
import Foundation
import Hummingbird
import Logging
import Messaging
import ServiceKit
import Storage

/// Preprocessor settings beyond the common ones: `CANDLECAST_FEATURE_WINDOW` (14),
/// `CANDLECAST_DATASET_EVERY` (30 new candles), `CANDLECAST_DATASET_MIN_ROWS` (100),
/// `CANDLECAST_TRAIN_FRACTION` (0.7), `CANDLECAST_VALIDATION_FRACTION` (0.1), `CANDLECAST_FEATURES` (close; or close,volume).
extension DatasetPolicy {
    init(_ environment: EnvironmentReader) throws {
        self.init()
        window = try environment.int("CANDLECAST_FEATURE_WINDOW", default: window, in: 2...512)
        newVersionEvery = try environment.int("CANDLECAST_DATASET_EVERY", default: newVersionEvery, in: 1...1_000_000)
        minimumRows = try environment.int("CANDLECAST_DATASET_MIN_ROWS", default: minimumRows, in: 4...ContractRules.maximumRows)
        // Open intervals: a fraction of 0 or 1 leaves a split empty.
        trainFraction = try environment.double("CANDLECAST_TRAIN_FRACTION", default: trainFraction, in: 0.01...0.99)
        validationFraction = try environment.double("CANDLECAST_VALIDATION_FRACTION", default: validationFraction, in: 0.01...0.99)
        let features = Set(environment.string("CANDLECAST_FEATURES", default: "close").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
        guard features.contains("close"), features.isSubset(of: ["close", "volume"]) else {
            throw ConfigurationError(key: "CANDLECAST_FEATURES", reason: "must be close or close,volume")
        }
        includesVolume = features.contains("volume")
        guard minimumRows >= window + 2 else {
            throw ConfigurationError(key: "CANDLECAST_DATASET_MIN_ROWS", reason: "\(minimumRows) must be at least CANDLECAST_FEATURE_WINDOW + 2 (\(window + 2))")
        }
    }
}

enum PreprocessorService {
    static let definition = ServiceDefinition(
        name: .preprocessor, defaultHTTPPort: 8082, migrations: FeaturesSchema.migrations,
        settings: { _ = try DatasetPolicy($0); _ = try OutboxOptions($0) },
        routes: { router, context in
            guard let policy = try? DatasetPolicy(context.configuration.environment) else { return }
            addRoutes(to: router, database: context.database, policy: policy)
        },
        work: { context in
            let preprocessing = Preprocessing(policy: try DatasetPolicy(context.configuration.environment))
            let relay = OutboxRelay(
                schema: FeaturesSchema.name, database: context.database, publisher: context.publisher, logger: context.logger,
                options: try OutboxOptions(context.configuration.environment))
            guard let subscription = ServiceName.preprocessor.subscriptions.first else { return }
            let consumer = try context.consumer(for: subscription, prefetch: 64)
            let database = context.database
            let logger = context.logger
            await withTaskGroup(of: Void.self) { group in
                group.addTask { try? await relay.run() }
                group.addTask { await consume(consumer, preprocessing: preprocessing, database: database, logger: logger, relay: relay) }
                await context.waitForShutdown()
                await consumer.stop()
                group.cancelAll()
            }
        })

    /// Processes candle and backfill events until the consumer stops; each event's effects (processed
    /// mark, dataset version, window in the outbox) commit in one transaction before the ack.
    static func consume(_ consumer: Consumer, preprocessing: Preprocessing, database: PostgresClient, logger: Logger, relay: OutboxRelay? = nil) async {
        await consumer.handle([
            MessageHandler(CandleClosed.self) { envelope, _ in
                let candle = envelope.payload
                let outcome = try await database.transaction { try preprocessing.process(candle, on: $0) }
                if outcome.window != nil || outcome.createdVersion != nil { relay?.wake() }
                log(outcome, pair: candle.pair, interval: candle.interval, logger: logger)
            },
            MessageHandler(CandlesBackfilled.self) { envelope, _ in
                let batch = envelope.payload
                let outcome = try await database.transaction { try preprocessing.process(batch, on: $0) }
                log(outcome, pair: batch.pair, interval: batch.interval, logger: logger)
            },
        ])
    }

    static func log(_ outcome: CandleOutcome, pair: String, interval: CandleInterval, logger: Logger) {
        if let version = outcome.createdVersion {
            logger.info("dataset version created", metadata: ["pair": "\(pair)", "interval": "\(interval)", "version": "\(version)"])
        }
        if let window = outcome.window {
            logger.debug("window published", metadata: ["pair": "\(pair)", "interval": "\(interval)", "window_end": "\(window.windowEndOpenTime)"])
        }
    }

    /// `GET /v1/datasets/{pair}/{interval}` lists versions; `POST` creates one now from every stored candle
    /// (or returns the existing version with the same rows).
    static func addRoutes(to router: Router<BasicRequestContext>, database: PostgresClient, policy: DatasetPolicy) {
        let router = DeclaredRoutes(router)
        router.get("v1/datasets/:pair/:interval") { _, context in
            let (pair, interval) = try target(context)
            let rows = try await database.query(
                """
                SELECT version, row_count, first_open_time, last_open_time, content_hash, training_end, scaler_minimum, scaler_maximum, created_at::text
                FROM features.dataset_versions WHERE pair = \(pair) AND interval_seconds = \(Int(interval.seconds)) ORDER BY version
                """)
            let versions: [[String: any Sendable]] = try rows.map { row in
                [
                    "version": try row.decode(0, as: Int.self), "row_count": try row.decode(1, as: Int.self),
                    "first_open_time": try row.decode(2, as: Int.self), "last_open_time": try row.decode(3, as: Int.self),
                    "content_hash": try row.decode(4, as: String.self), "training_end": try row.decode(5, as: Int.self),
                    "scaler_minimum": try row.decode(6, as: Double.self), "scaler_maximum": try row.decode(7, as: Double.self),
                    "created_at": try row.decode(8, as: String.self),
                ]
            }
            return HealthRoutes.jsonResponse(.ok, ["pair": pair, "interval": interval.name, "versions": versions])
        }
        router.post("v1/datasets/:pair/:interval") { _, context in
            let (pair, interval) = try target(context)
            let result = try await database.transaction { connection in
                try FeatureStore.createVersion(pair: pair, interval: interval, policy: policy, reason: "requested", on: connection)
            }
            guard let (version, created) = result else {
                return HealthRoutes.jsonResponse(.conflict, ["error": "fewer than \(policy.minimumRows) candles stored for \(pair) \(interval)"])
            }
            return HealthRoutes.jsonResponse(created ? .created : .ok, ["pair": pair, "interval": interval.name, "version": version.version, "created": created])
        }
    }

    private static func target(_ context: BasicRequestContext) throws -> (String, CandleInterval) {
        (try HTTPInput.pair(context.parameters.get("pair") ?? ""), try HTTPInput.interval(context.parameters.get("interval") ?? ""))
    }
}
