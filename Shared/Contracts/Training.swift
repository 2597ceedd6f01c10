import Foundation
import Messaging

/// Hyperparameters of one training job (one grid point of a sweep).
public struct TrainingParameters: Codable, Sendable, Equatable, Hashable {
    public var units: Int
    public var layers: Int
    public var activation: String
    public var target: String
    public var window: Int
    public var batchSize: Int
    public var learningRate: Double
    public var epochs: Int
    public var patience: Int
    public var seed: UInt64

    public init(units: Int = 350, layers: Int = 1, activation: String = "relu", target: String = "log-return", window: Int = 14, batchSize: Int = 32, learningRate: Double = 0.001, epochs: Int = 100, patience: Int = 8, seed: UInt64 = 42) {
        self.units = units
        self.layers = layers
        self.activation = activation
        self.target = target
        self.window = window
        self.batchSize = batchSize
        self.learningRate = learningRate
        self.epochs = epochs
        self.patience = patience
        self.seed = seed
    }

    enum CodingKeys: String, CodingKey {
        case units, layers, activation, target, window, epochs, patience, seed
        case batchSize = "batch_size"
        case learningRate = "learning_rate"
    }

    public func validate() throws(ValidationFailure) {
        guard (1...2048).contains(units), (1...4).contains(layers), (2...512).contains(window), (1...4096).contains(batchSize),
            (1...10_000).contains(epochs), (0...1000).contains(patience), learningRate.isFinite, learningRate > 0, learningRate < 1
        else { throw ValidationFailure("training parameters out of range: \(self)") }
        guard ["relu", "tanh"].contains(activation) else { throw ValidationFailure("activation must be relu or tanh") }
        guard ["next-scaled-close", "log-return", "scaled-difference"].contains(target) else {
            throw ValidationFailure("target must be next-scaled-close, log-return or scaled-difference")
        }
    }
}

/// `training.job` on the `training.jobs` work queue: train one model on one dataset version.
public struct TrainingJob: MessagePayload, Equatable {
    public static let messageType = "training.job"
    public static let schemaVersion = 1

    /// Idempotency key: a redelivered job produces one run and one model version.
    public var jobID: UUID
    public var sweepID: UUID
    public var experiment: String
    public var modelName: String
    public var pair: String
    public var interval: CandleInterval
    public var datasetVersion: Int
    public var parameters: TrainingParameters
    /// True for a job of an automatic sweep: a trainer skips it (acks without training) once a newer dataset
    /// version of the same pair and interval exists. Optional (added later): absent means false.
    public var supersedable: Bool?

    public init(jobID: UUID, sweepID: UUID, experiment: String, modelName: String, pair: String, interval: CandleInterval, datasetVersion: Int, parameters: TrainingParameters, supersedable: Bool? = nil) {
        self.supersedable = supersedable
        self.jobID = jobID
        self.sweepID = sweepID
        self.experiment = experiment
        self.modelName = modelName
        self.pair = pair
        self.interval = interval
        self.datasetVersion = datasetVersion
        self.parameters = parameters
    }

    enum CodingKeys: String, CodingKey {
        case experiment, pair, interval, parameters, supersedable
        case jobID = "job_id"
        case sweepID = "sweep_id"
        case modelName = "model_name"
        case datasetVersion = "dataset_version"
    }

    public func validate() throws(ValidationFailure) {
        try ContractRules.text(experiment, "experiment", limit: 128, allowEmpty: false)
        try ContractRules.modelName(modelName)
        try ContractRules.pair(pair)
        try ContractRules.count(datasetVersion, "dataset_version", in: 1...ContractRules.maximumCount)
        try parameters.validate()
    }
}

/// Test metrics in USD.
public struct ForecastScores: Codable, Sendable, Equatable {
    public var rmse: Double
    public var mae: Double
    public var mape: Double
    public var r2: Double
    public var mase: Double

    public init(rmse: Double, mae: Double, mape: Double, r2: Double, mase: Double) {
        self.rmse = rmse
        self.mae = mae
        self.mape = mape
        self.r2 = r2
        self.mase = mase
    }
}

/// `training.completed`: a job finished (with its model file) or failed (with the reason).
public struct TrainingCompleted: MessagePayload, Equatable {
    public static let messageType = "training.completed"
    public static let schemaVersion = 1

    public var jobID: UUID
    public var sweepID: UUID
    public var trainer: String
    public var succeeded: Bool
    public var error: String?
    public var epochsRun: Int
    public var bestEpoch: Int
    public var validationLoss: Double?
    public var trainSeconds: Double
    public var test: ForecastScores?
    public var naive: ForecastScores?
    /// The model file, base64.
    public var artifact: String?
    public var artifactCRC32: UInt32?

    public init(jobID: UUID, sweepID: UUID, trainer: String, succeeded: Bool, error: String?, epochsRun: Int, bestEpoch: Int, validationLoss: Double?, trainSeconds: Double, test: ForecastScores?, naive: ForecastScores?, artifact: String?, artifactCRC32: UInt32?) {
        self.jobID = jobID
        self.sweepID = sweepID
        self.trainer = trainer
        self.succeeded = succeeded
        self.error = error
        self.epochsRun = epochsRun
        self.bestEpoch = bestEpoch
        self.validationLoss = validationLoss
        self.trainSeconds = trainSeconds
        self.test = test
        self.naive = naive
        self.artifact = artifact
        self.artifactCRC32 = artifactCRC32
    }

