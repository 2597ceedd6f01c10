import Forecasting
import Foundation
import KrakenFormat
import Testing

@Suite("Shared accuracy metrics and their wording")
struct AccuracyTests {
    static let predictions = [102.0, 97.0, 110.0, 100.0]
    static let actuals = [100.0, 100.0, 105.0, 104.0]
    static let previous = [99.0, 100.0, 100.0, 105.0]

    @Test("one implementation: the trainer's test metrics are ForecastAccuracy over the same rows")
    func trainerMetricsAreTheSharedOnes() throws {
        let metrics = try ForecastMetrics(predictions: Self.predictions, actuals: Self.actuals, previous: Self.previous)
        let rows = Self.actuals.indices.map {
            ScoredError(predicted: Self.predictions[$0], actual: Self.actuals[$0], previous: Self.previous[$0])
        }
        let accuracy = try #require(ForecastAccuracy(rows))
        #expect(metrics.mae == accuracy.mae)
        #expect(metrics.rmse == accuracy.rmse)
        #expect(metrics.mape == accuracy.mape)
        #expect(metrics.mase == accuracy.mase)
        // By hand: errors 2, 3, 5, 4; naive errors 1, 0, 5, 1.
        #expect(accuracy.count == 4)
        #expect(accuracy.mae == 3.5)
        #expect(abs(accuracy.rmse - (54.0 / 4).squareRoot()) < 1e-12)
        #expect(accuracy.naiveMAE == 7.0 / 4)
        #expect(abs(accuracy.naiveRMSE - (27.0 / 4).squareRoot()) < 1e-12)
        #expect(accuracy.mase == 2)
        #expect(!accuracy.beatsNaive)
        #expect(abs(accuracy.mape - (2.0 / 100 + 3.0 / 100 + 5.0 / 105 + 4.0 / 104) / 4 * 100) < 1e-9)
    }

    @Test("MASE is undefined, not infinite, when the naive forecast made no error; no rows give no figures")
    func edgeCases() {
        #expect(ForecastAccuracy([ScoredError]()) == nil)
        let exactNaive = ForecastAccuracy([ScoredError(absoluteError: 5, percentageError: 1, naiveAbsoluteError: 0)])
        #expect(exactNaive?.mase == nil)
        #expect(exactNaive?.beatsNaive == false)
    }

    @Test("the JSON a page reads carries MASE and the verdict, so it never recomputes them")
    func encodedForPages() throws {
        let accuracy = try #require(ForecastAccuracy([ScoredError(absoluteError: 1, percentageError: 1, naiveAbsoluteError: 2)]))
        let object = try #require(try JSONSerialization.jsonObject(with: JSONEncoder().encode(accuracy)) as? [String: Any])
        #expect(object["mase"] as? Double == 0.5)
        #expect(object["beats_naive"] as? Bool == true)
        #expect(object["naive_mae"] as? Double == 2)
        #expect(try JSONDecoder().decode(ForecastAccuracy.self, from: JSONEncoder().encode(accuracy)) == accuracy)
    }

    @Test("figures that compare differently are written differently; equal ones alike")
    func distinguishableFigures() {
        #expect(MetricText.distinguishable(1.0002, 1.0, fractionDigits: 3) == ("1.0002", "1.0000"))
        #expect(MetricText.distinguishable(0.9998, 1.0, fractionDigits: 3) == ("0.9998", "1.0000"))
        #expect(MetricText.distinguishable(0.987, 1.0, fractionDigits: 3) == ("0.987", "1.000"))
        #expect(MetricText.distinguishable(1.0, 1.0, fractionDigits: 3) == ("1.000", "1.000"))
        #expect(MetricText.distinguishable(2500.04, 2500.01, fractionDigits: 1) == ("2500.04", "2500.01"))
        let (below, above) = MetricText.distinguishable(1.0, 1.0.nextUp, fractionDigits: 3)
        #expect(below != above)
        for (a, b) in [(1.0, 1.0.nextUp), (0.1, 0.1.nextDown), (1234.5678, 1234.5679), (3.0, 3.0000000001)] {
            let (first, second) = MetricText.distinguishable(a, b, fractionDigits: 1)
            #expect(first != second, "\(a) and \(b)")
            // Written as they compare: the smaller reads smaller (same digit count, or the round-trip fallback).
            #expect((a < b) == (Double(first)! < Double(second)!))
        }
    }

    @Test("errors carry codes callers switch on; catch by value still works")
    func errorCodes() {
        do {
            _ = try MinMaxScaler(fittingOn: [Double]())
            Issue.record("a scaler fitted on nothing")
        } catch let error as ForecastingError {
            #expect(error.code == .insufficientData)
            #expect(error.needed == 2)
            #expect(error.available == 0)
        } catch {
            Issue.record("unexpected \(error)")
        }
        func cancelledIsCaught() -> Bool {
            do {
                throw ForecastingError.cancelled
            } catch ForecastingError.cancelled {
                return true
            } catch {
                return false
            }
        }
        #expect(cancelledIsCaught())
    }

    @Test("the history files' closes come from the one OHLCVT parser, exponent forms included")
    func closesFromTheSharedParser() throws {
        let path = NSTemporaryDirectory() + "candlecast-closes-\(UUID().uuidString).csv"
        try "timestamp,open,high,low,close,volume,trades\n1438905600,2.77,3.0,0.15,2.77,4E+2,12\n1438992000,3,3,1.1E+0,1.2E+0,1,1\n"
            .write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(try OHLCVTFile.closes(atPath: path) == [2.77, 1.2])
        let other = NSTemporaryDirectory() + "candlecast-other-\(UUID().uuidString).csv"
        try "unix,date,symbol,open,high,low,close,Volume BTC,Volume USD\n1438905600,2015-08-07,BTCUSD,1,1,1,1,1,1\n"
            .write(toFile: other, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: other) }
        #expect { try OHLCVTFile.closes(atPath: other) } throws: { ($0 as? HistoryFileError)?.code == .unrecognisedLayout }
    }
}
