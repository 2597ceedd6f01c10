import Forecasting
import Foundation

extension ForecastPoint {
    /// The point's errors by the shared formulas (`ScoredError`), once its actual close is known.
    var scoredError: ScoredError? {
        actualClose.map { ScoredError(predicted: predictedClose, actual: $0, previous: lastClose) }
    }
}

extension DashboardData {
    /// The accuracy of the scored forecasts in the range (MAE, RMSE, MAPE, the naive forecast's MAE and RMSE
    /// on the same rows, MASE), computed once by `ForecastAccuracy`; nil when none is scored yet. The page
    /// shows these figures as they are and never recomputes them.
    var accuracy: ForecastAccuracy? { ForecastAccuracy(forecasts.compactMap(\.scoredError)) }

    /// `accuracy` as JSON (`null` when nothing is scored), safe to embed in the page as
    /// `<script type="application/json" id="accuracy">…</script>` for its script to read.
    var accuracyJSON: String { Self.embeddableJSON(accuracy) }

    static func embeddableJSON(_ accuracy: ForecastAccuracy?) -> String { embeddableJSON(value: accuracy) }

    /// Any figures as JSON safe to embed in a script element; `null` for none.
    static func embeddableJSON<Value: Encodable>(value: Value?) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(
            positiveInfinity: "Infinity", negativeInfinity: "-Infinity", nan: "NaN")
        guard let value, let data = try? encoder.encode(value) else { return "null" }
        // `</` cannot end the script element early: JSON allows `<\/` for `</`.
        return String(decoding: data, as: UTF8.self).replacingOccurrences(of: "</", with: "<\\/")
    }
}
