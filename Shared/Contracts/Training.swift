import Foundation
import Messaging

/// Hyperparameters of one training job (one grid point of a sweep). `window`, `activation` and `target` are the
/// grid's part of the job's `ForecastSpec` (`spec(on:)`); the rest of the spec comes from the dataset version.
/// `model` says what the job trains: the network parameters apply to `.lstm` only (a baseline's job carries its
/// window and the dataset's target and activation, so that `spec(on:)` is the baseline's spec).
public struct TrainingParameters: Codable, Sendable, Equatable, Hashable {
    /// Optional on the wire (added later): absent means `.lstm`.
    public var model: ModelFamily
    /// The LSTM's output layer. Optional on the wire (added later): absent means `.point`, what jobs before heads trained.
    public var head: OutputHead
    public var units: Int
    public var layers: Int
    public var activation: Activation
    public var target: ForecastTarget
    public var window: Int
    public var batchSize: Int
    public var learningRate: Double
    public var epochs: Int
    public var patience: Int
    public var seed: UInt64

    /// Early-stopping patience: at least one epoch without improvement (0 would stop after the first epoch). The
    /// trainer's `TrainingConfiguration` checks the same range.
    public static let patiences: ClosedRange<Int> = 1...1000

    /// `head` nil takes `OutputHead.default(for: target)`.
    public init(
        model: ModelFamily = .lstm, units: Int = 350, layers: Int = 1, activation: Activation = .relu, target: ForecastTarget = .logReturn,
        window: Int = 14, batchSize: Int = 32, learningRate: Double = 0.001, epochs: Int = 100, patience: Int = 8, seed: UInt64 = 42,
        head: OutputHead? = nil
    ) {
        self.model = model
        self.head = head ?? .default(for: target)
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
        case model, head, units, layers, activation, target, window, epochs, patience, seed
        case batchSize = "batch_size"
        case learningRate = "learning_rate"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        model = try container.decodeIfPresent(ModelFamily.self, forKey: .model) ?? .lstm
        head = try container.decodeIfPresent(OutputHead.self, forKey: .head) ?? .point
        units = try container.decode(Int.self, forKey: .units)
        layers = try container.decode(Int.self, forKey: .layers)
        activation = try container.decode(Activation.self, forKey: .activation)
        target = try container.decode(ForecastTarget.self, forKey: .target)
        window = try container.decode(Int.self, forKey: .window)
        batchSize = try container.decode(Int.self, forKey: .batchSize)
        learningRate = try container.decode(Double.self, forKey: .learningRate)
        epochs = try container.decode(Int.self, forKey: .epochs)
        patience = try container.decode(Int.self, forKey: .patience)
        seed = try container.decode(UInt64.self, forKey: .seed)
    }

    /// The spec of a model trained with these parameters on a dataset version cut under `dataset`: the dataset's
    /// features, split, scaler and horizon; this grid point's window, target and activation.
    public func spec(on dataset: ForecastSpec) -> ForecastSpec {
        var spec = dataset
        spec.window = window
        spec.target = target
        spec.activation = activation
        return spec
    }

    public func validate() throws(ValidationFailure) {
        guard (1...2048).contains(units), (1...4).contains(layers), (1...4096).contains(batchSize),
            (1...10_000).contains(epochs), learningRate.isFinite, learningRate > 0, learningRate < 1
        else { throw ValidationFailure("training parameters out of range: \(self)") }
        try ContractRules.count(window, "window", in: ForecastSpec.windows)
        try ContractRules.count(patience, "patience", in: Self.patiences)
        guard ForecastSpec.lstmActivations.contains(activation) else {
            throw ValidationFailure(.invalidValue, "activation must be relu or tanh", field: "activation")
        }
        guard head != .gaussian || target == .logReturn else {
            throw ValidationFailure(.inconsistent, "head gaussian models the next log-return: target must be log-return", field: "head")
        }
    }
}

extension OutputHead {
    /// The head a new grid point gets unless it names one: the distributional head where it applies (log-return).
    public static func `default`(for target: ForecastTarget) -> OutputHead { target == .logReturn ? .gaussian : .point }
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
    /// What the model is: `parameters.spec(on:)` the dataset version's spec, composed once by the registry.
    /// Optional (added later): a job without one is trained under that same composition, read by the trainer.
    public var spec: ForecastSpec?

