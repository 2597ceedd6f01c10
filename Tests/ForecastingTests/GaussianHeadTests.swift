import Foundation
import KrakenFormat
import Testing

@testable import Forecasting

/// Log-returns whose volatility switches between two regimes every `block` days (low first), from a seeded
/// generator: what a distributional head should see in a window and answer with a wider sigma.
func regimeSwitchingCloses(count: Int, block: Int, lowVolatility: Double, highVolatility: Double, seed: UInt64) -> [Double] {
    var generator = SeededGenerator(seed: seed)
    var close = 100.0
    return (0..<count).map { day in
        let volatility = (day / block).isMultiple(of: 2) ? lowVolatility : highVolatility
        close *= exp(volatility * generator.nextStandardNormal())
        return close
    }
}

/// The first `count` daily closes of the real XBTUSD history file.
func realCloses(count: Int) throws -> [Double] {
    Array(try OHLCVTFile.closes(atPath: sharedDataDirectory + "/" + BTCDailyV1.fileNames[0]).prefix(count))
}

func gaussianConfiguration(units: Int, window: Int, activation: Activation = .tanh) -> ModelConfiguration {
    ModelConfiguration(
        spec: ForecastSpec(window: window, target: .logReturn, activation: activation), units: units, layers: 1, head: .gaussian)
}

@Suite("Gaussian head")
struct GaussianHeadTests {
    static func trainedOnRealCloses() throws -> (model: TrainedModel, closes: [Double], split: ChronologicalSplit, reports: [EpochReport]) {
        let closes = try realCloses(count: 400)
        let split = try ChronologicalSplit(count: closes.count, window: 14)
        var reports: [EpochReport] = []
        let model = try Trainer(model: gaussianConfiguration(units: 8, window: 14), training: smallTraining(epochs: 6))
            .train(closes: closes, split: split) { reports.append($0) }
        return (model, closes, split, reports)
    }

    @Test("the configuration: two linear outputs over log-returns, and the head in the JSON (absent: point)")
    func configuration() throws {
        let gaussian = gaussianConfiguration(units: 4, window: 5)
        #expect(gaussian.layers.last == .dense(units: 2))
        try gaussian.validate()
        var scaledTarget = gaussian
        scaledTarget.target = .nextScaledClose
        #expect(throws: ForecastingError.self) { try scaledTarget.validate() }
        var oneOutput = gaussian
        oneOutput.layers[oneOutput.layers.count - 1] = .dense(units: 1)
        #expect(throws: ForecastingError.self) { try oneOutput.validate() }
        var squashed = gaussian
        squashed.layers[squashed.layers.count - 1] = .dense(units: 2, activation: .tanh)
        #expect(throws: ForecastingError.self) { try squashed.validate() }

        let encoded = try JSONEncoder().encode(gaussian)
        #expect(try JSONDecoder().decode(ModelConfiguration.self, from: encoded) == gaussian)
        // A configuration as model files before heads wrote it: no "head" key.
        let pointJSON = try JSONEncoder().encode(ModelConfiguration.btcDailyV1())
        var object = try #require(try JSONSerialization.jsonObject(with: pointJSON) as? [String: Any])
        #expect(object.removeValue(forKey: "head") as? String == "point")
        let old = try JSONDecoder().decode(ModelConfiguration.self, from: try JSONSerialization.data(withJSONObject: object))
        #expect(old.head == .point && old == .btcDailyV1())
    }

