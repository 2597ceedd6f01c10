/// One forecast next to its actual close and the close before it (the naive "tomorrow = today" forecast): the
/// per-row errors every accuracy figure in Candlecast is built from, whoever computes it (the trainer's test
/// metrics, the monitor's rolling metrics, the dashboard's range card).
public struct ScoredError: Sendable, Equatable, Codable {
    /// |predicted - actual|, USD.
    public var absoluteError: Double
    /// |predicted - actual| / actual, in percent.
    public var percentageError: Double
    /// |previous close - actual|: the naive forecast's error on the same row.
    public var naiveAbsoluteError: Double

    /// The errors as stored (the predictor's `forecast_scored` event, the monitor's `scores` table).
    public init(absoluteError: Double, percentageError: Double, naiveAbsoluteError: Double) {
        self.absoluteError = absoluteError
        self.percentageError = percentageError
        self.naiveAbsoluteError = naiveAbsoluteError
    }

    /// The errors of `predicted` against `actual`, with `previous` the close before `actual`.
    public init(predicted: Double, actual: Double, previous: Double) {
        self.init(
            absoluteError: abs(predicted - actual), percentageError: abs((predicted - actual) / actual) * 100,
            naiveAbsoluteError: abs(previous - actual))
    }

    enum CodingKeys: String, CodingKey {
        case absoluteError = "absolute_error"
        case percentageError = "percentage_error"
        case naiveAbsoluteError = "naive_absolute_error"
    }
}

/// MAE, RMSE and MAPE of a set of scored forecasts, the naive forecast's MAE and RMSE on the same rows, and
/// MASE: the model's MAE over the naive MAE on those rows (below 1 beats "tomorrow = today"). The one
/// implementation of these formulas (`ForecastAccuracy(_:)`).
public struct ForecastAccuracy: Sendable, Equatable, Codable {
    public var count: Int
    public var mae: Double
    public var rmse: Double
    /// In percent.
    public var mape: Double
    public var naiveMAE: Double
    public var naiveRMSE: Double

    /// MAE over the naive MAE on the same rows; nil when the naive forecast made no error at all (undefined).
    public var mase: Double? { naiveMAE > 0 ? mae / naiveMAE : nil }
    /// True when the model's MAE is below the naive forecast's on these rows.
    public var beatsNaive: Bool { mae < naiveMAE }

    /// Nil for no rows.
    public init?<Errors: Collection>(_ errors: Errors) where Errors.Element == ScoredError {
        guard !errors.isEmpty else { return nil }
        let n = Double(errors.count)
        count = errors.count
        mae = errors.reduce(0) { $0 + $1.absoluteError } / n
        rmse = (errors.reduce(0) { $0 + $1.absoluteError * $1.absoluteError } / n).squareRoot()
        mape = errors.reduce(0) { $0 + $1.percentageError } / n
        naiveMAE = errors.reduce(0) { $0 + $1.naiveAbsoluteError } / n
        naiveRMSE = (errors.reduce(0) { $0 + $1.naiveAbsoluteError * $1.naiveAbsoluteError } / n).squareRoot()
    }

    enum CodingKeys: String, CodingKey {
        case count, mae, rmse, mape, mase
        case naiveMAE = "naive_mae"
        case naiveRMSE = "naive_rmse"
        case beatsNaive = "beats_naive"
    }

    /// Encodes `mase` and `beats_naive` too, so a page or client reads the figures instead of recomputing them.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(count, forKey: .count)
        try container.encode(mae, forKey: .mae)
        try container.encode(rmse, forKey: .rmse)
        try container.encode(mape, forKey: .mape)
        try container.encode(naiveMAE, forKey: .naiveMAE)
        try container.encode(naiveRMSE, forKey: .naiveRMSE)
        try container.encode(mase, forKey: .mase)
        try container.encode(beatsNaive, forKey: .beatsNaive)
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        count = try container.decode(Int.self, forKey: .count)
        mae = try container.decode(Double.self, forKey: .mae)
        rmse = try container.decode(Double.self, forKey: .rmse)
        mape = try container.decode(Double.self, forKey: .mape)
        naiveMAE = try container.decode(Double.self, forKey: .naiveMAE)
        naiveRMSE = try container.decode(Double.self, forKey: .naiveRMSE)
    }
}

