import Contracts
import Forecasting
import Foundation
import Hummingbird
import KrakenFake
import Logging
import Messaging
import PredictorAPI
import ServiceKit
import Storage
import TestSupport
import Testing

@testable import Ingestor
@testable import Predictor
@testable import Preprocessor
@testable import Registry

let dataDirectory = TestEnvironment.sharedDataDirectory

/// History to 2023 with dataset version 1, a registry API on loopback with trained model versions, and a predictor.
final class ForecastingStack: Sendable {
    let database: TestDatabase
    let client: PostgresClient
    let registry: RegistryStore
    let server: Task<Void, Never>
    let port: Int
    let predictor: Predictor
    /// The stack's one HTTP client (the predictor's to the registry), shut down in `tearDown`.
    let http = OutgoingHTTP()
    let preprocessing = Preprocessing(policy: DatasetPolicy())
    let rows2024: [FakeKraken.Row]

    init(port: Int) async throws {
        database = try await TestDatabase.create()
        client = database.client(connections: 3)
        for plan in [IngestSchema.migrations, FeaturesSchema.migrations, RegistrySchema.migrations, PredictionsSchema.migrations] {
            try await client.migrate(plan, logger: TestEnvironment.logger)
        }
        _ = try await HistoryBackfill(database: client, logger: TestEnvironment.logger).run(
            path: dataDirectory + "/kraken_XBTUSD_1440.csv", pair: "XBTUSD", interval: .oneDay)
        let preprocessing = self.preprocessing
        _ = try await client.transaction { try preprocessing.currentVersion(pair: "XBTUSD", interval: .oneDay, on: $0) }
        registry = RegistryStore(maximumMASE: 100)
        self.port = port
        let router = Router()
        let settings = try RegistrySettings(EnvironmentReader([:]))
        try RegistryHandlers(database: client, store: registry, settings: settings, logger: TestEnvironment.logger).add(to: router)
        let app = Application(router: router, configuration: ApplicationConfiguration(address: .hostname("127.0.0.1", port: port)))
        server = Task { try? await app.run() }
        predictor = Predictor(
            predictions: Predictions(maximumModelAge: .seconds(30 * 86_400)),
            source: RegistryModelSource(baseURL: URL(string: "http://127.0.0.1:\(port)")!, http: http), models: ModelHolder(),
            latest: LatestForecasts(),
            database: client, logger: TestEnvironment.logger)
        rows2024 = try FakeKraken.Row.load(csv: dataDirectory + "/kraken_XBTUSD_1440_2024.csv")
        try await eventually("the registry API") { await httpGet("http://127.0.0.1:\(port)/v1/models") != nil }
    }

