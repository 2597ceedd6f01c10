import Contracts
import Foundation

/// A trained network with everything needed to forecast in USD: architecture, scaler, target, spec and weights.
/// Immutable and `Sendable`; predictions allocate their own scratch space, so concurrent calls are safe.
public struct TrainedModel: Sendable {
    public let configuration: ModelConfiguration
    public let scaler: MinMaxScaler
    public let summary: TrainingSummary
    /// What the model is (window, target and activation agree with `configuration`): the predictor builds its
    /// window from it, the gate reads its split from it.
    public let spec: ForecastSpec
    /// All parameters, layer by layer (LSTM: kernel, recurrent kernel, bias; dense: kernel, bias), row-major.
    public let weights: [Float]
    /// How far its forecasts were off on the validation rows (split conformal): what turns its output into calibrated
    /// intervals and an up probability. Nil for models trained before calibration (model files before version 3).
    public let calibration: ResidualCalibration?
    let layout: NetworkLayout

    /// Assembles a model; throws if `weights` does not fit `configuration` or `spec` disagrees with it. Without a
    /// spec, one is read off the configuration with the default split (what models trained before specs used).
    public init(
        configuration: ModelConfiguration, scaler: MinMaxScaler, summary: TrainingSummary, weights: [Float], spec: ForecastSpec? = nil,
        calibration: ResidualCalibration? = nil
    ) throws {
        let layout = try NetworkLayout(configuration)
        guard weights.count == layout.parameterCount else {
            throw ForecastingError.invalidInput(
                "the configuration has \(layout.parameterCount) parameters, got \(weights.count) weights")
        }
        let spec =
            spec
            ?? ForecastSpec(
                window: configuration.window, target: configuration.target, activation: configuration.lstmActivation ?? .relu)
        guard spec.window == configuration.window, spec.target == configuration.target,
            spec.activation == configuration.lstmActivation
        else {
            throw ForecastingError.invalidInput("spec \(spec) disagrees with the configuration's window, target or activation")
        }
        self.spec = spec
        self.configuration = configuration
        self.scaler = scaler
        self.summary = summary
        self.weights = weights
        self.calibration = calibration
        self.layout = layout
    }

    /// The same model with `calibration`.
    public func calibrated(_ calibration: ResidualCalibration) throws -> TrainedModel {
        try TrainedModel(
            configuration: configuration, scaler: scaler, summary: summary, weights: weights, spec: spec, calibration: calibration)
    }

    /// The location and scale of the next log-return for each window: the point forecast's log-return and 1 for a
    /// point model; the network's mu and sigma = exp(s) (s clamped to `GaussianHead.logScaleRange`) for a gaussian one.
    func logReturnLocationsAndScales(windows: [[Double]]) throws -> [(location: Double, scale: Double)] {
        switch configuration.head {
        case .point:
            let points = try predict(windows: windows)
            return zip(points, windows).map { point, window in (log(point / window[window.count - 1]), 1) }
        case .gaussian:
            let outputs = try networkOutputs(windows: windows)
            return windows.indices.map { (outputs[2 * $0], exp(GaussianHead.clampedLogScale(outputs[2 * $0 + 1]))) }
        }
    }

    /// Calibrates on `targets` of `closes` (held-out rows, each forecast from the closes before it): the model's
    /// residual scores there become its `calibration`.
    public func calibrating(closes: [Double], targets: Range<Int>) throws -> TrainedModel {
        let windows = try makeWindows(series: closes, window: configuration.window, targets: targets)
        let outputs = try logReturnLocationsAndScales(windows: windows.inputs)
        let actualReturns = zip(windows.targets, windows.inputs).map { log($0 / $1[$1.count - 1]) }
        return try calibrated(
            ResidualCalibration(actualLogReturns: actualReturns, locations: outputs.map(\.location), scales: outputs.map(\.scale)))
    }

