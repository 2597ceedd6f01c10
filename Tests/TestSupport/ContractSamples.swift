import Contracts
import Foundation
import Messaging

/// One value of every payload type of the contract, with every optional field set, as the services would send it.
public enum ContractSamples {
    public static let all: [any MessagePayload] = {
        let id = UUID()
        let scores = ForecastScores(rmse: 1, mae: 1, mape: 1, r2: 0.9, mase: 0.99)
        let distribution = DistributionScores(
            intervals: [
                IntervalScores(level: 0.8, count: 30, coverage: 0.8, meanWidthPercent: 6.9, winkler: 4589),
                IntervalScores(level: 0.95, count: 30, coverage: 0.95, meanWidthPercent: 13.3, winkler: 7191),
            ], brier: 0.25)
        var window = FeatureWindow(
            pair: "XBTUSD", interval: .oneDay, windowEndOpenTime: 86_400, targetOpenTime: 172_800, datasetVersion: 1, closes: [1, 2],
            scaledCloses: [0, 1], scaler: ScalerBounds(minimum: 1, maximum: 2), gapIntervals: 0, revision: 0)
        window.volumes = [3, 4]
        return [
            CandleClosed(
                pair: "XBTUSD", interval: .oneDay, openTime: 86_400, open: "1", high: "2", low: "1", close: "2", volume: "3", trades: 4,
                revision: 0),
            CandlesBackfilled(
                pair: "XBTUSD", interval: .oneDay, firstOpenTime: 0, lastOpenTime: 86_400, inserted: 2, updated: 0, rejected: 0,
                source: "history:x.csv"),
            window,
            DatasetReady(
                pair: "XBTUSD", interval: .oneDay, version: 1, rowCount: 100, firstOpenTime: 0, lastOpenTime: 99 * 86_400,
                contentHash: "ab", window: 14,
                feature: "close", trainingEnd: 70, validationFraction: 0.1, scaler: ScalerBounds(minimum: 1, maximum: 2),
                spec: ForecastSpec()),
            TrainingJob(
                jobID: id, sweepID: id, experiment: "e", modelName: "m", pair: "XBTUSD", interval: .oneDay, datasetVersion: 1,
                parameters: TrainingParameters(), supersedable: true,
                spec: ForecastSpec()),
            TrainingCompleted(
                jobID: id, sweepID: id, trainer: "t", succeeded: true, error: "none", epochsRun: 3, bestEpoch: 2, validationLoss: 0.1,
                trainSeconds: 1,
                test: scores, naive: scores,
                artifact: ArtifactReference(name: "model.cclstm", bytes: 3, sha256: String(repeating: "ab", count: 32)),
                testRows: RowRange(70..<100), model: .lstm, validation: scores, validationRows: RowRange(60..<70),
                testDistribution: distribution, naiveDistribution: distribution, validationDistribution: distribution),
            TrainingEpochMetric(jobID: id, trainer: "t", epoch: 1, loss: 0.1, validationLoss: 0.2, learningRate: 0.001, seconds: 1),
            ModelPromoted(
                modelName: "m", alias: "champion", version: 2, previousVersion: 1, reason: "r", pair: "XBTUSD", interval: .oneDay,
                datasetVersion: 1, artifactCRC32: 7,
                spec: ForecastSpec()),
            ForecastCreated(
                pair: "XBTUSD", interval: .oneDay, targetOpenTime: 172_800, predictedClose: 2, lastClose: 1, modelName: "m",
                modelVersion: 2, datasetVersion: 1,
                producedAt: Date(), stale: false,
                intervals: [ForecastInterval(level: 0.8, lower: 1.8, upper: 2.2), ForecastInterval(level: 0.95, lower: 1.6, upper: 2.5)],
                probabilityUp: 0.55),
            ForecastScored(
                pair: "XBTUSD", interval: .oneDay, targetOpenTime: 172_800, modelName: "m", modelVersion: 2, predictedClose: 2,
                actualClose: 1.5, error: 0.5,
                absoluteError: 0.5, percentageError: 33, naiveAbsoluteError: 0.5,
                intervals: [
                    IntervalResult(level: 0.8, hit: false, winkler: 3.4, naiveHit: true, naiveWinkler: 0.3),
                    IntervalResult(level: 0.95, hit: true, winkler: 0.9, naiveHit: true, naiveWinkler: 0.6),
                ],
                brier: 0.3025, naiveBrier: 0.25),
        ]
    }()

    /// The sample of a message type, as JSON.
    public static func json(ofType type: String) throws -> [String: Any] {
        guard let sample = all.first(where: { Swift.type(of: $0).messageType == type }),
            let object = try JSONSerialization.jsonObject(with: JSONEncoder().encode(sample)) as? [String: Any]
        else { throw TestSetupError("no sample of \(type)") }
        return object
    }
}
