import Contracts
import Forecasting
import Foundation
import Logging
import Messaging
import Metrics
import ServiceKit
import Storage
import Synchronization

/// Trainer settings beyond the common ones: `CANDLECAST_BLAS_THREADS` (1: replicas share the cores well).
enum TrainerService {
    static let definition = ServiceDefinition(
        name: .trainer, defaultHTTPPort: 8083, migrations: nil,
        settings: {
            _ = try blasThreads($0)
            _ = try TrainerSettings($0)
        },
        work: { context in
            context.logger.info("matrix kernel", metadata: BLASKernel.current.logMetadata.mapValues { .string($0) })
            let blasThreads = try blasThreads(context.configuration.environment)
            let uploader = ArtifactUploader(
                settings: try TrainerSettings(context.configuration.environment), http: context.http, logger: context.logger)
            let identity = "\(ProcessInfo.processInfo.hostName)-\(ProcessInfo.processInfo.processIdentifier)"
            let worker = TrainingWorker(
                database: context.database, publisher: context.publisher, logger: context.logger, trainer: identity,
                blasThreads: blasThreads,
                uploader: uploader)
            guard let subscription = ServiceName.trainer.subscriptions.first else { return }
            // Prefetch 1: a replica holds one job at a time, so idle replicas take the others.
            let consumer = try context.consumer(for: subscription, prefetch: 1)
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await worker.consume(consumer) }
                await context.waitForShutdown()
                worker.cancelRunningJob()
                await consumer.stop()
                group.cancelAll()
            }
        })
}

extension TrainerService {
    static func blasThreads(_ environment: EnvironmentReader) throws -> Int {
        try environment.int("CANDLECAST_BLAS_THREADS", default: 1, in: 1...256)
    }
}

/// Trains one job at a time, off Swift's cooperative pool.
final class TrainingWorker: Sendable {
    let database: PostgresClient
    let publisher: Publisher
    let logger: Logger
    let trainer: String
    let blasThreads: Int
    /// Stores each model file in the registry before `training.completed` names it.
    let uploader: ArtifactUploader
    private let cancelled = Mutex(false)

    init(database: PostgresClient, publisher: Publisher, logger: Logger, trainer: String, blasThreads: Int, uploader: ArtifactUploader) {
        self.uploader = uploader
        self.database = database
        self.publisher = publisher
        self.logger = logger
        self.trainer = trainer
        self.blasThreads = blasThreads
    }

    func cancelRunningJob() { cancelled.withLock { $0 = true } }

    func consume(_ consumer: Consumer) async {
        await consumer.handle(TrainingJob.self) { envelope, _ in
            try await self.run(envelope.payload, correlationID: envelope.correlationID)
        }
    }

