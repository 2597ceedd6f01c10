/// Forecast errors in USD.
public struct ForecastMetrics: Codable, Sendable, Equatable {
    public var rmse: Double
    public var mae: Double
    /// Mean absolute percentage error, in percent.
    public var mape: Double
    public var r2: Double
    /// Mean absolute scaled error: MAE over the naive forecast's MAE (1 = as good as "tomorrow = today").
    public var mase: Double

    /// Metrics of `predictions` against `actuals`; `previous[k]` is the close before `actuals[k]` (the naive forecast).
    public init(predictions: [Double], actuals: [Double], previous: [Double]) throws {
        guard !actuals.isEmpty, predictions.count == actuals.count, previous.count == actuals.count else {
            throw ForecastingError.invalidInput(
                "metrics need equal, non-empty series: \(predictions.count) predictions, \(actuals.count) actuals, \(previous.count) previous")
        }
        let count = Double(actuals.count)
        let errors = zip(predictions, actuals).map { $0 - $1 }
        let meanActual = actuals.reduce(0, +) / count
        let squaredErrorSum = errors.reduce(0) { $0 + $1 * $1 }
        let totalSumOfSquares = actuals.reduce(0) { $0 + ($1 - meanActual) * ($1 - meanActual) }
        let naiveMeanAbsoluteError = zip(actuals, previous).reduce(0) { $0 + abs($1.0 - $1.1) } / count
        mae = errors.reduce(0) { $0 + abs($1) } / count
        rmse = (squaredErrorSum / count).squareRoot()
        mape = zip(errors, actuals).reduce(0) { $0 + abs($1.0 / $1.1) } / count * 100
        r2 = 1 - squaredErrorSum / totalSumOfSquares
        mase = mae / naiveMeanAbsoluteError
    }
}

/// A model's test metrics next to the naive forecast's, over the same targets.
public struct Evaluation: Sendable, Equatable {
    public let model: ForecastMetrics
    public let naive: ForecastMetrics
    /// Forecasts in USD, one per target index.
    public let predictions: [Double]
    public let targets: Range<Int>
}
