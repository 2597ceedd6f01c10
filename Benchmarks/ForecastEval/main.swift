// Scores every model kind a sweep can produce on protocol BTC-daily-v1's test rows (2865..<4093), each beside the
// naive baseline on the same rows: point accuracy (RMSE, MAE, MASE), 80 % and 95 % interval coverage, width and
// Winkler score, and the Brier score of P(up). One JSON line per candidate; scripts/bench-forecasts.sh prints the table
// with the anchors of the same run.
//
//     ForecastEval [--data DIR] [--units N] [--batch N] [--epochs N] [--seed N] [--threads N] [--window N]
//                  [--candidates naive-empirical,lstm-point-relu,lstm-gaussian-relu,lstm-gaussian-tanh]
import Forecasting
import Foundation
import KrakenFormat

BLASKernel.correctingExecutable()

struct Options {
    var dataDirectory = "data"
    var units = 350
    var batch = 32
    var epochs = 100
    var seed: UInt64 = 42
    var threads = 2
    var window = 14
    var candidates = ["naive-empirical", "lstm-point-relu", "lstm-gaussian-relu", "lstm-gaussian-tanh"]

    init(arguments: [String]) throws {
        var remaining = arguments[...]
        func value(_ flag: String) throws -> String {
            guard let next = remaining.popFirst() else { throw ForecastingError.invalidInput("\(flag) needs a value") }
            return next
        }
        func number<Value: LosslessStringConvertible>(_ flag: String) throws -> Value {
            let text = try value(flag)
            guard let parsed = Value(text) else { throw ForecastingError.invalidInput("\(flag): cannot parse \(text)") }
            return parsed
        }
        while let flag = remaining.popFirst() {
            switch flag {
            case "--data": dataDirectory = try value(flag)
            case "--units": units = try number(flag)
            case "--batch": batch = try number(flag)
            case "--epochs": epochs = try number(flag)
            case "--seed": seed = try number(flag)
            case "--threads": threads = try number(flag)
            case "--window": window = try number(flag)
            case "--candidates": candidates = try value(flag).split(separator: ",").map(String.init)
            default: throw ForecastingError.invalidInput("unknown option \(flag)")
            }
        }
    }
}

/// A candidate name: `naive-empirical`, or `lstm-<point|gaussian>-<relu|tanh>`.
func model(
    named name: String, closes: [Double], spec: ForecastSpec, split: ChronologicalSplit, options: Options
) throws -> (ForecastModel, seconds: Double, epochs: Int) {
    if name == ModelFamily.naive.rawValue {
        return (.naive(try NaiveBaseline.candidate(on: split), on: spec), 0, 0)
    }
    let parts = name.split(separator: "-").map(String.init)
    guard parts.count == 3, parts[0] == "lstm", let head = OutputHead(rawValue: parts[1]), let activation = Activation(rawValue: parts[2])
    else { throw ForecastingError.invalidInput("unknown candidate \(name)") }
    var lstmSpec = spec
    lstmSpec.activation = activation
    lstmSpec.target = .logReturn
    var training = TrainingConfiguration()
    training.epochs = options.epochs
    training.batchSize = options.batch
    training.seed = options.seed
    training.blasThreads = options.threads
    let configuration = ModelConfiguration(spec: lstmSpec, units: options.units, layers: 1, head: head)
    let trained = try Trainer(model: configuration, training: training, spec: lstmSpec).train(closes: closes, split: split)
    return (.lstm(trained), trained.summary.trainSeconds, trained.summary.epochsRun)
}

func run() throws {
    let options = try Options(arguments: Array(CommandLine.arguments.dropFirst()))
    let closes = try BTCDailyV1.fileNames.flatMap { try OHLCVTFile.closes(atPath: options.dataDirectory + "/" + $0) }
    let spec = ForecastSpec(window: options.window)
    let split = try ChronologicalSplit(count: closes.count, spec: spec)
    FileHandle.standardError.write(Data("matrix kernel: \(BLASKernel.current)\n".utf8))
    for name in options.candidates {
        let (candidate, seconds, epochs) = try model(named: name, closes: closes, spec: spec, split: split, options: options)
        // Validation rows: the dataset spec's, the same for every candidate (what a sweep ranks them on).
        let validation = try candidate.evaluate(closes: closes, targets: split.validationTargets)
        let test = try candidate.evaluate(closes: closes, targets: split.testTargets)
        var line: [String: Any] = [
            "model": name, "window": candidate.window, "epochs_run": epochs, "train_s": (seconds * 10).rounded() / 10,
            "validation_mase": validation.point.model.mase, "test_rows": test.targets.count,
            "test_first_row": test.targets.lowerBound,
        ]
        func add(_ prefix: String, _ point: ForecastMetrics, _ scores: DistributionScores) {
            line[prefix + "rmse"] = point.rmse
            line[prefix + "mae"] = point.mae
            line[prefix + "mase"] = point.mase
            line[prefix + "brier"] = scores.brier
            for interval in scores.intervals {
                let level = Int((interval.level * 100).rounded())
                line[prefix + "coverage_\(level)"] = interval.coverage
                line[prefix + "width_pct_\(level)"] = interval.meanWidthPercent
                line[prefix + "winkler_\(level)"] = interval.winkler
            }
        }
        add("", test.point.model, test.model)
        add("naive_", test.point.naive, test.naive)
        let data = try JSONSerialization.data(withJSONObject: line, options: [.sortedKeys])
        print(String(decoding: data, as: UTF8.self))
    }
}

do {
    try run()
} catch {
    FileHandle.standardError.write(Data("ForecastEval: \(error)\n".utf8))
    exit(2)
}
