import Messaging

/// Activation of an LSTM cell (candidate and cell output) or of a dense layer's output. The one enum for the
/// contract (`activation` of a job, a grid, a spec) and the network (Forecasting's layers).
public enum Activation: String, Codable, Sendable, CaseIterable, Hashable {
    case relu, tanh, linear
}

/// What the network's single output means, and therefore how it is turned back into a close in USD. The one enum
/// for the contract and the network.
public enum ForecastTarget: String, Codable, Sendable, CaseIterable, Hashable {
    /// The next close on the min-max scale (the old system's target).
    case nextScaledClose = "next-scaled-close"
    /// log(next close / last close of the window): an output of 0 is the naive forecast. The network sees
    /// the window as log prices relative to its last close (price-level invariant).
    case logReturn = "log-return"
    /// Next scaled close minus the window's last scaled close: an output of 0 is the naive forecast.
    case scaledDifference = "scaled-difference"
}

/// The series a dataset version holds (its `feature` column and `dataset.ready`'s `feature`). The network reads
/// the close; volumes travel with the rows and windows for models that will use them.
public enum FeatureSet: String, Codable, Sendable, CaseIterable, Hashable {
    case close = "close"
    case closeVolume = "close,volume"

    public var includesVolume: Bool { self == .closeVolume }
}

/// How inputs are scaled: min-max fitted on the training rows only (the bounds belong to a dataset version).
public enum ScalerKind: String, Codable, Sendable, CaseIterable, Hashable {
    case minMaxOnTrainingRows = "min-max-training-rows"
}

/// The chronological split of protocol BTC-daily-v1, as fractions of a dataset version's rows.
public struct SplitFractions: Codable, Sendable, Hashable {
    /// Share of the rows before the test rows (the scaler is fitted there).
    public var train: Double
    /// Share of the training samples held out as validation: their chronological tail (Keras's validation_split).
    public var validation: Double

    public init(train: Double = 0.7, validation: Double = 0.1) {
        self.train = train
        self.validation = validation
    }

    /// Share of the rows that are test targets.
    public var test: Double { 1 - train }

    /// The first test row of `rowCount` rows. Called once, by the preprocessor when it cuts a dataset version; every
    /// other service reads the version's stored `training_end`.
    public func trainingEnd(rowCount: Int) -> Int { Int(Double(rowCount) * train) }
}

/// A half-open range of dataset rows, `start..<end` (JSON `{"start": s, "end": e}`).
public struct RowRange: Codable, Sendable, Hashable, CustomStringConvertible {
    public var start: Int
    public var end: Int

    public init(_ range: Range<Int>) {
        start = range.lowerBound
        end = range.upperBound
    }

    public var range: Range<Int> { start..<end }
    public var description: String { "\(start)..<\(end)" }

    public func validate(_ field: String) throws(ValidationFailure) {
        try ContractRules.count(start, "\(field).start", in: 0...ContractRules.maximumRows)
        try ContractRules.count(end, "\(field).end", in: start...ContractRules.maximumRows)
    }
}

/// What a forecast is: the window it reads, the features, the target encoding, the LSTM activation, the split, the
/// scaler and the horizon. Cut once and then only read: the preprocessor stores it with each dataset version, the
/// registry composes each job's spec from it and the grid point (`TrainingParameters.spec(on:)`) and stores that
/// with the run and the model version, the trainer trains under it and writes it into the model file, the gate
/// and the predictor read it from there.
public struct ForecastSpec: Codable, Sendable, Hashable {
    /// Windows a spec may ask for. The upper bound is also how many recent closes every `features.window`
    /// carries (when stored), so a model of any valid window can be served.
    public static let windows: ClosedRange<Int> = 2...512
    /// Candles ahead: the next one only.
    public static let horizons: ClosedRange<Int> = 1...1
    /// Open interval in effect: a fraction of 0 or 1 leaves a split empty.
    public static let fractions: ClosedRange<Double> = 0.01...0.99
    /// The activations of an LSTM layer (`linear` is for dense layers).
    public static let lstmActivations: Set<Activation> = [.relu, .tanh]

    /// Closes each forecast sees.
    public var window: Int
    public var features: FeatureSet
    public var target: ForecastTarget
    public var activation: Activation
    public var split: SplitFractions
    public var scaler: ScalerKind
    /// Candles ahead of the window's newest one.
    public var horizon: Int

    /// Defaults: protocol BTC-daily-v1 (window 14, closes, 70 % train with a 10 % validation tail) with the
    /// service's default target and activation (log-return, relu).
    public init(
        window: Int = 14, features: FeatureSet = .close, target: ForecastTarget = .logReturn, activation: Activation = .relu,
        split: SplitFractions = SplitFractions(), scaler: ScalerKind = .minMaxOnTrainingRows, horizon: Int = 1
    ) {
        self.window = window
        self.features = features
        self.target = target
        self.activation = activation
        self.split = split
        self.scaler = scaler
        self.horizon = horizon
    }

    public func validate() throws(ValidationFailure) {
        try ContractRules.count(window, "window", in: Self.windows)
        try ContractRules.count(horizon, "horizon", in: Self.horizons)
        try ContractRules.fraction(split.train, "split.train", in: Self.fractions)
        try ContractRules.fraction(split.validation, "split.validation", in: Self.fractions)
        guard Self.lstmActivations.contains(activation) else {
            throw ValidationFailure(.invalidValue, "activation must be relu or tanh", field: "activation")
        }
    }
}

extension ContractRules {
    /// Throws unless `value` is a finite number in `range`.
    public static func fraction(_ value: Double, _ field: String, in range: ClosedRange<Double>) throws(ValidationFailure) {
        guard value.isFinite, range.contains(value) else {
            throw ValidationFailure(.outOfRange, "\(field) \(value) is outside \(range.lowerBound)...\(range.upperBound)", field: field)
        }
    }
}
