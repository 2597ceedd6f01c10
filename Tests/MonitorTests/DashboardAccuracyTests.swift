import Foundation
import Testing

@testable import Monitor

@Suite("Monitor: the dashboard's accuracy comes from the shared metrics")
struct DashboardAccuracyTests {
    static func point(predicted: Double, last: Double, actual: Double?) -> ForecastPoint {
        ForecastPoint(
            targetOpenTime: 1_704_067_200, modelVersion: 1, predictedClose: predicted, lastClose: last, stale: false, actualClose: actual,
            absoluteError: actual.map { abs(predicted - $0) }, naiveAbsoluteError: actual.map { abs(last - $0) })
    }

    @Test("a scored point's errors are the shared formulas'; a pending one has none")
    func pointErrors() throws {
        let scored = try #require(Self.point(predicted: 102, last: 99, actual: 100).scoredError)
        #expect(scored == ScoredError(absoluteError: 2, percentageError: 2, naiveAbsoluteError: 1))
        #expect(Self.point(predicted: 102, last: 99, actual: nil).scoredError == nil)
    }

    @Test("the range's figures are ForecastAccuracy's, handed to the page as JSON it can embed")
    func rangeFigures() throws {
        let points = [
            Self.point(predicted: 102, last: 99, actual: 100), Self.point(predicted: 97, last: 100, actual: 100),
            Self.point(predicted: 1, last: 1, actual: nil),
        ]
        let accuracy = try #require(RollingAccuracy(points.compactMap(\.scoredError)))
        #expect(accuracy.count == 2)
        #expect(accuracy.mae == 2.5)
        #expect(accuracy.naiveMAE == 0.5)
        #expect(accuracy.mase == 5)
        let json = DashboardData.embeddableJSON(accuracy)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        #expect(object["mase"] as? Double == 5)
        #expect(object["beats_naive"] as? Bool == false)
        #expect(!json.contains("</"))
        #expect(DashboardData.embeddableJSON(nil) == "null")
    }
}