    /// Trains a tiny model in-process and registers it through the registry's own path (a one-job sweep).
    func registerModel(seed: UInt64) async throws -> Int {
        var grid = SweepGrid()
        grid.units = [4]
        grid.epochs = [2]
        grid.seed = [seed]
        let store = registry
        let sweepGrid = grid
        let (sweep, jobs) = try #require(
            try await client.transaction {
                try store.startSweep(pair: "XBTUSD", interval: .oneDay, datasetVersion: 1, grid: sweepGrid, trigger: "test-\(seed)", on: $0)
            })
        let job = jobs[0]
        let closes = try await client.query("SELECT closes::float8[] FROM features.dataset_versions WHERE version = 1")[0]
            .decode(0, as: PostgresDoubleArray.self).values
        var training = TrainingConfiguration()
        training.epochs = 2
        training.seed = seed
        training.blasThreads = 1
        let model = try Trainer(model: .btcDailyV1(units: 4, target: .logReturn), training: training).train(
            closes: closes, split: try ChronologicalSplit(count: closes.count))
        let evaluation = try model.evaluate(closes: closes, targets: model.summary.trainingEnd..<closes.count)
        let bytes = try model.encode()
        let scores = { (m: ForecastMetrics) in ForecastScores(rmse: m.rmse, mae: m.mae, mape: m.mape, r2: m.r2, mase: m.mase) }
        // The trainer's path: the model file into the registry first, then the result that names it.
        let (stored, _) = try await client.transaction { try store.storeArtifact(jobID: job.jobID, content: bytes, on: $0) }
        let completed = TrainingCompleted(
            jobID: job.jobID, sweepID: sweep, trainer: "test", succeeded: true, error: nil, epochsRun: 2, bestEpoch: 1,
            validationLoss: model.summary.bestMonitoredLoss,
            trainSeconds: 1, test: scores(evaluation.model), naive: scores(evaluation.naive),
            artifact: ArtifactReference(name: stored.name, bytes: stored.bytes, sha256: stored.sha256))
        let decision = try await client.transaction { try store.recordCompletion(completed, on: $0) }
        return try #require(decision?.challengerVersion)
    }

    /// Stores the 2024 candle `index` as the ingestor would and returns its event and the window it yields.
    func closeCandle(_ index: Int) async throws -> (CandleClosed, FeatureWindow?) {
        let row = rows2024[index]
        let candle = Candle(
            pair: "XBTUSD", interval: .oneDay, openTime: row.time, open: row.open, high: row.high, low: row.low, close: row.close,
            vwap: nil, volume: row.volume, trades: row.trades)
        _ = try await client.transaction { try CandleStore.storeClosed([candle], source: "rest", on: $0) }
        let event = candle.event(revision: 0)
        let preprocessing = self.preprocessing
        let outcome = try await client.transaction { try preprocessing.process(event, on: $0) }
        return (event, outcome.window)
    }

    func promotedEvent(version: Int) async throws -> ModelPromoted {
        let store = registry
        try await client.transaction {
            try store.promote(modelName: "lstm-xbtusd-1d", version: version, actor: "test", reason: "test", on: $0)
        }
        let body = try await client.query(
            "SELECT body FROM registry.outbox WHERE message_type = 'model.promoted' ORDER BY id DESC LIMIT 1")[0].decode(0, as: String.self)
        return try JSONDecoder().decode(ModelPromoted.self, from: Data(body.utf8))
    }

    func forecastEvents() async throws -> [ForecastCreated] {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return try await client.query("SELECT body FROM predictions.outbox WHERE message_type = 'forecast.created' ORDER BY id").map {
            try decoder.decode(ForecastCreated.self, from: Data(try $0.decode(0, as: String.self).utf8))
        }
    }

    func tearDown() async {
        server.cancel()
        await http.shutdown()
        await client.close()
        await database.drop()
    }
}