/// Forecast errors in USD, as the trainer stores a run's test metrics (`test_metrics`, `naive_metrics`).
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
                "metrics need equal, non-empty series: \(predictions.count) predictions, \(actuals.count) actuals, "
                    + "\(previous.count) previous"
            )
        }
        let errors = actuals.indices.map { ScoredError(predicted: predictions[$0], actual: actuals[$0], previous: previous[$0]) }
        guard let accuracy = ForecastAccuracy(errors) else { throw ForecastingError.invalidInput("metrics need at least one row") }
        let meanActual = actuals.reduce(0, +) / Double(actuals.count)
        let squaredErrorSum = errors.reduce(0) { $0 + $1.absoluteError * $1.absoluteError }
        let totalSumOfSquares = actuals.reduce(0) { $0 + ($1 - meanActual) * ($1 - meanActual) }
        mae = accuracy.mae
        rmse = accuracy.rmse
        mape = accuracy.mape
        r2 = 1 - squaredErrorSum / totalSumOfSquares
        // Undefined when the naive forecast is exact everywhere: infinite, as before (the gate then refuses).
        mase = accuracy.mase ?? .infinity
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

/// How metrics are written for people (the gate's reasons, the CLI, the dashboard): with as few decimals as
/// possible but never so few that two figures which compare differently read the same. The gate's "MASE
/// 1.000, above the 1.000 threshold" for 1.0002 becomes "MASE 1.0002, above the 1.0000 threshold".
public enum MetricText {
    /// `values` written with the same number of fraction digits, at least `fractionDigits`, and more until
    /// every two values that differ are written differently (rounding keeps their order). Values too close
    /// for 17 digits fall back to Swift's shortest round-trip spelling, which differs for any two doubles.
    public static func distinguishable(_ values: [Double], fractionDigits: Int) -> [String] {
        var digits = max(0, fractionDigits)
        while true {
            let written = values.map { String(format: "%.*f", digits, $0) }
            if separatesDifferentValues(values, written) { return written }
            if digits >= 17 { return values.map { "\($0)" } }
            digits += 1
        }
    }

    /// `distinguishable` for two figures (a metric and its threshold, a challenger and a champion).
    public static func distinguishable(_ first: Double, _ second: Double, fractionDigits: Int) -> (String, String) {
        let written = distinguishable([first, second], fractionDigits: fractionDigits)
        return (written[0], written[1])
    }

    private static func separatesDifferentValues(_ values: [Double], _ written: [String]) -> Bool {
        for i in values.indices {
            for j in values.indices where j > i && values[i] != values[j] && written[i] == written[j] { return false }
        }
        return true
    }
}

/// One interval forecast against its actual close: the per-row figures every interval score is built from
/// (the trainer's and the gate's test scores, the predictor's stored scores, the monitor's rolling coverage).
public struct IntervalOutcome: Sendable, Equatable, Codable {
    public var level: Double
    /// The actual close was inside lower...upper.
    public var hit: Bool
    /// upper - lower, USD.
    public var width: Double
    /// width / last close, in percent.
    public var widthPercent: Double
    /// Winkler score, USD: width + (2 / (1 - level)) x distance of the actual outside the interval.
    public var winkler: Double

    public init(level: Double, hit: Bool, width: Double, widthPercent: Double, winkler: Double) {
        self.level = level
        self.hit = hit
        self.width = width
        self.widthPercent = widthPercent
        self.winkler = winkler
    }

    public init(_ interval: ForecastInterval, actual: Double, lastClose: Double) {
        let width = interval.upper - interval.lower
        let below = max(0, interval.lower - actual)
        let above = max(0, actual - interval.upper)
        self.init(
            level: interval.level, hit: below == 0 && above == 0, width: width, widthPercent: width / lastClose * 100,
            winkler: width + 2 / (1 - interval.level) * (below + above))
    }

    enum CodingKeys: String, CodingKey {
        case level, hit, width, winkler
        case widthPercent = "width_percent"
    }
}

