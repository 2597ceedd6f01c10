import Contracts
import Foundation

/// Min-max scaling to [0, 1] over the rows it was fitted on; `inverse` undoes `transform` (minimum included).
public struct MinMaxScaler: Codable, Sendable, Equatable {
    public let minimum: Double
    public let maximum: Double

    /// A scaler with known bounds; throws unless both are finite and `maximum > minimum`.
    public init(minimum: Double, maximum: Double) throws {
        guard minimum.isFinite, maximum.isFinite, maximum > minimum else {
            throw ForecastingError.invalidInput("scaler needs finite bounds with maximum > minimum, got [\(minimum), \(maximum)]")
        }
        self.minimum = minimum
        self.maximum = maximum
    }

    /// Fits on exactly the given values (pass only training rows so nothing leaks from the future).
    public init<Values: Collection>(fittingOn values: Values) throws where Values.Element == Double {
        guard let low = values.min(), let high = values.max() else {
            throw ForecastingError.insufficientData(needed: 2, available: 0)
        }
        try self.init(minimum: low, maximum: high)
    }

    /// maximum - minimum: one scaled unit in the original units.
    public var range: Double { maximum - minimum }

    /// Maps minimum to 0 and maximum to 1 (values outside the fitted range map outside [0, 1]).
    public func transform(_ value: Double) -> Double { (value - minimum) / range }

    /// Maps 0 back to minimum and 1 back to maximum.
    public func inverse(_ scaled: Double) -> Double { scaled * range + minimum }

    /// Element-wise `transform`.
    public func transform(_ values: [Double]) -> [Double] { values.map(transform) }

    /// Element-wise `inverse`.
    public func inverse(_ values: [Double]) -> [Double] { values.map(inverse) }
}

/// Supervised samples cut from a series: `inputs[k]` is the `window` values just before `targetIndices[k]`.
public struct WindowedDataset: Sendable, Equatable {
    /// Values per input window.
    public let window: Int
    /// One window per sample, oldest value first.
    public let inputs: [[Double]]
    /// The value following each window.
    public let targets: [Double]
    /// Series index of each target.
    public let targetIndices: Range<Int>
    /// Number of samples.
    public var count: Int { targets.count }
}

/// Windows of length `window` -> next value, for every target index in `targets`. A window ends strictly
/// before its target: `inputs[k] == series[t - window ..< t]`, `targets[k] == series[t]`.
public func makeWindows(series: [Double], window: Int, targets: Range<Int>) throws -> WindowedDataset {
    guard window >= 1 else { throw ForecastingError.invalidInput("window must be at least 1, got \(window)") }
    guard targets.lowerBound >= window, targets.upperBound <= series.count else {
        throw ForecastingError.invalidInput(
            "targets \(targets) need indices in \(window)..<\(series.count) for window \(window) on \(series.count) values")
    }
    return WindowedDataset(
        window: window,
        inputs: targets.map { Array(series[($0 - window)..<$0]) },
        targets: targets.map { series[$0] },
        targetIndices: targets)
}

/// Chronological split of protocol BTC-daily-v1: the first `trainFraction` of the closes train the model
/// (its last `validationFraction` of training samples is the validation tail, as Keras's validation_split),
/// the rest are test targets whose input windows may reach back into the training period.
public struct ChronologicalSplit: Sendable, Equatable {
    public let count: Int
    public let window: Int
    /// First index not used for training. The scaler is fitted on `0..<trainingEnd`.
    public let trainingEnd: Int
    /// The fractions the split was cut with (`fractions.train` is what `trainingEnd` was computed from).
    public let fractions: SplitFractions
    /// Target indices of the samples that drive gradient steps.
    public let fitTargets: Range<Int>
    /// Target indices of the validation samples (the chronological tail of the training samples).
    public let validationTargets: Range<Int>
    /// Target indices evaluated as the test set.
    public let testTargets: Range<Int>

    /// Cuts `count` closes: `trainingEnd` is `fractions.trainingEnd(rowCount: count)`.
    public init(count: Int, window: Int = 14, trainFraction: Double = 0.7, validationFraction: Double = 0.1) throws {
        guard trainFraction > 0, trainFraction < 1 else {
            throw ForecastingError.invalidConfiguration("trainFraction must be in (0, 1), got \(trainFraction)")
        }
        let fractions = SplitFractions(train: trainFraction, validation: validationFraction)
        try self.init(count: count, window: window, trainingEnd: fractions.trainingEnd(rowCount: count), fractions: fractions)
    }

    /// Cuts `count` closes under `spec` (its window and split fractions).
    public init(count: Int, spec: ForecastSpec) throws {
        try self.init(count: count, window: spec.window, trainFraction: spec.split.train, validationFraction: spec.split.validation)
    }

    /// The split of a stored dataset version: its `trainingEnd` as stored (never recomputed from the fractions), the
    /// validation tail from `fractions.validation`, for a model of `window`.
    public init(count: Int, window: Int, trainingEnd: Int, fractions: SplitFractions) throws {
        guard fractions.validation >= 0, fractions.validation < 1 else {
            throw ForecastingError.invalidConfiguration("validationFraction must be in [0, 1), got \(fractions.validation)")
        }
        let trainingSamples = trainingEnd - window
        // Keras keeps floor(n * (1 - validation_split)) samples for fitting.
        let fitCount = Int((Double(trainingSamples) * (1 - fractions.validation)).rounded(.down))
        guard window >= 1, fitCount >= 1, trainingEnd < count else {
            throw ForecastingError.insufficientData(needed: window + 2, available: count)
        }
        self.count = count
        self.window = window
        self.trainingEnd = trainingEnd
        self.fractions = fractions
        self.fitTargets = window..<(window + fitCount)
        self.validationTargets = (window + fitCount)..<trainingEnd
        self.testTargets = trainingEnd..<count
    }
}

/// Protocol BTC-daily-v1's data: Kraken XBTUSD daily candles, the full history file then the 2024 file.
public enum BTCDailyV1 {
    public static let fileNames = ["kraken_XBTUSD_1440.csv", "kraken_XBTUSD_1440_2024.csv"]
    public static let window = 14
    // The files are read by KrakenFormat.OHLCVTFile.closes(atPath:), the one parser of the format.
}
