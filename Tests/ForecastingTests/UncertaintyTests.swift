import Forecasting
import Foundation
import KrakenFormat
import Testing

@Suite("Intervals, up probabilities and their scores")
struct UncertaintyTests {
    @Test("type-7 quantiles and exceedance shares, as numpy computes them")
    func empiricalDistribution() throws {
        let distribution = try EmpiricalDistribution([4, 1, 3, 2, 5])
        #expect(distribution.quantile(0) == 1)
        #expect(distribution.quantile(1) == 5)
        #expect(distribution.quantile(0.5) == 3)
        #expect(distribution.quantile(0.1) == 1.4)  // numpy.quantile([1,2,3,4,5], 0.1) = 1.4
        #expect(abs(distribution.quantile(0.975) - 4.9) < 1e-12)
        #expect(distribution.fractionAbove(3) == 0.4)
        #expect(distribution.fractionAbove(0) == 1)
        #expect(distribution.fractionAbove(5) == 0)
        #expect(throws: ForecastingError.self) { try EmpiricalDistribution([Double]()) }
        #expect(throws: ForecastingError.self) { try EmpiricalDistribution([1, .nan]) }
    }

    @Test("Winkler score, hit and Brier score of one forecast, by hand")
    func scoresOfOneForecast() {
        let interval = ForecastInterval(level: 0.8, lower: 90, upper: 110)
        let inside = IntervalOutcome(interval, actual: 100, lastClose: 100)
        #expect(inside.hit && inside.width == 20 && inside.winkler == 20 && inside.widthPercent == 20)
        // 5 below the lower bound: 20 + (2 / 0.2) x 5 = 70.
        let below = IntervalOutcome(interval, actual: 85, lastClose: 100)
        #expect(!below.hit && abs(below.winkler - 70) < 1e-9)
        #expect(abs(brierScore(probabilityUp: 0.7, actual: 101, lastClose: 100) - 0.09) < 1e-12)
        #expect(abs(brierScore(probabilityUp: 0.7, actual: 100, lastClose: 100) - 0.49) < 1e-12)
    }

    @Test("split conformal: on exchangeable rows the intervals cover at least their level")
    func conformalCoverage() throws {
        // Deterministic pseudo-normal residuals (sum of uniforms from a fixed LCG): calibrate on 500, test on 5,000.
        var state: UInt64 = 20_261_202
        func uniform() -> Double {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Double(state >> 11) / Double(1 << 53)
        }
        func residual() -> Double { (0..<12).reduce(0) { sum, _ in sum + uniform() } - 6 }
        let calibrationReturns = (0..<500).map { _ in 0.03 * residual() }
        let calibration = try ResidualCalibration(
            actualLogReturns: calibrationReturns, locations: Array(repeating: 0, count: 500), scales: Array(repeating: 0.03, count: 500))
        var hits = [0.8: 0, 0.95: 0]
        let trials = 5000
        for _ in 0..<trials {
            let actual = 100 * exp(0.03 * residual())
            let forecast = calibration.forecast(lastClose: 100, location: 0, scale: 0.03)
            for interval in forecast.intervals where interval.lower <= actual && actual <= interval.upper { hits[interval.level]! += 1 }
            #expect(abs(forecast.probabilityUp - 0.5) < 0.1)
        }
        #expect(Double(hits[0.8]!) / Double(trials) > 0.77)
        #expect(Double(hits[0.95]!) / Double(trials) > 0.93)
    }

    @Test(
        "naive + empirical quantiles of the trailing 365 log-returns reproduces the issue's anchor on BTC-daily-v1",
        .enabled(if: sharedDataAvailable, "the BTC-daily-v1 files are not in data/"))
    func naiveBaselineAnchor() throws {
        let closes = try BTCDailyV1.fileNames.flatMap { try OHLCVTFile.closes(atPath: sharedDataDirectory + "/" + $0) }
        #expect(closes.count == 4093)
        let model = ForecastModel.naive(try NaiveBaseline(), on: ForecastSpec())
        let evaluation = try model.evaluate(closes: closes, targets: 2865..<4093)
        let eighty = try #require(evaluation.model.interval(0.8))
        let ninetyFive = try #require(evaluation.model.interval(0.95))
        // Anchor (issue [forecasts]): 81.8 % / 6.94 % / 4,589 and 95.0 % / 13.31 % / 7,191.
        #expect(abs(eighty.coverage - 0.818) < 0.0005)
        #expect(abs(eighty.meanWidthPercent - 6.94) < 0.005)
        #expect(abs(eighty.winkler - 4589) < 0.5)
        #expect(abs(ninetyFive.coverage - 0.950) < 0.0005)
        #expect(abs(ninetyFive.meanWidthPercent - 13.31) < 0.005)
        #expect(abs(ninetyFive.winkler - 7191) < 0.5)
        #expect(evaluation.point.model.mase == 1)
        #expect(abs(evaluation.point.naive.rmse - 1349.3) < 0.05)
        // The reference baseline the predictor scores beside is this model: the same figures.
        #expect(evaluation.naive == evaluation.model)
        print("naive-empirical on BTC-daily-v1:", eighty, ninetyFive, "brier", evaluation.model.brier)
    }

    @Test("model files of every kind round-trip; a baseline's file is refused as an LSTM")
    func modelFilesOfEveryKind() throws {
        let naive = ForecastModel.naive(
            try NaiveBaseline(lookback: 30), on: ForecastSpec(split: SplitFractions(train: 0.6, validation: 0.2)))
        let bytes = try naive.encode()
        let decoded = try ForecastModel(decoding: bytes)
        #expect(decoded.family == .naive)
        #expect(decoded.spec == naive.spec)
        #expect(decoded.window == 31)
        #expect(throws: ModelFileError.self) { try TrainedModel(decoding: bytes) }
        var corrupted = bytes
        corrupted[30] ^= 1
        #expect(throws: ModelFileError.self) { try ForecastModel(decoding: corrupted) }
    }
}
