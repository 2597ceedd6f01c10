import Contracts
import Foundation

extension ForecastTarget {
    /// The network input for one close of a window ending at `last`. Log-return models see log prices
    /// relative to the last close, so what they learn does not depend on the price level (which in the
    /// test period lies far above anything seen in training); the other targets see min-max scaled closes.
    func encodeInput(_ close: Double, last: Double, scaler: MinMaxScaler) -> Double {
        switch self {
        case .nextScaledClose, .scaledDifference: scaler.transform(close)
        case .logReturn: log(close / last)
        }
    }

    /// The value the network is trained to output for close `next` after a window ending at `last`.
    func encode(next: Double, last: Double, scaler: MinMaxScaler) -> Double {
        switch self {
        case .nextScaledClose: scaler.transform(next)
        case .logReturn: log(next / last)
        case .scaledDifference: scaler.transform(next) - scaler.transform(last)
        }
    }

    /// Exact inverse of `encode`: the forecast close in USD for a network output.
    func decode(output: Double, last: Double, scaler: MinMaxScaler) -> Double {
        switch self {
        case .nextScaledClose: scaler.inverse(output)
        case .logReturn: last * exp(output)
        // transform(last) + output, scaled back, simplifies to last + output * range.
        case .scaledDifference: last + output * scaler.range
        }
    }
}

/// Training samples in the network's units: windows of scaled closes (flat, sample-major) and encoded targets.
struct EncodedSamples {
    let window: Int
    let inputs: [Float]
    let targets: [Float]
    var count: Int { targets.count }

    init(closes: [Double], targets targetIndices: Range<Int>, window: Int, target: ForecastTarget, scaler: MinMaxScaler) throws {
        let windows = try makeWindows(series: closes, window: window, targets: targetIndices)
        self.window = window
        inputs = windows.inputs.flatMap { window in
            window.map { Float(target.encodeInput($0, last: window[window.count - 1], scaler: scaler)) }
        }
        targets = zip(windows.inputs, windows.targets).map { window, next in
            Float(target.encode(next: next, last: window[window.count - 1], scaler: scaler))
        }
    }

    private init(window: Int, inputs: [Float], targets: [Float]) {
        self.window = window
        self.inputs = inputs
        self.targets = targets
    }

    /// The same samples with every target divided by `scale`.
    func dividingTargets(by scale: Double) -> EncodedSamples {
        EncodedSamples(window: window, inputs: inputs, targets: targets.map { Float(Double($0) / scale) })
    }

    /// Copies the chosen samples' windows into `destination` in the engine's time-major [T, B, 1] layout.
    func gatherTimeMajor(_ samples: ArraySlice<Int>, into destination: UnsafeMutablePointer<Float>) {
        let batch = samples.count
        inputs.withUnsafeBufferPointer { source in
            for (position, sample) in samples.enumerated() {
                let window = source.baseAddress! + sample * self.window
                for step in 0..<self.window { destination[step * batch + position] = window[step] }
            }
        }
    }
}

/// The gaussian head's two outputs read as a distribution of the next log-return: output 0 the location mu, output 1
/// the log-scale s (sigma = exp(s)). One place for the trainer's loss and the model's forecasts.
enum GaussianHead {
    /// s is clamped to this range before exp: sigma between 6e-6 and 20 (a daily log-return's 20 would be absurd),
    /// so exp never overflows nor a division by sigma.
    static let logScaleRange: ClosedRange<Double> = -12...3
    /// 0.5 * log(2 pi): the constant of the Gaussian negative log-likelihood.
    static let halfLogTwoPi = 0.5 * log(2 * Double.pi)

    /// The population standard deviation of `values`; 1 when they do not vary (nothing to standardise by).
    static func standardDeviation(_ values: [Float]) -> Double {
        guard !values.isEmpty else { return 1 }
        let n = Double(values.count)
        let mean = values.reduce(0.0) { $0 + Double($1) } / n
        let deviation = (values.reduce(0.0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / n).squareRoot()
        return deviation > 0 && deviation.isFinite ? deviation : 1
    }

    /// Turns a linear output layer trained on returns divided by `scale` into one that outputs returns: mu's kernel
    /// column and bias times `scale`, log(scale) added to s's bias. Exact: N(scale mu, scale sigma) is the same
    /// distribution of r as N(mu, sigma) of r / scale.
    static func unstandardise(_ parameters: FloatBuffer, layout: NetworkLayout, scale: Double) {
        guard let output = layout.denseLayers.last, output.units == 2, scale != 1 else { return }
        let kernel = parameters.pointer + output.kernelOffset
        for row in 0..<output.inputSize { kernel[2 * row] = Float(Double(kernel[2 * row]) * scale) }
        let bias = parameters.pointer + output.biasOffset
        bias[0] = Float(Double(bias[0]) * scale)
        bias[1] = Float(Double(bias[1]) + log(scale))
    }

    static func clampedLogScale(_ output: Double) -> Double {
        min(max(output, logScaleRange.lowerBound), logScaleRange.upperBound)
    }

    /// The negative log-likelihood of `actual` under N(location, exp(logScale)^2), and its derivatives with respect
    /// to the two outputs. Where s is clamped the loss does not depend on it, so its derivative is 0.
    static func negativeLogLikelihood(
        actual: Double, location: Double, logScale: Double
    ) -> (loss: Double, locationGradient: Double, logScaleGradient: Double) {
        let clamped = clampedLogScale(logScale)
        let sigma = exp(clamped)
        let z = (actual - location) / sigma
        let loss = halfLogTwoPi + clamped + 0.5 * z * z
        let logScaleGradient = logScaleRange.contains(logScale) ? 1 - z * z : 0
        return (loss, -z / sigma, logScaleGradient)
    }
}
