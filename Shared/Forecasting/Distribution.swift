import Contracts
import Foundation

/// A forecast of the next close with its uncertainty: the point forecast, one interval per `IntervalLevels.all`,
/// and the probability that the close ends above the last close. What every model kind produces.
public struct DistributionForecast: Sendable, Equatable {
    /// USD.
    public var point: Double
    /// The newest close the forecast was made from (the naive forecast of the same target).
    public var lastClose: Double
    /// In `IntervalLevels.all` order, nested.
    public var intervals: [ForecastInterval]
    /// P(next close > last close).
    public var probabilityUp: Double

    public init(point: Double, lastClose: Double, intervals: [ForecastInterval], probabilityUp: Double) {
        self.point = point
        self.lastClose = lastClose
        self.intervals = intervals
        self.probabilityUp = probabilityUp
    }

    public func interval(_ level: Double) -> ForecastInterval? { intervals.first { $0.level == level } }
}

/// A sorted sample of a real-valued quantity (daily log-returns, normalised residuals) and the two questions every
/// interval model asks of it: a quantile, and the share of values above a threshold.
public struct EmpiricalDistribution: Codable, Sendable, Equatable {
    /// Ascending, finite, non-empty.
    public let sortedValues: [Double]

    /// Throws unless `values` has at least one value and all are finite.
    public init<Values: Sequence>(_ values: Values) throws where Values.Element == Double {
        let sorted = values.sorted()
        guard !sorted.isEmpty, sorted.allSatisfy(\.isFinite) else {
            throw ForecastingError.invalidInput("an empirical distribution needs finite values, got \(sorted.count)")
        }
        sortedValues = sorted
    }

    public init(from decoder: any Decoder) throws {
        let values = try decoder.singleValueContainer().decode([Double].self)
        do {
            try self.init(values)
        } catch {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "\(error)"))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(sortedValues)
    }

    public var count: Int { sortedValues.count }

    /// The `p`-quantile with linear interpolation between order statistics (Hyndman and Fan's type 7, numpy's and
    /// R's default), `p` clamped to 0...1.
    public func quantile(_ p: Double) -> Double {
        let p = p.isFinite ? min(max(p, 0), 1) : 0.5
        let position = p * Double(sortedValues.count - 1)
        let below = Int(position.rounded(.down))
        let above = min(below + 1, sortedValues.count - 1)
        let fraction = position - Double(below)
        return sortedValues[below] + (sortedValues[above] - sortedValues[below]) * fraction
    }

    /// The forecast after `lastClose` whose next log-return is `location + scale * v` for `v` drawn from this
    /// distribution: each level's interval between the quantiles at `quantileLevels(level)`, and P(up) the share of
    /// values above -location / scale. What the naive baseline and split-conformal calibration both answer with.
    func forecast(
        lastClose: Double, location: Double, scale: Double, quantileLevels: (Double) -> (lower: Double, upper: Double)
    ) -> DistributionForecast {
        let intervals = IntervalLevels.all.map { level in
            let levels = quantileLevels(level)
            return ForecastInterval(
                level: level, lower: lastClose * exp(location + scale * quantile(levels.lower)),
                upper: lastClose * exp(location + scale * quantile(levels.upper)))
        }
        return DistributionForecast(
            point: lastClose * exp(location), lastClose: lastClose, intervals: intervals, probabilityUp: fractionAbove(-location / scale))
    }

    /// Share of the values strictly above `threshold`.
    public func fractionAbove(_ threshold: Double) -> Double {
        // First index whose value is above the threshold (binary search on the sorted values).
        var low = 0
        var high = sortedValues.count
        while low < high {
            let middle = (low + high) / 2
            if sortedValues[middle] > threshold { high = middle } else { low = middle + 1 }
        }
        return Double(sortedValues.count - low) / Double(sortedValues.count)
    }
}

/// Split-conformal calibration of a model's next log-return: on held-out rows the model's residuals, each
/// divided by the scale the model gave that row (1 for a point model), form `scores`. A new forecast of location
/// `m` and scale `s` then gets the interval `last * exp(m + s * q)` between the scores' lower and upper quantiles,
/// and P(up) = the share of scores above -m/s: calibrated on the held-out rows by construction.
public struct ResidualCalibration: Codable, Sendable, Equatable {
    public let scores: EmpiricalDistribution

