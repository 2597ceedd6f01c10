import Contracts
import Forecasting
import Foundation
import Messaging
import ServiceKit
import Storage
import TestSupport
import Testing

@testable import Registry
@testable import Trainer

/// Baselines as model versions and the gate on MASE and 80 % Winkler score, against the real PostgreSQL and RabbitMQ
/// (dataset version 1: BTC daily closes 2013-2023).
@Suite("Baselines and the MASE + Winkler gate", .serialized)
struct BaselineGateTests {
    static let model = "lstm-xbtusd-1d"

    /// Dataset version 1 as the trainer and the gate read it.
    struct Dataset {
        var closes: [Double]
        var split: ChronologicalSplit
        var spec: ForecastSpec
    }

    static func dataset(_ pipeline: TrainingPipeline) async throws -> Dataset {
        let row = try await pipeline.client.query(
            "SELECT closes::float8[], training_end, spec::text FROM features.dataset_versions_v1 WHERE version = 1")[0]
        let closes = try row.decode(0, as: PostgresDoubleArray.self).values
        let spec = try JSONDecoder().decode(ForecastSpec.self, from: Data(try row.decode(2, as: String.self).utf8))
        return Dataset(
            closes: closes, split: try .ofDataset(count: closes.count, trainingEnd: try row.decode(1, as: Int.self), spec: spec),
            spec: spec)
    }

    /// An LSTM whose forecast is the constant next log-return `drift` (zero weights, the dense bias set), with `calibration`:
    /// a model whose MASE and intervals a test chooses.
    static func constantModel(spec: ForecastSpec, drift: Float, calibration: ResidualCalibration?) throws -> TrainedModel {
        let configuration = ModelConfiguration(spec: spec, units: 1, layers: 1)
        var weights = [Float](repeating: 0, count: 4 + 4 + 4 + 1 + 1)  // LSTM(1): kernel, recurrent, bias; dense: kernel, bias
        weights[weights.count - 1] = drift
        let summary = TrainingSummary(
            training: TrainingConfiguration(), epochsRun: 1, bestEpoch: 1, bestMonitoredLoss: 0.01, finalLearningRate: 0.001,
            trainingSamples: 1, validationSamples: 1, trainingEnd: 1, trainSeconds: 0)
        return try TrainedModel(
            configuration: configuration, scaler: try MinMaxScaler(minimum: 1, maximum: 2), summary: summary, weights: weights, spec: spec,
            calibration: calibration)
    }

    /// What a trainer reports for `model` on `dataset` (scored as `TrainingWorker.run` does); `validated` false leaves out
    /// the validation and distribution scores, as a trainer from before them did.
    static func completion(
        _ model: ForecastModel, job: UUID, sweep: UUID, artifact: ArtifactRecord, dataset: Dataset, validated: Bool = true,
        validationLoss: Double? = nil
    ) throws -> TrainingCompleted {
        guard validated else {
            // Point scores only, as a trainer from before intervals reported them (its model cannot give intervals).
            guard case .lstm(let network) = model else { throw TestSetupError("only an LSTM can be an old-style result") }
            let test = try network.evaluate(closes: dataset.closes, targets: dataset.split.testTargets)
            return TrainingCompleted(
                jobID: job, sweepID: sweep, trainer: "old", succeeded: true, error: nil, epochsRun: 1, bestEpoch: 1,
                validationLoss: validationLoss, trainSeconds: 0, test: ForecastScores(test.model), naive: ForecastScores(test.naive),
                artifact: ArtifactReference(name: artifact.name, bytes: artifact.bytes, sha256: artifact.sha256),
                testRows: RowRange(dataset.split.testTargets))
        }
        let test = try model.evaluate(closes: dataset.closes, targets: dataset.split.testTargets)
        let validation = try model.evaluate(closes: dataset.closes, targets: dataset.split.validationTargets)
        return TrainingCompleted(
            jobID: job, sweepID: sweep, trainer: "test", succeeded: true, error: nil, epochsRun: 1, bestEpoch: 1,
            validationLoss: validationLoss, trainSeconds: 0, test: ForecastScores(test.point.model),
            naive: ForecastScores(test.point.naive),
            artifact: ArtifactReference(name: artifact.name, bytes: artifact.bytes, sha256: artifact.sha256),
            testRows: RowRange(dataset.split.testTargets), model: model.family, validation: ForecastScores(validation.point.model),
            validationRows: RowRange(dataset.split.validationTargets), testDistribution: test.model, naiveDistribution: test.naive,
            validationDistribution: validation.model)
    }

