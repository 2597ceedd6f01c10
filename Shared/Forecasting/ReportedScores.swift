import Contracts

/// One scored forecast's uncertainty figures as the predictor reports them in `forecast_scored`: per level the
/// interval's hit and Winkler score (the bounds are not sent), beside the naive baseline's of the same day, and the
/// Brier scores of both up probabilities.
public struct ReportedScore: Sendable, Equatable {
    public var intervals: [IntervalResult]
    public var brier: Double?
    public var naiveBrier: Double?

    public init(intervals: [IntervalResult], brier: Double?, naiveBrier: Double?) {
        self.intervals = intervals
        self.brier = brier
        self.naiveBrier = naiveBrier
    }
}

/// Coverage, mean Winkler score and mean Brier score of a window of `ReportedScore`s, for the model and for the naive
/// baseline on the same days: the monitor's rolling figures and its dashboard's coverage card. Built on
/// `IntervalScores(_:)`, the one coverage and Winkler rule.
public struct ReportedScores: Sendable, Equatable, Codable {
    /// Coverage and mean Winkler score at one level, over `count` forecasts.
    public struct Level: Sendable, Equatable, Codable {
        public var level: Double
        public var count: Int
        /// Share of actual closes inside the interval (0...1).
        public var coverage: Double
        /// Mean Winkler score, USD.
        public var winkler: Double

        public init(level: Double, count: Int, coverage: Double, winkler: Double) {
            self.level = level
            self.count = count
            self.coverage = coverage
            self.winkler = winkler
        }

        /// The figures of `results` (hit, Winkler score) at `level`; nil for none.
        init?(level: Double, _ results: [(hit: Bool, winkler: Double)]) {
            // `IntervalScores` also averages the width, which `forecast_scored` does not report: that figure is dropped.
            let outcomes = results.map { IntervalOutcome(level: level, hit: $0.hit, width: 0, widthPercent: 0, winkler: $0.winkler) }
            guard let scores = IntervalScores(outcomes) else { return nil }
            self.init(level: scores.level, count: scores.count, coverage: scores.coverage, winkler: scores.winkler)
        }
    }

    /// Forecasts in the window.
    public var count: Int
    /// One entry per level of `IntervalLevels.all` the forecasts gave an interval at.
    public var model: [Level]
    /// The naive baseline's, over the days it had an interval at that level.
    public var naive: [Level]
    /// Mean Brier score of the up probabilities given (0 is perfect, 0.25 a coin); nil when none was.
    public var brier: Double?
    public var naiveBrier: Double?

    /// The figures of `scores`; nil for none.
    public init?<Scores: Collection>(_ scores: Scores) where Scores.Element == ReportedScore {
        guard !scores.isEmpty else { return nil }
        let results = scores.flatMap(\.intervals)
        count = scores.count
        model = IntervalLevels.all.compactMap { level in
            Level(level: level, results.filter { $0.level == level }.map { ($0.hit, $0.winkler) })
        }
        naive = IntervalLevels.all.compactMap { level in
            Level(
                level: level,
                results.filter { $0.level == level }.compactMap { result in
                    result.naiveHit.flatMap { hit in result.naiveWinkler.map { (hit, $0) } }
                })
        }
        brier = Self.mean(scores.compactMap(\.brier))
        naiveBrier = Self.mean(scores.compactMap(\.naiveBrier))
    }

    /// The model's figures at `level`, if any.
    public func model(_ level: Double) -> Level? { model.first { $0.level == level } }
    /// The naive baseline's figures at `level`, if any.
    public func naive(_ level: Double) -> Level? { naive.first { $0.level == level } }

    private static func mean(_ values: [Double]) -> Double? {
        values.isEmpty ? nil : values.reduce(0, +) / Double(values.count)
    }

    enum CodingKeys: String, CodingKey {
        case count, model, naive, brier
        case naiveBrier = "naive_brier"
    }
}