/// Brier score of one probability of an up move: (p - 1{actual > last close})^2.
public func brierScore(probabilityUp: Double, actual: Double, lastClose: Double) -> Double {
    let outcome: Double = actual > lastClose ? 1 : 0
    return (probabilityUp - outcome) * (probabilityUp - outcome)
}

/// One distribution forecast against its actual close: point errors, one outcome per interval, the Brier score.
public struct ScoredDistribution: Sendable, Equatable {
    public var errors: ScoredError
    public var intervals: [IntervalOutcome]
    public var brier: Double

    public init(_ forecast: DistributionForecast, actual: Double) {
        errors = ScoredError(predicted: forecast.point, actual: actual, previous: forecast.lastClose)
        intervals = forecast.intervals.map { IntervalOutcome($0, actual: actual, lastClose: forecast.lastClose) }
        brier = brierScore(probabilityUp: forecast.probabilityUp, actual: actual, lastClose: forecast.lastClose)
    }
}

extension IntervalScores {
    /// Coverage, mean width and mean Winkler score of `outcomes` (all of one level); nil for none.
    public init?<Outcomes: Collection>(_ outcomes: Outcomes) where Outcomes.Element == IntervalOutcome {
        guard let level = outcomes.first?.level, outcomes.allSatisfy({ $0.level == level }) else { return nil }
        let n = Double(outcomes.count)
        self.init(
            level: level, count: outcomes.count, coverage: Double(outcomes.filter(\.hit).count) / n,
            meanWidthPercent: outcomes.reduce(0) { $0 + $1.widthPercent } / n, winkler: outcomes.reduce(0) { $0 + $1.winkler } / n)
    }
}

extension DistributionScores {
    /// Per-level interval scores and the mean Brier score of `rows`; nil for no rows.
    public init?<Rows: Collection>(_ rows: Rows) where Rows.Element == ScoredDistribution {
        guard let first = rows.first else { return nil }
        let intervals = first.intervals.indices.compactMap { index in
            IntervalScores(rows.compactMap { $0.intervals.indices.contains(index) ? $0.intervals[index] : nil })
        }
        self.init(intervals: intervals, brier: rows.reduce(0) { $0 + $1.brier } / Double(rows.count))
    }
}

/// A model's forecasts on a range of rows scored beside the naive baseline's (`NaiveBaseline.reference`) on the
/// same rows: point accuracy (with MASE), interval scores and Brier score for both.
public struct DistributionEvaluation: Sendable, Equatable {
    public let targets: Range<Int>
    public let forecasts: [DistributionForecast]
    public let point: Evaluation
    public let model: DistributionScores
    public let naive: DistributionScores

    /// Scores `forecasts` (one per index of `targets`, each made from the closes before it) against `closes`.
    public init(closes: [Double], targets: Range<Int>, forecasts: [DistributionForecast]) throws {
        guard forecasts.count == targets.count, !targets.isEmpty, targets.lowerBound >= 1, targets.upperBound <= closes.count else {
            throw ForecastingError.invalidInput("\(forecasts.count) forecasts for targets \(targets) of \(closes.count) closes")
        }
        let actuals = targets.map { closes[$0] }
        let previous = targets.map { closes[$0 - 1] }
        let naiveForecasts = try targets.map { index in
            guard let forecast = NaiveBaseline.reference(closes: closes[..<index]) else {
                throw ForecastingError.insufficientData(needed: NaiveBaseline.lookbacks.lowerBound + 1, available: index)
            }
            return forecast
        }
        let points = forecasts.map(\.point)
        point = Evaluation(
            model: try ForecastMetrics(predictions: points, actuals: actuals, previous: previous),
            naive: try ForecastMetrics(predictions: previous, actuals: actuals, previous: previous), predictions: points, targets: targets)
        guard let model = DistributionScores(zip(forecasts, actuals).map { ScoredDistribution($0, actual: $1) }),
            let naive = DistributionScores(zip(naiveForecasts, actuals).map { ScoredDistribution($0, actual: $1) })
        else { throw ForecastingError.invalidInput("no rows to score") }
        self.targets = targets
        self.forecasts = forecasts
        self.model = model
        self.naive = naive
    }
}
