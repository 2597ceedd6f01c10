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
    /// First index not used for training: `Int(count * trainFraction)`. The scaler is fitted on `0..<trainingEnd`.
    public let trainingEnd: Int
    /// Target indices of the samples that drive gradient steps.
    public let fitTargets: Range<Int>
    /// Target indices of the validation samples (the chronological tail of the training samples).
    public let validationTargets: Range<Int>
    /// Target indices evaluated as the test set.
    public let testTargets: Range<Int>

    public init(count: Int, window: Int = 14, trainFraction: Double = 0.7, validationFraction: Double = 0.1) throws {
        guard trainFraction > 0, trainFraction < 1 else {
            throw ForecastingError.invalidConfiguration("trainFraction must be in (0, 1), got \(trainFraction)")
        }
        guard validationFraction >= 0, validationFraction < 1 else {
            throw ForecastingError.invalidConfiguration("validationFraction must be in [0, 1), got \(validationFraction)")
        }
        let trainingEnd = Int(Double(count) * trainFraction)
        let trainingSamples = trainingEnd - window
        // Keras keeps floor(n * (1 - validation_split)) samples for fitting.
        let fitCount = Int((Double(trainingSamples) * (1 - validationFraction)).rounded(.down))
        guard window >= 1, fitCount >= 1, trainingEnd < count else {
            throw ForecastingError.insufficientData(needed: window + 2, available: count)
        }
        self.count = count
        self.window = window
        self.trainingEnd = trainingEnd
        self.fitTargets = window..<(window + fitCount)
        self.validationTargets = (window + fitCount)..<trainingEnd
        self.testTargets = trainingEnd..<count
    }
}

/// Protocol BTC-daily-v1's data: Kraken XBTUSD daily candles, the full history file then the 2024 file.
public enum BTCDailyV1 {
    public static let fileNames = ["kraken_XBTUSD_1440.csv", "kraken_XBTUSD_1440_2024.csv"]
    public static let window = 14

    /// Reads the closes (5th column of headerless `time,open,high,low,close,volume,trades`) in file order.
    public static func loadCloses(dataDirectory: String) throws -> [Double] {
        var closes: [Double] = []
        for name in fileNames {
            let path = (dataDirectory as NSString).appendingPathComponent(name)
            let text: String
            do {
                text = try String(contentsOfFile: path, encoding: .utf8)
            } catch {
                throw ForecastingError.unreadableData(path: path, reason: "\(error.localizedDescription)")
            }
            for (lineIndex, line) in text.split(whereSeparator: \.isNewline).enumerated() {
                let fields = line.split(separator: ",", omittingEmptySubsequences: false)
                guard fields.count >= 5, let close = Double(fields[4]), close.isFinite, close > 0 else {
                    throw ForecastingError.unreadableData(path: path, reason: "line \(lineIndex + 1): no positive close in column 5")
                }
                closes.append(close)
            }
        }
        return closes
    }
}
