import Contracts
import Forecasting
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Messaging
import OpenAPIRuntime
import RegistryAPI
import ServiceKit
import Storage

enum RegistryService {
    static let definition = ServiceDefinition(
        name: .registry, defaultHTTPPort: 8084, migrations: RegistrySchema.migrations,
        settings: {
            _ = try RegistrySettings($0)
            _ = try OutboxOptions($0)
        },
        routes: { router, context in
            // The settings were validated before the routes are added (`settings:` above), and the handlers' paths are
            // the document's: neither can fail here short of a bug, which stops the start.
            do {
                let settings = try RegistrySettings(context.configuration.environment)
                let store = RegistryStore(settings)
                try RegistryHandlers(database: context.database, store: store, settings: settings, logger: context.logger).add(to: router)
            } catch {
                preconditionFailure("the registry's routes cannot be set up: \(error)")
            }
        },
        work: { context in
            context.logger.info("matrix kernel", metadata: BLASKernel.current.logMetadata.mapValues { .string($0) })
            let settings = try RegistrySettings(context.configuration.environment)
            let store = RegistryStore(settings)
            let relay = OutboxRelay(
                schema: RegistrySchema.name, database: context.database, publisher: context.publisher, logger: context.logger,
                options: try OutboxOptions(context.configuration.environment))
            let subscriptions = ServiceName.registry.subscriptions
            let consumers = try subscriptions.map { try context.consumer(for: $0, prefetch: 16) }
            let database = context.database
            let logger = context.logger
            await withTaskGroup(of: Void.self) { group in
                group.addTask { try? await relay.run() }
                group.addTask { await sweepLostRuns(store: store, database: database, logger: logger) }
                for consumer in consumers {
                    group.addTask { await consume(consumer, store: store, grid: settings.grid, database: database, logger: logger) }
                }
                await context.waitForShutdown()
                for consumer in consumers { await consumer.stop() }
                group.cancelAll()
            }
        })

    /// The lease sweeper: every quarter lease (at least 1 s), expired running runs are requeued or failed.
    static func sweepLostRuns(store: RegistryStore, database: PostgresClient, logger: Logger) async {
        let period = Duration.milliseconds(max(1000, store.leaseSeconds * 250))
        while !Task.isCancelled {
            do {
                let (requeued, failed) = try await database.transaction { try store.expireLostRuns(on: $0) }
                if requeued + failed > 0 {
                    logger.warning("trainer lost", metadata: ["runs.requeued": "\(requeued)", "runs.failed": "\(failed)"])
                }
            } catch {
                logger.warning("lease sweep failed", metadata: ["error": "\(error)"])
            }
            try? await Task.sleep(for: period)
        }
    }

    /// Dataset versions start sweeps; epoch metrics and results are tracked; a sweep's last result runs the gate.
    static func consume(_ consumer: Consumer, store: RegistryStore, grid: SweepGrid, database: PostgresClient, logger: Logger) async {
        await consumer.handle([
            MessageHandler(DatasetReady.self) { envelope, _ in
                let ready = envelope.payload
                let sweep = try await database.transaction { connection in
                    try store.startSweep(
                        pair: ready.pair, interval: ready.interval, datasetVersion: ready.version, grid: grid, trigger: "dataset.ready",
                        on: connection)
                }
                if let (id, jobs) = sweep {
                    logger.info(
                        "sweep started", metadata: ["sweep.id": "\(id)", "jobs": "\(jobs.count)", "dataset_version": "\(ready.version)"])
                }
            },
            MessageHandler(TrainingEpochMetric.self) { envelope, _ in
                let metric = envelope.payload
                try await database.transaction { try store.recordEpoch(metric, on: $0) }
            },
            MessageHandler(TrainingCompleted.self) { envelope, _ in
                let completed = envelope.payload
                let decision: GateDecision?
                do {
                    decision = try await database.transaction { try store.recordCompletion(completed, on: $0) }
                } catch let error as RegistryError where error.code == .artifactMismatch {
                    // Never recorded: the stored file is not the one the trainer reported.
                    throw PermanentFailure(error.description)
                }
                if let decision {
                    logger.notice(
                        "promotion gate",
                        metadata: [
                            "sweep.id": "\(completed.sweepID)", "promoted": "\(decision.promoted)",
                            "challenger.version": "\(decision.challengerVersion.map(String.init) ?? "-")", "reason": "\(decision.reason)",
                        ])
                }
            },
        ])
    }
}
