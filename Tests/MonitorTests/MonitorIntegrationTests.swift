import Contracts
import Forecasting
import Foundation
import KrakenFake
import Messaging
import ServiceKit
import Storage
import TestSupport
import Testing

@testable import Ingestor

/// The monitor executable against the real broker and a throwaway database: events in, metrics and the
/// dashboard out, checked by promtool and headless Chromium.
@Suite("Monitor service", .serialized)
struct MonitorIntegrationTests {
    static let port = 18_386
    static let modelVersion = 3

    @Test("events become metrics that pass promtool, rolling accuracy matches the scores, the dashboard renders in Chromium")
    func eventsToMetricsAndDashboard() async throws {
        let database = try await TestDatabase.create()
        let client = database.client()
        let broker = try TestEnvironment.broker()
        try await BrokerAdmin.declare(ServiceName.monitor.topology, configuration: broker)
        for queue in ServiceName.monitor.subscriptions.map(\.queue) + [ServiceName.monitor.deadLetterQueue] {
            try await BrokerAdmin.purge(queue: queue, configuration: broker)
        }
        // Prices for the chart come from the ingestor's read contract: the real backfill fills it.
        try await client.migrate(IngestSchema.migrations, logger: TestEnvironment.logger)
        for file in ["kraken_XBTUSD_1440.csv", "kraken_XBTUSD_1440_2024.csv"] {
            _ = try await HistoryBackfill(database: client, logger: TestEnvironment.logger).run(
                path: TestEnvironment.sharedDataDirectory + "/" + file, pair: "XBTUSD", interval: .oneDay)
        }
        let monitor = try ServiceProcess(
            "monitor",
            environment: [
                "CANDLECAST_HTTP_PORT": "\(Self.port)", "CANDLECAST_DATABASE_URL": database.configuration.url,
                "CANDLECAST_MONITOR_REFRESH_SECONDS": "1", "CANDLECAST_REGISTRY_URL": "http://127.0.0.1:9",
            ])
        let publisher = try Publisher(
            configuration: broker, options: Publisher.Options(topology: ServiceName.monitor.topology), logger: TestEnvironment.logger)
        defer { monitor.kill() }
        do {
            try await eventually(timeout: .seconds(20), "the monitor ready") {
                await httpGet("http://127.0.0.1:\(Self.port)/readyz")?.status == 200
            }

            // The last 60 days of 2024: a forecast from the day before, the candle, and the score the predictor would send.
            let rows = try FakeKraken.Row.load(csv: TestEnvironment.sharedDataDirectory + "/kraken_XBTUSD_1440_2024.csv")
            let days = Array(rows.suffix(61))
            var scores: [ForecastScored] = []
            var messages: [OutgoingMessage] = [
                try message(
                    ModelPromoted(
                        modelName: "lstm-xbtusd-1d", alias: "champion", version: Self.modelVersion, previousVersion: nil,
                        reason: "test promotion",
                        pair: "XBTUSD", interval: .oneDay, datasetVersion: 1, artifactCRC32: 1))
            ]
            for (index, day) in days.enumerated().dropFirst() {
                let lastClose = try #require(Double(days[index - 1].close))
                let actual = try #require(Double(day.close))
                let predicted = lastClose * (1 + 0.02 * sin(Double(index)))
                // Ranges of 3 % and 6 % of the last close each side, and the naive baseline's a little wider.
                let intervals = [(0.8, 0.03), (0.95, 0.06)].map { level, half in
                    ForecastInterval(level: level, lower: predicted - half * lastClose, upper: predicted + half * lastClose)
                }
                let naiveIntervals = [(0.8, 0.035), (0.95, 0.065)].map { level, half in
                    ForecastInterval(level: level, lower: lastClose * (1 - half), upper: lastClose * (1 + half))
                }
                let probabilityUp = 0.5 + 0.2 * cos(Double(index))
                let forecast = ForecastCreated(
                    pair: "XBTUSD", interval: .oneDay, targetOpenTime: day.time, predictedClose: predicted, lastClose: lastClose,
                    modelName: "lstm-xbtusd-1d", modelVersion: Self.modelVersion, datasetVersion: 1, producedAt: Date(), stale: false,
                    intervals: intervals, probabilityUp: probabilityUp)
                let results = zip(intervals, naiveIntervals).map { model, naive in
                    let outcome = IntervalOutcome(model, actual: actual, lastClose: lastClose)
                    let naiveOutcome = IntervalOutcome(naive, actual: actual, lastClose: lastClose)
                    return IntervalResult(
                        level: model.level, hit: outcome.hit, winkler: outcome.winkler, naiveHit: naiveOutcome.hit,
                        naiveWinkler: naiveOutcome.winkler)
                }
                let score = ForecastScored(
                    pair: "XBTUSD", interval: .oneDay, targetOpenTime: day.time, modelName: "lstm-xbtusd-1d",
                    modelVersion: Self.modelVersion,
                    predictedClose: predicted, actualClose: actual, error: predicted - actual, absoluteError: abs(predicted - actual),
                    percentageError: abs(predicted - actual) / actual * 100, naiveAbsoluteError: abs(lastClose - actual),
                    intervals: results, brier: brierScore(probabilityUp: probabilityUp, actual: actual, lastClose: lastClose),
                    naiveBrier: brierScore(probabilityUp: 0.5, actual: actual, lastClose: lastClose))
                scores.append(score)
                messages += [
                    try message(forecast),
                    try message(
                        CandleClosed(
                            pair: "XBTUSD", interval: .oneDay, openTime: day.time, open: day.open, high: day.high, low: day.low,
                            close: day.close,
                            volume: day.volume, trades: day.trades, revision: 0)), try message(score),
                ]
            }
            // Redeliveries of the last ten scores must not be counted twice.
            messages += try scores.suffix(10).map(message)
            messages.append(
                try message(
                    TrainingCompleted(
                        jobID: UUID(), sweepID: UUID(), trainer: "test", succeeded: false, error: "out of memory", epochsRun: 3,
                        bestEpoch: 2,
                        validationLoss: nil, trainSeconds: 42, test: nil, naive: nil, artifact: nil)))
            // A poison message on the metrics queue: dead-lettered, visible in the monitor's dead-letter gauge.
            messages.append(
                OutgoingMessage(
                    exchange: Exchange.events, routingKey: "metric.predictor.forecast_scored", body: Array("{not json".utf8),
                    properties: MessageProperties(
                        contentType: "application/json", type: ForecastScored.messageType, headers: [schemaVersionHeader: .int(1)])))
            try await publisher.publish(contentsOf: messages)

            try await eventually(timeout: .seconds(30), "60 scored forecasts in the monitor's metrics") {
                let metrics = await httpGet("http://127.0.0.1:\(Self.port)/metrics")?.body ?? ""
                // The promotion waits for the (unreachable) registry's check, bounded by the connect timeout.
                return sample(metrics, "candlecast_forecast_absolute_error_usd_count") == 60
                    && sample(metrics, "candlecast_champion_version", labels: ["model=\"lstm-xbtusd-1d\""]) != nil
                    && sample(metrics, "candlecast_dead_letter_queue_messages", labels: ["service=\"monitor\""]) == 1
                    && sample(metrics, "candlecast_events_total", labels: ["type=\"forecast.created\""]) == 60
            }
            let metrics = try #require(await httpGet("http://127.0.0.1:\(Self.port)/metrics")?.body)
            let window = Array(scores.suffix(30))
            let expectedMAE = window.map(\.absoluteError).reduce(0, +) / 30
            let expectedNaive = window.map(\.naiveAbsoluteError).reduce(0, +) / 30
            let expectedRMSE = (window.map { $0.absoluteError * $0.absoluteError }.reduce(0, +) / 30).squareRoot()
            #expect(abs(try #require(sample(metrics, "candlecast_forecast_rolling_mae_usd")) - expectedMAE) < 1e-6)
            #expect(abs(try #require(sample(metrics, "candlecast_forecast_rolling_rmse_usd")) - expectedRMSE) < 1e-6)
            #expect(abs(try #require(sample(metrics, "candlecast_forecast_rolling_mase")) - expectedMAE / expectedNaive) < 1e-9)
            #expect(sample(metrics, "candlecast_forecast_rolling_window_forecasts") == 30)
            // Coverage, Winkler and Brier over the full window of 60, as the scores report them.
            #expect(sample(metrics, "candlecast_forecast_coverage_window_forecasts") == 60)
            var expectedCoverage: [String: Double] = [:]
            for (index, level) in IntervalLevels.all.enumerated() {
                let name = String(level)
                let results = scores.compactMap { $0.intervals?[index] }
                #expect(results.count == 60)
                let coverage = Double(results.filter(\.hit).count) / 60
                let naiveCoverage = Double(results.filter { $0.naiveHit == true }.count) / 60
                expectedCoverage[name] = coverage
                let winkler: Double = results.map(\.winkler).reduce(0, +) / 60
                let naiveWinkler: Double = results.compactMap(\.naiveWinkler).reduce(0, +) / 60
                let figures: [(String, Double)] = [
                    ("candlecast_forecast_rolling_coverage", coverage), ("candlecast_naive_rolling_coverage", naiveCoverage),
                    ("candlecast_forecast_rolling_winkler_usd", winkler), ("candlecast_naive_rolling_winkler_usd", naiveWinkler),
                ]
                for (metric, value) in figures {
                    let exported = try #require(sample(metrics, metric, labels: ["level=\"\(name)\""]), "\(metric) \(name)")
                    #expect(abs(exported - value) < 1e-6, "\(metric) \(name)")
                }
            }
            // Neither all hits nor none: the window's figures say something.
            #expect((expectedCoverage["0.8"] ?? 0) > 0.3 && (expectedCoverage["0.8"] ?? 1) < 1)
            let expectedBrier = scores.compactMap(\.brier).reduce(0, +) / 60
            #expect(abs(try #require(sample(metrics, "candlecast_forecast_rolling_brier")) - expectedBrier) < 1e-9)
            #expect(sample(metrics, "candlecast_naive_rolling_brier") == 0.25)
            #expect(sample(metrics, "candlecast_champion_version", labels: ["model=\"lstm-xbtusd-1d\""]) == Double(Self.modelVersion))
            #expect(sample(metrics, "candlecast_training_runs_total", labels: ["result=\"failed\""]) == 1)
            #expect(sample(metrics, "candlecast_training_run_duration_seconds_count") == 1)
            #expect(sample(metrics, "candlecast_events_total", labels: ["producer=\"ingestor\"", "type=\"candle.closed\""]) == 60)
            let lastClose = Int64(days.last!.time) + 86_400
            let age = try #require(sample(metrics, "candlecast_candle_age_seconds", labels: ["pair=\"XBTUSD\""]))
            #expect(abs(age - Double(Int64(Date().timeIntervalSince1970) - lastClose)) < 120)

            // promtool: no findings at all (its exit status is 0 and it prints nothing).
            let metricsFile = NSTemporaryDirectory() + "candlecast-monitor-metrics.txt"
            try metrics.write(toFile: metricsFile, atomically: true, encoding: .utf8)
            let findingsFile = metricsFile + ".findings"
            #expect(try await shell("/usr/bin/promtool check metrics < \(metricsFile) > \(findingsFile) 2>&1") == 0)
            #expect(try String(contentsOfFile: findingsFile, encoding: .utf8).isEmpty)

            // The dashboard through headless Chromium: the DOM it builds, and a screenshot kept for people.
            let url = "http://127.0.0.1:\(Self.port)/?pair=XBTUSD&interval=1d&days=90"
            let artifacts = TestEnvironment.repositoryRoot.appendingPathComponent(".local/artifacts").path
            try FileManager.default.createDirectory(atPath: artifacts, withIntermediateDirectories: true)
            let domFile = artifacts + "/monitor-dashboard.html"
            let screenshot = artifacts + "/monitor-dashboard.png"
            try? FileManager.default.removeItem(atPath: screenshot)
            let chromium = "chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --virtual-time-budget=2000"
            #expect(try await shell("\(chromium) --dump-dom '\(url)' > \(domFile) 2>/dev/null") == 0)
            #expect(try await shell("\(chromium) --window-size=1280,1900 --screenshot=\(screenshot) '\(url)' > /dev/null 2>&1") == 0)
            let dom = try String(contentsOfFile: domFile, encoding: .utf8)
            #expect(dom.matches(of: /class="forecast-point"/).count == 60)
            #expect(dom.matches(of: /class="error-bar model"/).count == 60)
            #expect(dom.contains("<span id=\"champion\">v\(Self.modelVersion)</span>"))
            // The 80 % and 95 % bands around the 60 forecasts (the wider drawn first), and the coverage card.
            let bands = dom.matches(of: /<polygon class="interval-band band-(\d+)"[^>]*data-forecasts="(\d+)" points="([^"]*)"/)
            #expect(bands.map { "\($0.1):\($0.2)" } == ["95:60", "80:60"])
            for band in bands { #expect(band.3.split(separator: " ").count == 120) }
            #expect(dom.matches(of: /class="swatch band-(80|95)"/).count == 2)
            for level in ["80", "95"] {
                let shown = String(format: "%.1f%%", (expectedCoverage[level == "80" ? "0.8" : "0.95"] ?? 0) * 100)
                #expect(dom.contains("<span id=\"coverage-\(level)\">\(shown)</span>"), "coverage card, \(level) %")
            }
            #expect(dom.contains("<span id=\"brier\">\(String(format: "%.3f", expectedBrier))</span>"))
            let pricePoints = try #require(dom.firstMatch(of: /class="price-line" points="([^"]*)"/)).1.split(separator: " ").count
            #expect(pricePoints == 91)
            #expect(dom.contains("The registry could not be reached"))
            #expect(FileManager.default.fileExists(atPath: screenshot))
            // The range's accuracy, as the page embeds it for scripts: the scores' own MASE.
            let accuracyJSON = try #require(dom.firstMatch(of: /<script type="application\/json" id="accuracy">([^<]*)<\/script>/)).1
            let accuracy = try #require(try JSONSerialization.jsonObject(with: Data(accuracyJSON.utf8)) as? [String: Any])
            #expect(accuracy["count"] as? Int == 60)
            let expectedMASE = scores.map(\.absoluteError).reduce(0, +) / scores.map(\.naiveAbsoluteError).reduce(0, +)
            #expect(abs(try #require(accuracy["mase"] as? Double) - expectedMASE) < 1e-9)
            #expect(dom.contains("<span id=\"mase\">\(String(format: "%.3f", expectedMASE))</span>"))

            // Every range: round price gridlines that hold the whole line, none below zero; date labels on
            // calendar boundaries; one money format (whole dollars for Bitcoin).
            for days in [30, 90, 365, 0] {
                let rangeFile = artifacts + "/monitor-dashboard-\(days).html"
                let rangeURL = "http://127.0.0.1:\(Self.port)/?pair=XBTUSD&interval=1d&days=\(days)"
                #expect(try await shell("\(chromium) --dump-dom '\(rangeURL)' > \(rangeFile) 2>/dev/null") == 0)
                try Self.checkAxes(of: try String(contentsOfFile: rangeFile, encoding: .utf8), days: days)
            }
            #expect(await httpGet("http://127.0.0.1:\(Self.port)/?pair=%3Cscript%3E")?.status == 400)
            // The shared range convention: RFC 3339 dates (to: the whole day) or timestamps; nothing else.
            let dashboard = "http://127.0.0.1:\(Self.port)/?pair=XBTUSD&interval=1d&"
            let december = try #require(await httpGet(dashboard + "from=2024-12-01&to=2024-12-31"))
            #expect(december.status == 200)
            #expect(december.body.matches(of: /class="forecast-point"/).count == 31)
            let byTime = try #require(await httpGet(dashboard + "from=2024-12-01T00:00:00Z&to=2024-12-31T01:00:00%2B01:00"))
            #expect(byTime.body.matches(of: /class="forecast-point"/).count == 31)
            for query in ["from=2024-12-31&to=2024-12-01", "from=1704153600", "to=2024-13-01", "days=-1", "days=abc"] {
                let refused = await httpGet(dashboard + query)
                #expect(refused?.status == 400 && refused?.body.contains("\"message\"") == true, "\(query): \(refused?.body ?? "-")")
            }
            let put = await httpRequest("PUT", "http://127.0.0.1:\(Self.port)/")
            #expect(put?.status == 405 && put?.headers["allow"] == "GET, HEAD, OPTIONS")

            monitor.signal(SIGTERM)
            #expect(try await monitor.waitForExit(timeout: .seconds(10)) == 0)
        } catch {
            Issue.record("monitor log:\n\(monitor.log.suffix(3000))")
            throw error
        }
        await publisher.close()
        await client.close()
        await database.drop()
    }

