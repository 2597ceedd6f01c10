import Contracts
import Forecasting
import Foundation
import Messaging
import ServiceKit
import Storage
import TestSupport
import Testing

/// Interval results and Brier scores through the monitor executable: four scored forecasts of one model version whose
/// figures are worked out by hand below, and an older producer's events without any, which are still taken.
extension MonitorIntegrationTests {
    static let intervalsPort = 18_387

    /// Four days forecast from a last close of $50,000 with a point forecast of $50,000, the model's intervals
    /// 80 %: 49,000...51,000 (width 2,000) and 95 %: 48,000...52,000 (4,000), the naive baseline's 80 %:
    /// 48,500...51,500 (3,000) and 95 %: 47,500...52,500 (5,000). Winkler = width + 2 / (1 - level) x distance outside
    /// (x10 at 80 %, x40 at 95 %).
    ///
    /// | actual | model 80 % | model 95 % | naive 80 % | naive 95 % | p(up) | Brier |
    /// |---|---|---|---|---|---|---|
    /// | 50,500 | hit, 2,000 | hit, 4,000 | hit, 3,000 | hit, 5,000 | 0.6 | 0.16 |
    /// | 50,900 | hit, 2,000 | hit, 4,000 | hit, 3,000 | hit, 5,000 | 0.7 | 0.09 |
    /// | 48,500 | 500 below: 7,000 | hit, 4,000 | on the bound: hit, 3,000 | hit, 5,000 | 0.4 | 0.16 |
    /// | 47,000 | 2,000 below: 22,000 | 1,000 below: 44,000 | 1,500 below: 18,000 | 500 below: 25,000 | 0.5 | 0.25 |
    ///
    /// Model: 80 % coverage 2/4 = 0.5, Winkler 33,000/4 = 8,250; 95 % 3/4 = 0.75, 56,000/4 = 14,000;
    /// Brier 0.66/4 = 0.165.
    /// Naive: 80 % 3/4 = 0.75, 27,000/4 = 6,750; 95 % 3/4 = 0.75, 40,000/4 = 10,000; Brier (p = 0.5 every day) 0.25.
    static let handWorkedDays: [(actual: Double, probabilityUp: Double)] = [
        (50_500, 0.6), (50_900, 0.7), (48_500, 0.4), (47_000, 0.5),
    ]

