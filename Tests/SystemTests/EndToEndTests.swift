import CandlecastClient
import Foundation
import KrakenFake
import Messaging
import TestSupport
import Testing

/// The whole system as users run it: every service a separate process, a database and a virtual host of its
/// own, Kraken replaced by the fake server replaying 2024.
@Suite("End to end", .serialized)
struct EndToEndTests {
    static let ports = (ingestor: 18_581, preprocessor: 18_582, trainerA: 18_583, trainerB: 18_587, registry: 18_584, predictor: 18_585, monitor: 18_586, kraken: 18_599)
    static let data = TestEnvironment.sharedDataDirectory

    @Test("history to 2023, a sweep on two trainers, a champion, 2024 replayed: one forecast per closed candle, each scored, received by both subscribers, shown by the monitor")
    func wholeSystem() async throws {
        let clock = ContinuousClock(), started = clock.now
        let database = try await TestDatabase.create()
        let vhost = try await TestVirtualHost.create()
        let broker = try vhost.broker()
        let token = "e2e-\(UUID().uuidString)"
        let common = ["CANDLECAST_AMQP_URL": vhost.url, "CANDLECAST_DATABASE_URL": database.configuration.url, "CANDLECAST_REGISTRY_TOKEN": token]
        let registryURL = "http://127.0.0.1:\(Self.ports.registry)"
        let rows2024 = try FakeKraken.Row.load(csv: Self.data + "/kraken_XBTUSD_1440_2024.csv")

        var processes: [ServiceProcess] = []
        func launch(_ name: String, port: Int, arguments: [String] = [], _ extra: [String: String] = [:]) throws {
            processes.append(try ServiceProcess(name, arguments: arguments, environment: common.merging(extra) { $1 }.merging(["CANDLECAST_HTTP_PORT": "\(port)"]) { $1 }))
        }
        defer { processes.forEach { $0.kill() } }
        do {
            try launch("fake-kraken", port: 0, arguments: ["--port", "\(Self.ports.kraken)", "--replay", Self.data + "/kraken_XBTUSD_1440_2024.csv", "--closed", "0"])
            try launch("ingestor", port: Self.ports.ingestor, ["CANDLECAST_KRAKEN_URL": "http://127.0.0.1:\(Self.ports.kraken)", "CANDLECAST_KRAKEN_POLL_SECONDS": "1"])
            // One dataset version (so one sweep): none of the monthly versions the replay would otherwise cut.
            try launch("preprocessor", port: Self.ports.preprocessor, ["CANDLECAST_DATASET_EVERY": "1000"])
            try launch("trainer", port: Self.ports.trainerA, ["CANDLECAST_BLAS_THREADS": "1"])
            try launch("trainer", port: Self.ports.trainerB, ["CANDLECAST_BLAS_THREADS": "1"])
            // A small grid: two jobs, one per trainer, quick enough for CI in a debug build.
            try launch("registry", port: Self.ports.registry, ["CANDLECAST_SWEEP_GRID": #"{"units":[8],"epochs":[4],"batch_size":[32,64]}"#])
            try launch("predictor", port: Self.ports.predictor, ["CANDLECAST_REGISTRY_URL": registryURL])
            try launch("monitor", port: Self.ports.monitor, ["CANDLECAST_REGISTRY_URL": registryURL])
            for port in [Self.ports.ingestor, Self.ports.preprocessor, Self.ports.trainerA, Self.ports.trainerB, Self.ports.registry, Self.ports.predictor, Self.ports.monitor] {
                try await eventually(timeout: .seconds(30), "the service on \(port) ready") { await httpGet("http://127.0.0.1:\(port)/readyz")?.status == 200 }
            }

            // Both subscribers are in place before the first forecast: the Swift client and the pika example's queue.
            let client = try ForecastSubscriber(broker: broker, options: .init(queue: "e2e.client", pair: "XBTUSD"), logger: TestEnvironment.logger)
            try await BrokerAdmin.declare(
                Topology(
                    exchanges: [Topology.Exchange(name: Exchange.events, kind: .topic)], queues: [Topology.Queue(name: "e2e.pika")],
                    bindings: [Topology.Binding(queue: "e2e.pika", exchange: Exchange.events, routingKey: "forecast.created.xbtusd.*")]),
                configuration: broker)
            let received = SharedList<ForecastCreated>()
            let clientTask = Task { await client.forecasts { received.append($0) } }

            let backfill = try ServiceProcess(
                "ingestor", arguments: ["backfill", Self.data + "/kraken_XBTUSD_1440.csv", "--pair", "XBTUSD", "--interval", "1d"], environment: common)
            #expect(try await backfill.waitForExit(timeout: .seconds(180)) == 0, "backfill: \(backfill.log.suffix(1000))")

            // The backfill makes dataset version 1, which starts a sweep; both trainers take a job.
            try await eventually(timeout: .seconds(900), "two finished training runs") {
                let runs = await getJSON(registryURL + "/v1/runs") as? [[String: Any]] ?? []
                return runs.count == 2 && runs.allSatisfy { ["finished", "failed"].contains($0["status"] as? String) }
            }
            let runs = await getJSON(registryURL + "/v1/runs") as? [[String: Any]] ?? []
            #expect(runs.allSatisfy { $0["status"] as? String == "finished" })
            #expect(Set(runs.compactMap { $0["trainer"] as? String }).count == 2, "each trainer took a job: \(runs.map { $0["trainer"] ?? "-" })")
            let sweepID = try #require(runs.first?["sweep_id"] as? String)
            try await eventually(timeout: .seconds(30), "the gate's decision") {
                (await getJSON(registryURL + "/v1/sweeps/\(sweepID)") as? [String: Any])?["decision"] is [String: Any]
            }
            let decision = (await getJSON(registryURL + "/v1/sweeps/\(sweepID)") as? [String: Any])?["decision"] as? [String: Any] ?? [:]
            let reason = try #require(decision["reason"] as? String)
            #expect(!reason.isEmpty)
            if decision["promoted"] as? Bool != true {
                // The gate's refusal is recorded; promote the best challenger by hand, as an operator would.
                let versions = try #require(await getJSON(registryURL + "/v1/models/lstm-xbtusd-1d/versions") as? [[String: Any]])
                let best = try #require(versions.min { (($0["test_metrics"] as? [String: Any])?["mase"] as? Double ?? .infinity) < (($1["test_metrics"] as? [String: Any])?["mase"] as? Double ?? .infinity) })
                let promoted = await httpRequest(
                    "POST", registryURL + "/v1/models/lstm-xbtusd-1d/promote", headers: ["Authorization": "Bearer \(token)", "Content-Type": "application/json"],
                    body: try JSONSerialization.data(withJSONObject: ["version": best["version"] ?? 0, "reason": "end-to-end test: gate refused (\(reason))"]))
                #expect(promoted?.status == 200)
            }
            try await eventually(timeout: .seconds(60), "the forecast of the parked window") { received.values.count >= 1 }
            let firstForecastAt = clock.now

            // 2024, one candle at a time as fast as the ingestor polls (every second).
            for _ in rows2024 {
                _ = await httpRequest("POST", "http://127.0.0.1:\(Self.ports.kraken)/control/tick?count=1")
                try await Task.sleep(for: .milliseconds(25))
            }
            let expectedTargets = Set([rows2024[0].time] + rows2024.map { $0.time + 86_400 })
            try await eventually(timeout: .seconds(300), "\(expectedTargets.count) forecasts at the Swift client") { Set(received.values.map(\.targetOpenTime)).count == expectedTargets.count }
            let replayed = clock.now, beforeReplay = firstForecastAt
            try await Task.sleep(for: .seconds(1))
            let forecasts = received.values
            #expect(Set(forecasts.map(\.targetOpenTime)) == expectedTargets)
            #expect(forecasts.count == expectedTargets.count, "one forecast per target and model version, no duplicates")
            #expect(Set(forecasts.map(\.modelVersion)).count == 1)

            let pikaLines = try await PikaExample.run(queue: "e2e.pika", pair: "xbtusd", count: expectedTargets.count, url: vhost.url)
            let pikaTargets = Set(pikaLines.compactMap { (try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])?["target_open_time"] as? Int64 })
            #expect(pikaLines.count == expectedTargets.count && pikaTargets == expectedTargets)

            // Every forecast of a 2024 candle is scored against the CSV's close; 2025-01-01 is not yet.
            let closes = Dictionary(uniqueKeysWithValues: rows2024.map { ($0.time, Double($0.close)!) })
            try await eventually(timeout: .seconds(60), "366 scored forecasts") {
                let rows = await getJSON("http://127.0.0.1:\(Self.ports.predictor)/v1/forecasts?pair=XBTUSD&interval=1d&from=\(rows2024[0].time)&limit=1000") as? [[String: Any]] ?? []
                return rows.filter { $0["actual_close"] as? Double != nil }.count == 366
            }
            let stored = try #require(await getJSON("http://127.0.0.1:\(Self.ports.predictor)/v1/forecasts?pair=XBTUSD&interval=1d&from=\(rows2024[0].time)&limit=1000") as? [[String: Any]])
            #expect(stored.count == expectedTargets.count)
            for row in stored {
                let target = try #require(row["target_open_time"] as? Int64)
                let predicted = try #require(row["predicted_close"] as? Double), last = try #require(row["last_close"] as? Double)
                if let actual = closes[target] {
                    #expect(row["actual_close"] as? Double == actual)
                    #expect(abs((row["absolute_error"] as? Double ?? -1) - abs(predicted - actual)) < 1e-6)
                    #expect(abs((row["naive_absolute_error"] as? Double ?? -1) - abs(last - actual)) < 1e-6)
                } else {
                    #expect(row["actual_close"] is NSNull, "\(target) has no actual candle yet")
                }
            }

            // The monitor saw them all; its dashboard draws them.
            try await eventually(timeout: .seconds(30), "the monitor's counts") {
                let metrics = await httpGet("http://127.0.0.1:\(Self.ports.monitor)/metrics")?.body ?? ""
                return sample(metrics, "candlecast_forecast_absolute_error_usd_count") == 366
                    && sample(metrics, "candlecast_monitor_forecasts_received_total") == Double(expectedTargets.count)
            }
            let page = try #require(await httpGet("http://127.0.0.1:\(Self.ports.monitor)/?pair=XBTUSD&interval=1d&days=0"))
            #expect(page.body.matches(of: /class="forecast-point/).count == expectedTargets.count)
            #expect(page.body.matches(of: /class="error-bar model"/).count == 366)

            let timings = "first forecast \(firstForecastAt - started) after the start (backfill, sweep and promotion included), 366 candles replayed and forecast in \(replayed - beforeReplay)"
            print("end-to-end: \(timings)")
            await client.stop()
            await clientTask.value
            for process in processes.reversed() { process.signal(SIGTERM) }
            for process in processes {
                #expect(try await process.waitForExit(timeout: .seconds(15)) == 0, "\(process.name) did not stop cleanly: \(process.log.suffix(800))")
            }
        } catch {
            for process in processes { Issue.record("\(process.name) log:\n\(process.log.suffix(1500))") }
            throw error
        }
        await vhost.delete()
        await database.drop()
    }
}

/// The JSON a GET answers, or nil.
func getJSON(_ url: String) async -> Any? {
    guard let body = await httpGet(url)?.body else { return nil }
    return try? JSONSerialization.jsonObject(with: Data(body.utf8))
}

/// The sum of every sample of `name` (all label sets).
func sample(_ exposition: String, _ name: String) -> Double? {
    let values = exposition.split(separator: "\n").filter { $0.hasPrefix(name + "{") || $0.hasPrefix(name + " ") }.compactMap { $0.split(separator: " ").last.flatMap { Double($0) } }
    return values.isEmpty ? nil : values.reduce(0, +)
}
