import Messaging

/// The nominal coverages every forecast gives an interval at, in this order. One list for the models that make the
/// intervals, the predictor that serves them, the scores, the gate and the monitor.
public enum IntervalLevels {
    public static let all: [Double] = [0.8, 0.95]
    /// The level the gate and the coverage alert judge (the 80 % interval).
    public static let gated: Double = 0.8

    /// Whether `level` is one of `all` (levels travel as JSON numbers: compared exactly, they are written exactly).
    public static func isKnown(_ level: Double) -> Bool { all.contains(level) }
}

/// A forecast range for the next close, in USD: the close is expected inside `lower...upper` with probability `level`.
public struct ForecastInterval: Codable, Sendable, Hashable {
    /// Nominal coverage, one of `IntervalLevels.all`.
    public var level: Double
    public var lower: Double
    public var upper: Double

    public init(level: Double, lower: Double, upper: Double) {
        self.level = level
        self.lower = lower
        self.upper = upper
    }

    public func validate(_ field: String) throws(ValidationFailure) {
        guard IntervalLevels.isKnown(level) else {
            throw ValidationFailure(.invalidValue, "\(field).level \(level) is not one of \(IntervalLevels.all)", field: "\(field).level")
        }
        try ContractRules.price(lower, "\(field).lower")
        try ContractRules.price(upper, "\(field).upper")
        guard lower <= upper else {
            throw ValidationFailure(.inconsistent, "\(field).lower is above \(field).upper", field: field)
        }
    }
}

extension [ForecastInterval] {
    /// Throws unless the intervals are exactly one per level of `IntervalLevels.all`, in that order, each valid, and
    /// nested (a wider level's interval contains a narrower level's).
    public func validate(_ field: String) throws(ValidationFailure) {
        guard map(\.level) == IntervalLevels.all else {
            throw ValidationFailure(.invalidValue, "\(field) must give the levels \(IntervalLevels.all) in order", field: field)
        }
        for (index, interval) in enumerated() { try interval.validate("\(field)[\(index)]") }
        for (narrow, wide) in zip(self, dropFirst()) where wide.lower > narrow.lower || wide.upper < narrow.upper {
            throw ValidationFailure(
                .inconsistent, "\(field): the \(wide.level) interval does not contain the \(narrow.level) one", field: field)
        }
    }
}

extension ContractRules {
    /// Throws unless `value` is a probability (finite, 0...1).
    public static func probability(_ value: Double, _ field: String) throws(ValidationFailure) {
        guard value.isFinite, (0...1).contains(value) else {
            throw ValidationFailure(.outOfRange, "\(field) \(value) is not a probability in 0...1", field: field)
        }
    }
}

/// How a set of interval forecasts at one level did against the actual closes.
public struct IntervalScores: Codable, Sendable, Equatable {
    public var level: Double
    /// Rows scored.
    public var count: Int
    /// Share of actual closes inside the interval (0...1): near `level` when the intervals are calibrated.
    public var coverage: Double
    /// Mean upper - lower, in percent of the last close the forecast was made from.
    public var meanWidthPercent: Double
    /// Mean Winkler (interval) score in USD: width + (2 / (1 - level)) x distance of the actual outside; lower is better.
    public var winkler: Double

    public init(level: Double, count: Int, coverage: Double, meanWidthPercent: Double, winkler: Double) {
        self.level = level
        self.count = count
        self.coverage = coverage
        self.meanWidthPercent = meanWidthPercent
        self.winkler = winkler
    }

    enum CodingKeys: String, CodingKey {
        case level, count, coverage, winkler
        case meanWidthPercent = "mean_width_percent"
    }

    public func validate(_ field: String) throws(ValidationFailure) {
        guard IntervalLevels.isKnown(level) else {
            throw ValidationFailure(.invalidValue, "\(field).level \(level) is not one of \(IntervalLevels.all)", field: "\(field).level")
        }
        try ContractRules.count(count, "\(field).count", in: 1...ContractRules.maximumRows)
        try ContractRules.probability(coverage, "\(field).coverage")
        guard meanWidthPercent.isFinite, meanWidthPercent >= 0, winkler.isFinite, winkler >= 0 else {
            throw ValidationFailure(.outOfRange, "\(field): width and Winkler score must be finite and non-negative", field: field)
        }
    }
}

/// A model's uncertainty scores on a set of rows: one `IntervalScores` per level and the Brier score of its
/// probability of an up move ((p - 1{close above the last close})^2, averaged; 0 is perfect, 0.25 a coin).
public struct DistributionScores: Codable, Sendable, Equatable {
    public var intervals: [IntervalScores]
    public var brier: Double

    public init(intervals: [IntervalScores], brier: Double) {
        self.intervals = intervals
        self.brier = brier
    }

    /// The scores at `level`, if given.
    public func interval(_ level: Double) -> IntervalScores? { intervals.first { $0.level == level } }

    public func validate(_ field: String) throws(ValidationFailure) {
        guard intervals.map(\.level) == IntervalLevels.all else {
            throw ValidationFailure(.invalidValue, "\(field).intervals must give the levels \(IntervalLevels.all) in order", field: field)
        }
        for (index, scores) in intervals.enumerated() { try scores.validate("\(field).intervals[\(index)]") }
        guard brier.isFinite, (0...1).contains(brier) else {
            throw ValidationFailure(.outOfRange, "\(field).brier \(brier) is outside 0...1", field: "\(field).brier")
        }
    }
}

/// What kind of model a job trains and a model version is. Every kind is stored, scored and gated the same way.
public enum ModelFamily: String, Codable, Sendable, CaseIterable, Hashable {
    /// The LSTM network (its `TrainingParameters` apply).
    case lstm
    /// Tomorrow = today, with intervals and the up probability from the empirical distribution of the trailing daily
    /// log-returns (`NaiveBaseline` in Forecasting). Nothing is fitted: the network parameters of its job are ignored.
    case naive = "naive-empirical"
}

/// What an LSTM's last layer outputs. The one enum for jobs (`TrainingParameters.head`) and networks
/// (`ModelConfiguration.head`).
public enum OutputHead: String, Codable, Sendable, CaseIterable, Hashable {
    /// One value: the point forecast in the target's units, trained on squared error.
    case point
    /// Two values: location and log-scale of a Gaussian over the next log-return, trained on its negative
    /// log-likelihood (target `log-return` only).
    case gaussian
}