    /// Stores `model` as the file of `job` and records its result, as a trainer's upload and `training.completed` do.
    @discardableResult
    static func finish(
        _ job: UUID, sweep: UUID, with model: ForecastModel, file: [UInt8]? = nil, _ pipeline: TrainingPipeline, dataset: Dataset,
        validated: Bool = true, validationLoss: Double? = nil
    ) async throws -> GateDecision? {
        let store = pipeline.store
        let content = try file ?? model.encode()
        return try await pipeline.client.transaction { connection in
            let (artifact, _) = try store.storeArtifact(jobID: job, content: content, on: connection)
            return try store.recordCompletion(
                try completion(
                    model, job: job, sweep: sweep, artifact: artifact, dataset: dataset, validated: validated,
                    validationLoss: validationLoss), on: connection)
        }
    }

    static func jobs(_ sweep: UUID, _ pipeline: TrainingPipeline) async throws -> [(job: UUID, model: ModelFamily)] {
        try await pipeline.client.query("SELECT job_id, model FROM registry.runs WHERE sweep_id = \(sweep) ORDER BY id").map {
            (try $0.decode(0, as: UUID.self), try #require(ModelFamily(rawValue: try $0.decode(1, as: String.self))))
        }
    }

    static func champion(_ pipeline: TrainingPipeline) async throws -> Int? {
        try await pipeline.client.query("SELECT version FROM registry.aliases WHERE alias = 'champion'").first?.decode(0, as: Int.self)
    }

    static func family(ofVersion version: Int, _ pipeline: TrainingPipeline) async throws -> String {
        try await pipeline.client.query(
            "SELECT r.model FROM registry.model_versions v JOIN registry.runs r ON r.id = v.run_id WHERE v.version = \(version)"
        )[0].decode(0, as: String.self)
    }

    @Test("the baselines setting: naive-empirical by default, empty allowed, lstm and unknown names refused; the grid may list families")
    func baselineSetting() throws {
        #expect(try RegistrySettings(EnvironmentReader([:])).sweepBaselines == [.naive])
        #expect(try RegistrySettings(EnvironmentReader(["CANDLECAST_SWEEP_BASELINES": ""])).sweepBaselines == [])
        #expect(try RegistrySettings(EnvironmentReader(["CANDLECAST_SWEEP_BASELINES": " naive-empirical , "])).sweepBaselines == [.naive])
        #expect(throws: ConfigurationError.self) { try RegistrySettings(EnvironmentReader(["CANDLECAST_SWEEP_BASELINES": "lstm"])) }
        #expect(throws: ConfigurationError.self) { try RegistrySettings(EnvironmentReader(["CANDLECAST_SWEEP_BASELINES": "arima"])) }
        var grid = SweepGrid()
        grid.model = [.naive]
        #expect(grid.points.isEmpty && grid.baselines(adding: []) == [.naive])
        grid.model = [.lstm, .naive]
        grid.target = [.logReturn, .nextScaledClose]
        #expect(grid.points.map(\.head) == [.gaussian, .point], "the distributional head where the target allows it")
        #expect(grid.baselines(adding: [.naive]) == [.naive], "one job per baseline")
        grid.head = [.gaussian]
        #expect(throws: ValidationFailure.self) { try grid.points[1].validate() }
        // Jobs from before families and heads: an LSTM with the point head.
        let oldJSON =
            #"{"units":4,"layers":1,"activation":"relu","target":"log-return","window":14,"batch_size":32,"learning_rate":0.001,"#
            + #""epochs":1,"patience":8,"seed":42}"#
        let old = try JSONDecoder().decode(TrainingParameters.self, from: Data(oldJSON.utf8))
        #expect(old.model == .lstm && old.head == .point)
    }

    @Test(
        """
        (a) real BTC data, an LSTM that does not beat naive: the sweep's naive baseline is trained like any job, becomes the first \
        champion, and the reason gives test MASE and 80% Winkler of both
        """
    )
    func naiveBaselineBecomesChampion() async throws {
        let pipeline = try await TrainingPipeline(maximumMASE: 1.0, baselines: [.naive])
        _ = try pipeline.startTrainer("trainer-a")
        // One epoch of a 1-unit network on raw scaled closes: far worse than tomorrow = today.
        let sweep = try await pipeline.sweep(
            tinyGrid(batchSizes: [512], units: 1, epochs: 1, target: .nextScaledClose, learningRate: 0.0001))
        let decided = try await pipeline.decision(sweep)
        let dataset = try await Self.dataset(pipeline)
        #expect(decided.promoted, "\(decided.reason)")
        let champion = try #require(try await Self.champion(pipeline))
        #expect(try await Self.family(ofVersion: champion, pipeline) == "naive-empirical")

        let runs = try await pipeline.client.query(
            """
            SELECT model, epochs_run, validation_loss, (test_metrics->>'mase')::float8, (validation_metrics->>'mase')::float8,
                   validation_start, validation_end, test_distribution::text, spec::text
            FROM registry.runs WHERE sweep_id = \(sweep) ORDER BY id
            """)
        #expect(try runs.map { try $0.decode(0, as: String.self) } == ["lstm", "naive-empirical"])
        var testMASE: [Double] = []
        var winkler: [Double] = []
        for run in runs {
            let rows = try run.decode(5, as: Int.self)..<(try run.decode(6, as: Int.self))
            #expect(rows == dataset.split.validationTargets, "every candidate ranked on the dataset's validation rows")
            testMASE.append(try run.decode(3, as: Double.self))
            let distribution = try JSONDecoder().decode(DistributionScores.self, from: Data(try run.decode(7, as: String.self).utf8))
            winkler.append(try #require(distribution.interval(0.8)).winkler)
        }
        // The naive baseline: nothing fitted, tomorrow = today (MASE 1 on any rows), the spec of a 365-return lookback.
        #expect(try runs[1].decode(1, as: Int.self) == 0 && runs[1].decode(2, as: Double?.self) == nil)
        let naiveValidationMASE = try runs[1].decode(4, as: Double.self)
        #expect(testMASE[1] == 1 && naiveValidationMASE == 1)
        let naiveSpec = try JSONDecoder().decode(ForecastSpec.self, from: Data(try runs[1].decode(8, as: String.self).utf8))
        #expect(naiveSpec.window == 366 && naiveSpec.split == dataset.spec.split)
        #expect(testMASE[0] > 1, "the precondition: the LSTM does not beat naive (MASE \(testMASE[0]))")

        // The reason names both families with their test MASE and 80% Winkler scores.
        for (family, index) in [("naive-empirical", 1), ("lstm", 0)] {
            let (mase, score) = (testMASE[index], winkler[index])
            #expect(decided.reason.contains(family), "\(decided.reason)")
            #expect(decided.reason.contains(String(format: "MASE %.3f", mase)), "\(decided.reason)")
            #expect(decided.reason.contains(String(format: "80%% Winkler %.0f USD", score)), "\(decided.reason)")
        }
        // Stored, served and announced like an LSTM version.
        let artifact = try #require(
            await httpRequest("GET", pipeline.registryURL + "/v1/models/\(Self.model)/versions/\(champion)/artifact"))
        guard case .naive(let baseline, let spec) = try ForecastModel(decoding: artifact.body) else {
            Issue.record("the champion's file is not a naive baseline")
            return
        }
        #expect(baseline.lookback == 365 && spec == naiveSpec)
        let listed = try #require(await httpRequest("GET", pipeline.registryURL + "/v1/models/\(Self.model)/versions"))
        let versions = try #require(try JSONSerialization.jsonObject(with: listed.body) as? [[String: Any]])
        let served = try #require(versions.first { ($0["version"] as? Int) == champion })
        #expect(served["model"] as? String == "naive-empirical")
        #expect((served["test_distribution"] as? [String: Any])?["intervals"] != nil)
        #expect(try await pipeline.count("SELECT count(*) FROM registry.outbox WHERE message_type = 'model.promoted'") == 1)
        let figures = try await pipeline.client.query(
            "SELECT challenger_mase, challenger_winkler80 FROM registry.promotion_decisions WHERE sweep_id = \(sweep)")[0]
        #expect(try figures.decode(0, as: Double.self) == 1 && figures.decode(1, as: Double.self) == winkler[1])
        print("gate on BTC 2013-2023, LSTM + naive: \(decided.reason)")
        await pipeline.tearDown()
    }

    @Test("(b) a challenger better than the champion in MASE but worse in 80% Winkler is refused; the reason gives both figures of both")
    func worseWinklerIsRefused() async throws {
        let pipeline = try await TrainingPipeline(maximumMASE: 100)
        let dataset = try await Self.dataset(pipeline)
        let spec = TrainingParameters(head: .point).spec(on: dataset.spec)
        var grid = tinyGrid(batchSizes: [256])
        grid.head = [.point]
        // The champion: a drift of -0.3 % a day (worse than naive), intervals from the year of returns before the test rows.
        let returns = (dataset.split.trainingEnd - 365..<dataset.split.trainingEnd).map { log(dataset.closes[$0] / dataset.closes[$0 - 1]) }
        let drift: Float = -0.003
        let narrow = try ResidualCalibration(scores: EmpiricalDistribution(returns.map { $0 - Double(drift) }))
        let championModel = ForecastModel.lstm(try Self.constantModel(spec: spec, drift: drift, calibration: narrow))
        // The challenger: tomorrow = today (better MASE), intervals of +-30 % (far worse Winkler).
        let wide = try ResidualCalibration(scores: EmpiricalDistribution((0...100).map { Double($0 - 50) * 0.006 }))
        let challengerModel = ForecastModel.lstm(try Self.constantModel(spec: spec, drift: 0, calibration: wide))
        let championTest = try championModel.evaluate(closes: dataset.closes, targets: dataset.split.testTargets)
        let challengerTest = try challengerModel.evaluate(closes: dataset.closes, targets: dataset.split.testTargets)
        let (championMASE, challengerMASE) = (championTest.point.model.mase, challengerTest.point.model.mase)
        let championWinkler = try #require(championTest.model.interval(0.8)).winkler
        let challengerWinkler = try #require(challengerTest.model.interval(0.8)).winkler
        try #require(challengerMASE < championMASE && challengerWinkler > championWinkler, "the models are as the test needs them")

        let first = try await pipeline.sweep(grid)
        let firstDecision = try await Self.finish(
            try Self.jobs(first, pipeline)[0].job, sweep: first, with: championModel, pipeline, dataset: dataset)
        #expect(firstDecision?.promoted == true, "\(firstDecision?.reason ?? "")")
        let second = try await pipeline.sweep(grid)
        let decision = try #require(
            try await Self.finish(try Self.jobs(second, pipeline)[0].job, sweep: second, with: challengerModel, pipeline, dataset: dataset))
        #expect(!decision.promoted)
        print("MASE better, Winkler worse: \(decision.reason)")
        #expect(decision.reason.contains("worse in 80% Winkler than champion v1"), "\(decision.reason)")
        let (mase, championMASEText) = MetricText.distinguishable(challengerMASE, championMASE, fractionDigits: 3)
        let (winkler, championWinklerText) = MetricText.distinguishable(challengerWinkler, championWinkler, fractionDigits: 0)
        #expect(decision.reason.contains("MASE \(mase) vs \(championMASEText)"), "\(decision.reason)")
        #expect(decision.reason.contains("80% Winkler \(winkler) vs \(championWinklerText) USD"), "\(decision.reason)")
        #expect(try await Self.champion(pipeline) == 1)
        let stored = try await pipeline.client.query(
            """
            SELECT challenger_mase, champion_mase, challenger_winkler80, champion_winkler80
            FROM registry.promotion_decisions WHERE sweep_id = \(second)
            """)[0]
        #expect(try stored.decode(0, as: Double.self) == challengerMASE && stored.decode(1, as: Double.self) == championMASE)
        #expect(try stored.decode(2, as: Double.self) == challengerWinkler && stored.decode(3, as: Double.self) == championWinkler)
        await pipeline.tearDown()
    }

