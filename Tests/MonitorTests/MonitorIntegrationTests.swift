import Contracts
import Foundation
@testable import Ingestor
import KrakenFake
import Messaging
import ServiceKit
import Storage
import TestSupport
import Testing

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
            "monitor", environment: ["CANDLECAST_HTTP_PORT": "\(Self.port)", "CANDLECAST_DATABASE_URL": database.configuration.url,
                                     "CANDLECAST_MONITOR_REFRESH_SECONDS": "1", "CANDLECAST_REGISTRY_URL": "http://127.0.0.1:9"])
        let publisher = try Publisher(configuration: broker, options: Publisher.Options(topology: ServiceName.monitor.topology), logger: TestEnvironment.logger)
        defer { monitor.kill() }
        do {
            try await eventually(timeout: .seconds(20), "the monitor ready") { await httpGet("http://127.0.0.1:\(Self.port)/readyz")?.status == 200 }

            // The last 60 days of 2024: a forecast from the day before, the candle, and the score the predictor would send.
            let rows = try FakeKraken.Row.load(csv: TestEnvironment.sharedDataDirectory + "/kraken_XBTUSD_1440_2024.csv")
            let days = Array(rows.suffix(61))
            var scores: [ForecastScored] = []
            var messages: [OutgoingMessage] = [try message(ModelPromoted(
                modelName: "lstm-xbtusd-1d", alias: "champion", version: Self.modelVersion, previousVersion: nil, reason: "test promotion",
                pair: "XBTUSD", interval: .oneDay, datasetVersion: 1, artifactCRC32: 1))]
            for (index, day) in days.enumerated().dropFirst() {
                let lastClose = try #require(Double(days[index - 1].close)), actual = try #require(Double(day.close))
                let predicted = lastClose * (1 + 0.02 * sin(Double(index)))
                let forecast = ForecastCreated(
                    pair: "XBTUSD", interval: .oneDay, targetOpenTime: day.time, predictedClose: predicted, lastClose: lastClose,
                    modelName: "lstm-xbtusd-1d", modelVersion: Self.modelVersion, datasetVersion: 1, producedAt: Date(), stale: false)
                let score = ForecastScored(
                    pair: "XBTUSD", interval: .oneDay, targetOpenTime: day.time, modelName: "lstm-xbtusd-1d", modelVersion: Self.modelVersion,
                    predictedClose: predicted, actualClose: actual, error: predicted - actual, absoluteError: abs(predicted - actual),
                    percentageError: abs(predicted - actual) / actual * 100, naiveAbsoluteError: abs(lastClose - actual))
                scores.append(score)
                messages += [try message(forecast), try message(CandleClosed(
                    pair: "XBTUSD", interval: .oneDay, openTime: day.time, open: day.open, high: day.high, low: day.low, close: day.close,
                    volume: day.volume, trades: day.trades, revision: 0)), try message(score)]
            }
            // Redeliveries of the last ten scores must not be counted twice.
            messages += try scores.suffix(10).map(message)
            messages.append(try message(TrainingCompleted(
                jobID: UUID(), sweepID: UUID(), trainer: "test", succeeded: false, error: "out of memory", epochsRun: 3, bestEpoch: 2,
                validationLoss: nil, trainSeconds: 42, test: nil, naive: nil, artifact: nil, artifactCRC32: nil)))
            // A poison message on the metrics queue: dead-lettered, visible in the monitor's dead-letter gauge.
            messages.append(OutgoingMessage(
                exchange: Exchange.events, routingKey: "metric.predictor.forecast_scored", body: Array("{not json".utf8),
                properties: MessageProperties(contentType: "application/json", type: ForecastScored.messageType, headers: [schemaVersionHeader: .int(1)])))
            try await publisher.publish(contentsOf: messages)

            try await eventually(timeout: .seconds(30), "60 scored forecasts in the monitor's metrics") {
                let metrics = await httpGet("http://127.0.0.1:\(Self.port)/metrics")?.body ?? ""
                return sample(metrics, "candlecast_forecast_absolute_error_usd_count") == 60
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
            let domFile = artifacts + "/monitor-dashboard.html", screenshot = artifacts + "/monitor-dashboard.png"
            try? FileManager.default.removeItem(atPath: screenshot)
            let chromium = "chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --virtual-time-budget=2000"
            #expect(try await shell("\(chromium) --dump-dom '\(url)' > \(domFile) 2>/dev/null") == 0)
            #expect(try await shell("\(chromium) --window-size=1280,1900 --screenshot=\(screenshot) '\(url)' > /dev/null 2>&1") == 0)
            let dom = try String(contentsOfFile: domFile, encoding: .utf8)
            #expect(dom.matches(of: /class="forecast-point"/).count == 60)
            #expect(dom.matches(of: /class="error-bar model"/).count == 60)
            #expect(dom.contains("<span id=\"champion\">v\(Self.modelVersion)</span>"))
            let pricePoints = try #require(dom.firstMatch(of: /class="price-line" points="([^"]*)"/)).1.split(separator: " ").count
            #expect(pricePoints == 91)
            #expect(dom.contains("The registry could not be reached"))
            #expect(FileManager.default.fileExists(atPath: screenshot))
            #expect(await httpGet("http://127.0.0.1:\(Self.port)/?pair=%3Cscript%3E")?.status == 400)

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

    private func message<Payload: MessagePayload>(_ payload: Payload) throws -> OutgoingMessage {
        let routingKey = switch payload {
        case let event as ForecastCreated: event.routingKey
        case let event as ForecastScored: event.routingKey
        case let event as CandleClosed: event.routingKey
        case let event as ModelPromoted: event.routingKey
        default: RoutingKey.trainingCompleted
        }
        return try EnvelopeCodec.encode(Envelope(payload: payload), exchange: Exchange.events, routingKey: routingKey)
    }

    private func shell(_ command: String) async throws -> Int32 {
        try await TestEnvironment.run("/bin/sh", ["-c", command])
    }
}
