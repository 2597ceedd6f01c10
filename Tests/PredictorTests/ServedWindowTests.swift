import Contracts
import Forecasting
import Foundation
import Storage
import TestSupport
import Testing

@testable import Predictor
@testable import Preprocessor
@testable import Registry

extension ForecastingStack {
    /// Trains a tiny model of `window` as the trainer does (under the spec the registry composed for the job, on the
    /// dataset version's stored split) and registers it through the registry's own path.
    func registerModel(window: Int, seed: UInt64) async throws -> Int {
        var grid = SweepGrid()
        grid.units = [4]
        grid.epochs = [2]
        grid.seed = [seed]
        grid.window = [window]
        let store = registry
        let sweepGrid = grid
        let (sweep, jobs) = try #require(
            try await client.transaction {
                try store.startSweep(
                    pair: "XBTUSD", interval: .oneDay, datasetVersion: 1, grid: sweepGrid, trigger: "test-window-\(window)", on: $0)
            })
        let job = jobs[0]
        let spec = try #require(job.spec)
        #expect(spec.window == window)
        let dataset = try await client.query("SELECT closes::float8[], training_end FROM features.dataset_versions_v1 WHERE version = 1")[0]
        let closes = try dataset.decode(0, as: PostgresDoubleArray.self).values
        let split = try ChronologicalSplit(
            count: closes.count, window: spec.window, trainingEnd: try dataset.decode(1, as: Int.self), fractions: spec.split)
        var training = TrainingConfiguration()
        training.epochs = 2
        training.seed = seed
        training.blasThreads = 1
        let model = try Trainer(model: ModelConfiguration(spec: spec, units: 4, layers: 1), training: training, spec: spec)
            .train(closes: closes, split: split)
        let evaluation = try model.evaluate(closes: closes, targets: split.testTargets)
        let bytes = try model.encode()
        let scores = { (m: ForecastMetrics) in ForecastScores(rmse: m.rmse, mae: m.mae, mape: m.mape, r2: m.r2, mase: m.mase) }
        let (stored, _) = try await client.transaction { try store.storeArtifact(jobID: job.jobID, content: bytes, on: $0) }
        let completed = TrainingCompleted(
            jobID: job.jobID, sweepID: sweep, trainer: "test", succeeded: true, error: nil, epochsRun: 2, bestEpoch: 1,
            validationLoss: model.summary.bestMonitoredLoss, trainSeconds: 1, test: scores(evaluation.model),
            naive: scores(evaluation.naive),
            artifact: ArtifactReference(name: stored.name, bytes: stored.bytes, sha256: stored.sha256),
            testRows: RowRange(split.testTargets))
        let decision = try await client.transaction { try store.recordCompletion(completed, on: $0) }
        return try #require(decision?.challengerVersion)
    }
}

@Suite("Predictor: a model of any swept window is served", .serialized)
struct ServedWindowTests {
    @Test("a window-28 champion forecasts every new candle, each from the last 28 closes of its window")
    func window28ChampionForecastsEveryCandle() async throws {
        let stack = try await ForecastingStack(port: 18_460)
        let history = try await stack.client.query("SELECT closes::float8[] FROM features.dataset_versions_v1 WHERE version = 1")[0]
            .decode(0, as: PostgresDoubleArray.self).values
        let version = try await stack.registerModel(window: 28, seed: 5)
        let promoted = try await stack.promotedEvent(version: version)
        #expect(promoted.spec?.window == 28)
        try await stack.predictor.handle(promoted)
        let loaded = try #require(stack.predictor.models.current("lstm-xbtusd-1d"))
        guard case .lstm(let network) = loaded.model else { throw TestSetupError("the champion is not an LSTM") }
        #expect(loaded.model.spec.window == 28 && network.configuration.window == 28)

        let candles = 40
        for index in 0..<candles {
            let window = try #require(try await stack.closeCandle(index).1)
            // The preprocessor's window length (CANDLECAST_FEATURE_WINDOW, 14) is no limit: it carries the most recent closes.
            #expect(window.closes.count == ForecastSpec.windows.upperBound)
            // A throw here is what the consumer would dead-letter.
            try await stack.predictor.handle(window)
        }
        let events = try await stack.forecastEvents()
        #expect(events.count == candles)
        #expect(events.map(\.targetOpenTime) == (0..<candles).map { stack.rows2024[$0].time + 86_400 })
        let closes = history + stack.rows2024.prefix(candles).map { Double($0.close)! }
        for (index, event) in events.enumerated() {
            let end = history.count + index
            #expect(event.modelVersion == version)
            #expect(event.lastClose == closes[end])
            let expected = try network.predict(window: Array(closes[(end - 27)...end]))
            #expect(event.predictedClose == expected)
        }
        #expect(try await stack.client.query("SELECT 1 FROM predictions.pending_windows").isEmpty)
        await stack.tearDown()
    }
}