    enum CodingKeys: String, CodingKey {
        case trainer, succeeded, error, test, naive, artifact
        case jobID = "job_id"
        case sweepID = "sweep_id"
        case epochsRun = "epochs_run"
        case bestEpoch = "best_epoch"
        case validationLoss = "validation_loss"
        case trainSeconds = "train_seconds"
        case artifactCRC32 = "artifact_crc32"
    }

    public func validate() throws(ValidationFailure) {
        guard trainSeconds.isFinite, trainSeconds >= 0, trainSeconds < 1e9 else { throw ValidationFailure("train_seconds must be non-negative and finite") }
        try ContractRules.count(epochsRun, "epochs_run", in: 0...10_000)
        try ContractRules.count(bestEpoch, "best_epoch", in: 0...10_000)
        try ContractRules.text(trainer, "trainer", limit: 256)
        if let error { try ContractRules.text(error, "error", limit: 10_000) }
        if let validationLoss, !(validationLoss.isFinite && validationLoss >= 0) { throw ValidationFailure("validation_loss must be finite and non-negative") }
        for scores in [test, naive].compactMap({ $0 }) {
            guard [scores.rmse, scores.mae, scores.mape, scores.r2, scores.mase].allSatisfy(\.isFinite) else {
                throw ValidationFailure("test and naive metrics must be finite")
            }
        }
        if succeeded {
            guard artifact != nil, artifactCRC32 != nil, test != nil, naive != nil else {
                throw ValidationFailure("a succeeded job needs its artifact, checksum and test metrics")
            }
        }
    }
}

/// `metric.trainer.epoch`: progress of a training job, one event per epoch.
public struct TrainingEpochMetric: MessagePayload, Equatable {
    public static let messageType = "metric.trainer.epoch"
    public static let schemaVersion = 1

    public var jobID: UUID
    public var trainer: String
    public var epoch: Int
    public var loss: Double
    public var validationLoss: Double?
    public var learningRate: Double
    public var seconds: Double

    public init(jobID: UUID, trainer: String, epoch: Int, loss: Double, validationLoss: Double?, learningRate: Double, seconds: Double) {
        self.jobID = jobID
        self.trainer = trainer
        self.epoch = epoch
        self.loss = loss
        self.validationLoss = validationLoss
        self.learningRate = learningRate
        self.seconds = seconds
    }

    enum CodingKeys: String, CodingKey {
        case trainer, epoch, loss, seconds
        case jobID = "job_id"
        case validationLoss = "validation_loss"
        case learningRate = "learning_rate"
    }
    public func validate() throws(ValidationFailure) {
        guard epoch >= 1, loss.isFinite, loss >= 0, learningRate.isFinite, learningRate > 0, seconds.isFinite, seconds >= 0,
            validationLoss.map({ $0.isFinite && $0 >= 0 }) ?? true
        else { throw ValidationFailure("epoch, losses, learning rate and seconds must be finite and in range") }
        try ContractRules.count(epoch, "epoch", in: 1...10_000)
        try ContractRules.text(trainer, "trainer", limit: 256)
    }
}

/// `model.promoted.<name>`: an alias (normally `champion`) now points at a model version.
public struct ModelPromoted: MessagePayload, Equatable {
    public static let messageType = "model.promoted"
    public static let schemaVersion = 1

    public var modelName: String
    public var alias: String
    public var version: Int
    public var previousVersion: Int?
    public var reason: String
    public var pair: String
    public var interval: CandleInterval
    public var datasetVersion: Int
    public var artifactCRC32: UInt32

    public init(modelName: String, alias: String, version: Int, previousVersion: Int?, reason: String, pair: String, interval: CandleInterval, datasetVersion: Int, artifactCRC32: UInt32) {
        self.modelName = modelName
        self.alias = alias
        self.version = version
        self.previousVersion = previousVersion
        self.reason = reason
        self.pair = pair
        self.interval = interval
        self.datasetVersion = datasetVersion
        self.artifactCRC32 = artifactCRC32
    }

    enum CodingKeys: String, CodingKey {
        case alias, version, reason, pair, interval
        case modelName = "model_name"
        case previousVersion = "previous_version"
        case datasetVersion = "dataset_version"
        case artifactCRC32 = "artifact_crc32"
    }

    public func validate() throws(ValidationFailure) {
        guard isValidModelName(modelName) else {
            throw ValidationFailure("model_name must be 1 to 64 letters, digits, - or _")
        }
        guard (1...64).contains(alias.count), version >= 1, previousVersion.map({ $0 >= 1 }) ?? true, datasetVersion >= 1 else {
            throw ValidationFailure("alias, version, previous_version and dataset_version must be set and positive")
        }
        try ContractRules.modelName(alias, "alias")
        try ContractRules.count(version, "version", in: 1...ContractRules.maximumCount)
        try ContractRules.count(datasetVersion, "dataset_version", in: 1...ContractRules.maximumCount)
        try ContractRules.pair(pair)
        try ContractRules.text(reason, "reason", limit: ContractRules.maximumReasonLength)
    }

    public var routingKey: String { RoutingKey.modelPromoted(name: modelName) }
}

/// The registered model that forecasts a pair and interval: `lstm-<pair>-<interval>`, e.g. `lstm-xbtusd-1d`.
public func modelName(pair: String, interval: CandleInterval) -> String { "lstm-\(pairToken(pair))-\(interval.name)" }
