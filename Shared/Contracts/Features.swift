import Foundation
import Messaging

/// The min-max scaler of a dataset version, fitted on its training rows only.
public struct ScalerBounds: Codable, Sendable, Equatable {
    public var minimum: Double
    public var maximum: Double
    public init(minimum: Double, maximum: Double) {
        self.minimum = minimum
        self.maximum = maximum
    }
}

/// `features.window.<pair>.<interval>`: the latest window, scaled and raw, ready to predict the next close.
///
/// It carries the `ForecastSpec.windows.upperBound` most recent closes (fewer while the series is shorter), so
/// a model of any window a spec allows is served from it: the predictor takes the last `spec.window` of them.
///
/// Gap rule (the same in training and prediction): a window holds the `closes.count` most recent stored
/// candles; where Kraken had no trades for some intervals, the window bridges the gap (it then spans more
/// than `closes.count` intervals) and `gap_intervals` says how many intervals were missing inside it.
public struct FeatureWindow: MessagePayload, Equatable {
    public static let messageType = "features.window"
    public static let schemaVersion = 1

    public var pair: String
    public var interval: CandleInterval
    /// Open time of the newest candle in the window (unix seconds, UTC).
    public var windowEndOpenTime: Int64
    /// Open time of the candle to forecast: the one after the window.
    public var targetOpenTime: Int64
    public var datasetVersion: Int
    /// Raw closes in USD, oldest first.
    public var closes: [Double]
    /// The same closes scaled with the dataset version's scaler.
    public var scaledCloses: [Double]
    public var scaler: ScalerBounds
    public var gapIntervals: Int
    /// The revision of the newest candle (a revised candle produces a new window).
    public var revision: Int
    /// Raw volumes, oldest first, when the preprocessor's feature set includes volume; absent otherwise.
    public var volumes: [Double]?

    public init(
        pair: String, interval: CandleInterval, windowEndOpenTime: Int64, targetOpenTime: Int64, datasetVersion: Int, closes: [Double],
        scaledCloses: [Double], scaler: ScalerBounds, gapIntervals: Int, revision: Int
    ) {
        self.pair = pair
        self.interval = interval
        self.windowEndOpenTime = windowEndOpenTime
        self.targetOpenTime = targetOpenTime
        self.datasetVersion = datasetVersion
        self.closes = closes
        self.scaledCloses = scaledCloses
        self.scaler = scaler
        self.gapIntervals = gapIntervals
        self.revision = revision
    }

    enum CodingKeys: String, CodingKey {
        case pair, interval, closes, scaler, revision, volumes
        case windowEndOpenTime = "window_end_open_time"
        case targetOpenTime = "target_open_time"
        case datasetVersion = "dataset_version"
        case scaledCloses = "scaled_closes"
        case gapIntervals = "gap_intervals"
    }

    public func validate() throws(ValidationFailure) {
        try ContractRules.pair(pair)
        try ContractRules.openTime(windowEndOpenTime, "window_end_open_time", interval: interval)
        try ContractRules.openTime(targetOpenTime, "target_open_time", interval: interval)
        try ContractRules.count(datasetVersion, "dataset_version", in: 1...ContractRules.maximumCount)
        try ContractRules.count(closes.count, "closes", in: 1...ContractRules.maximumWindow)
        try ContractRules.count(gapIntervals, "gap_intervals")
        try ContractRules.count(revision, "revision")
        for close in closes { try ContractRules.price(close, "closes") }
        guard closes.count == scaledCloses.count else {
            throw ValidationFailure("closes and scaled_closes must be non-empty and of equal length")
        }
        guard closes.allSatisfy({ $0.isFinite && $0 > 0 }) else { throw ValidationFailure("closes must be positive finite numbers") }
        guard scaledCloses.allSatisfy(\.isFinite) else { throw ValidationFailure("scaled_closes must be finite") }
        guard scaler.maximum > scaler.minimum, scaler.minimum.isFinite, scaler.maximum.isFinite else {
            throw ValidationFailure("scaler bounds are invalid")
        }
        guard targetOpenTime > windowEndOpenTime else { throw ValidationFailure("target_open_time must follow window_end_open_time") }
        if let volumes, volumes.count != closes.count || !volumes.allSatisfy({ $0.isFinite && $0 >= 0 }) {
            throw ValidationFailure("volumes must match closes in length and be non-negative")
        }
    }

