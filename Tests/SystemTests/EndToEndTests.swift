import CandlecastClient
import Foundation
import Messaging
import TestSupport
import Testing

@Suite("End to end", .serialized)
struct EndToEndTests {
    @Test(
        """
        history to 2023, a sweep on two trainers, a champion, 2024 replayed: one forecast per closed candle, each scored, received by both \
        subscribers, shown by the monitor
        """
    )
    func wholeSystem() async throws {
        let clock = ContinuousClock()
        let started = clock.now
        let system = try await SystemHarness(basePort: 18_580, baselines: "naive-empirical")
        try await system.run {
            try await system.startAll()
            // Both subscribers are in place before the first forecast: the Swift client and the pika example's queue.
            let client = try ForecastSubscriber(
                broker: system.broker, options: .init(queue: "e2e.client", pair: "XBTUSD"), logger: TestEnvironment.logger)
            try await BrokerAdmin.declare(
                Topology(
                    exchanges: [Topology.Exchange(name: Exchange.events, kind: .topic)], queues: [Topology.Queue(name: "e2e.pika")],
                    bindings: [Topology.Binding(queue: "e2e.pika", exchange: Exchange.events, routingKey: "forecast.created.xbtusd.*")]),
                configuration: system.broker)
            let received = SharedList<ForecastCreated>()
            let clientTask = Task { await client.forecasts { received.append($0) } }

            // The backfill makes dataset version 1, which starts a sweep (2 LSTM grid points and the naive baseline); both
            // trainers take a job.
            try await system.backfillHistory()
            try await system.waitForRuns(3)
            let runs = await system.runs()
            #expect(runs.allSatisfy { $0["status"] as? String == "finished" })
            #expect(
                Set(runs.compactMap { $0["trainer"] as? String }).count == 2,
                "each trainer took a job: \(runs.map { $0["trainer"] ?? "-" })")
            let decision = try await system.ensureChampion(sweepID: try #require(runs.first?["sweep_id"] as? String))
            #expect(!(decision["reason"] as? String ?? "").isEmpty, "the gate records why")
            try await eventually(timeout: .seconds(60), "the forecast of the window parked before the champion") {
                received.values.count >= 1
            }
            let firstForecastAt = clock.now

            // The CLI tails forecasts too.
            let tail = try system.cli(["forecasts", "tail", "--count", "0", "--exit-after", "2", "--json"])
            try await Task.sleep(for: .seconds(1))

            // 2024, one candle at a time as fast as the ingestor polls (every second).
            try await system.tick(system.rows2024.count)
            let expected = system.expectedTargets
            try await eventually(timeout: .seconds(300), "\(expected.count) forecasts at the Swift client") {
                Set(received.values.map(\.targetOpenTime)).count == expected.count
            }
            let replayed = clock.now
            try await Task.sleep(for: .seconds(1))
            let forecasts = received.values
            #expect(Set(forecasts.map(\.targetOpenTime)) == expected)
            #expect(forecasts.count == expected.count, "one forecast per target and model version, none twice")
            #expect(Set(forecasts.map(\.modelVersion)).count == 1)
            // Whichever candidate the gate chose, every forecast carries its 80 % and 95 % ranges and P(up).
            #expect(
                forecasts.allSatisfy { $0.intervals?.map(\.level) == [0.8, 0.95] && $0.probabilityUp != nil },
                "\(forecasts.prefix(2))")

            let pikaLines = try await PikaExample.run(queue: "e2e.pika", pair: "xbtusd", count: expected.count, url: system.vhost.url)
            let pikaTargets = Set(
                pikaLines.compactMap {
                    (try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])?["target_open_time"] as? Int64
                })
            #expect(pikaLines.count == expected.count && pikaTargets == expected)

