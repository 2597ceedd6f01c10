import Contracts

/// Optimiser, schedule and stopping settings. Defaults match the Keras anchor (Adam 1e-3, batch 32,
/// EarlyStopping(patience 8, min_delta 1e-5, restore best), ReduceLROnPlateau(patience 5, factor 0.5, min_lr 1e-6)).
public struct TrainingConfiguration: Codable, Sendable, Equatable {
    /// Maximum number of passes over the training samples.
    public var epochs: Int = 100
    /// Samples per gradient step; the last batch of an epoch may be smaller.
    public var batchSize: Int = 32
    /// Initial Adam learning rate.
    public var learningRate: Double = 0.001
    /// Seeds initialisation and shuffling. Same seed and thread count give bit-identical weights.
    public var seed: UInt64 = 42
    /// Epochs without a validation-loss improvement of more than `minDelta` before training stops
    /// (`TrainingParameters.patiences`, the contract's range).
    public var patience: Int = 8
    /// Improvement threshold for early stopping.
    public var minDelta: Double = 1e-5
    /// Epochs without an improvement of more than `reduceLRMinDelta` before the learning rate is cut.
    public var reduceLRPatience: Int = 5
    /// Factor applied to the learning rate on a plateau.
    public var reduceLRFactor: Double = 0.5
    /// Improvement threshold for the plateau detector (Keras's default).
    public var reduceLRMinDelta: Double = 1e-4
    /// Floor for the learning rate.
    public var minLearningRate: Double = 1e-6
    /// If set, gradients are rescaled so their global L2 norm never exceeds this value.
    public var clipNorm: Double? = nil
    /// Threads that train together (a `ComputeTeam`, at most one per core), each on single-threaded OpenBLAS; the name
    /// is the setting's (`CANDLECAST_BLAS_THREADS`).
    public var blasThreads: Int = 2
    /// Adam's first and second moment decay rates and epsilon (Keras defaults).
    public var adamBeta1: Double = 0.9
    public var adamBeta2: Double = 0.999
    public var adamEpsilon: Double = 1e-7

    public init() {}

    /// Throws `ForecastingError.invalidConfiguration` when a setting is out of range.
    public func validate() throws {
        func require(_ condition: Bool, _ message: String) throws {
            if !condition { throw ForecastingError.invalidConfiguration(message) }
        }
        try require(epochs >= 1, "epochs must be at least 1, got \(epochs)")
        try require(batchSize >= 1, "batchSize must be at least 1, got \(batchSize)")
        try require(learningRate > 0 && learningRate.isFinite, "learningRate must be positive, got \(learningRate)")
        try require(TrainingParameters.patiences.contains(patience), "patience must be in \(TrainingParameters.patiences), got \(patience)")
        try require(reduceLRPatience >= 1, "reduceLRPatience must be at least 1")
        try require(minDelta >= 0 && reduceLRMinDelta >= 0, "min deltas must not be negative")
        try require(reduceLRFactor > 0 && reduceLRFactor < 1, "reduceLRFactor must be in (0, 1), got \(reduceLRFactor)")
        try require(minLearningRate >= 0, "minLearningRate must not be negative")
        try require(clipNorm.map { $0 > 0 && $0.isFinite } ?? true, "clipNorm must be positive")
        try require(blasThreads >= 1, "blasThreads must be at least 1, got \(blasThreads)")
        try require((0..<1).contains(adamBeta1) && (0..<1).contains(adamBeta2) && adamEpsilon > 0, "invalid Adam constants")
    }
}

/// What happened in one epoch, passed to the per-epoch callback.
public struct EpochReport: Sendable, Equatable {
    /// 1-based epoch number.
    public var epoch: Int
    /// The head's loss over the epoch's training samples, measured while training: mean squared error (target scale)
    /// for a point head, mean Gaussian negative log-likelihood of the log-returns for a gaussian one (may be negative).
    public var loss: Double
    /// The same loss on the validation samples after the epoch, or nil without validation samples.
    public var validationLoss: Double?
    /// Learning rate used during this epoch.
    public var learningRate: Double
    /// Wall-clock seconds for the epoch, validation included.
    public var seconds: Double
    /// True when this epoch's weights are the best so far (the ones that will be kept).
    public var isBest: Bool
}

/// Training metadata stored in the model file.
public struct TrainingSummary: Codable, Sendable, Equatable {
    public var training: TrainingConfiguration
    /// Epochs actually run (early stopping may end training sooner).
    public var epochsRun: Int
    /// 1-based epoch whose weights were kept.
    public var bestEpoch: Int
    /// The monitored loss of the kept weights (validation loss, or training loss without validation).
    public var bestMonitoredLoss: Double
    /// Learning rate at the end of training.
    public var finalLearningRate: Double
    /// Samples used for gradient steps per epoch, and held out for validation.
    public var trainingSamples: Int
    public var validationSamples: Int
    /// Index of the first close not seen by training (the scaler was fitted on closes before it).
    public var trainingEnd: Int
    /// Wall-clock seconds spent training.
    public var trainSeconds: Double

    public init(
        training: TrainingConfiguration, epochsRun: Int, bestEpoch: Int, bestMonitoredLoss: Double,
        finalLearningRate: Double, trainingSamples: Int, validationSamples: Int, trainingEnd: Int, trainSeconds: Double
    ) {
        self.training = training
        self.epochsRun = epochsRun
        self.bestEpoch = bestEpoch
        self.bestMonitoredLoss = bestMonitoredLoss
        self.finalLearningRate = finalLearningRate
        self.trainingSamples = trainingSamples
        self.validationSamples = validationSamples
        self.trainingEnd = trainingEnd
        self.trainSeconds = trainSeconds
    }
}