    /// The price chart's axes and the page's money, as issue 16 asks: see the comment where it is called.
    static func checkAxes(of dom: String, days: Int) throws {
        let chart = String(try #require(dom.firstMatch(of: /<svg id="price-chart"[\s\S]*?<\/svg>/), "range \(days)").0)
        let ticks = chart.matches(of: /class="axis-label value-tick" x="[^"]*" y="([^"]*)"[^>]*data-value="([^"]*)">([^<]*)</).map {
            (y: Double($0.1) ?? .nan, value: Double($0.2) ?? .nan, label: String($0.3))
        }
        #expect(ticks.count >= 3 && ticks.count <= 7, "range \(days): \(ticks.count) gridlines")
        let step = ticks.count > 1 ? ticks[1].value - ticks[0].value : 0
        let magnitude = pow(10, log10(step).rounded(.down))
        #expect([1, 2, 2.5, 5].contains { abs(step / magnitude - $0) < 1e-9 }, "range \(days): step \(step) is not round")
        for (index, tick) in ticks.enumerated() {
            #expect(tick.value >= 0, "range \(days): gridline at \(tick.label)")
            #expect(abs(tick.value - (ticks[0].value + Double(index) * step)) < 1e-6)
            #expect(abs(tick.value / step - (tick.value / step).rounded()) < 1e-6)
            #expect(tick.label.wholeMatch(of: /\$\d{1,3}(,\d{3})*/) != nil, "\(tick.label)")
            #expect(Double(tick.label.filter(\.isNumber)) == tick.value, "\(tick.label)")
        }
        let top = ticks.map(\.y).min() ?? 0
        let bottom = ticks.map(\.y).max() ?? 0
        let line = try #require(chart.firstMatch(of: /class="price-line" points="([^"]*)"/)).1
        let ys = line.split(separator: " ").compactMap { $0.split(separator: ",").last.flatMap { Double($0) } }
        #expect(!ys.isEmpty && ys.allSatisfy { $0 >= top - 0.1 && $0 <= bottom + 0.1 }, "range \(days): the line leaves the gridlines")

        let dates = chart.matches(of: /class="axis-label date-tick"[^>]*data-date="(\d{4})-(\d{2})-(\d{2})">([^<]*)</).map {
            (month: String($0.2), day: String($0.3), label: String($0.4))
        }
        // Two or three month starts in 90 days; more in the longer ranges, at most eight.
        #expect(dates.count >= (days == 90 ? 2 : 3) && dates.count <= 8, "range \(days): \(dates.map(\.label))")
        for date in dates {
            #expect((days == 30 ? ["01", "08", "15", "22"] : ["01"]).contains(date.day), "range \(days): \(date.label)")
            if days == 0 { #expect(date.month == "01" && date.label.wholeMatch(of: /\d{4}/) != nil, "\(date.label)") }
        }
        // One money format on the page: whole dollars with thousands separators, never negative prices.
        let amounts = dom.matches(of: /-?\$[0-9]+(?:[,.][0-9]+)*/).map { String($0.0) }
        #expect(!amounts.isEmpty)
        for amount in amounts { #expect(amount.wholeMatch(of: /\$\d{1,3}(,\d{3})*/) != nil, "range \(days): \(amount)") }
    }

    func message<Payload: MessagePayload>(_ payload: Payload) throws -> OutgoingMessage {
        let routingKey =
            switch payload {
            case let event as ForecastCreated: event.routingKey
            case let event as ForecastScored: event.routingKey
            case let event as CandleClosed: event.routingKey
            case let event as ModelPromoted: event.routingKey
            default: RoutingKey.trainingCompleted
            }
        return try EnvelopeCodec.encode(Envelope(payload: payload), exchange: Exchange.events, routingKey: routingKey)
    }

    func shell(_ command: String) async throws -> Int32 {
        try await TestEnvironment.run("/bin/sh", ["-c", command])
    }
}
