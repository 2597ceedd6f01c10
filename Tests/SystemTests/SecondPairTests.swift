import CandlecastClient
import Foundation
import KrakenFake
import Messaging
import Storage
import TestSupport
import Testing

/// A pair added to a running system with one command (`candlecast pairs add`) goes the whole way on its own,
/// while the first pair's replay and retraining go on beside it.
@Suite("A second pair", .serialized)
struct SecondPairTests {
    static let recording = SystemHarness.data + "/kraken_fixtures/OHLC_XXBTZEUR_interval1440_2020-07-15.json"

    @Test(
        """
        XBTEUR added mid-replay by `candlecast pairs add`: its own dataset version, sweep, champion, forecasts, dashboard series \
        and routing key; XBTUSD's 367 forecasts unaffected
        """
    )
    func secondPairEndToEnd() async throws {
        // Kraken's recorded XBTEUR daily body (real data, 2018-07-27 .. 2020-07-14 closed): all but the last 20 days
        // are there when the pair is added, those 20 close one by one afterwards.
        let euro = try FakeKraken.Row.load(krakenBody: Self.recording).rows
        let later = 20
        let addedAt = euro.count - later
        // A dataset version every 30 candles and jobs of about a second each: XBTUSD keeps both trainers busy
        // retraining during the replay, as a busy system does, and the new pair's sweep has to get through.
        let system = try await SystemHarness(
            basePort: 19_280, sweepGrid: #"{"units":[16],"epochs":[30],"patience":[30],"batch_size":[32,64]}"#, datasetEvery: 30,
            baselines: "naive-empirical")
        try await system.run {
            try await system.startAll(krakenArguments: [
                "--fixtures", SystemHarness.data + "/kraken_fixtures", "--replay-recording", Self.recording,
                "--recording-closed", "\(addedAt)",
            ])
            let euroClient = try ForecastSubscriber(
                broker: system.broker, options: .init(queue: "pair2.eur", pair: "XBTEUR"), logger: TestEnvironment.logger)
            let dollarClient = try ForecastSubscriber(
                broker: system.broker, options: .init(queue: "pair2.usd", pair: "XBTUSD"), logger: TestEnvironment.logger)
            let euroForecasts = SharedList<ForecastCreated>()
            let dollarForecasts = SharedList<ForecastCreated>()
            let euroTask = Task { await euroClient.forecasts { euroForecasts.append($0) } }
            let dollarTask = Task { await dollarClient.forecasts { dollarForecasts.append($0) } }

            try await system.backfillHistory()
            try await eventually(timeout: .seconds(300), "XBTUSD's first champion") {
                try await system.champion("lstm-xbtusd-1d") != nil
            }
            // A third of 2024, then the pair is added while the rest of the replay goes on.
            try await system.tick(120, pause: .milliseconds(250), pair: "XBTUSD")
            let replay = Task { try await system.tick(system.rows2024.count - 120, pause: .milliseconds(250), pair: "XBTUSD") }

            let unknown = try await system.runCLI(["pairs", "add", "NOSUCHPAIR"])
            #expect(unknown.code == 1 && unknown.output.contains("Kraken refuses NOSUCHPAIR 1d"), "\(unknown.output)")
            let queuedAhead = try await system.count("SELECT count(*) FROM registry.runs WHERE status IN ('queued', 'running')")
            let adding = Date()
            let added = try await system.runCLI(["pairs", "add", "XBTEUR"])
            try #require(added.code == 0, "\(added.output)")
            #expect(added.output.contains("XBTEUR 1d: \(addedAt) new and 0 revised candles from Kraken's REST API"), "\(added.output)")
            #expect(added.output.contains("XBTEUR 1d is tracked"), "\(added.output)")
            #expect(try await system.runCLI(["pairs", "add", "XBTEUR"]).output.contains("XBTEUR 1d was tracked already"))

            // One dataset version from the added history (one candle.backfilled event, not one per candle), one sweep.
            try await eventually(timeout: .seconds(600), "XBTEUR's champion") { try await system.champion("lstm-xbteur-1d") != nil }
            let decidedAt = try await system.client.query(
                "SELECT extract(epoch FROM decided_at)::float8 FROM registry.sweeps WHERE model_name = 'lstm-xbteur-1d'"
            ).first?.decode(0, as: Double?.self)
            let decided = (decidedAt ?? .nan) - adding.timeIntervalSince1970
            let euroRuns = try await system.count(
                "SELECT count(*) FROM registry.runs r JOIN registry.sweeps s ON s.id = r.sweep_id WHERE s.model_name = 'lstm-xbteur-1d'")
            let euroVersions = try await system.count("SELECT count(*) FROM features.dataset_versions WHERE pair = 'XBTEUR'")
            #expect(euroVersions == 1)
            #expect(try await system.count("SELECT count(*) FROM registry.sweeps WHERE model_name = 'lstm-xbteur-1d'") == 1)
            #expect(try await system.count("SELECT count(*) FROM registry.promotion_decisions WHERE model_name = 'lstm-xbteur-1d'") == 1)
            let champion = try #require(try await system.champion("lstm-xbteur-1d"))

            // Its last closed day's window was waiting for a champion; the 20 later days are polled as they close.
            try await system.tick(later, pause: .milliseconds(1200), pair: "XBTEUR")
            let euroTargets = Set(euro[(addedAt - 1)...].map { $0.time + 86_400 })
            try await eventually(timeout: .seconds(120), "\(euroTargets.count) XBTEUR forecasts at the subscriber") {
                Set(euroForecasts.values.map(\.targetOpenTime)) == euroTargets
            }
            try await replay.value
            try await eventually(timeout: .seconds(300), "\(system.expectedTargets.count) XBTUSD forecasts at the subscriber") {
                Set(dollarForecasts.values.map(\.targetOpenTime)) == system.expectedTargets
            }
            try await Task.sleep(for: .seconds(2))

            // Each subscriber got its own pair only, each target once per model version.
            #expect(euroForecasts.values.allSatisfy { $0.pair == "XBTEUR" && $0.modelName == "lstm-xbteur-1d" })
            #expect(dollarForecasts.values.allSatisfy { $0.pair == "XBTUSD" && $0.modelName == "lstm-xbtusd-1d" })
            #expect(euroForecasts.values.allSatisfy { $0.modelVersion == champion })
            #expect(euroForecasts.values.allSatisfy { $0.intervals?.count == 2 && $0.probabilityUp != nil })
            let dollarKeys = dollarForecasts.values.map { "\($0.targetOpenTime)/\($0.modelVersion)" }
            #expect(Set(dollarKeys).count == dollarKeys.count, "no XBTUSD forecast twice")
            let stored = try await system.storedForecasts()
            #expect(Set(stored.map(\.target)) == system.expectedTargets)
            #expect(stored.filter { $0.actual != nil }.count >= 366, "every 2024 XBTUSD forecast scored")
            let storedEuro = try await system.storedForecasts(pair: "XBTEUR", from: euro[0].time)
            #expect(Set(storedEuro.map(\.target)) == euroTargets && storedEuro.count == euroTargets.count)
            #expect(storedEuro.filter { $0.actual != nil }.count == later, "the 20 later XBTEUR days scored")

            // Its own dashboard series, in euros; XBTUSD's is unchanged.
            let euroPage = try #require(await httpGet(system.monitorURL + "/?pair=XBTEUR&interval=1d&days=0"))
            #expect(euroPage.status == 200)
            #expect(euroPage.body.matches(of: /class="forecast-point/).count == euroTargets.count)
            #expect(euroPage.body.contains("€") && !euroPage.body.contains(">$"), "prices in euros")
            let dollarPage = try #require(await httpGet(system.monitorURL + "/?pair=XBTUSD&interval=1d&days=0"))
            #expect(dollarPage.body.matches(of: /class="forecast-point/).count == Set(stored.map(\.target)).count)
            let metrics = await httpGet(system.monitorURL + "/metrics")?.body ?? ""
            #expect(sample(metrics, "candlecast_monitor_forecasts_received_total", labels: [#"pair="XBTEUR""#]) != nil, "per-pair series")

            let list = try await system.runCLI(["pairs", "list"])
            #expect(
                list.code == 0 && list.output.contains("XBTEUR 1d  \(euro.count) candles") && list.output.contains("XBTUSD 1d"),
                "\(list.output)")
            let latest = try await system.runCLI(["forecasts", "latest", "--pair", "XBTEUR"])
            #expect(latest.code == 0 && latest.output.contains(" EUR, "), "\(latest.output)")
            let removed = try await system.runCLI(["pairs", "remove", "XBTEUR"])
            #expect(removed.code == 0 && removed.output.contains("no longer tracked"), "\(removed.output)")

            print(
                """
                second pair | XBTEUR added by `candlecast pairs add` during XBTUSD's 2024 replay (a dataset version every 30 candles) \
                | \(addedAt) candles from Kraken's REST body as one backfill: 1 dataset version, 1 sweep of \(euroRuns) jobs queued \
                behind \(queuedAhead) XBTUSD runs, decided \(String(format: "%.1f", decided)) s after the command, champion \
                v\(champion) | \(euroTargets.count) XBTEUR forecasts (\(later) scored), \
                \(Set(stored.map(\.target)).count) XBTUSD forecasts, none twice, each subscriber only its pair
                """
            )
            await euroClient.stop()
            await dollarClient.stop()
            await euroTask.value
            await dollarTask.value
        }
    }
}

extension SystemHarness {
    /// The version the champion alias of `model` points at, if any.
    func champion(_ model: String) async throws -> Int? {
        try await client.query("SELECT version FROM registry.aliases WHERE model_name = \(model) AND alias = 'champion'").first?.decode(
            0, as: Int.self)
    }

    func count(_ query: PostgresQuery) async throws -> Int {
        try await client.query(query).first?.decode(0, as: Int.self) ?? 0
    }
}