    @Test("(c) ties promote: a newer naive baseline with the same MASE and 80% Winkler replaces the older one")
    func tiesPromote() async throws {
        let pipeline = try await TrainingPipeline(maximumMASE: 1.0, baselines: [.naive])
        _ = try pipeline.startTrainer("trainer-a")
        var grid = SweepGrid()
        grid.model = [.naive]
        let first = try await pipeline.sweep(grid)
        let firstDecision = try await pipeline.decision(first)
        #expect(firstDecision.promoted && firstDecision.challenger == 1, "\(firstDecision.reason)")
        let second = try await pipeline.sweep(grid)
        let decision = try await pipeline.decision(second)
        #expect(decision.promoted && decision.challenger == 2, "\(decision.reason)")
        print("tie: \(decision.reason)")
        #expect(decision.reason.contains("is not worse than champion v1"), "\(decision.reason)")
        #expect(try await Self.champion(pipeline) == 2)
        let figures = try await pipeline.client.query(
            """
            SELECT challenger_mase, champion_mase, challenger_winkler80, champion_winkler80
            FROM registry.promotion_decisions WHERE sweep_id = \(second)
            """)[0]
        #expect(try figures.decode(0, as: Double.self) == figures.decode(1, as: Double.self))
        #expect(try figures.decode(2, as: Double.self) == figures.decode(3, as: Double.self))
        #expect(try await pipeline.count("SELECT count(*) FROM registry.runs WHERE status = 'finished' AND epochs_run = 0") == 2)
        await pipeline.tearDown()
    }

