import Contracts
import Foundation

/// Any model version, whatever its kind: what the trainer stores, the gate scores and the predictor serves. Every kind
/// forecasts from the last `spec.window` closes and is written to the same model file format.
public enum ForecastModel: Sendable {
    case lstm(TrainedModel)
    /// `spec` is the job's (the dataset version's split and features) with the baseline's window.
    case naive(NaiveBaseline, spec: ForecastSpec)

    public var family: ModelFamily {
        switch self {
        case .lstm: .lstm
        case .naive: .naive
        }
    }

    /// What the model reads. A baseline's spec has its lookback + 1 as the window; its target and activation mean nothing.
    public var spec: ForecastSpec {
        switch self {
        case .lstm(let model): model.spec
        case .naive(_, let spec): spec
        }
    }

    /// A baseline under `spec` (the dataset version's), its window set to the baseline's.
    public static func naive(_ baseline: NaiveBaseline, on spec: ForecastSpec) -> ForecastModel {
        var spec = spec
        spec.window = baseline.window
        return .naive(baseline, spec: spec)
    }

    /// Closes each forecast reads.
    public var window: Int { spec.window }

    /// Whether forecasts carry intervals and an up probability (an LSTM trained before calibration does not).
    public var isCalibrated: Bool {
        switch self {
        case .lstm(let model): model.calibration != nil
        case .naive: true
        }
    }

    /// Point forecasts in USD, one per window of `window` closes.
    public func pointForecasts(windows: [[Double]]) throws -> [Double] {
        switch self {
        case .lstm(let model): try model.predict(windows: windows)
        case .naive(let baseline, _): try windows.map { try baseline.forecast(closes: $0).point }
        }
    }

    /// Forecasts with intervals and up probabilities, one per window of `window` closes; throws for an uncalibrated LSTM.
    public func forecasts(windows: [[Double]]) throws -> [DistributionForecast] {
        for (index, window) in windows.enumerated() where window.count != self.window {
            throw ForecastingError.invalidInput("window \(index) has \(window.count) closes, the model needs \(self.window)")
        }
        switch self {
        case .lstm(let model): return try model.forecast(windows: windows)
        case .naive(let baseline, _): return try windows.map { try baseline.forecast(closes: $0) }
        }
    }

    /// Forecasts every index in `targets` from the closes before it and scores the forecasts beside the naive
    /// baseline's on the same rows (the trainer's test and validation scores, the gate's).
    public func evaluate(closes: [Double], targets: Range<Int>) throws -> DistributionEvaluation {
        let windows = try makeWindows(series: closes, window: window, targets: targets)
        return try DistributionEvaluation(closes: closes, targets: targets, forecasts: try forecasts(windows: windows.inputs))
    }

    /// The model file bytes (format `TrainedModel.fileFormatVersion`).
    public func encode() throws -> [UInt8] {
        switch self {
        case .lstm(let model):
            return try model.encode()
        case .naive(let baseline, let spec):
            let header = ModelFileContainer.Header(kind: .naive, spec: spec, baseline: baseline)
            return try ModelFileContainer.encode(header, weights: [], formatVersion: ModelFileContainer.currentVersion)
        }
    }

    /// Decodes a model file of any kind and readable version, rejecting defects with a `ModelFileError`.
    public init(decoding bytes: [UInt8]) throws {
        let (_, header, weights) = try ModelFileContainer.decode(bytes)
        switch header.kind ?? .lstm {
        case .lstm:
            self = .lstm(try TrainedModel(header: header, weights: weights))
        case .naive:
            guard let baseline = header.baseline, weights.isEmpty else {
                throw ModelFileError.invalidHeader("a naive-empirical model file has its baseline and no weights")
            }
            guard let spec = header.spec, spec.window == baseline.window else {
                throw ModelFileError.invalidHeader("a naive-empirical model's spec window must be its lookback + 1")
            }
            self = .naive(baseline, spec: spec)
        }
    }

    public init(decoding data: Data) throws {
        try self.init(decoding: [UInt8](data))
    }
}
