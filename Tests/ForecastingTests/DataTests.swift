import Forecasting
import Foundation
import KrakenFormat
import Testing

/// The repository's data directory, `data/` (real Kraken files; `data/SOURCES.md` says where they come from).
let sharedDataDirectory = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("data").path
let sharedDataAvailable = BTCDailyV1.fileNames.allSatisfy {
    FileManager.default.fileExists(atPath: (sharedDataDirectory as NSString).appendingPathComponent($0))
}

@Suite("Data helpers")
struct DataTests {
    @Test("scaler inverse undoes transform, minimum included")
    func scalerRoundTrip() throws {
        let values = [122.0, 123.61, 64_863.1, 31_337.42, 0.5, 99_999.99, 1e-3]
        let scaler = try MinMaxScaler(fittingOn: values)
        #expect(scaler.minimum == 1e-3 && scaler.maximum == 99_999.99)
        #expect(scaler.transform(scaler.minimum) == 0)
        #expect(scaler.transform(scaler.maximum) == 1)
        #expect(scaler.inverse(0) == scaler.minimum)  // the old system's inverse dropped the minimum
        for value in values + [250_000, -5, 42] {
            let back = scaler.inverse(scaler.transform(value))
            // Exact up to the rounding of one subtraction, one division, one multiplication and one addition.
            #expect(abs(back - value) <= 4 * max(abs(value), scaler.range).ulp, "\(value) came back as \(back)")
        }
        #expect(scaler.inverse(scaler.transform([1, 2, 3])).count == 3)
    }

    @Test("scaler rejects empty or constant data")
    func scalerRejectsDegenerateData() {
        #expect(throws: ForecastingError.insufficientData(needed: 2, available: 0)) { try MinMaxScaler(fittingOn: [Double]()) }
        #expect(throws: ForecastingError.self) { try MinMaxScaler(fittingOn: [5.0, 5.0]) }
    }

    @Test("windows end strictly before their target")
    func windowsNeverLookAhead() throws {
        let series = (0..<40).map(Double.init)  // value == index, so a look-ahead would show
        let dataset = try makeWindows(series: series, window: 14, targets: 14..<40)
        #expect(dataset.count == 26)
        for (position, target) in dataset.targetIndices.enumerated() {
            #expect(dataset.targets[position] == Double(target))
            #expect(dataset.inputs[position] == (target - 14..<target).map(Double.init))
            #expect(dataset.inputs[position].allSatisfy { $0 < Double(target) })
        }
        #expect(throws: ForecastingError.self) { try makeWindows(series: series, window: 14, targets: 13..<20) }
        #expect(throws: ForecastingError.self) { try makeWindows(series: series, window: 14, targets: 30..<41) }
    }

    @Test("BTC-daily-v1 split: 70% train with a 10% validation tail, 30% test")
    func protocolSplit() throws {
        let split = try ChronologicalSplit(count: 4093)
        #expect(split.trainingEnd == 2865)
        #expect(split.fitTargets == 14..<2579)  // floor(2851 * 0.9) = 2565 samples, as Keras keeps
        #expect(split.validationTargets == 2579..<2865)
        #expect(split.testTargets == 2865..<4093)
        let custom = try ChronologicalSplit(count: 1000, window: 10, trainFraction: 0.8, validationFraction: 0.2)
        #expect(custom.trainingEnd == 800 && custom.fitTargets == 10..<642 && custom.testTargets == 800..<1000)
        #expect(throws: ForecastingError.self) { try ChronologicalSplit(count: 4093, trainFraction: 1.2) }
    }

    @Test(
        "the real BTC-daily-v1 files give n = 4093 and split 2865",
        .enabled(if: sharedDataAvailable, "skipped: \(sharedDataDirectory) not found (the repository's data folder)"))
    func realDataMatchesProtocol() throws {
        let closes = try BTCDailyV1.fileNames.flatMap { try OHLCVTFile.closes(atPath: sharedDataDirectory + "/" + $0) }
        #expect(closes.count == 4093)
        #expect(closes.first == 122.0)
        let split = try ChronologicalSplit(count: closes.count)
        #expect(split.trainingEnd == 2865)
        let scaler = try MinMaxScaler(fittingOn: closes[..<split.trainingEnd])
        #expect(scaler.maximum < closes[split.trainingEnd...].max()!)  // test prices exceed the training range
        for close in closes {
            #expect(abs(scaler.inverse(scaler.transform(close)) - close) <= 4 * scaler.range.ulp)
        }
    }

    @Test("metrics: perfect forecast, naive forecast, known values")
    func metrics() throws {
        let actuals = [10.0, 12, 11, 13]
        let previous = [9.0, 10, 12, 11]
        let perfect = try ForecastMetrics(predictions: actuals, actuals: actuals, previous: previous)
        #expect(perfect.rmse == 0 && perfect.mae == 0 && perfect.mape == 0 && perfect.r2 == 1 && perfect.mase == 0)
        let naive = try ForecastMetrics(predictions: previous, actuals: actuals, previous: previous)
        #expect(naive.mase == 1)
        #expect(naive.mae == 1.5)
        #expect(abs(naive.rmse - (10.0 / 4).squareRoot()) < 1e-12)
        #expect(throws: ForecastingError.self) { try ForecastMetrics(predictions: [1], actuals: [1, 2], previous: [1, 2]) }
    }
}