    @Test("interval results and Brier scores become the hand-worked rolling coverage, Winkler and Brier; old events are still taken")
    func intervalScores() async throws {
        let database = try await TestDatabase.create()
        let broker = try TestEnvironment.broker()
        try await BrokerAdmin.declare(ServiceName.monitor.topology, configuration: broker)
        for queue in ServiceName.monitor.subscriptions.map(\.queue) + [ServiceName.monitor.deadLetterQueue] {
            try await BrokerAdmin.purge(queue: queue, configuration: broker)
        }
        let environment = [
            "CANDLECAST_HTTP_PORT": "\(Self.intervalsPort)", "CANDLECAST_DATABASE_URL": database.configuration.url,
            "CANDLECAST_MONITOR_REFRESH_SECONDS": "1", "CANDLECAST_REGISTRY_URL": "http://127.0.0.1:9",
        ]
        var monitor = try ServiceProcess("monitor", environment: environment)
        let publisher = try Publisher(
            configuration: broker, options: Publisher.Options(topology: ServiceName.monitor.topology), logger: TestEnvironment.logger)
        defer { monitor.kill() }
        do {
            try await eventually(timeout: .seconds(20), "the monitor ready") {
                await httpGet("http://127.0.0.1:\(Self.intervalsPort)/readyz")?.status == 200
            }
            let lastClose = 50_000.0
            let modelIntervals = [
                ForecastInterval(level: 0.8, lower: 49_000, upper: 51_000), ForecastInterval(level: 0.95, lower: 48_000, upper: 52_000),
            ]
            let naiveIntervals = [
                ForecastInterval(level: 0.8, lower: 48_500, upper: 51_500), ForecastInterval(level: 0.95, lower: 47_500, upper: 52_500),
            ]
            let firstDay: Int64 = 1_733_011_200  // 2024-12-01
            var messages: [OutgoingMessage] = []
            var firstScore: OutgoingMessage?
            for (index, day) in Self.handWorkedDays.enumerated() {
                let time = firstDay + Int64(index) * 86_400
                let forecast = ForecastCreated(
                    pair: "XBTUSD", interval: .oneDay, targetOpenTime: time, predictedClose: lastClose, lastClose: lastClose,
                    modelName: "lstm-xbtusd-1d", modelVersion: 5, datasetVersion: 1, producedAt: Date(), stale: false,
                    intervals: modelIntervals, probabilityUp: day.probabilityUp)
                // What the predictor sends: each interval scored by the shared rule, beside the naive baseline's.
                let results = zip(modelIntervals, naiveIntervals).map { model, naive in
                    let outcome = IntervalOutcome(model, actual: day.actual, lastClose: lastClose)
                    let naiveOutcome = IntervalOutcome(naive, actual: day.actual, lastClose: lastClose)
                    return IntervalResult(
                        level: model.level, hit: outcome.hit, winkler: outcome.winkler, naiveHit: naiveOutcome.hit,
                        naiveWinkler: naiveOutcome.winkler)
                }
                let score = ForecastScored(
                    pair: "XBTUSD", interval: .oneDay, targetOpenTime: time, modelName: "lstm-xbtusd-1d", modelVersion: 5,
                    predictedClose: lastClose, actualClose: day.actual, error: lastClose - day.actual,
                    absoluteError: abs(lastClose - day.actual), percentageError: abs(lastClose - day.actual) / day.actual * 100,
                    naiveAbsoluteError: abs(lastClose - day.actual), intervals: results,
                    brier: brierScore(probabilityUp: day.probabilityUp, actual: day.actual, lastClose: lastClose),
                    naiveBrier: brierScore(probabilityUp: 0.5, actual: day.actual, lastClose: lastClose))
                let scoreMessage = try message(score)
                firstScore = firstScore ?? scoreMessage
                messages += [try message(forecast), scoreMessage]
            }
            // A redelivered score changes nothing.
            messages.append(try #require(firstScore))
            // An older producer: the same events without intervals, up probability or Brier scores (the keys are absent).
            for index in 0..<3 {
                let time = firstDay + Int64(index) * 86_400
                let forecast = ForecastCreated(
                    pair: "XBTUSD", interval: .oneDay, targetOpenTime: time, predictedClose: 50_100, lastClose: lastClose,
                    modelName: "lstm-xbtusd-1d", modelVersion: 4, datasetVersion: 1, producedAt: Date(), stale: false)
                let actual = Self.handWorkedDays[index].actual
                let score = ForecastScored(
                    pair: "XBTUSD", interval: .oneDay, targetOpenTime: time, modelName: "lstm-xbtusd-1d", modelVersion: 4,
                    predictedClose: 50_100, actualClose: actual, error: 50_100 - actual, absoluteError: abs(50_100 - actual),
                    percentageError: abs(50_100 - actual) / actual * 100, naiveAbsoluteError: abs(lastClose - actual))
                let old = [try message(forecast), try message(score)]
                for body in old.map({ String(decoding: $0.body, as: UTF8.self) }) {
                    #expect(!body.contains("intervals") && !body.contains("brier") && !body.contains("probability_up"), "\(body)")
                }
                messages += old
            }
            try await publisher.publish(contentsOf: messages)

            let metricsURL = "http://127.0.0.1:\(Self.intervalsPort)/metrics"
            let model5 = ["model_version=\"5\""]
            let model4 = ["model_version=\"4\""]
            try await eventually(timeout: .seconds(30), "every score and forecast in the monitor's metrics") {
                let metrics = await httpGet(metricsURL)?.body ?? ""
                return sample(metrics, "candlecast_forecast_absolute_error_usd_count", labels: model5) == 4
                    && sample(metrics, "candlecast_forecast_absolute_error_usd_count", labels: model4) == 3
                    && sample(metrics, "candlecast_monitor_forecasts_received_total") == 7
                    && sample(metrics, "candlecast_forecast_rolling_brier", labels: model5) != nil
                    && sample(metrics, "candlecast_events_total", labels: ["type=\"metric.predictor.forecast_scored\""]) == 8
            }
            try Self.checkHandWorkedFigures(try #require(await httpGet(metricsURL)?.body), label: "first start")
            let metrics = try #require(await httpGet(metricsURL)?.body)
            // The older producer's version: accepted and scored for accuracy, with no interval figures.
            #expect(sample(metrics, "candlecast_forecast_rolling_window_forecasts", labels: model4) == 3)
            let intervalFigures = [
                "candlecast_forecast_coverage_window_forecasts", "candlecast_forecast_rolling_coverage",
                "candlecast_forecast_rolling_brier",
            ]
            for name in intervalFigures {
                #expect(sample(metrics, name, labels: model4) == nil, "\(name) for v4")
            }
            #expect(sample(metrics, "candlecast_dead_letter_queue_messages", labels: ["service=\"monitor\""]) == 0)
            #expect(sample(metrics, "candlecast_messages_dead_lettered_total") == nil)

            // The dashboard: the card's figures and its JSON are the metrics', the bands drawn for v5 only.
            let page = try #require(await httpGet("http://127.0.0.1:\(Self.intervalsPort)/?pair=XBTUSD&interval=1d&days=0"))
            #expect(page.status == 200)
            let json = try #require(page.body.firstMatch(of: /<script type="application\/json" id="interval-scores">([^<]*)<\/script>/)).1
            let card = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
            #expect(card["model_version"] as? Int == 5)
            #expect(card["window"] as? Int == 60)
            let scores = try #require(card["scores"] as? [String: Any])
            #expect(scores["count"] as? Int == 4)
            #expect(abs(try #require(scores["brier"] as? Double) - 0.165) < 1e-12)
            #expect(abs(try #require(scores["naive_brier"] as? Double) - 0.25) < 1e-12)
            let figures = { (levels: [[String: Any]]) in
                levels.map { ($0["level"] as? Double, $0["coverage"] as? Double, $0["winkler"] as? Double) }
            }
            let model = figures(try #require(scores["model"] as? [[String: Any]]))
            let naive = figures(try #require(scores["naive"] as? [[String: Any]]))
            // 2 / (1 - 0.8) is 10 only to within a rounding: Winkler scores are compared to 1e-9.
            let close = { (values: [Double?], expected: [Double]) in
                values.count == expected.count && zip(values, expected).allSatisfy { abs(($0 ?? .nan) - $1) < 1e-9 }
            }
            #expect(model.map(\.0) == [0.8, 0.95] && model.map(\.1) == [0.5, 0.75] && close(model.map(\.2), [8_250, 14_000]))
            #expect(naive.map(\.0) == [0.8, 0.95] && naive.map(\.1) == [0.75, 0.75] && close(naive.map(\.2), [6_750, 10_000]))
            #expect(page.body.contains("<span id=\"coverage-80\">50.0%</span> / <span id=\"coverage-95\">75.0%</span>"))
            #expect(page.body.contains("<span id=\"winkler-80\">$8,250</span>"))
            #expect(page.body.contains("<span id=\"brier\">0.165</span>"))
            let bands = page.body.matches(
                of: /<polygon class="interval-band band-(\d+)" data-level="[^"]*" data-version="(\d+)" data-forecasts="(\d+)"/)
            #expect(bands.map { "\($0.1) v\($0.2) \($0.3)" } == ["95 v5 4", "80 v5 4"])
            // v5's 80 % range in the table, v4's forecasts without one.
            #expect(page.body.matches(of: /<td>\$49,000–\$51,000<\/td>/).count == 4)

            // A restart rebuilds the gauges from the stored scores.
            monitor.signal(SIGTERM)
            #expect(try await monitor.waitForExit(timeout: .seconds(10)) == 0)
            monitor = try ServiceProcess("monitor", environment: environment)
            try await eventually(timeout: .seconds(20), "the restarted monitor's interval figures") {
                sample(await httpGet(metricsURL)?.body ?? "", "candlecast_forecast_rolling_brier", labels: model5) != nil
            }
            try Self.checkHandWorkedFigures(try #require(await httpGet(metricsURL)?.body), label: "after a restart")
            monitor.signal(SIGTERM)
            #expect(try await monitor.waitForExit(timeout: .seconds(10)) == 0)
        } catch {
            Issue.record("monitor log:\n\(monitor.log.suffix(3000))")
            throw error
        }
        await publisher.close()
        await database.drop()
    }

    /// The figures of `handWorkedDays` for v5 in an exposition.
    static func checkHandWorkedFigures(_ metrics: String, label: String) throws {
        let v5 = ["pair=\"XBTUSD\"", "interval=\"1d\"", "model_version=\"5\""]
        let expected: [(name: String, level: String?, value: Double)] = [
            ("candlecast_forecast_coverage_window_forecasts", nil, 4),
            ("candlecast_forecast_rolling_coverage", "0.8", 0.5), ("candlecast_forecast_rolling_coverage", "0.95", 0.75),
            ("candlecast_forecast_rolling_winkler_usd", "0.8", 8_250), ("candlecast_forecast_rolling_winkler_usd", "0.95", 14_000),
            ("candlecast_naive_rolling_coverage", "0.8", 0.75), ("candlecast_naive_rolling_coverage", "0.95", 0.75),
            ("candlecast_naive_rolling_winkler_usd", "0.8", 6_750), ("candlecast_naive_rolling_winkler_usd", "0.95", 10_000),
            ("candlecast_forecast_rolling_brier", nil, 0.165), ("candlecast_naive_rolling_brier", nil, 0.25),
        ]
        for figure in expected {
            let labels = v5 + (figure.level.map { ["level=\"\($0)\""] } ?? [])
            let value = try #require(sample(metrics, figure.name, labels: labels), "\(label): \(figure.name) \(figure.level ?? "")")
            #expect(abs(value - figure.value) < 1e-9, "\(label): \(figure.name) \(figure.level ?? "") is \(value), not \(figure.value)")
        }
    }
}