    /// Rows the calibration needs at least: with fewer, the 95 % interval's tails rest on no residual at all.
    public static let minimumRows = 20

    public init(scores: EmpiricalDistribution) throws {
        guard scores.count >= Self.minimumRows else {
            throw ForecastingError.insufficientData(needed: Self.minimumRows, available: scores.count)
        }
        self.scores = scores
    }

    /// From held-out log-returns and the model's locations and scales for them.
    public init(actualLogReturns: [Double], locations: [Double], scales: [Double]) throws {
        guard actualLogReturns.count == locations.count, locations.count == scales.count else {
            throw ForecastingError.invalidInput("calibration needs as many locations and scales as returns")
        }
        guard scales.allSatisfy({ $0.isFinite && $0 > 0 }) else {
            throw ForecastingError.invalidInput("calibration scales must be finite and positive")
        }
        try self.init(scores: EmpiricalDistribution(actualLogReturns.indices.map { (actualLogReturns[$0] - locations[$0]) / scales[$0] }))
    }

    /// The quantile levels of the interval at `level`, widened by split conformal's finite-sample correction
    /// ((n + 1) / n) so the coverage on exchangeable rows is at least `level`.
    func quantileLevels(_ level: Double) -> (lower: Double, upper: Double) {
        let n = Double(scores.count)
        let upper = min(1, (1 + level) / 2 * (n + 1) / n)
        return (1 - upper, upper)
    }

    /// The forecast for a next log-return of location `location` and scale `scale` after `lastClose`.
    public func forecast(lastClose: Double, location: Double, scale: Double) -> DistributionForecast {
        scores.forecast(lastClose: lastClose, location: location, scale: scale, quantileLevels: quantileLevels)
    }
}

/// The naive baseline: tomorrow = today, with its intervals and P(up) read off the empirical distribution of the
/// last `lookback` daily log-returns (the interval model the anchor table names: 365 returns, type-7
/// quantiles). Nothing is fitted; it needs `lookback + 1` closes.
public struct NaiveBaseline: Codable, Sendable, Equatable {
    public let lookback: Int

    /// The reference: one year of daily returns.
    public static let defaultLookback = 365
    /// Fewer returns than this do not make a 95 % interval worth the name.
    public static let lookbacks: ClosedRange<Int> = 20...(ForecastSpec.windows.upperBound - 1)

    public init(lookback: Int = NaiveBaseline.defaultLookback) throws {
        guard Self.lookbacks.contains(lookback) else {
            throw ForecastingError.invalidConfiguration("lookback must be in \(Self.lookbacks), got \(lookback)")
        }
        self.lookback = lookback
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        do {
            try self.init(lookback: try container.decode(Int.self, forKey: .lookback))
        } catch let error as ForecastingError {
            throw DecodingError.dataCorruptedError(forKey: .lookback, in: container, debugDescription: error.description)
        }
    }

    enum CodingKeys: String, CodingKey { case lookback }

    /// Closes one forecast reads.
    public var window: Int { lookback + 1 }

    /// The forecast after the last `window` closes of `closes` (oldest first, finite and positive).
    public func forecast(closes: some Collection<Double>) throws -> DistributionForecast {
        guard closes.count >= window else { throw ForecastingError.insufficientData(needed: window, available: closes.count) }
        let recent = Array(closes.suffix(window))
        guard recent.allSatisfy({ $0.isFinite && $0 > 0 }) else {
            throw ForecastingError.invalidInput("closes must be finite and positive")
        }
        let returns = try EmpiricalDistribution(zip(recent.dropFirst(), recent).map { log($0 / $1) })
        // Tomorrow = today (location 0), the returns' own quantiles (no conformal correction: nothing was fitted).
        return returns.forecast(lastClose: recent[recent.count - 1], location: 0, scale: 1) { ((1 - $0) / 2, (1 + $0) / 2) }
    }

    /// The reference baseline on whatever history a window carries: `defaultLookback` returns, or as many as there
    /// are (at least `lookbacks.lowerBound`); nil when the window is too short. The predictor scores every forecast
    /// beside it.
    public static func reference(closes: some Collection<Double>) -> DistributionForecast? {
        let lookback = min(defaultLookback, closes.count - 1)
        guard let baseline = try? NaiveBaseline(lookback: lookback) else { return nil }
        return try? baseline.forecast(closes: closes)
    }
}
