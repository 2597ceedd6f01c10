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

    public init(
        pair: String, interval: CandleInterval, targetOpenTime: Int64, predictedClose: Double, lastClose: Double, modelName: String,
        modelVersion: Int, datasetVersion: Int, producedAt: Date, stale: Bool
    ) {
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
        case pair, interval, stale
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
    }

    public var routingKey: String { RoutingKey.forecastCreated(pair: pairToken(pair), interval: interval.name) }
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

    public init(
        pair: String, interval: CandleInterval, targetOpenTime: Int64, modelName: String, modelVersion: Int, predictedClose: Double,
        actualClose: Double, error: Double, absoluteError: Double, percentageError: Double, naiveAbsoluteError: Double
    ) {
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
    }

    public func validate() throws(ValidationFailure) {
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
