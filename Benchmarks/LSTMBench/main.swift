// Trains the BTC-daily-v1 model and prints one JSON line shaped like ../shared/anchors/keras_lstm.py's output,
// plus "target", "seed" and "blas_threads".
import Forecasting
import Foundation
import KrakenFormat

BLASKernel.correctingExecutable()

struct Options {
    var units = 350
    var batch = 32
    var epochs = 100
    var seed: UInt64 = 42
    var target = ForecastTarget.nextScaledClose
    var activation = Activation.relu
    var learningRate = 0.001
    var threads = 2
    var predictThreads = 1
    var patience = 8
    var clipNorm: Double? = nil
    var dataDirectory = "data"
    var verbose = false
    /// Timed single forecasts (p99 is the 99th percentile of these).
    var forecasts = 1000

    static let usage = """
        usage: LSTMBench [--units N] [--batch N] [--epochs N] [--seed N] [--lr X] [--threads N] [--predict-threads N] \
        [--patience N] [--clip-norm X] [--forecasts N]
                         [--target next-scaled-close|log-return|scaled-difference] [--activation relu|tanh]
                         [--data DIR] [--verbose]
        """

    init(arguments: [String]) throws {
        var remaining = arguments[...]
        func value(for flag: String) throws -> String {
            guard let next = remaining.popFirst() else { throw ForecastingError.invalidInput("\(flag) needs a value") }
            return next
        }
        func number<Value: LosslessStringConvertible>(_ flag: String) throws -> Value {
            let text = try value(for: flag)
            guard let parsed = Value(text) else { throw ForecastingError.invalidInput("\(flag): cannot parse \(text)") }
            return parsed
        }
        while let flag = remaining.popFirst() {
            switch flag {
            case "--units": units = try number(flag)
            case "--batch": batch = try number(flag)
            case "--epochs": epochs = try number(flag)
            case "--seed": seed = try number(flag)
            case "--lr": learningRate = try number(flag)
            case "--threads": threads = try number(flag)
            case "--predict-threads": predictThreads = try number(flag)
            case "--patience": patience = try number(flag)
            case "--clip-norm": clipNorm = try number(flag) as Double
            case "--data": dataDirectory = try value(for: flag)
            case "--verbose": verbose = true
            case "--forecasts": forecasts = max(100, try number(flag))
            case "--target":
                let text = try value(for: flag)
                guard let parsed = ForecastTarget(rawValue: text) else { throw ForecastingError.invalidInput("unknown target \(text)") }
                target = parsed
            case "--activation":
                let text = try value(for: flag)
                guard let parsed = Activation(rawValue: text) else { throw ForecastingError.invalidInput("unknown activation \(text)") }
                activation = parsed
            default: throw ForecastingError.invalidInput("unknown option \(flag)\n\(Options.usage)")
            }
        }
    }
}

/// JSON number text; non-finite values become null so the line stays valid JSON.
func json(_ value: Double) -> String { value.isFinite ? "\(value)" : "null" }

func rounded(_ value: Double, _ places: Int) -> Double {
    let scale = pow(10.0, Double(places))
    return (value * scale).rounded() / scale
}

func json(_ metrics: ForecastMetrics) -> String {
    "{\"rmse\": \(json(metrics.rmse)), \"mae\": \(json(metrics.mae)), \"mape\": \(json(metrics.mape)), "
        + "\"r2\": \(json(metrics.r2)), \"mase\": \(json(metrics.mase))}"
}

func run() throws {
    let options = try Options(arguments: Array(CommandLine.arguments.dropFirst()))
    let closes = try BTCDailyV1.fileNames.flatMap { try OHLCVTFile.closes(atPath: options.dataDirectory + "/" + $0) }
    let split = try ChronologicalSplit(count: closes.count, window: BTCDailyV1.window)
    let model = ModelConfiguration.btcDailyV1(units: options.units, activation: options.activation, target: options.target)
    var training = TrainingConfiguration()
    training.epochs = options.epochs
    training.batchSize = options.batch
    training.seed = options.seed
    training.learningRate = options.learningRate
    training.blasThreads = options.threads
    training.patience = options.patience
    training.clipNorm = options.clipNorm

    let trained = try Trainer(model: model, training: training).train(closes: closes, split: split) { report in
        guard options.verbose else { return }
        let line = String(
            format: "epoch %3d loss %.6g val %.6g lr %.3g %.2fs%@\n", report.epoch, report.loss,
            report.validationLoss ?? .nan, report.learningRate, report.seconds, report.isBest ? " *" : "")
        FileHandle.standardError.write(Data(line.utf8))
    }
    let summary = trained.summary
    let trainSeconds = summary.trainSeconds
    let samples = Double(summary.epochsRun * summary.trainingSamples)

    // Serving runs one forecast per request: OpenBLAS threads buy nothing at batch 1 and add wake-up jitter.
    BLASThreads.set(options.predictThreads)
    let batchStarted = ContinuousClock.now
    let evaluation = try trained.evaluate(closes: closes, targets: split.testTargets)
    let batchPredictSeconds = ContinuousClock.now - batchStarted

    // Single-forecast latency, as a serving path calls it: the last test window, after one warm-up call.
    let lastWindow = Array(closes[(closes.count - 1 - BTCDailyV1.window)..<(closes.count - 1)])
    _ = try trained.predict(window: lastWindow)
    var latencies: [Double] = []
    for _ in 0..<options.forecasts {
        let started = ContinuousClock.now
        _ = try trained.predict(window: lastWindow)
        let elapsed = ContinuousClock.now - started
        latencies.append(Double(elapsed.components.attoseconds) * 1e-15 + Double(elapsed.components.seconds) * 1e3)
    }
    latencies.sort()
    let batchSeconds = Double(batchPredictSeconds.components.seconds) + Double(batchPredictSeconds.components.attoseconds) * 1e-18

    let fields = [
        "\"units\": \(options.units)",
        "\"batch\": \(options.batch)",
        "\"epochs_run\": \(summary.epochsRun)",
        "\"train_s\": \(json(rounded(trainSeconds, 1)))",
        "\"train_samples_per_s\": \(Int((samples / trainSeconds).rounded()))",
        "\"s_per_epoch\": \(json(rounded(trainSeconds / Double(summary.epochsRun), 2)))",
        "\"batch_predict_s\": \(json(rounded(batchSeconds, 3)))",
        "\"single_forecast_ms_p50\": \(json(rounded(latencies[latencies.count / 2], 3)))",
        "\"single_forecast_ms_p99\": \(json(rounded(latencies[latencies.count * 99 / 100], 3)))",
        "\"lstm\": \(json(evaluation.model))",
        "\"naive\": \(json(evaluation.naive))",
        "\"n\": \(closes.count)",
        "\"split\": \(split.trainingEnd)",
        "\"test_rows\": \(split.testTargets.count)",
        "\"target\": \"\(options.target.rawValue)\"",
        "\"seed\": \(options.seed)",
        "\"best_epoch\": \(summary.bestEpoch)",
        "\"learning_rate\": \(options.learningRate)",
        "\"patience\": \(options.patience)",
        "\"clip_norm\": \(options.clipNorm.map { "\($0)" } ?? "null")",
        "\"blas_threads\": \(options.threads)",
        "\"predict_blas_threads\": \(options.predictThreads)",
    ]
    print("{" + fields.joined(separator: ", ") + "}")
}

do {
    try run()
} catch {
    FileHandle.standardError.write(Data("LSTMBench: \(error)\n".utf8))
    exit(1)
}
