import Contracts
import Forecasting
import Foundation
import Storage
import TestSupport
import Testing

@testable import Ingestor
@testable import Preprocessor
@testable import Registry

@Suite("Forecast spec: one split for the preprocessor, the trainer and the gate", .serialized)
struct ForecastSpecGateTests {
    @Test("with train 0.6 / validation 0.2 the gate scores champion and challenger on the same test rows, the dataset version's")
    func gateScoresBothOnTheDatasetsTestRows() async throws {
        let pipeline = try await TrainingPipeline(maximumMASE: 100)
        _ = try pipeline.startTrainer("trainer-a")
        // Dataset version 2: 2013-2024 (4093 rows) cut under non-default fractions.
        _ = try await HistoryBackfill(database: pipeline.client, logger: TestEnvironment.logger).run(
            path: dataDirectory + "/kraken_XBTUSD_1440_2024.csv", pair: "XBTUSD", interval: .oneDay)
        var policy = DatasetPolicy()
        policy.trainFraction = 0.6
        policy.validationFraction = 0.2
        let cut = policy
        let created = try await pipeline.client.transaction { connection in
            try FeatureStore.createVersion(pair: "XBTUSD", interval: .oneDay, policy: cut, reason: "test", on: connection)
        }
        let dataset = try #require(created).0
        #expect(dataset.version == 2 && dataset.rowCount == 4093)
        let stored = try await pipeline.client.query(
            "SELECT training_end, spec::text FROM features.dataset_versions_v1 WHERE version = 2")[0]
        let trainingEnd = try stored.decode(0, as: Int.self)
        #expect(trainingEnd == 2455)  // floor(4093 * 0.6); the 0.7 the trainer used to apply would give 2865
        let datasetSpec = try JSONDecoder().decode(ForecastSpec.self, from: Data(try stored.decode(1, as: String.self).utf8))
        #expect(datasetSpec.split == SplitFractions(train: 0.6, validation: 0.2))
        let testRows = trainingEnd..<4093

        // The champion has window 28, the challenger window 14: different models, the same test rows.
        var championGrid = tinyGrid(batchSizes: [256])
        championGrid.window = [28]
        let first = try await sweep(championGrid, on: 2, pipeline)
        let firstDecision = try await pipeline.decision(first)
        #expect(firstDecision.promoted, "\(firstDecision.reason)")
        let second = try await sweep(tinyGrid(batchSizes: [256], units: 3, epochs: 2), on: 2, pipeline)
        _ = try await pipeline.decision(second)

        // Each run was trained under the spec composed from the dataset's and scored on the dataset's test rows.
        let runs = try await pipeline.client.query(
            """
            SELECT spec::text, test_start, test_end, (test_metrics->>'rmse')::float8
            FROM registry.runs WHERE sweep_id IN (\(first), \(second)) ORDER BY id
            """
        )
        #expect(runs.count == 2)
        var reportedRMSE: [Double] = []
        for (run, window) in zip(runs, [28, 14]) {
            let spec = try JSONDecoder().decode(ForecastSpec.self, from: Data(try run.decode(0, as: String.self).utf8))
            #expect(spec.window == window)
            #expect(spec.split == datasetSpec.split && spec.features == datasetSpec.features && spec.horizon == 1)
            let (start, end) = (try run.decode(1, as: Int.self), try run.decode(2, as: Int.self))
            #expect(start..<end == testRows)
            reportedRMSE.append(try run.decode(3, as: Double.self))
        }
        let specs = try await pipeline.client.query("SELECT spec::text FROM registry.model_versions ORDER BY version").map {
            try JSONDecoder().decode(ForecastSpec.self, from: Data(try $0.decode(0, as: String.self).utf8))
        }
        #expect(specs.map(\.window) == [28, 14])

        // The gate compared the two on exactly those rows: the champion, scored by the gate itself on the dataset's
        // rows, has the RMSE its trainer reported for its own test rows.
        let decision = try await pipeline.client.query(
            """
            SELECT challenger_test_start, challenger_test_end, champion_test_start, champion_test_end,
                   challenger_rmse, champion_rmse, reason, champion_version, challenger_version
            FROM registry.promotion_decisions WHERE sweep_id = \(second)
            """)[0]
        let challengerRows = try decision.decode(0, as: Int.self)..<(try decision.decode(1, as: Int.self))
        let championRows = try decision.decode(2, as: Int.self)..<(try decision.decode(3, as: Int.self))
        #expect(challengerRows == testRows)
        #expect(championRows == testRows)
        #expect(try decision.decode(4, as: Double.self) == reportedRMSE[1])
        #expect(try decision.decode(5, as: Double.self) == reportedRMSE[0])
        #expect(try decision.decode(6, as: String.self).contains("rows 2455..<4093"))
        #expect(try decision.decode(7, as: Int.self) == 1)
        #expect(try decision.decode(8, as: Int.self) == 2)
        await pipeline.tearDown()
    }

    func sweep(_ grid: SweepGrid, on datasetVersion: Int, _ pipeline: TrainingPipeline) async throws -> UUID {
        let store = pipeline.store
        let result = try await pipeline.client.transaction { connection in
            try store.startSweep(
                pair: "XBTUSD", interval: .oneDay, datasetVersion: datasetVersion, grid: grid, trigger: "api", on: connection)
        }
        return try #require(result).0
    }
}