    /// Trains, evaluates and publishes `training.completed` (confirmed by the broker) before returning, so
    /// that the job is acked only once its result is durable. A job that cannot run is reported as failed.
    func run(_ job: TrainingJob, correlationID: String?) async throws {
        var logger = self.logger
        logger[metadataKey: "job.id"] = "\(job.jobID)"
        logger.info(
            "training",
            metadata: [
                "model": "\(job.parameters.model.rawValue)", "dataset_version": "\(job.datasetVersion)", "units": "\(job.parameters.units)",
                "batch_size": "\(job.parameters.batchSize)",
            ])
        let started = ContinuousClock.now
        let completed: TrainingCompleted
        do {
            if job.supersedable == true, let newer = try await newerDatasetVersion(job) {
                // The registry marked this run superseded; ack without training (its result is ignored).
                throw JobRejected(.superseded, "superseded by dataset version \(newer)")
            }
            let dataset = try await loadDataset(job)
            let split = try Self.datasetSplit(dataset)
            let candidate: Candidate
            switch job.parameters.model {
            case .lstm: candidate = try await train(job, dataset: dataset)
            case .naive: candidate = try Self.naiveCandidate(job, dataset: dataset, split: split, started: started)
            }
            let model = candidate.model
            // Test rows: the dataset version's own (its stored training_end on); validation rows: its split's, the
            // same for every candidate of the sweep, which the registry ranks them on.
            let closes = dataset.closes
            let (test, validation, file) = try await onOwnThread("scorer") {
                (
                    try model.evaluate(closes: closes, targets: split.testTargets),
                    try model.evaluate(closes: closes, targets: split.validationTargets), try model.encode()
                )
            }
            let artifact = try await uploader.upload(file, jobID: job.jobID)
            completed = TrainingCompleted(
                jobID: job.jobID, sweepID: job.sweepID, trainer: trainer, succeeded: true, error: nil, epochsRun: candidate.epochsRun,
                bestEpoch: candidate.bestEpoch, validationLoss: candidate.validationLoss, trainSeconds: candidate.trainSeconds,
                test: ForecastScores(test.point.model), naive: ForecastScores(test.point.naive), artifact: artifact,
                testRows: RowRange(split.testTargets), model: model.family, validation: ForecastScores(validation.point.model),
                validationRows: RowRange(split.validationTargets), testDistribution: test.model, naiveDistribution: test.naive,
                validationDistribution: validation.model)
            logger.info(
                "trained",
                metadata: [
                    "model": "\(model.family.rawValue)", "epochs": "\(candidate.epochsRun)", "test.rmse": "\(test.point.model.rmse)",
                    "test.mase": "\(test.point.model.mase)", "validation.mase": "\(validation.point.model.mase)",
                    "test.winkler80": "\(test.model.interval(IntervalLevels.gated)?.winkler ?? .nan)",
                    "naive.rmse": "\(test.point.naive.rmse)",
                ])
        } catch let rejected as JobRejected {
            completed = failure(job, reason: rejected.description, started: started)
        } catch let refused as ArtifactUploadRefused {
            completed = failure(job, reason: refused.description, started: started)
        } catch ForecastingError.cancelled {
            throw CancellationError()  // requeued: another replica takes it
        } catch let error as ForecastingError {
            completed = failure(job, reason: "\(error)", started: started)
        }
        let message = try EnvelopeCodec.encode(
            Envelope(payload: completed, correlationID: correlationID), exchange: Exchange.events, routingKey: RoutingKey.trainingCompleted)
        try await publisher.publish(message)
        Counter(label: "candlecast_training_jobs_total", dimensions: [("result", completed.succeeded ? "succeeded" : "failed")]).increment()
    }

    private func failure(_ job: TrainingJob, reason: String, started: ContinuousClock.Instant) -> TrainingCompleted {
        logger.warning("training failed", metadata: ["job.id": "\(job.jobID)", "reason": "\(reason)"])
        let elapsed = ContinuousClock.now - started
        return TrainingCompleted(
            jobID: job.jobID, sweepID: job.sweepID, trainer: trainer, succeeded: false, error: reason, epochsRun: 0, bestEpoch: 0,
            validationLoss: nil, trainSeconds: Double(elapsed.components.seconds), test: nil, naive: nil, artifact: nil)
    }

    /// A newer dataset version of the job's pair and interval, if one exists (read contract of the preprocessor).
    private func newerDatasetVersion(_ job: TrainingJob) async throws -> Int? {
        try await database.query(
            """
            SELECT max(version) FROM features.dataset_versions_v1
            WHERE pair = \(job.pair) AND interval_seconds = \(Int(job.interval.seconds)) AND version > \(job.datasetVersion)
            """
        ).first?.decode(0, as: Int?.self)
    }

    /// A dataset version as the trainer reads it: its closes, its stored split point and the spec it was cut under.
    struct StoredDataset {
        var closes: [Double]
        var trainingEnd: Int
        var spec: ForecastSpec
    }

    /// The job's dataset version, through the preprocessor's read contract.
    private func loadDataset(_ job: TrainingJob) async throws -> StoredDataset {
        let rows = try await database.query(
            """
            SELECT closes::float8[], training_end, spec::text FROM features.dataset_versions_v1
            WHERE pair = \(job.pair) AND interval_seconds = \(Int(job.interval.seconds)) AND version = \(job.datasetVersion)
            """)
        guard let row = rows.first else {
            throw JobRejected(.unknownDataset, "dataset version \(job.datasetVersion) of \(job.pair) \(job.interval) does not exist")
        }
        let spec: ForecastSpec
        do {
            spec = try JSONDecoder().decode(ForecastSpec.self, from: Data(try row.decode(2, as: String.self).utf8))
        } catch {
            throw JobRejected(.invalidSpec, "dataset version \(job.datasetVersion) has an unreadable spec: \(error)")
        }
        return StoredDataset(
            closes: try row.decode(0, as: PostgresDoubleArray.self).values, trainingEnd: try row.decode(1, as: Int.self), spec: spec)
    }

    /// The spec the job's model is trained under: the one the registry composed, which must be the dataset's with
    /// this job's grid point; a job from before specs gets that same composition here.
    static func spec(of job: TrainingJob, dataset: ForecastSpec) throws -> ForecastSpec {
        let composed = job.parameters.spec(on: dataset)
        if let spec = job.spec, spec != composed {
            throw JobRejected(.invalidSpec, "the job's spec \(spec) is not its dataset version's \(dataset) with its parameters")
        }
        return composed
    }