    public var routingKey: String { RoutingKey.featuresWindow(pair: pairToken(pair), interval: interval.name) }
}

/// `dataset.ready.<pair>.<interval>`: a new immutable dataset version with its split and scaler.
public struct DatasetReady: MessagePayload, Equatable {
    public static let messageType = "dataset.ready"
    public static let schemaVersion = 1

    public var pair: String
    public var interval: CandleInterval
    public var version: Int
    public var rowCount: Int
    public var firstOpenTime: Int64
    public var lastOpenTime: Int64
    /// FNV-1a 64 of the rows (`open_time,close` lines): the same rows give the same hash.
    public var contentHash: String
    public var window: Int
    public var feature: String
    /// Rows `0..<training_end` train (scaler fitted there); their last `validation_fraction` is validation;
    /// `training_end..<row_count` are test targets.
    public var trainingEnd: Int
    public var validationFraction: Double
    public var scaler: ScalerBounds
    /// The spec the version was cut under (`window`, `feature` and `validation_fraction` repeat parts of it for
    /// consumers that predate it). Optional (added later).
    public var spec: ForecastSpec?

    public init(
        pair: String, interval: CandleInterval, version: Int, rowCount: Int, firstOpenTime: Int64, lastOpenTime: Int64, contentHash: String,
        window: Int, feature: String, trainingEnd: Int, validationFraction: Double, scaler: ScalerBounds, spec: ForecastSpec? = nil
    ) {
        self.spec = spec
        self.pair = pair
        self.interval = interval
        self.version = version
        self.rowCount = rowCount
        self.firstOpenTime = firstOpenTime
        self.lastOpenTime = lastOpenTime
        self.contentHash = contentHash
        self.window = window
        self.feature = feature
        self.trainingEnd = trainingEnd
        self.validationFraction = validationFraction
        self.scaler = scaler
    }

    enum CodingKeys: String, CodingKey {
        case pair, interval, version, window, feature, scaler, spec
        case rowCount = "row_count"
        case firstOpenTime = "first_open_time"
        case lastOpenTime = "last_open_time"
        case contentHash = "content_hash"
        case trainingEnd = "training_end"
        case validationFraction = "validation_fraction"
    }

    public func validate() throws(ValidationFailure) {
        try ContractRules.pair(pair)
        try ContractRules.openTime(firstOpenTime, "first_open_time", interval: interval)
        try ContractRules.openTime(lastOpenTime, "last_open_time", interval: interval)
        try ContractRules.count(version, "version", in: 1...ContractRules.maximumCount)
        try ContractRules.count(rowCount, "row_count", in: 0...ContractRules.maximumRows)
        try ContractRules.count(window, "window", in: 2...ContractRules.maximumWindow)
        try ContractRules.text(contentHash, "content_hash", limit: 128, allowEmpty: false)
        try ContractRules.text(feature, "feature", limit: 64, allowEmpty: false)
        guard version >= 1, window >= 2, rowCount > window, (window...rowCount).contains(trainingEnd), firstOpenTime <= lastOpenTime else {
            throw ValidationFailure("version, window, row_count and training_end are inconsistent")
        }
        guard validationFraction > 0, validationFraction < 1 else { throw ValidationFailure("validation_fraction must be between 0 and 1") }
        guard scaler.minimum.isFinite, scaler.maximum.isFinite, scaler.maximum > scaler.minimum else {
            throw ValidationFailure("scaler bounds are invalid")
        }
        if let spec {
            try spec.validate()
            guard spec.window == window, spec.features.rawValue == feature, spec.split.validation == validationFraction else {
                throw ValidationFailure(.inconsistent, "spec disagrees with window, feature or validation_fraction", field: "spec")
            }
        }
    }

    public var routingKey: String { RoutingKey.datasetReady(pair: pairToken(pair), interval: interval.name) }
}
