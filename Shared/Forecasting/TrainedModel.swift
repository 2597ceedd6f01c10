import Contracts

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
    let layout: NetworkLayout

    /// Assembles a model; throws if `weights` does not fit `configuration` or `spec` disagrees with it. Without a
    /// spec, one is read off the configuration with the default split (what models trained before specs used).
    public init(
        configuration: ModelConfiguration, scaler: MinMaxScaler, summary: TrainingSummary, weights: [Float], spec: ForecastSpec? = nil
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
        self.layout = layout
    }

    /// Forecast of the next close in USD from the last `configuration.window` closes in USD (oldest first).
    public func predict(window: [Double]) throws -> Double {
        try predict(windows: [window])[0]
    }

    /// Batched `predict(window:)`.
    public func predict(windows: [[Double]]) throws -> [Double] {
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
        var forecasts: [Double] = []
        forecasts.reserveCapacity(windows.count)
        weights.withUnsafeBufferPointer { parameters in
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
                let outputs = engine.forward(parameters: parameters.baseAddress!, inputs: inputs.pointer, batch: batch)
                for (position, window) in chunk.enumerated() {
                    forecasts.append(
                        configuration.target.decode(
                            output: Double(outputs[position]), last: window[steps - 1], scaler: scaler))
                }
            }
        }
        return forecasts
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