    @Test(
        "trained on real XBTUSD closes, the model is calibrated on its validation rows and forecasts nested intervals",
        .enabled(if: sharedDataAvailable, "the XBTUSD file is not in data/"))
    func trainsAndCalibratesOnRealCloses() throws {
        let (model, closes, split, reports) = try Self.trainedOnRealCloses()
        #expect(model.configuration.head == .gaussian)
        let calibration = try #require(model.calibration)
        #expect(calibration.scores.count == split.validationTargets.count)
        // The validation NLL of N(0, sigma) with sigma the fit returns' deviation, where the head starts: the trained model
        // is no worse than that; a head whose sigma started at 1 would sit near 0.92 nats, about 2.5 above.
        func deviation(_ values: [Double]) -> Double {
            let mean = values.reduce(0, +) / Double(values.count)
            return (values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(values.count)).squareRoot()
        }
        let fitSigma = deviation(split.fitTargets.map { log(closes[$0] / closes[$0 - 1]) })
        let startNLL =
            split.validationTargets.map {
                GaussianHead.negativeLogLikelihood(actual: log(closes[$0] / closes[$0 - 1]), location: 0, logScale: log(fitSigma)).loss
            }
            .reduce(0, +) / Double(split.validationTargets.count)
        let validationNLL = model.summary.bestMonitoredLoss
        #expect(validationNLL < startNLL + 0.05, "validation NLL \(validationNLL), at the start \(startNLL)")
        #expect(reports.allSatisfy { $0.loss.isFinite && ($0.validationLoss?.isFinite ?? false) })

        // Split conformal on the validation rows: on those same rows every level is covered at least nominally.
        let validation = try ForecastModel.lstm(model).evaluate(closes: closes, targets: split.validationTargets)
        for scores in validation.model.intervals { #expect(scores.coverage >= scores.level, "\(scores)") }

        let test = try ForecastModel.lstm(model).evaluate(closes: closes, targets: split.testTargets)
        for forecast in test.forecasts {
            let eighty = try #require(forecast.interval(0.8))
            let ninetyFive = try #require(forecast.interval(0.95))
            #expect(ninetyFive.lower < eighty.lower && eighty.lower < forecast.point && forecast.point < eighty.upper)
            #expect(eighty.upper < ninetyFive.upper)
            #expect(forecast.probabilityUp > 0 && forecast.probabilityUp < 1)
            try forecast.intervals.validate("intervals")
        }
        let points = try model.predict(windows: try makeWindows(series: closes, window: 14, targets: split.testTargets).inputs)
        #expect(points == test.forecasts.map(\.point))
    }

    @Test(
        "model file version 3 keeps the head and the calibration; version 2 reads back uncalibrated",
        .enabled(if: sharedDataAvailable, "the XBTUSD file is not in data/"))
    func modelFile() throws {
        let (model, closes, split, _) = try Self.trainedOnRealCloses()
        let bytes = try model.encode()
        #expect(bytes[8] == 3)
        let decoded = try TrainedModel(decoding: bytes)
        #expect(decoded.configuration == model.configuration && decoded.configuration.head == .gaussian)
        #expect(decoded.calibration == model.calibration)
        #expect(decoded.weights.map(\.bitPattern) == model.weights.map(\.bitPattern))
        #expect(try decoded.encode() == bytes)
        let windows = try makeWindows(series: closes, window: 14, targets: split.testTargets).inputs
        #expect(try decoded.forecast(windows: windows) == model.forecast(windows: windows))
        let any = try ForecastModel(decoding: bytes)
        #expect(any.family == .lstm && any.isCalibrated)

        let version2 = try model.encode(formatVersion: 2)
        #expect(version2[8] == 2)
        let old = try ForecastModel(decoding: version2)
        #expect(!old.isCalibrated)
        guard case .lstm(let oldModel) = old else {
            Issue.record("a version-2 file is an LSTM")
            return
        }
        #expect(oldModel.configuration.head == .gaussian)
        #expect(try oldModel.predict(windows: windows) == model.predict(windows: windows))
        #expect(throws: ForecastingError.self) { try old.forecasts(windows: windows) }
    }

    @Test("two data-parallel shards: same seed, bit-identical weights and calibration")
    func reproducible() throws {
        let closes = regimeSwitchingCloses(count: 300, block: 40, lowVolatility: 0.01, highVolatility: 0.04, seed: 8)
        let split = try ChronologicalSplit(count: closes.count, window: 10)
        var training = smallTraining(epochs: 3)
        training.blasThreads = 2
        let trainer = Trainer(model: gaussianConfiguration(units: 6, window: 10, activation: .relu), training: training)
        let first = try trainer.train(closes: closes, split: split)
        let second = try trainer.train(closes: closes, split: split)
        #expect(first.weights.map(\.bitPattern) == second.weights.map(\.bitPattern))
        #expect(first.calibration == second.calibration)
    }

    @Test("on a series whose volatility switches regime, sigma is larger in the volatile regime")
    func sigmaFollowsVolatility() throws {
        let block = 60
        let closes = regimeSwitchingCloses(count: 900, block: block, lowVolatility: 0.005, highVolatility: 0.04, seed: 17)
        let window = 20
        let split = try ChronologicalSplit(count: closes.count, window: window)
        var training = smallTraining(epochs: 15)
        training.learningRate = 0.005
        let model = try Trainer(model: gaussianConfiguration(units: 8, window: window, activation: .relu), training: training)
            .train(closes: closes, split: split)
        // Test targets whose whole window lies inside one regime.
        let settled = split.testTargets.filter { $0 % block >= window }
        let windows = settled.map { target in Array(closes[(target - window)..<target]) }
        let scales = try model.logReturnLocationsAndScales(windows: windows).map(\.scale)
        var calm: [Double] = []
        var volatile: [Double] = []
        for (target, scale) in zip(settled, scales) {
            if (target / block).isMultiple(of: 2) { calm.append(scale) } else { volatile.append(scale) }
        }
        let calmMean = calm.reduce(0, +) / Double(calm.count)
        let volatileMean = volatile.reduce(0, +) / Double(volatile.count)
        #expect(!calm.isEmpty && !volatile.isEmpty)
        // The regimes' true sigmas differ eightfold; require at least twice, and every volatile sigma above the calm mean.
        #expect(volatileMean > 2 * calmMean, "sigma: calm \(calmMean), volatile \(volatileMean)")
        #expect(volatile.allSatisfy { $0 > calmMean }, "smallest volatile sigma \(volatile.min() ?? 0), calm mean \(calmMean)")
    }

    @Test("too few validation rows to calibrate: training is refused before it starts, saying why")
    func tooFewValidationRows() throws {
        let closes = noisySine(count: 200, seed: 3)
        let split = try ChronologicalSplit(count: closes.count, window: 6)  // 134 samples, 14 validation rows
        var epochs = 0
        #expect(
            performing: {
                try Trainer(model: gaussianConfiguration(units: 2, window: 6), training: smallTraining(epochs: 1))
                    .train(closes: closes, split: split, onEpoch: { _ in epochs += 1 })
            },
            throws: { error in
                guard let error = error as? ForecastingError else { return false }
                return error.code == .insufficientData && error.needed == ResidualCalibration.minimumRows && error.available == 14
                    && error.description.contains("validation rows")
            })
        #expect(epochs == 0)
    }
}