    /// A finished candidate of any family and what its result reports of its training.
    struct Candidate {
        var model: ForecastModel
        var epochsRun = 0
        var bestEpoch = 0
        /// Nil for a baseline (nothing is fitted) and for a loss that never became finite.
        var validationLoss: Double?
        var trainSeconds: Double
    }

    /// The dataset version's own split (its spec's window, its stored `training_end`).
    static func datasetSplit(_ dataset: StoredDataset) throws -> ChronologicalSplit {
        do {
            return try ChronologicalSplit.ofDataset(count: dataset.closes.count, trainingEnd: dataset.trainingEnd, spec: dataset.spec)
        } catch {
            throw JobRejected(.insufficientData, "the dataset version is too small to split: \(error)")
        }
    }

    /// A naive job: the baseline the registry composed the job's spec for, on the dataset's split. Nothing is fitted.
    static func naiveCandidate(
        _ job: TrainingJob, dataset: StoredDataset, split: ChronologicalSplit, started: ContinuousClock.Instant
    ) throws -> Candidate {
        let model: ForecastModel
        do {
            model = ForecastModel.naive(try NaiveBaseline.candidate(on: split), on: dataset.spec)
        } catch {
            throw JobRejected(.insufficientData, "too few rows before the validation rows for the naive baseline: \(error)")
        }
        if let spec = job.spec, spec != model.spec {
            throw JobRejected(.invalidSpec, "the job's spec \(spec) is not the naive baseline's on its dataset version \(model.spec)")
        }
        let elapsed = (ContinuousClock.now - started).components
        return Candidate(model: model, trainSeconds: Double(elapsed.seconds) + Double(elapsed.attoseconds) * 1e-18)
    }

    /// Runs the CPU-bound training on a thread of its own; epoch metrics are published as it goes. The model comes
    /// back calibrated on its validation rows (the Forecasting trainer's split conformal step).
    private func train(_ job: TrainingJob, dataset: StoredDataset) async throws -> Candidate {
        let parameters = job.parameters
        let spec = try Self.spec(of: job, dataset: dataset.spec)
        let closes = dataset.closes
        let model = ModelConfiguration(spec: spec, units: parameters.units, layers: parameters.layers, head: parameters.head)
        var training = TrainingConfiguration()
        training.epochs = parameters.epochs
        training.batchSize = parameters.batchSize
        training.learningRate = parameters.learningRate
        training.seed = parameters.seed
        training.patience = parameters.patience
        training.blasThreads = blasThreads
        let split: ChronologicalSplit
        do {
            split = try ChronologicalSplit(
                count: closes.count, window: spec.window, trainingEnd: dataset.trainingEnd, fractions: spec.split)
        } catch {
            throw JobRejected(.insufficientData, "dataset too small for window \(spec.window): \(error)")
        }
        cancelled.withLock { $0 = false }
        let publisher = self.publisher
        let trainerName = self.trainer
        let jobID = job.jobID
        let settings = training
        let trained = try await onOwnThread("trainer") {
            try Trainer(model: model, training: settings, spec: spec).train(
                closes: closes, split: split,
                onEpoch: { report in
                    let metric = TrainingEpochMetric(
                        jobID: jobID, trainer: trainerName, epoch: report.epoch, loss: report.loss, validationLoss: report.validationLoss,
                        learningRate: report.learningRate, seconds: report.seconds)
                    guard
                        let message = try? EnvelopeCodec.encode(
                            Envelope(payload: metric), exchange: Exchange.events,
                            routingKey: RoutingKey.metric(service: .trainer, name: "epoch"))
                    else { return }
                    // Progress is best effort: training does not wait for its confirms.
                    Task { try? await publisher.publish(message) }
                },
                shouldCancel: { self.cancelled.withLock { $0 } })
        }
        let summary = trained.summary
        return Candidate(
            model: .lstm(trained), epochsRun: summary.epochsRun, bestEpoch: summary.bestEpoch,
            validationLoss: summary.bestMonitoredLoss.isFinite ? summary.bestMonitoredLoss : nil, trainSeconds: summary.trainSeconds)
    }
}

extension ForecastScores {
    init(_ metrics: ForecastMetrics) {
        self.init(rmse: metrics.rmse, mae: metrics.mae, mape: metrics.mape, r2: metrics.r2, mase: metrics.mase)
    }
}
