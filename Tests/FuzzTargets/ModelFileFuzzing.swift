import Contracts
import Forecasting
import Foundation

/// Input: one mode byte, then either a whole model file (mode bit 7 set: magic, sizes and checksum are fuzzed too) or
/// a weight count (2 bytes) and a JSON header, wrapped into a file with a correct checksum so that mutations reach the
/// header's decoding and the model checks (a registry upload or a registry download is such a file from outside).
/// What decodes must encode again to a file that decodes to the same kind and spec, and must forecast a window
/// without trapping (an error is fine; an accepted forecast must have finite, ordered intervals and a probability).
public enum ModelFileFuzzing {
    /// Weights the wrapped mode adds at most: enough for the seeds' small networks, small enough to stay fast.
    static let maximumWeights = 4096

    public static func run(_ bytes: [UInt8]) -> Bool {
        var reader = ByteReader(bytes)
        let mode = reader.byte()
        let file: [UInt8]
        if mode & 0x80 != 0 {
            file = Array(reader.bytes)
        } else {
            let count = min(Int(reader.byte()) << 8 | Int(reader.byte()), maximumWeights)
            let weights = (0..<count).map { Float(sin(Double($0))) * 0.1 }
            file = ModelFileLayout.file(headerJSON: Array(reader.bytes), weights: weights, formatVersion: mode & 1 == 0 ? 3 : 2)
        }
        let model: ForecastModel
        do {
            model = try ForecastModel(decoding: file)
        } catch {
            _ = "\(error)"
            return false
        }
        do {
            let again = try ForecastModel(decoding: try model.encode())
            guard again.family == model.family, again.spec == model.spec, again.isCalibrated == model.isCalibrated else {
                fatalError("a decoded model file did not survive encoding again")
            }
        } catch {
            fatalError("a decoded model file could not be encoded and decoded again: \(error)")
        }
        guard model.window <= 4096 else { return true }
        let window = (0..<model.window).map { 40_000 + 500 * sin(Double($0)) }
        guard let forecasts = try? model.forecasts(windows: [window]), let forecast = forecasts.first else {
            _ = try? model.pointForecasts(windows: [window])
            return true
        }
        if forecast.point.isFinite, forecast.intervals.allSatisfy({ $0.lower.isFinite && $0.upper.isFinite }) {
            for interval in forecast.intervals where interval.lower > interval.upper {
                fatalError("an interval came out inverted: \(interval)")
            }
        }
        guard (0...1).contains(forecast.probabilityUp) else { fatalError("P(up) \(forecast.probabilityUp) is not a probability") }
        return true
    }

    /// The wrapped-mode input for a model file: its weight count and its JSON header.
    public static func seed(_ file: [UInt8]) throws -> [UInt8] {
        let (header, count) = try ModelFileLayout.parts(of: file)
        return [0, UInt8(count >> 8), UInt8(count & 0xFF)] + header
    }

    /// Seeds: a naive baseline, a calibrated Gaussian LSTM and an uncalibrated point LSTM, all tiny.
    public static func seeds() throws -> [(name: String, bytes: [UInt8])] {
        let naive = ForecastModel.naive(try NaiveBaseline(lookback: 30), on: ForecastSpec())
        let calibration = try ResidualCalibration(scores: EmpiricalDistribution((0..<40).map { Double($0 - 20) / 10 }))
        var files: [(String, [UInt8])] = [("naive-empirical", try naive.encode())]
        for head in OutputHead.allCases {
            let spec = ForecastSpec(window: 5)
            let configuration = ModelConfiguration(spec: spec, units: 2, layers: 1, head: head)
            // LSTM(2) on one input: 8 + 16 + 8; the dense head: 2 x outputs + outputs.
            let weights = [Float](repeating: 0.05, count: 32 + 3 * head.outputCount)
            let summary = TrainingSummary(
                training: TrainingConfiguration(), epochsRun: 1, bestEpoch: 1, bestMonitoredLoss: 0.1, finalLearningRate: 0.001,
                trainingSamples: 10, validationSamples: 20, trainingEnd: 40, trainSeconds: 0.1)
            let model = try TrainedModel(
                configuration: configuration, scaler: try MinMaxScaler(minimum: 1, maximum: 2), summary: summary, weights: weights,
                spec: spec, calibration: head == .gaussian ? calibration : nil)
            files.append(("lstm-\(head.rawValue)", try model.encode()))
        }
        return try files.flatMap { name, file in [(name, try seed(file)), (name + "-raw", [0x80] + file)] }
    }
}
