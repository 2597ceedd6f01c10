import Contracts
import Forecasting
import Testing

@Suite("Monitor: rolling interval figures from the scores the predictor reports (ReportedScores)")
struct ReportedScoresTests {
    @Test("coverage and mean Winkler per level, the naive baseline's over the days it had an interval, Brier over those given")
    func figures() throws {
        let scores = [
            ReportedScore(
                intervals: [
                    IntervalResult(level: 0.8, hit: true, winkler: 100, naiveHit: false, naiveWinkler: 400),
                    IntervalResult(level: 0.95, hit: true, winkler: 200, naiveHit: true, naiveWinkler: 300),
                ], brier: 0.04, naiveBrier: 0.25),
            ReportedScore(
                intervals: [
                    IntervalResult(level: 0.8, hit: false, winkler: 500),
                    IntervalResult(level: 0.95, hit: true, winkler: 200),
                ], brier: nil, naiveBrier: nil),
            ReportedScore(
                intervals: [
                    IntervalResult(level: 0.8, hit: true, winkler: 120, naiveHit: true, naiveWinkler: 150),
                    IntervalResult(level: 0.95, hit: false, winkler: 800, naiveHit: true, naiveWinkler: 250),
                ], brier: 0.16, naiveBrier: 0.25),
        ]
        let figures = try #require(ReportedScores(scores))
        #expect(figures.count == 3)
        // Model, 80 %: 2 of 3 inside, (100 + 500 + 120) / 3 = 240; 95 %: 2 of 3, (200 + 200 + 800) / 3 = 400.
        #expect(
            figures.model == [
                ReportedScores.Level(level: 0.8, count: 3, coverage: 2.0 / 3, winkler: 240),
                ReportedScores.Level(level: 0.95, count: 3, coverage: 2.0 / 3, winkler: 400),
            ])
        // Naive, on the two days it had intervals: 80 %: 1 of 2, (400 + 150) / 2 = 275; 95 %: 2 of 2, 275.
        #expect(
            figures.naive == [
                ReportedScores.Level(level: 0.8, count: 2, coverage: 0.5, winkler: 275),
                ReportedScores.Level(level: 0.95, count: 2, coverage: 1, winkler: 275),
            ])
        #expect(abs(try #require(figures.brier) - 0.1) < 1e-12)
        #expect(figures.naiveBrier == 0.25)
        #expect(figures.model(0.95)?.winkler == 400)
        #expect(figures.naive(0.5) == nil)
    }

    @Test("no scores, no figures; scores without naive results or Brier scores leave those out")
    func partial() throws {
        #expect(ReportedScores([ReportedScore]()) == nil)
        let figures = try #require(
            ReportedScores([ReportedScore(intervals: [IntervalResult(level: 0.8, hit: false, winkler: 90)], brier: nil, naiveBrier: nil)]))
        #expect(figures.model == [ReportedScores.Level(level: 0.8, count: 1, coverage: 0, winkler: 90)])
        #expect(figures.naive.isEmpty && figures.brier == nil && figures.naiveBrier == nil)
    }
}