    public init(
        jobID: UUID, sweepID: UUID, experiment: String, modelName: String, pair: String, interval: CandleInterval, datasetVersion: Int,
        parameters: TrainingParameters, supersedable: Bool? = nil, spec: ForecastSpec? = nil
    ) {
        self.supersedable = supersedable
        self.spec = spec
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
        case experiment, pair, interval, parameters, supersedable, spec
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
        if let spec {
            try spec.validate()
            guard spec.window == parameters.window, spec.target == parameters.target, spec.activation == parameters.activation else {
                throw ValidationFailure(.inconsistent, "spec and parameters disagree on window, target or activation", field: "spec")
            }
        }
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

/// A model file by reference: the bytes are in the registry (uploaded by the trainer before it reports), never on the bus.
public struct ArtifactReference: Codable, Sendable, Equatable {
    public var name: String
    public var bytes: Int
    /// SHA-256 of the file, 64 lowercase hex digits.
    public var sha256: String

    public init(name: String, bytes: Int, sha256: String) {
        self.name = name
        self.bytes = bytes
        self.sha256 = sha256
    }

    public func validate() throws(ValidationFailure) {
        try ContractRules.text(name, "artifact.name", limit: 256, allowEmpty: false)
        try ContractRules.count(bytes, "artifact.bytes", in: 1...(1 << 40))
        guard sha256.utf8.count == 64, sha256.utf8.allSatisfy({ (48...57).contains($0) || (97...102).contains($0) }) else {
            throw ValidationFailure(.invalidValue, "artifact.sha256 must be 64 lowercase hex digits", field: "artifact.sha256")
        }
    }
}

/// `training.completed`: a job finished (with a reference to its model file, stored in the registry) or failed
/// (with the reason). Schema version 2: version 1 carried the file itself, base64. The family, validation and
/// distribution fields were added later within version 2 (optional: absent from older trainers' results).
public struct TrainingCompleted: MessagePayload, Equatable {
    public static let messageType = "training.completed"
    public static let schemaVersion = 2

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
    /// The model file the trainer stored in the registry (set when `succeeded`).
    public var artifact: ArtifactReference?
    /// The dataset rows `test` and `naive` were scored on (the version's `training_end..<row_count`), so the gate
    /// can check that it compares the challenger and the champion on the same rows. Optional (added later).
    public var testRows: RowRange?
    /// What the job trained. Optional (added later): absent means `.lstm`.
    public var model: ModelFamily?
    /// Scores on `validationRows`, the rows every candidate of a sweep is ranked on (the dataset version's validation
    /// rows). Optional (added later): a result without them ranks by `validationLoss`, after those with them.
    public var validation: ForecastScores?
    public var validationRows: RowRange?
    /// Interval and Brier scores on the test rows, of the model and of the naive baseline. Optional (added later;
    /// absent for a model without intervals).
    public var testDistribution: DistributionScores?
    public var naiveDistribution: DistributionScores?
    /// Interval and Brier scores on `validationRows`. Optional (added later).
    public var validationDistribution: DistributionScores?

    public init(
        jobID: UUID, sweepID: UUID, trainer: String, succeeded: Bool, error: String?, epochsRun: Int, bestEpoch: Int,
        validationLoss: Double?, trainSeconds: Double, test: ForecastScores?, naive: ForecastScores?, artifact: ArtifactReference?,
        testRows: RowRange? = nil, model: ModelFamily? = nil, validation: ForecastScores? = nil, validationRows: RowRange? = nil,
        testDistribution: DistributionScores? = nil, naiveDistribution: DistributionScores? = nil,
        validationDistribution: DistributionScores? = nil
    ) {
        self.testRows = testRows
        self.model = model
        self.validation = validation
        self.validationRows = validationRows
        self.testDistribution = testDistribution
        self.naiveDistribution = naiveDistribution
        self.validationDistribution = validationDistribution
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
    }

    enum CodingKeys: String, CodingKey {
        case trainer, succeeded, error, test, naive, artifact, model, validation
        case validationRows = "validation_rows"
        case testDistribution = "test_distribution"
        case naiveDistribution = "naive_distribution"
        case validationDistribution = "validation_distribution"
        case jobID = "job_id"
        case sweepID = "sweep_id"
        case epochsRun = "epochs_run"
        case bestEpoch = "best_epoch"
        case validationLoss = "validation_loss"
        case trainSeconds = "train_seconds"
        case testRows = "test_rows"
    }

    public func validate() throws(ValidationFailure) {
        try testRows?.validate("test_rows")
        try validationRows?.validate("validation_rows")
        try testDistribution?.validate("test_distribution")
        try naiveDistribution?.validate("naive_distribution")
        try validationDistribution?.validate("validation_distribution")
        guard trainSeconds.isFinite, trainSeconds >= 0, trainSeconds < 1e9 else {
            throw ValidationFailure("train_seconds must be non-negative and finite")
        }
        try ContractRules.count(epochsRun, "epochs_run", in: 0...10_000)
        try ContractRules.count(bestEpoch, "best_epoch", in: 0...10_000)
        try ContractRules.text(trainer, "trainer", limit: 256)
        if let error { try ContractRules.text(error, "error", limit: 10_000) }
        // Finite, of any sign: a gaussian head's loss is a negative log-likelihood, below 0 for a sharp fit.
        if let validationLoss, !validationLoss.isFinite {
            throw ValidationFailure("validation_loss must be finite")
        }
        for scores in [test, naive, validation].compactMap({ $0 }) {
            guard [scores.rmse, scores.mae, scores.mape, scores.r2, scores.mase].allSatisfy(\.isFinite) else {
                throw ValidationFailure("test, naive and validation metrics must be finite")
            }
        }
        if succeeded {
            guard artifact != nil, test != nil, naive != nil else {
                throw ValidationFailure("a succeeded job needs its artifact and test metrics")
            }
        }
        if let artifact {
            try artifact.validate()
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
        // Losses of any sign: a gaussian head's is a negative log-likelihood.
        guard epoch >= 1, loss.isFinite, learningRate.isFinite, learningRate > 0, seconds.isFinite, seconds >= 0,
            validationLoss.map({ $0.isFinite }) ?? true
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
    /// The promoted version's spec (the window the predictor will build for it). Optional (added later); the model
    /// file carries the same spec.
    public var spec: ForecastSpec?

    public init(
        modelName: String, alias: String, version: Int, previousVersion: Int?, reason: String, pair: String, interval: CandleInterval,
        datasetVersion: Int, artifactCRC32: UInt32, spec: ForecastSpec? = nil
    ) {
        self.spec = spec
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
        case alias, version, reason, pair, interval, spec
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
        try spec?.validate()
    }

    public var routingKey: String { RoutingKey.modelPromoted(name: modelName) }
}

/// The registered model that forecasts a pair and interval: `lstm-<pair>-<interval>`, e.g. `lstm-xbtusd-1d`.
public func modelName(pair: String, interval: CandleInterval) -> String { "lstm-\(pairToken(pair))-\(interval.name)" }