    @Test(
        """
        no champion yet and the best-ranked LSTM refused by the MASE threshold: the sweep's naive baseline is registered and \
        promoted as the first champion, the reason says why with the figures of both
        """
    )
    func naiveFallbackWhenChallengerRefused() async throws {
        let pipeline = try await TrainingPipeline(maximumMASE: 1.0, baselines: [.naive])
        let dataset = try await Self.dataset(pipeline)
        let spec = TrainingParameters(head: .point).spec(on: dataset.spec)
        var grid = tinyGrid(batchSizes: [256])
        grid.head = [.point]
        // A constant upward drift, fitted to the validation rows' bull market: better than naive there, worse on the test rows.
        let validationReturns = dataset.split.validationTargets.map { log(dataset.closes[$0] / dataset.closes[$0 - 1]) }
        let drift = Float(validationReturns.sorted()[validationReturns.count / 2])
        let calibration = try ResidualCalibration(scores: EmpiricalDistribution(validationReturns.map { $0 - Double(drift) }))
        let trending = ForecastModel.lstm(try Self.constantModel(spec: spec, drift: drift, calibration: calibration))
        let onValidation = try trending.evaluate(closes: dataset.closes, targets: dataset.split.validationTargets)
        let onTest = try trending.evaluate(closes: dataset.closes, targets: dataset.split.testTargets)
        try #require(
            onValidation.point.model.mase < 1 && onTest.point.model.mase > 1,
            "the precondition: validation MASE \(onValidation.point.model.mase), test MASE \(onTest.point.model.mase)")