@Suite("Predictor against PostgreSQL and the registry API", .serialized)
struct PredictorIntegrationTests {
    @Test("windows become forecast events; a promotion mid-stream switches the version between two consecutive forecasts, none lost")
    func forecastsAndPromotion() async throws {
        let stack = try await ForecastingStack(port: 18_450)
        // A window before any champion exists is kept, then forecast when the first is promoted.
        let (_, early) = try await stack.closeCandle(0)
        try await stack.predictor.handle(try #require(early))
        #expect(try await stack.forecastEvents().isEmpty)
        let first = try await stack.registerModel(seed: 1)
        #expect(first == 1)
        try await stack.predictor.handle(try await stack.promotedEvent(version: 1))
        #expect(try await stack.forecastEvents().count == 1)

        for index in 1..<10 { try await stack.predictor.handle(try #require(try await stack.closeCandle(index).1)) }
        let second = try await stack.registerModel(seed: 2)
        try await stack.predictor.handle(try await stack.promotedEvent(version: second))
        for index in 10..<20 { try await stack.predictor.handle(try #require(try await stack.closeCandle(index).1)) }

        let events = try await stack.forecastEvents()
        #expect(events.count == 20)
        #expect(events.map(\.targetOpenTime) == (0..<20).map { stack.rows2024[$0].time + 86_400 })
        #expect(events.map(\.modelVersion) == Array(repeating: 1, count: 10) + Array(repeating: second, count: 10))
        for (index, event) in events.enumerated() {
            #expect(event.pair == "XBTUSD" && event.interval == .oneDay && event.modelName == "lstm-xbtusd-1d")
            #expect(event.lastClose == Double(stack.rows2024[index].close))
            #expect(event.predictedClose > 0 && event.datasetVersion == 1 && !event.stale)
        }
        // The same window again (a redelivery) forecasts nothing new.
        let repeated = try await stack.client.query("SELECT payload FROM predictions.pending_windows").count
        #expect(repeated == 0)
        let (_, again) = try await stack.closeCandle(19)
        #expect(again == nil, "an already processed candle yields no new window")
        #expect(try await stack.forecastEvents().count == 20)
        await stack.tearDown()
    }

    @Test(
        "windows waiting together are forecast in one transaction: each once, in order, as one at a time; one without a champion is parked")
    func windowsInBatches() async throws {
        let stack = try await ForecastingStack(port: 18_453)
        let version = try await stack.registerModel(seed: 1)
        try await stack.predictor.handle(try await stack.promotedEvent(version: version))
        var windows: [FeatureWindow] = []
        for index in 0..<8 { windows.append(try #require(try await stack.closeCandle(index).1)) }
        var orphan = windows[3]
        orphan.pair = "ETHUSD"  // no champion for this pair: parked, in the same transaction as the forecasts
        try await stack.predictor.handle(windows[0])
        try await stack.predictor.handle(Array(windows[1..<8]) + [orphan])

        let events = try await stack.forecastEvents()
        #expect(events.map(\.targetOpenTime) == windows.map(\.targetOpenTime))
        let loaded = try #require(try await stack.predictor.model(pair: "XBTUSD", interval: .oneDay))
        for (event, window) in zip(events, windows) {
            let alone = try loaded.forecast(closes: Array(window.closes.suffix(loaded.model.spec.window)))
            #expect(event.predictedClose == alone.point && event.modelVersion == version)
        }
        let parked = try await stack.client.query("SELECT pair FROM predictions.pending_windows").map { try $0.decode(0, as: String.self) }
        #expect(parked == ["ETHUSD"])
        // The batch redelivered (after a crash before its acks) forecasts nothing twice.
        try await stack.predictor.handle(windows)
        #expect(try await stack.forecastEvents().count == windows.count)
        await stack.tearDown()
    }

    @Test("candles waiting together are scored in one transaction, as one at a time; a revision in it wins; a redelivery adds nothing")
    func candlesInBatches() async throws {
        let stack = try await ForecastingStack(port: 18_454)
        let version = try await stack.registerModel(seed: 2)
        try await stack.predictor.handle(try await stack.promotedEvent(version: version))
        var candles: [CandleClosed] = []
        for index in 0..<8 {
            let (candle, window) = try await stack.closeCandle(index)
            candles.append(candle)
            try await stack.predictor.handle(try #require(window))
        }
        var revised = candles[4]
        revised.close = "50000.5"
        revised.revision = 1
        try await stack.predictor.handle(candles[1])  // alone
        try await stack.predictor.handle(Array(candles[2..<8]) + [revised])
        let scoredEvents =
            "SELECT count(*) FROM predictions.outbox WHERE message_type = 'metric.predictor.forecast_scored'" as PostgresQuery
        // Seven targets scored once, the revised one twice.
        #expect(try await stack.client.query(scoredEvents)[0].decode(0, as: Int.self) == 8)
        let rows = try await stack.client.query(
            "SELECT target_open_time, actual_close, predicted_close, absolute_error FROM predictions.forecasts ORDER BY target_open_time")
        let closes = Dictionary(uniqueKeysWithValues: candles.map { ($0.openTime, Double($0.close)!) })
        for row in rows {
            let target = try row.decode(0, as: Int64.self)
            let expected = target == revised.openTime ? 50000.5 : closes[target]
            #expect(try row.decode(1, as: Double?.self) == expected)
            if let expected {
                #expect(abs(try row.decode(3, as: Double.self) - abs(try row.decode(2, as: Double.self) - expected)) < 1e-6)
            }
        }
        #expect(try rows.compactMap { try $0.decode(1, as: Double?.self) }.count == 7)
        // The batch redelivered (after a crash before its acks) scores nothing again.
        try await stack.predictor.handle(Array(candles[2..<8]) + [revised])
        #expect(try await stack.client.query(scoredEvents)[0].decode(0, as: Int.self) == 8)
        await stack.tearDown()
    }

    @Test("2024 replayed: every forecast is scored when its actual arrives; stored errors match an independent computation")
    func scoring2024() async throws {
        let stack = try await ForecastingStack(port: 18_451)
        let version = try await stack.registerModel(seed: 3)
        try await stack.predictor.handle(try await stack.promotedEvent(version: version))
        var scoredEvents = 0
        for index in 0..<stack.rows2024.count {
            let (candle, window) = try await stack.closeCandle(index)
            try await stack.predictor.handle(candle)  // scores the forecast made yesterday for today
            if let window { try await stack.predictor.handle(window) }
            scoredEvents = try await stack.client.query(
                "SELECT count(*) FROM predictions.outbox WHERE message_type = 'metric.predictor.forecast_scored'")[0].decode(
                    0, as: Int.self)
        }
        // 366 forecasts; the last one targets 2025-01-01, not yet known.
        let rows = try await stack.client.query(
            """
            SELECT target_open_time, predicted_close, last_close, actual_close, error, absolute_error, percentage_error,
                   naive_absolute_error
            FROM predictions.forecasts ORDER BY target_open_time
            """
        )
        #expect(rows.count == 366)
        #expect(scoredEvents == 365)
        let closes = Dictionary(uniqueKeysWithValues: stack.rows2024.map { ($0.time, Double($0.close)!) })
        var independentAbsolute = 0.0
        var independentNaive = 0.0
        for row in rows.dropLast() {
            let target = try row.decode(0, as: Int64.self)
            let predicted = try row.decode(1, as: Double.self)
            let actual = try #require(closes[target])
            let previous = try #require(closes[target - 86_400])
            #expect(try row.decode(2, as: Double.self) == previous)
            #expect(try row.decode(3, as: Double.self) == actual)
            #expect(abs(try row.decode(4, as: Double.self) - (predicted - actual)) < 1e-6)
            #expect(abs(try row.decode(5, as: Double.self) - abs(predicted - actual)) < 1e-6)
            #expect(abs(try row.decode(6, as: Double.self) - abs(predicted - actual) / actual * 100) < 1e-9)
            #expect(abs(try row.decode(7, as: Double.self) - abs(previous - actual)) < 1e-6)
            independentAbsolute += abs(predicted - actual)
            independentNaive += abs(previous - actual)
        }
        #expect(try rows.last?.decode(3, as: Double?.self) == nil)
        print(
            """
            2024 replay: model MAE \(independentAbsolute / 365) USD, naive MAE \(independentNaive / 365) USD, MASE \
            \(independentAbsolute / independentNaive)
            """
        )

        // The HTTP API over the same data, read through the client generated from the same document.
        let router = Router()
        try PredictorHTTP(predictor: stack.predictor).add(to: router)
        let app = Application(router: router, configuration: ApplicationConfiguration(address: .hostname("127.0.0.1", port: 18_452)))
        let serving = Task { try await app.run() }
        let base = "http://127.0.0.1:18452"
        let api = PredictorAPI.Client(serverURL: try #require(URL(string: base)), transport: stack.http.transport(timeout: .seconds(10)))
        try await eventually("the predictor API") { await httpGet(base + "/v1/model") != nil }
        let latest = try await api.getLatestForecast(query: .init(pair: "XBTUSD", interval: ._1d)).ok.body.json
        #expect(latest.targetOpenTime == Date(timeIntervalSince1970: 1_735_689_600))
        #expect(latest.interval == ._1d)
        let latestText = try #require(await httpGet(base + "/v1/forecasts/latest?pair=xbtusd&interval=1d"))
        let latestObject = try JSONSerialization.jsonObject(with: Data(latestText.body.utf8)) as? [String: Any]
        #expect(latestObject?["target_open_time"] as? String == "2025-01-01T00:00:00Z", "\(latestText.body)")
        #expect(await httpGet(base + "/v1/forecasts/latest?pair=ETHUSD&interval=1d")?.status == 404)
        #expect(await httpGet(base + "/v1/forecasts/latest?pair=XBT%27USD")?.status == 400)
        // An interval outside the document's enum is refused by the generated decoding: a 400 naming it, not a 500.
        let badInterval = try #require(await httpGet(base + "/v1/forecasts/latest?interval=7x"))
        #expect(badInterval.status == 400 && badInterval.body.contains("7x"), "\(badInterval.body)")

        // from/to: RFC 3339 dates (to: the whole day) or timestamps, in any offset; unix seconds are not.
        let byDate = try await api.listForecasts(query: .init(pair: "XBTUSD", interval: ._1d, from: "2024-01-02", to: "2024-01-05")).ok.body
            .json
        #expect(byDate.map(\.targetOpenTime) == (0..<4).map { Date(timeIntervalSince1970: 1_704_153_600 + Double($0) * 86_400) })
        #expect(byDate.first?.absoluteError != nil && byDate.first?.scoredAt != nil)
        let byTime = try await api.listForecasts(query: .init(from: "2024-01-02T00:00:00Z", to: "2024-01-05T01:00:00+01:00")).ok.body.json
        #expect(byTime.map(\.targetOpenTime) == byDate.map(\.targetOpenTime))
        #expect(try await api.listForecasts(query: .init(limit: 3)).ok.body.json.count == 3)
        for query in ["from=1704153600", "from=2024-02-30", "from=2024-01-05&to=2024-01-02", "to=2024-01-01T25:00:00Z", "limit=0"] {
            let refused = try #require(await httpGet(base + "/v1/forecasts?" + query))
            #expect(refused.status == 400, "\(query)")
            #expect(
                (try? JSONSerialization.jsonObject(with: Data(refused.body.utf8)) as? [String: [String: String]])?["error"]?["message"]
                    != nil)
        }

        let json = ["Content-Type": "application/json"]
        let closes14 = stack.rows2024.suffix(14).compactMap { Double($0.close) }
        let prediction = try await api.predict(body: .json(.init(closes: closes14))).ok.body.json
        #expect(prediction.lastClose == closes14.last && prediction.interval == ._1d && prediction.predictedClose.isFinite)
        #expect(await httpRequest("POST", base + "/v1/predict", headers: json, body: Data(#"{"closes":[1,2,3]}"#.utf8))?.status == 409)
        let negative = #"{"closes":[-5,\#(stack.rows2024.suffix(13).map(\.close).joined(separator: ","))]}"#
        #expect(await httpRequest("POST", base + "/v1/predict", headers: json, body: Data(negative.utf8))?.status == 400)
        let many = try #require(await httpRequest("POST", base + "/v1/predict", headers: json, body: Data(#"{"closes":"many"}"#.utf8)))
        #expect(many.status == 400 && String(decoding: many.body, as: UTF8.self).contains("closes"))
        #expect(await httpRequest("POST", base + "/v1/predict", headers: json, body: Data(#"{"pair":"XBTUSD"}"#.utf8))?.status == 400)
        #expect(await httpRequest("POST", base + "/v1/predict", headers: json, body: Data("{".utf8))?.status == 400)
        #expect(await httpRequest("POST", base + "/v1/predict", headers: json, body: Data(repeating: 0x20, count: 400_000))?.status == 413)
        #expect(
            await httpRequest("POST", base + "/v1/predict", headers: ["Content-Type": "text/plain"], body: Data("{}".utf8))?.status == 415)
        // Methods the document does not list: 405 with Allow; OPTIONS 204; GET operations answer HEAD.
        let put = try #require(await httpRequest("PUT", base + "/v1/predict"))
        #expect(put.status == 405 && put.headers["allow"] == "POST, OPTIONS")
        #expect(await httpRequest("OPTIONS", base + "/v1/model")?.headers["allow"] == "GET, HEAD, OPTIONS")
        let head = try #require(await httpRequest("HEAD", base + "/v1/forecasts/latest"))
        #expect(head.status == 200 && head.body.isEmpty)
        let champion = try await api.getChampion().ok.body.json
        #expect(champion.window == 14 && champion.modelName == "lstm-xbtusd-1d")
        serving.cancel()
        await stack.tearDown()
    }
}
