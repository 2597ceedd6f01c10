import Foundation
import Messaging

/// `forecast.created.<pair>.<interval>`: the predicted close of the next candle, in USD.
public struct ForecastCreated: MessagePayload, Equatable {
    public static let messageType = "forecast.created"
    public static let schemaVersion = 1

    public var pair: String
    public var interval: CandleInterval
    /// Open time of the candle whose close is forecast (unix seconds, UTC).
    public var targetOpenTime: Int64
    public var predictedClose: Double
    /// The newest actual close the forecast was made from (the naive forecast of the same target).
    public var lastClose: Double
    public var modelName: String
    public var modelVersion: Int
    public var datasetVersion: Int
    public var producedAt: Date
    /// The model is older than the predictor's configured maximum age.
    public var stale: Bool
    /// The 80 % and 95 % ranges of the close (`IntervalLevels.all`, in that order). Added in schema version 1 without a
    /// version change: consumers that do not know the field ignore it; absent for a model without calibration.
    public var intervals: [ForecastInterval]?
    /// P(close above `last_close`). Added like `intervals`.
    public var probabilityUp: Double?

    public init(
        pair: String, interval: CandleInterval, targetOpenTime: Int64, predictedClose: Double, lastClose: Double, modelName: String,
        modelVersion: Int, datasetVersion: Int, producedAt: Date, stale: Bool, intervals: [ForecastInterval]? = nil,
        probabilityUp: Double? = nil
    ) {
        self.intervals = intervals
        self.probabilityUp = probabilityUp
        self.pair = pair
        self.interval = interval
        self.targetOpenTime = targetOpenTime
        self.predictedClose = predictedClose
        self.lastClose = lastClose
        self.modelName = modelName
        self.modelVersion = modelVersion
        self.datasetVersion = datasetVersion
        self.producedAt = producedAt
        self.stale = stale
    }

    enum CodingKeys: String, CodingKey {
        case pair, interval, stale, intervals
        case probabilityUp = "probability_up"
        case targetOpenTime = "target_open_time"
        case predictedClose = "predicted_close"
        case lastClose = "last_close"
        case modelName = "model_name"
        case modelVersion = "model_version"
        case datasetVersion = "dataset_version"
        case producedAt = "produced_at"
    }

    public func validate() throws(ValidationFailure) {
        try ContractRules.pair(pair)
        try ContractRules.openTime(targetOpenTime, "target_open_time", interval: interval)
        try ContractRules.price(predictedClose, "predicted_close")
        try ContractRules.price(lastClose, "last_close")
        try ContractRules.modelName(modelName)
        try ContractRules.count(modelVersion, "model_version", in: 1...ContractRules.maximumCount)
        try ContractRules.count(datasetVersion, "dataset_version", in: 1...ContractRules.maximumCount)
        guard producedAt.timeIntervalSince1970.isFinite,
            (0...Double(ContractRules.openTimes.upperBound)).contains(producedAt.timeIntervalSince1970)
        else {
            throw ValidationFailure("produced_at is out of range")
        }
        try intervals?.validate("intervals")
        if let probabilityUp { try ContractRules.probability(probabilityUp, "probability_up") }
    }

    public var routingKey: String { RoutingKey.forecastCreated(pair: pairToken(pair), interval: interval.name) }

    /// The range at `level` (one of `IntervalLevels.all`), if the forecast has intervals.
    public func interval(_ level: Double) -> ForecastInterval? { intervals?.first { $0.level == level } }
}

/// `metric.predictor.forecast_scored`: a forecast met its actual candle.
public struct ForecastScored: MessagePayload, Equatable {
    public static let messageType = "metric.predictor.forecast_scored"
    public static let schemaVersion = 1

    public var pair: String
    public var interval: CandleInterval
    public var targetOpenTime: Int64
    public var modelName: String
    public var modelVersion: Int
    public var predictedClose: Double
    public var actualClose: Double
    /// predicted - actual, USD.
    public var error: Double
    public var absoluteError: Double
    /// |error| / actual, in percent.
    public var percentageError: Double
    /// |last close - actual|: the naive forecast's error on the same day.
    public var naiveAbsoluteError: Double
    /// How each interval did, beside the naive baseline's of the same level (absent: the forecast had none).
    public var intervals: [IntervalResult]?
    /// Brier score of the forecast's up probability, and of the naive baseline's on the same day.
    public var brier: Double?
    public var naiveBrier: Double?