        let sweep = try await pipeline.sweep(grid)
        let jobs = try await Self.jobs(sweep, pipeline)
        #expect(jobs.map(\.model) == [.lstm, .naive])
        try await Self.finish(jobs[0].job, sweep: sweep, with: trending, pipeline, dataset: dataset)
        let naive = ForecastModel.naive(try NaiveBaseline.candidate(on: dataset.split), on: dataset.spec)
        let decision = try #require(try await Self.finish(jobs[1].job, sweep: sweep, with: naive, pipeline, dataset: dataset))
        #expect(decision.promoted && decision.challengerVersion == 2, "\(decision.reason)")
        #expect(try await Self.family(ofVersion: 1, pipeline) == "lstm", "the ranked challenger is a version too")
        #expect(try await Self.family(ofVersion: 2, pipeline) == "naive-empirical")
        #expect(try await Self.champion(pipeline) == 2)
        #expect(decision.reason.contains("challenger v1 (lstm) has test MASE"), "\(decision.reason)")
        #expect(decision.reason.contains("above the 1.000 threshold"), "\(decision.reason)")
        #expect(decision.reason.contains("naive-empirical baseline v2 is the first champion: test MASE 1.000"), "\(decision.reason)")
        #expect(decision.reason.components(separatedBy: "80% Winkler").count == 3, "\(decision.reason)")
        print("fallback on BTC 2013-2023: \(decision.reason)")
        await pipeline.tearDown()
    }

    @Test(
        """
        with a champion, a refused challenger does not leave the older champion serving: the sweep's naive baseline is \
        judged by the same rule and replaces it when not worse
        """
    )
    func baselineReplacesChampionWhenChallengerRefused() async throws {
        let pipeline = try await TrainingPipeline(maximumMASE: 1.0, baselines: [.naive])
        let dataset = try await Self.dataset(pipeline)
        let spec = TrainingParameters(head: .point).spec(on: dataset.spec)
        let naive = ForecastModel.naive(try NaiveBaseline.candidate(on: dataset.split), on: dataset.spec)
        var naiveOnly = SweepGrid()
        naiveOnly.model = [.naive]
        let first = try await pipeline.sweep(naiveOnly)
        var firstDecision: GateDecision?
        for (job, _) in try await Self.jobs(first, pipeline) {
            firstDecision = try await Self.finish(job, sweep: first, with: naive, pipeline, dataset: dataset)
        }
        let decided = try #require(firstDecision)
        #expect(decided.promoted, "\(decided.reason)")
        let championVersion = try #require(try await Self.champion(pipeline))

        // The same trending model as the fallback test: best on the validation rows, above the threshold on the test rows.
        let validationReturns = dataset.split.validationTargets.map { log(dataset.closes[$0] / dataset.closes[$0 - 1]) }
        let drift = Float(validationReturns.sorted()[validationReturns.count / 2])
        let calibration = try ResidualCalibration(scores: EmpiricalDistribution(validationReturns.map { $0 - Double(drift) }))
        let trending = ForecastModel.lstm(try Self.constantModel(spec: spec, drift: drift, calibration: calibration))
        var grid = tinyGrid(batchSizes: [256])
        grid.head = [.point]
        let second = try await pipeline.sweep(grid)
        let jobs = try await Self.jobs(second, pipeline)
        try #require(jobs.map(\.model) == [.lstm, .naive])
        try await Self.finish(jobs[0].job, sweep: second, with: trending, pipeline, dataset: dataset)
        let decision = try #require(try await Self.finish(jobs[1].job, sweep: second, with: naive, pipeline, dataset: dataset))
        print("refused challenger, baseline judged against the champion: \(decision.reason)")
        #expect(decision.promoted, "\(decision.reason)")
        #expect(decision.reason.contains("above the 1.000 threshold"), "\(decision.reason)")
        #expect(decision.reason.contains("naive-empirical baseline"), "\(decision.reason)")
        #expect(decision.reason.contains("is not worse than champion v\(championVersion)"), "\(decision.reason)")
        let champion = try #require(try await Self.champion(pipeline))
        #expect(champion > championVersion)
        #expect(try await Self.family(ofVersion: champion, pipeline) == "naive-empirical")
        await pipeline.tearDown()
    }

    @Test("a champion from before intervals is compared on MASE alone, and the reason says so")
    func uncalibratedChampionComparedOnMASE() async throws {
        let pipeline = try await TrainingPipeline(maximumMASE: 100)
        let dataset = try await Self.dataset(pipeline)
        var grid = tinyGrid(batchSizes: [256])
        grid.head = [.point]
        let old = ForecastModel.lstm(
            try Self.constantModel(spec: TrainingParameters(head: .point).spec(on: dataset.spec), drift: 0.001, calibration: nil))
        let first = try await pipeline.sweep(grid)
        let firstDecision = try await Self.finish(
            try Self.jobs(first, pipeline)[0].job, sweep: first, with: old, pipeline, dataset: dataset, validated: false,
            validationLoss: 0.1)
        #expect(firstDecision?.promoted == true, "\(firstDecision?.reason ?? "")")
        var baselines = SweepGrid()
        baselines.model = [.naive]
        let second = try await pipeline.sweep(baselines)
        let naive = ForecastModel.naive(try NaiveBaseline.candidate(on: dataset.split), on: dataset.spec)
        let oldForecasts = try old.pointForecasts(
            windows: try makeWindows(series: dataset.closes, window: old.window, targets: dataset.split.testTargets).inputs)
        let decision = try #require(
            try await Self.finish(try Self.jobs(second, pipeline)[0].job, sweep: second, with: naive, pipeline, dataset: dataset))
        print("uncalibrated champion: \(decision.reason)")
        #expect(decision.reason.contains("champion v1 has no intervals"), "\(decision.reason)")
        #expect(decision.reason.contains("MASE alone decides"), "\(decision.reason)")
        let championMASE = try await pipeline.client.query(
            "SELECT champion_mase, champion_winkler80 FROM registry.promotion_decisions WHERE sweep_id = \(second)")[0]
        let mase = try championMASE.decode(0, as: Double.self)
        #expect(try championMASE.decode(1, as: Double?.self) == nil)
        let expected = try ForecastMetrics(
            predictions: oldForecasts, actuals: dataset.split.testTargets.map { dataset.closes[$0] },
            previous: dataset.split.testTargets.map { dataset.closes[$0 - 1] }
        ).mase
        #expect(mase == expected, "the gate scored the old champion's point forecasts on the test rows")
        #expect(decision.promoted == (1 <= expected), "\(decision.reason)")
        await pipeline.tearDown()
    }

    @Test(
        """
        (d) runs from before validation scores still rank, after those with them, by validation loss; an uncalibrated challenger does \
        not replace a champion with intervals
        """
    )
    func oldRunsStillRank() async throws {
        let pipeline = try await TrainingPipeline(maximumMASE: 100, baselines: [.naive])
        let dataset = try await Self.dataset(pipeline)
        let spec = TrainingParameters(head: .point).spec(on: dataset.spec)
        var grid = tinyGrid(batchSizes: [256, 512])
        grid.head = [.point]
        let old = ForecastModel.lstm(try Self.constantModel(spec: spec, drift: 0.0001, calibration: nil))
        let oldFile = try old.encode()

        // Two old-style LSTM results (validation loss only) and the naive baseline with validation scores.
        let first = try await pipeline.sweep(grid)
        let jobs = try await Self.jobs(first, pipeline)
        #expect(jobs.map(\.model) == [.lstm, .lstm, .naive])
        let split = dataset.split
        let naive = ForecastModel.naive(try NaiveBaseline.candidate(on: split), on: dataset.spec)
        try await Self.finish(jobs[0].job, sweep: first, with: old, pipeline, dataset: dataset, validated: false, validationLoss: 0.2)
        try await Self.finish(jobs[1].job, sweep: first, with: old, pipeline, dataset: dataset, validated: false, validationLoss: 0.1)
        let firstDecision = try #require(try await Self.finish(jobs[2].job, sweep: first, with: naive, pipeline, dataset: dataset))
        #expect(firstDecision.promoted && firstDecision.challengerVersion == 1, "\(firstDecision.reason)")
        #expect(try await Self.family(ofVersion: 1, pipeline) == "naive-empirical", "validation scores rank first")

        // Only old-style results: the lowest validation loss is the challenger; it has no intervals, so it is refused.
        let store = RegistryStore(maximumMASE: 100)
        let lstmGrid = grid
        let second = try #require(
            try await pipeline.client.transaction { connection in
                try store.startSweep(pair: "XBTUSD", interval: .oneDay, datasetVersion: 1, grid: lstmGrid, trigger: "api", on: connection)
            }
        ).0
        let secondJobs = try await Self.jobs(second, pipeline)
        #expect(secondJobs.count == 2)
        try await Self.finish(
            secondJobs[0].job, sweep: second, with: old, file: oldFile, pipeline, dataset: dataset, validated: false, validationLoss: 0.3)
        let secondDecision = try #require(
            try await Self.finish(
                secondJobs[1].job, sweep: second, with: old, file: oldFile, pipeline, dataset: dataset, validated: false,
                validationLoss: 0.05))
        let picked = try await pipeline.client.query(
            "SELECT r.job_id FROM registry.model_versions v JOIN registry.runs r ON r.id = v.run_id WHERE v.version = 2")[0]
        #expect(try picked.decode(0, as: UUID.self) == secondJobs[1].job, "the lower validation loss")
        #expect(!secondDecision.promoted)
        print("uncalibrated challenger: \(secondDecision.reason)")
        #expect(secondDecision.reason.contains("no intervals"), "\(secondDecision.reason)")
        #expect(try await Self.champion(pipeline) == 1)
        await pipeline.tearDown()
    }
}