    /// Forecasts with intervals and up probabilities; throws `invalidConfiguration` for an uncalibrated model.
    public func forecast(windows: [[Double]]) throws -> [DistributionForecast] {
        guard let calibration else {
            throw ForecastingError.invalidConfiguration("the model has no calibration (trained before model file version 3)")
        }
        let outputs = try logReturnLocationsAndScales(windows: windows)
        return zip(outputs, windows).map { output, window in
            calibration.forecast(lastClose: window[window.count - 1], location: output.location, scale: output.scale)
        }
    }

    /// Forecast of the next close in USD from the last `configuration.window` closes in USD (oldest first).
    public func predict(window: [Double]) throws -> Double {
        try predict(windows: [window])[0]
    }

    /// Batched `predict(window:)`. A gaussian head's forecast is last * exp(mu), the median of its distribution of the
    /// next close: the median is what minimises the absolute error that MAE and MASE measure.
    public func predict(windows: [[Double]]) throws -> [Double] {
        let outputs = try networkOutputs(windows: windows)
        let outputCount = configuration.head.outputCount
        return windows.enumerated().map { index, window in
            configuration.target.decode(output: outputs[index * outputCount], last: window[window.count - 1], scaler: scaler)
        }
    }

    /// The network's raw outputs for each window, [windows.count, head.outputCount] row-major, after validating the
    /// windows (each `configuration.window` finite, positive closes in USD, oldest first).
    private func networkOutputs(windows: [[Double]]) throws -> [Double] {
        let steps = configuration.window
        for (index, window) in windows.enumerated() {
            guard window.count == steps else {
                throw ForecastingError.invalidInput("window \(index) has \(window.count) closes, the model needs \(steps)")
            }
            guard window.allSatisfy({ $0.isFinite && $0 > 0 }) else {
                throw ForecastingError.invalidInput("window \(index) has a close that is not finite and positive")
            }
        }
        guard !windows.isEmpty else { return [] }
        let floatingPointMode = DenormalFlushing.enable()
        defer { DenormalFlushing.restore(floatingPointMode) }
        let chunkSize = min(windows.count, 256)
        let engine = NetworkEngine<Float>(layout: layout, batchCapacity: chunkSize)
        let inputs = FloatBuffer(count: chunkSize * steps)
        let outputCount = configuration.head.outputCount
        var results: [Double] = []
        results.reserveCapacity(windows.count * outputCount)
        weights.withUnsafeBufferPointer { parameters in
            let shared = SharedPointer(pointer: parameters.baseAddress!)
            for start in stride(from: 0, to: windows.count, by: chunkSize) {
                let chunk = windows[start..<min(start + chunkSize, windows.count)]
                let batch = chunk.count
                for (position, window) in chunk.enumerated() {
                    let last = window[steps - 1]
                    for step in 0..<steps {
                        inputs.pointer[step * batch + position] = Float(
                            configuration.target.encodeInput(window[step], last: last, scaler: scaler))
                    }
                }
                ComputeTeam.forecasting.run { member in
                    engine.forward(parameters: shared.pointer, inputs: inputs.pointer, batch: batch, member: member)
                }
                // [batch, outputCount]: the chunk's rows in order.
                let outputs = engine.outputs
                for index in 0..<(batch * outputCount) { results.append(Double(outputs[index])) }
            }
        }
        return results
    }

    /// Forecasts every index in `targets` from the closes before it and scores them, in USD, next to the
    /// naive forecast (the previous close).
    public func evaluate(closes: [Double], targets: Range<Int>) throws -> Evaluation {
        let windows = try makeWindows(series: closes, window: configuration.window, targets: targets)
        let predictions = try predict(windows: windows.inputs)
        let previous = targets.map { closes[$0 - 1] }
        return Evaluation(
            model: try ForecastMetrics(predictions: predictions, actuals: windows.targets, previous: previous),
            naive: try ForecastMetrics(predictions: previous, actuals: windows.targets, previous: previous),
            predictions: predictions,
            targets: targets)
    }
}