    public init(
        pair: String, interval: CandleInterval, targetOpenTime: Int64, modelName: String, modelVersion: Int, predictedClose: Double,
        actualClose: Double, error: Double, absoluteError: Double, percentageError: Double, naiveAbsoluteError: Double,
        intervals: [IntervalResult]? = nil, brier: Double? = nil, naiveBrier: Double? = nil
    ) {
        self.intervals = intervals
        self.brier = brier
        self.naiveBrier = naiveBrier
        self.pair = pair
        self.interval = interval
        self.targetOpenTime = targetOpenTime
        self.modelName = modelName
        self.modelVersion = modelVersion
        self.predictedClose = predictedClose
        self.actualClose = actualClose
        self.error = error
        self.absoluteError = absoluteError
        self.percentageError = percentageError
        self.naiveAbsoluteError = naiveAbsoluteError
    }

    enum CodingKeys: String, CodingKey {
        case pair, interval, error
        case targetOpenTime = "target_open_time"
        case modelName = "model_name"
        case modelVersion = "model_version"
        case predictedClose = "predicted_close"
        case actualClose = "actual_close"
        case absoluteError = "absolute_error"
        case percentageError = "percentage_error"
        case naiveAbsoluteError = "naive_absolute_error"
        case intervals, brier
        case naiveBrier = "naive_brier"
    }

    public func validate() throws(ValidationFailure) {
        if let intervals {
            guard intervals.map(\.level) == IntervalLevels.all else {
                throw ValidationFailure(.invalidValue, "intervals must give the levels \(IntervalLevels.all) in order", field: "intervals")
            }
            for (index, result) in intervals.enumerated() { try result.validate("intervals[\(index)]") }
        }
        for (value, field) in [(brier, "brier"), (naiveBrier, "naive_brier")] {
            if let value { try ContractRules.probability(value, field) }
        }
        try ContractRules.pair(pair)
        try ContractRules.openTime(targetOpenTime, "target_open_time", interval: interval)
        try ContractRules.modelName(modelName)
        try ContractRules.price(predictedClose, "predicted_close")
        try ContractRules.price(actualClose, "actual_close")
        guard [error, absoluteError, percentageError, naiveAbsoluteError].allSatisfy(\.isFinite), absoluteError >= 0, percentageError >= 0,
            naiveAbsoluteError >= 0
        else { throw ValidationFailure("errors must be finite, absolute errors non-negative") }
        try ContractRules.count(modelVersion, "model_version", in: 1...ContractRules.maximumCount)
    }

    public var routingKey: String { RoutingKey.metric(service: .predictor, name: "forecast_scored") }
}

/// One interval of a scored forecast: whether the actual close fell inside it and its Winkler score in USD, beside
/// the naive baseline's interval of the same level on the same day (absent when the window was too short for it).
public struct IntervalResult: Codable, Sendable, Equatable {
    public var level: Double
    public var hit: Bool
    public var winkler: Double
    public var naiveHit: Bool?
    public var naiveWinkler: Double?

    public init(level: Double, hit: Bool, winkler: Double, naiveHit: Bool? = nil, naiveWinkler: Double? = nil) {
        self.level = level
        self.hit = hit
        self.winkler = winkler
        self.naiveHit = naiveHit
        self.naiveWinkler = naiveWinkler
    }

    enum CodingKeys: String, CodingKey {
        case level, hit, winkler
        case naiveHit = "naive_hit"
        case naiveWinkler = "naive_winkler"
    }

    public func validate(_ field: String) throws(ValidationFailure) {
        guard IntervalLevels.isKnown(level) else {
            throw ValidationFailure(.invalidValue, "\(field).level \(level) is not one of \(IntervalLevels.all)", field: "\(field).level")
        }
        for value in [winkler, naiveWinkler].compactMap({ $0 }) where !(value.isFinite && value >= 0 && value <= 1e18) {
            throw ValidationFailure(.outOfRange, "\(field): Winkler scores must be finite and non-negative", field: field)
        }
    }
}