            // Every forecast of a 2024 candle is scored against the CSV's close; 2025-01-01 is not yet.
            let closes = Dictionary(uniqueKeysWithValues: system.rows2024.map { ($0.time, Double($0.close)!) })
            try await eventually(timeout: .seconds(60), "366 scored forecasts") {
                try await system.storedForecasts().filter { $0.actual != nil }.count == 366
            }
            let history = try #require(
                await getJSON(system.predictorURL + "/v1/forecasts?pair=XBTUSD&interval=1d&from=2024-01-01&limit=1000") as? [[String: Any]])
            #expect(history.count == expected.count)
            for row in history {
                // RFC 3339 UTC, as every API writes times (docs/predictor-openapi.yaml).
                let target = Int64(
                    try #require((row["target_open_time"] as? String).flatMap { try? Date($0, strategy: .iso8601) }).timeIntervalSince1970)
                let predicted = try #require(row["predicted_close"] as? Double)
                let last = try #require(row["last_close"] as? Double)
                if let actual = closes[target] {
                    #expect(row["actual_close"] as? Double == actual)
                    #expect(abs((row["absolute_error"] as? Double ?? -1) - abs(predicted - actual)) < 1e-6)
                    #expect(abs((row["naive_absolute_error"] as? Double ?? -1) - abs(last - actual)) < 1e-6)
                } else {
                    #expect(row["actual_close"] == nil, "\(target) has no actual candle yet")
                }
            }

            // The monitor saw them all; its dashboard draws them.
            try await eventually(timeout: .seconds(30), "the monitor's counts") {
                let metrics = await httpGet(system.monitorURL + "/metrics")?.body ?? ""
                return sample(metrics, "candlecast_forecast_absolute_error_usd_count") == 366
                    && sample(metrics, "candlecast_monitor_forecasts_received_total") == Double(expected.count)
            }
            let page = try #require(await httpGet(system.monitorURL + "/?pair=XBTUSD&interval=1d&days=0"))
            #expect(page.body.matches(of: /class="forecast-point/).count == expected.count)
            #expect(page.body.matches(of: /class="error-bar model"/).count == 366)

            // The admin CLI against the running system: answers, and errors with their exit codes.
            #expect(try await tail.waitForExit(timeout: .seconds(30)) == 0)
            #expect(
                tail.log.split(separator: "\n").filter { $0.hasPrefix("{") && $0.contains("\"predicted_close\"") }.count == 2, "\(tail.log)"
            )
            let status = try await system.runCLI(["status"])
            #expect(status.code == 0 && status.output.components(separatedBy: " ready").count - 1 == 7, "\(status.output)")
            #expect(status.output.contains("latest forecast: XBTUSD 1d close of 2025-01-01"))
            let models = try await system.runCLI(["models", "show"])
            #expect(models.code == 0 && models.output.contains("champion"), "\(models.output)")
            #expect(try await system.runCLI(["models", "list"]).output.contains(SystemHarness.modelName))
            let runList = try await system.runCLI(["runs", "list"])
            #expect(runList.code == 0 && runList.output.split(separator: "\n").count == 4, "\(runList.output)")
            #expect(try await system.runCLI(["runs", "show", "1"]).output.contains("finished"))
            let sweep = try await system.runCLI(["sweep", "--grid", #"{"units":[4],"epochs":[1]}"#])
            #expect(sweep.code == 0 && sweep.output.contains("2 jobs"), "one grid point and the baseline: \(sweep.output)")
            try await system.waitForRuns(5)
            let missing = try await system.runCLI(["models", "promote", "99"])
            #expect(missing.code == 1 && missing.output.contains("candlecast: POST"), "\(missing.output)")
            let wrongToken = try await system.runCLI(["models", "rollback"], ["CANDLECAST_REGISTRY_TOKEN": "wrong"])
            #expect(wrongToken.code == 1 && wrongToken.output.contains("401"), "\(wrongToken.output)")
            let unreachable = try await system.runCLI(["runs", "list"], ["CANDLECAST_REGISTRY_URL": "http://127.0.0.1:9"])
            #expect(unreachable.code == 2 && unreachable.output.contains("cannot reach"), "\(unreachable.output)")
            #expect(try await system.runCLI(["models", "promote", "not-a-number"]).code == 64)

            print(
                """
                end-to-end: first forecast \(firstForecastAt - started) after the start (backfill, sweep and promotion included); 366 \
                candles replayed and forecast in \(replayed - firstForecastAt)
                """
            )
            await client.stop()
            await clientTask.value
            for (role, status) in try await system.stopAll() { #expect(status == 0, "\(role) did not stop cleanly") }
        }
    }
}
