import Contracts
import Forecasting
import Foundation
import Hummingbird
import PredictorAPI
import ServiceKit
import Storage
import TestSupport
import Testing

@testable import Predictor
@testable import Registry

extension ForecastingStack {
    /// Dataset version 1 as the trainer reads it: its closes and its stored training end.
    func datasetVersion1() async throws -> (closes: [Double], trainingEnd: Int) {
        let row = try await client.query("SELECT closes::float8[], training_end FROM features.dataset_versions_v1 WHERE version = 1")[0]
        return (try row.decode(0, as: PostgresDoubleArray.self).values, try row.decode(1, as: Int.self))
    }

    /// Registers the model file `make` writes for the job of a one-job sweep of `grid` (under the spec the registry
    /// composed for it), through the registry's own path: the file first, then the result naming it, scored on the
    /// test rows with the point forecasts of the file as the predictor decodes it. Returns the model version.
    func registerModelFile(grid: SweepGrid, trigger: String, _ make: (ForecastSpec, [Double], ChronologicalSplit) throws -> [UInt8])
        async throws -> Int
    {
        let store = registry
        let (sweep, jobs) = try #require(
            try await client.transaction {
                try store.startSweep(pair: "XBTUSD", interval: .oneDay, datasetVersion: 1, grid: grid, trigger: trigger, on: $0)
            })
        let job = try #require(jobs.first)
        let spec = try #require(job.spec)
        let (closes, trainingEnd) = try await datasetVersion1()
        let split = try ChronologicalSplit(count: closes.count, window: spec.window, trainingEnd: trainingEnd, fractions: spec.split)
        let bytes = try make(spec, closes, split)
        let model = try ForecastModel(decoding: bytes)
        let windows = try makeWindows(series: closes, window: model.window, targets: split.testTargets)
        let previous = split.testTargets.map { closes[$0 - 1] }
        let scores = { (m: ForecastMetrics) in ForecastScores(rmse: m.rmse, mae: m.mae, mape: m.mape, r2: m.r2, mase: m.mase) }
        let test = try ForecastMetrics(
            predictions: try model.pointForecasts(windows: windows.inputs), actuals: windows.targets, previous: previous)
        let naive = try ForecastMetrics(predictions: previous, actuals: windows.targets, previous: previous)
        let (stored, _) = try await client.transaction { try store.storeArtifact(jobID: job.jobID, content: bytes, on: $0) }
        let completed = TrainingCompleted(
            jobID: job.jobID, sweepID: sweep, trainer: "test", succeeded: true, error: nil, epochsRun: 2, bestEpoch: 1,
            validationLoss: 0.01, trainSeconds: 1, test: scores(test), naive: scores(naive),
            artifact: ArtifactReference(name: stored.name, bytes: stored.bytes, sha256: stored.sha256),
            testRows: RowRange(split.testTargets))
        let decision = try await client.transaction { try store.recordCompletion(completed, on: $0) }
        return try #require(decision?.challengerVersion)
    }

    /// A tiny LSTM (4 units, 2 epochs, point head) trained as the trainer trains it on dataset version 1; calibrated
    /// on its validation rows (split conformal, as the trainer calibrates) unless `calibrated` is false, and written in
    /// model file `formatVersion` (2: a file from before calibration).
    func registerLSTM(seed: UInt64, calibrated: Bool, formatVersion: UInt32 = TrainedModel.fileFormatVersion) async throws -> Int {
        var grid = SweepGrid()
        grid.units = [4]
        grid.epochs = [2]
        grid.seed = [seed]
        return try await registerModelFile(grid: grid, trigger: "test-uncertainty-\(seed)") { spec, closes, split in
            var training = TrainingConfiguration()
            training.epochs = 2
            training.seed = seed
            training.blasThreads = 1
            var model = try Trainer(model: ModelConfiguration(spec: spec, units: 4, layers: 1), training: training, spec: spec)
                .train(closes: closes, split: split)
            if calibrated { model = try model.calibrating(closes: closes, targets: split.validationTargets) }
            return try model.encode(formatVersion: formatVersion)
        }
    }

    /// The naive-empirical baseline as a model version of its own: a sweep of the baseline only, its model file as the
    /// trainer writes it (`ForecastModel.naive` under the job's spec, whose window is the baseline's).
    func registerNaive() async throws -> Int {
        var grid = SweepGrid()
        grid.model = [.naive]
        return try await registerModelFile(grid: grid, trigger: "test-naive") { spec, _, _ in
            #expect(spec.window == NaiveBaseline.defaultLookback + 1, "the baseline job's window is its lookback + 1")
            return try ForecastModel.naive(try NaiveBaseline(lookback: spec.window - 1), on: spec).encode()
        }
    }

    func scoredEvents() async throws -> [ForecastScored] {
        try await client.query(
            "SELECT body FROM predictions.outbox WHERE message_type = 'metric.predictor.forecast_scored' ORDER BY id"
        ).map { try JSONDecoder().decode(ForecastScored.self, from: Data(try $0.decode(0, as: String.self).utf8)) }
    }

    /// The predictor's HTTP API on `port`, read through the client generated from its document.
    func serveAPI(port: Int) async throws -> (PredictorAPI.Client, Task<Void, any Error>) {
        let router = Router()
        try PredictorHTTP(predictor: predictor).add(to: router)
        let app = Application(router: router, configuration: ApplicationConfiguration(address: .hostname("127.0.0.1", port: port)))
        let serving = Task { try await app.run() }
        let base = "http://127.0.0.1:\(port)"
        try await eventually("the predictor API") { await httpGet(base + "/v1/model") != nil }
        return (PredictorAPI.Client(serverURL: try #require(URL(string: base)), transport: http.transport(timeout: .seconds(10))), serving)
    }
}

/// By hand, independently of Forecasting's types: the type-7 quantile of sorted values.
private func quantile(_ sorted: [Double], _ p: Double) -> Double {
    let position = p * Double(sorted.count - 1)
    let below = Int(position.rounded(.down))
    let above = min(below + 1, sorted.count - 1)
    return sorted[below] + (sorted[above] - sorted[below]) * (position - Double(below))
}

/// By hand: the Winkler score of `lower...upper` at `level` for `actual`.
private func winkler(level: Double, lower: Double, upper: Double, actual: Double) -> Double {
    (upper - lower) + 2 / (1 - level) * (max(0, lower - actual) + max(0, actual - upper))
}

@Suite("Predictor: forecasts with 80 % and 95 % ranges and P(up), scored beside the naive baseline", .serialized)
struct UncertaintyServingTests {
    @Test("a naive-empirical champion from the registry forecasts tomorrow = today with the ranges of NaiveBaseline.reference")
    func naiveChampion() async throws {
        let stack = try await ForecastingStack(port: 18_481)
        let version = try await stack.registerNaive()
        try await stack.predictor.handle(try await stack.promotedEvent(version: version))
        let loaded = try #require(stack.predictor.models.current("lstm-xbtusd-1d"))
        #expect(loaded.model.family == .naive && loaded.model.isCalibrated && loaded.model.window == 366)

        var windows: [Int64: FeatureWindow] = [:]
        for index in 0..<6 {
            let window = try #require(try await stack.closeCandle(index).1)
            windows[window.targetOpenTime] = window
            try await stack.predictor.handle(window)
        }
        let events = try await stack.forecastEvents()
        #expect(events.count == 6)
        for event in events {
            let window = try #require(windows[event.targetOpenTime])
            #expect(window.closes.count == 512)
            let reference = try #require(NaiveBaseline.reference(closes: window.closes))
            #expect(event.modelVersion == version)
            #expect(event.predictedClose == window.closes.last && event.lastClose == window.closes.last)
            #expect(event.intervals == reference.intervals && event.probabilityUp == reference.probabilityUp)
            try event.validate()
        }
        // The first forecast by hand: the 10 % / 90 % and 2.5 % / 97.5 % type-7 quantiles of the last 365 log-returns.
        let first = try #require(events.first)
        let closes = Array(try #require(windows[first.targetOpenTime]).closes.suffix(366))
        let returns = zip(closes.dropFirst(), closes).map { log($0 / $1) }.sorted()
        let last = try #require(closes.last)
        let eighty = try #require(first.interval(0.8))
        let ninetyFive = try #require(first.interval(0.95))
        #expect(abs(eighty.lower - last * exp(quantile(returns, 0.1))) < 1e-6)
        #expect(abs(eighty.upper - last * exp(quantile(returns, 0.9))) < 1e-6)
        #expect(abs(ninetyFive.lower - last * exp(quantile(returns, 0.025))) < 1e-6)
        #expect(abs(ninetyFive.upper - last * exp(quantile(returns, 0.975))) < 1e-6)
        #expect(first.probabilityUp == Double(returns.filter { $0 > 0 }.count) / 365)
        print("naive champion, first forecast:", eighty, ninetyFive, "P(up)", first.probabilityUp ?? .nan)

        // The naive reference stored beside it is the same forecast: the champion is the baseline.
        let stored = try await stack.client.query(
            "SELECT intervals = naive_intervals, probability_up = naive_probability_up FROM predictions.forecasts")
        #expect(stored.count == 6)
        for row in stored { #expect(try row.decode(0, as: Bool.self) && row.decode(1, as: Bool.self)) }

        // The HTTP API: the champion's kind and window, the latest forecast's ranges, a prediction from 366 closes.
        let (api, serving) = try await stack.serveAPI(port: 18_484)
        let champion = try await api.getChampion().ok.body.json
        #expect(champion.kind == .naiveEmpirical && champion.window == 366 && champion.calibrated && champion.epochsRun == 0)
        let latest = try await api.getLatestForecast().ok.body.json
        let newest = try #require(events.last)
        #expect(latest.intervals?.map(\.lower) == newest.intervals?.map(\.lower))
        #expect(latest.intervals?.map(\.upper) == newest.intervals?.map(\.upper) && latest.probabilityUp == newest.probabilityUp)
        let supplied = Array(try #require(windows[newest.targetOpenTime]).closes.suffix(366))
        let prediction = try await api.predict(body: .json(.init(closes: supplied))).ok.body.json
        #expect(prediction.predictedClose == supplied.last && prediction.intervals?.map(\.level) == IntervalLevels.all)
        #expect(prediction.intervals?.map(\.upper) == newest.intervals?.map(\.upper) && prediction.probabilityUp == newest.probabilityUp)
        serving.cancel()
        await stack.tearDown()
    }

    @Test(
        "a calibrated LSTM forecasts nested ranges and P(up); each actual publishes hits, Winkler and Brier for model and naive, once"
    )
    func calibratedLSTMScored() async throws {
        let stack = try await ForecastingStack(port: 18_482)
        let version = try await stack.registerLSTM(seed: 11, calibrated: true)
        try await stack.predictor.handle(try await stack.promotedEvent(version: version))
        let loaded = try #require(stack.predictor.models.current("lstm-xbtusd-1d"))
        #expect(loaded.model.family == .lstm && loaded.model.isCalibrated)

        // Each candle scores yesterday's forecast, then its window forecasts tomorrow.
        let days = 12
        var windows: [Int64: FeatureWindow] = [:]
        var candles: [Int64: CandleClosed] = [:]
        for index in 0..<days {
            let (candle, window) = try await stack.closeCandle(index)
            candles[candle.openTime] = candle
            try await stack.predictor.handle(candle)
            let next = try #require(window)
            windows[next.targetOpenTime] = next
            try await stack.predictor.handle(next)
        }
        let forecasts = try await stack.forecastEvents()
        #expect(forecasts.count == days)
        for forecast in forecasts {
            let window = try #require(windows[forecast.targetOpenTime])
            let expected = try loaded.model.forecasts(windows: [Array(window.closes.suffix(loaded.model.window))])[0]
            #expect(forecast.predictedClose == expected.point && forecast.intervals == expected.intervals)
            #expect(forecast.probabilityUp == expected.probabilityUp)
            let eighty = try #require(forecast.interval(0.8))
            let ninetyFive = try #require(forecast.interval(0.95))
            // Nested and proper: 0 < lower95 <= lower80 < upper80 <= upper95.
            #expect(
                0 < ninetyFive.lower && ninetyFive.lower <= eighty.lower && eighty.lower < eighty.upper && eighty.upper <= ninetyFive.upper)
            #expect(ninetyFive.upper - ninetyFive.lower > eighty.upper - eighty.lower)
            let probability = try #require(forecast.probabilityUp)
            #expect(probability > 0 && probability < 1)
        }

        let scores = try await stack.scoredEvents()
        #expect(scores.count == days - 1, "the first candle has no forecast to score")
        for score in scores {
            let forecast = try #require(forecasts.first { $0.targetOpenTime == score.targetOpenTime })
            let window = try #require(windows[score.targetOpenTime])
            let candle = try #require(candles[score.targetOpenTime])
            let actual = try #require(Double(candle.close))
            #expect(score.actualClose == actual)
            // By hand: hit when lower <= actual <= upper; Winkler = width + 2 / (1 - level) x the distance outside;
            // Brier = (p - 1{actual > last close})^2; the naive reference's on the same window.
            let up: Double = actual > forecast.lastClose ? 1 : 0
            let naive = try #require(NaiveBaseline.reference(closes: window.closes))
            let results = try #require(score.intervals)
            #expect(results.map(\.level) == IntervalLevels.all)
            for (result, interval) in zip(results, try #require(forecast.intervals)) {
                let reference = try #require(naive.interval(result.level))
                #expect(result.hit == (interval.lower <= actual && actual <= interval.upper))
                #expect(
                    abs(result.winkler - winkler(level: result.level, lower: interval.lower, upper: interval.upper, actual: actual)) < 1e-6)
                #expect(result.naiveHit == (reference.lower <= actual && actual <= reference.upper))
                let naiveWinkler = winkler(level: result.level, lower: reference.lower, upper: reference.upper, actual: actual)
                #expect(abs(try #require(result.naiveWinkler) - naiveWinkler) < 1e-6)
            }
            let probability = try #require(forecast.probabilityUp)
            #expect(abs(try #require(score.brier) - (probability - up) * (probability - up)) < 1e-12)
            #expect(abs(try #require(score.naiveBrier) - (naive.probabilityUp - up) * (naive.probabilityUp - up)) < 1e-12)
        }
        // One row written out: the first scored forecast.
        let row = try #require(scores.first)
        let rowForecast = try #require(forecasts.first { $0.targetOpenTime == row.targetOpenTime })
        print(
            "scored \(utcDay(row.targetOpenTime)): actual \(row.actualClose), last \(rowForecast.lastClose), ranges",
            rowForecast.intervals ?? [], "P(up) \(rowForecast.probabilityUp ?? .nan) -> results", row.intervals ?? [],
            "brier \(row.brier ?? .nan) naive \(row.naiveBrier ?? .nan)")

        // Redelivered candles score nothing again; a revised close scores again with the new actual.
        for index in 0..<days { try await stack.predictor.handle(try #require(candles[stack.rows2024[index].time])) }
        #expect(try await stack.scoredEvents().count == days - 1)
        var revised = try #require(candles[row.targetOpenTime])
        let revisedClose = row.actualClose * 1.2
        revised.close = String(revisedClose)
        revised.revision = 1
        try await stack.predictor.handle(revised)
        let rescored = try #require(try await stack.scoredEvents().last)
        #expect(rescored.targetOpenTime == row.targetOpenTime && rescored.actualClose == revisedClose)
        let eightyRevised = try #require(rowForecast.interval(0.8))
        #expect(rescored.intervals?.first?.hit == (eightyRevised.lower <= revisedClose && revisedClose <= eightyRevised.upper))
        #expect(
            abs(
                (rescored.intervals?.first?.winkler ?? -1)
                    - winkler(level: 0.8, lower: eightyRevised.lower, upper: eightyRevised.upper, actual: revisedClose)) < 1e-6)
        #expect(try await stack.scoredEvents().count == days)

        // The forecast list carries the same ranges and scores; the last forecast is not scored yet.
        let (api, serving) = try await stack.serveAPI(port: 18_485)
        let listed = try await api.listForecasts(query: .init(limit: 100)).ok.body.json
        #expect(listed.count == days)
        for item in listed {
            let forecast = try #require(forecasts.first { Int64(item.targetOpenTime.timeIntervalSince1970) == $0.targetOpenTime })
            #expect(item.intervals?.map(\.lower) == forecast.intervals?.map(\.lower))
            #expect(item.intervals?.map(\.upper) == forecast.intervals?.map(\.upper) && item.probabilityUp == forecast.probabilityUp)
            guard let score = try await stack.scoredEvents().last(where: { $0.targetOpenTime == forecast.targetOpenTime }) else {
                #expect(item.actualClose == nil && item.brier == nil && item.intervals?.allSatisfy { $0.hit == nil } == true)
                continue
            }
            #expect(item.brier == score.brier && item.naiveBrier == score.naiveBrier)
            #expect(item.intervals?.map(\.hit) == score.intervals?.map(\.hit))
            #expect(item.intervals?.map(\.winkler) == score.intervals?.map(\.winkler))
            #expect(item.intervals?.map(\.naiveWinkler) == score.intervals?.map(\.naiveWinkler))
        }
        let latest = try await api.getLatestForecast().ok.body.json
        #expect(latest.intervals?.count == 2 && latest.probabilityUp == forecasts.last?.probabilityUp)
        #expect(try await api.getChampion().ok.body.json.calibrated)
        serving.cancel()
        await stack.tearDown()
    }

    @Test("an uncalibrated LSTM (model file version 2) still forecasts its point; scores carry the naive Brier score only")
    func uncalibratedFormatVersion2() async throws {
        let stack = try await ForecastingStack(port: 18_483)
        let version = try await stack.registerLSTM(seed: 12, calibrated: false, formatVersion: 2)
        try await stack.predictor.handle(try await stack.promotedEvent(version: version))
        let loaded = try #require(stack.predictor.models.current("lstm-xbtusd-1d"))
        guard case .lstm(let network) = loaded.model else { throw TestSetupError("the champion is not an LSTM") }
        #expect(!loaded.model.isCalibrated && network.calibration == nil)

        var windows: [Int64: FeatureWindow] = [:]
        for index in 0..<5 {
            let (candle, window) = try await stack.closeCandle(index)
            try await stack.predictor.handle(candle)
            let next = try #require(window)
            windows[next.targetOpenTime] = next
            try await stack.predictor.handle(next)
        }
        let forecasts = try await stack.forecastEvents()
        #expect(forecasts.count == 5)
        for forecast in forecasts {
            let window = try #require(windows[forecast.targetOpenTime])
            #expect(forecast.predictedClose == (try network.predict(window: Array(window.closes.suffix(14)))))
            #expect(forecast.intervals == nil && forecast.probabilityUp == nil)
        }
        // The naive reference is stored all the same, and scored.
        let naiveStored = try await stack.client.query("SELECT count(*) FROM predictions.forecasts WHERE naive_intervals IS NOT NULL")[0]
        #expect(try naiveStored.decode(0, as: Int.self) == 5)
        let scores = try await stack.scoredEvents()
        #expect(scores.count == 4)
        for score in scores {
            let window = try #require(windows[score.targetOpenTime])
            let naive = try #require(NaiveBaseline.reference(closes: window.closes))
            let up: Double = score.actualClose > (window.closes.last ?? 0) ? 1 : 0
            #expect(score.intervals == nil && score.brier == nil)
            #expect(abs(try #require(score.naiveBrier) - (naive.probabilityUp - up) * (naive.probabilityUp - up)) < 1e-12)
        }

        let (api, serving) = try await stack.serveAPI(port: 18_486)
        let champion = try await api.getChampion().ok.body.json
        #expect(champion.kind == .lstm && !champion.calibrated && champion.window == 14)
        let listed = try await api.listForecasts().ok.body.json
        #expect(listed.count == 5 && listed.allSatisfy { $0.intervals == nil && $0.probabilityUp == nil && $0.brier == nil })
        #expect(listed.filter { $0.naiveBrier != nil }.count == 4)
        let prediction = try await api.predict(body: .json(.init(closes: Array(try #require(windows.values.first).closes.suffix(14)))))
            .ok.body.json
        #expect(prediction.intervals == nil && prediction.probabilityUp == nil && prediction.predictedClose > 0)
        serving.cancel()
        await stack.tearDown()
    }
}
