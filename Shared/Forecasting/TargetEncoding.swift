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
