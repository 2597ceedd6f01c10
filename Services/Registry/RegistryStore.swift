import Contracts
import Forecasting
import Foundation
import Messaging
import RegistryAPI
import ServiceKit
import Storage

/// Registry settings beyond the common ones: `CANDLECAST_SWEEP_GRID` (JSON: lists per parameter),
/// `CANDLECAST_PROMOTION_MAX_MASE` (1.0: a challenger must not be worse than the naive forecast),
/// `CANDLECAST_REGISTRY_TOKEN` / `_FILE` (bearer token of the write endpoints; unset: writes refused).
struct RegistrySettings: Sendable {
    var grid: SweepGrid
    var maximumMASE: Double
    var token: String?
    /// `CANDLECAST_TRAINING_LEASE_SECONDS` (300): a running run whose trainer sent no epoch metric for this long is lost.
    var leaseSeconds: Int = 300
    /// `CANDLECAST_TRAINING_MAX_ATTEMPTS` (3): a lost run is requeued until it has been started this many times.
    var maxAttempts: Int = 3

    init(_ environment: EnvironmentReader) throws {
        let gridText = environment.string("CANDLECAST_SWEEP_GRID", default: #"{"batch_size":[16,32,64]}"#)
        guard let grid = try? JSONDecoder().decode(SweepGrid.self, from: Data(gridText.utf8)) else {
            throw ConfigurationError(key: "CANDLECAST_SWEEP_GRID", reason: "not a grid: expected JSON lists, e.g. {\"batch_size\":[16,32]}")
        }
        let points = grid.points
        guard (1...256).contains(points.count) else {
            throw ConfigurationError(key: "CANDLECAST_SWEEP_GRID", reason: "\(points.count) grid points; a sweep may have 1 to 256")
        }
        for point in points {
            do {
                try point.validate()
            } catch {
                throw ConfigurationError(key: "CANDLECAST_SWEEP_GRID", reason: "grid point out of range: \(error.reason)")
            }
        }
        self.grid = grid
        maximumMASE = try environment.double("CANDLECAST_PROMOTION_MAX_MASE", default: 1.0, in: 0.000_001...100)
        token = try environment.secret("CANDLECAST_REGISTRY_TOKEN")
        leaseSeconds = try environment.int("CANDLECAST_TRAINING_LEASE_SECONDS", default: 300, in: 2...86_400)
        maxAttempts = try environment.int("CANDLECAST_TRAINING_MAX_ATTEMPTS", default: 3, in: 1...100)
    }
}

/// Lists of values per parameter; a sweep trains every combination. Missing lists take the defaults of
/// `TrainingParameters` (the BTC-daily-v1 reference: LSTM(350, relu), window 14, batch 32).
struct SweepGrid: Codable, Sendable, Equatable {
    var units: [Int]?
    var layers: [Int]?
    var activation: [Activation]?
    var target: [ForecastTarget]?
    var window: [Int]?
    var batchSize: [Int]?
    var learningRate: [Double]?
    var epochs: [Int]?
    var patience: [Int]?
    var seed: [UInt64]?

    enum CodingKeys: String, CodingKey {
        case units, layers, activation, target, window, epochs, patience, seed
        case batchSize = "batch_size"
        case learningRate = "learning_rate"
    }

    var points: [TrainingParameters] {
        let base = TrainingParameters()
        var points = [base]
        func expand<T>(_ values: [T]?, _ apply: (inout TrainingParameters, T) -> Void) {
            guard let values, !values.isEmpty else { return }
            points = points.flatMap { point in
                values.map { value in
                    var copy = point
                    apply(&copy, value)
                    return copy
                }
            }
        }
        expand(units) { $0.units = $1 }
        expand(layers) { $0.layers = $1 }
        expand(activation) { $0.activation = $1 }
        expand(target) { $0.target = $1 }
        expand(window) { $0.window = $1 }
        expand(batchSize) { $0.batchSize = $1 }
        expand(learningRate) { $0.learningRate = $1 }
        expand(epochs) { $0.epochs = $1 }
        expand(patience) { $0.patience = $1 }
        expand(seed) { $0.seed = $1 }
        return points
    }
}

/// What went wrong in the registry's store, in the style of postgres-nio's `PSQLError`: a `code` for programs to
/// switch on (HTTP status, redelivery), a `message` for people.
struct RegistryError: Error, CustomStringConvertible, Sendable {
    /// An extensible set of causes: new codes can be added without breaking a `switch` that has a `default`.
    struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String {
            case notFound, invalid, conflict, artifactMissing, artifactMismatch
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// No such model, version, dataset version, sweep or run.
        static let notFound = Code(.notFound)
        /// Input outside what the registry accepts (a grid, a value).
        static let invalid = Code(.invalid)
        /// Conflicts with what is stored (already decided, no earlier champion, another model file for the run).
        static let conflict = Code(.conflict)
        /// A succeeded job's model file is not stored (yet): its `training.completed` is retried, then dead-lettered.
        static let artifactMissing = Code(.artifactMissing)
        /// The stored model file is not the one `training.completed` names (size or SHA-256): never recorded.
        static let artifactMismatch = Code(.artifactMismatch)

        var description: String { base.rawValue }
    }

    var code: Code
    var message: String

    init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    var description: String { "registry error \(code): \(message)" }
}

/// A stored model file's reference: what `training.completed` and the HTTP API name it by.
struct ArtifactRecord: Sendable, Equatable {
    var name: String
    var bytes: Int
    var sha256: String
}

/// What the promotion gate decided for a finished sweep.
struct GateDecision: Sendable, Equatable {
    var challengerVersion: Int?
    var championVersion: Int?
    var promoted: Bool
    var reason: String
}

/// Tracking, sweeps, the promotion gate and aliases, each a set of statements run inside the caller's
/// transaction so that rows and their outbox events commit together.
struct RegistryStore: Sendable {
    let maximumMASE: Double
    var leaseSeconds: Int = 300
    var maxAttempts: Int = 3
    static let schema = RegistrySchema.name

    static func experimentName(pair: String, interval: CandleInterval) -> String { "\(pair.lowercased())-\(interval.name)" }
    static func modelName(pair: String, interval: CandleInterval) -> String { Contracts.modelName(pair: pair, interval: interval) }

    // MARK: Sweeps

    /// Creates a sweep with one queued run and one `training.job` per grid point. An automatic sweep
    /// (`trigger` `dataset.ready`) happens once per dataset version: nil when it already exists.
    func startSweep(
        pair: String, interval: CandleInterval, datasetVersion: Int, grid: SweepGrid, trigger: String, on connection: PostgresConnection
    ) throws -> (UUID, [TrainingJob])? {
        let points = grid.points
        guard !points.isEmpty, points.count <= 256 else {
            throw RegistryError(.invalid, "a sweep needs 1 to 256 grid points, got \(points.count)")
        }
        for point in points {
            do { try point.validate() } catch { throw RegistryError(.invalid, error.reason) }
        }
        guard
            let dataset = try connection.query(
                """
                SELECT spec::text FROM features.dataset_versions_v1
                WHERE pair = \(pair) AND interval_seconds = \(Int(interval.seconds)) AND version = \(datasetVersion)
                """
            ).first
        else {
            throw RegistryError(.notFound, "dataset version \(datasetVersion) of \(pair) \(interval) does not exist")
        }
        // Each job's spec is composed here, once, from the dataset version's and the grid point; the trainer trains
        // under it and the gate and the predictor read it back.
        let datasetSpec = try JSONDecoder().decode(ForecastSpec.self, from: Data(try dataset.decode(0, as: String.self).utf8))
        let experiment = Self.experimentName(pair: pair, interval: interval)
        let modelName = Self.modelName(pair: pair, interval: interval)
        try connection.query(
            """
            INSERT INTO registry.experiments (name, pair, interval_seconds) VALUES (\(experiment), \(pair), \(Int(interval.seconds)))
            ON CONFLICT DO NOTHING
            """
        )
        try connection.query(
            "INSERT INTO registry.registered_models (name, experiment) VALUES (\(modelName), \(experiment)) ON CONFLICT DO NOTHING")
        let sweepID = UUID()
        let gridJSON = String(decoding: try JSONEncoder().encode(grid), as: UTF8.self)
        let inserted = try connection.execute(
            """
            INSERT INTO registry.sweeps (id, experiment, model_name, dataset_version, grid, trigger, job_count)
            VALUES (\(sweepID), \(experiment), \(modelName), \(datasetVersion), \(gridJSON)::jsonb, \(trigger), \(points.count))
            ON CONFLICT DO NOTHING
            """
        ).affectedRows
        guard inserted == 1 else { return nil }
        let automatic = trigger == "dataset.ready"
        if automatic { try supersedeQueuedRuns(modelName: modelName, before: datasetVersion, on: connection) }
        var jobs: [TrainingJob] = []
        for point in points {
            let job = TrainingJob(
                jobID: UUID(), sweepID: sweepID, experiment: experiment, modelName: modelName, pair: pair, interval: interval,
                datasetVersion: datasetVersion, parameters: point, supersedable: automatic ? true : nil, spec: point.spec(on: datasetSpec))
            let params = String(decoding: try JSONEncoder().encode(point), as: UTF8.self)
            let spec = String(decoding: try JSONEncoder().encode(job.spec), as: UTF8.self)
            try connection.query(
                """
                INSERT INTO registry.runs (job_id, sweep_id, experiment, status, params, dataset_version, spec)
                VALUES (\(job.jobID), \(sweepID), \(experiment), 'queued', \(params)::jsonb, \(datasetVersion), \(spec)::jsonb)
                """)
            try Outbox.enqueue(
                Envelope(payload: job, correlationID: sweepID.uuidString.lowercased()), routingKey: RoutingKey.trainingJob,
                exchange: Exchange.events,
                schema: Self.schema, on: connection)
            jobs.append(job)
        }
        return (sweepID, jobs)
    }

    /// Marks `superseded` the runs not yet started of older automatic sweeps of the same model; a sweep left with
    /// no open run is decided on what it finished (a trainer that gets such a job acks it without training).
    func supersedeQueuedRuns(modelName: String, before datasetVersion: Int, on connection: PostgresConnection) throws {
        let sweeps = try connection.query(
            """
            UPDATE registry.runs r SET status = 'superseded', error = \("superseded by dataset version \(datasetVersion)"), ended_at = now()
            FROM registry.sweeps s
            WHERE r.sweep_id = s.id AND r.status = 'queued' AND s.model_name = \(modelName) AND s.trigger = 'dataset.ready'
              AND s.dataset_version < \(datasetVersion)
            RETURNING r.sweep_id
            """
        ).map { try $0.decode(0, as: UUID.self) }
        for sweepID in Set(sweeps) { _ = try decideIfClosed(sweepID: sweepID, on: connection) }
    }

    /// Runs the gate once no run of the sweep is queued or running (and it was not decided yet).
    func decideIfClosed(sweepID: UUID, on connection: PostgresConnection) throws -> GateDecision? {
        let row = try connection.query(
            """
            SELECT (SELECT count(*) FROM registry.runs WHERE sweep_id = s.id AND status IN ('queued', 'running')), s.decided_at IS NOT NULL
            FROM registry.sweeps s WHERE s.id = \(sweepID) FOR UPDATE
            """)
        guard let row = row.first, try row.decode(0, as: Int.self) == 0, try !row.decode(1, as: Bool.self) else { return nil }
        return try decide(sweepID: sweepID, on: connection)
    }

    /// One pass of the lease sweeper: expired running runs (rows locked with SKIP LOCKED, so registry replicas
    /// share the work and never both handle a run) are requeued with a new `training.job` while they have
    /// attempts left, else failed for good with "trainer lost". Returns (requeued, failed).
    func expireLostRuns(limit: Int = 100, on connection: PostgresConnection) throws -> (requeued: Int, failed: Int) {
        let rows = try connection.query(
            """
            SELECT r.id, r.job_id, r.sweep_id, r.experiment, s.model_name, e.pair, e.interval_seconds, r.dataset_version, r.params::text,
                   r.attempts, s.trigger, r.spec::text
            FROM registry.runs r JOIN registry.sweeps s ON s.id = r.sweep_id JOIN registry.experiments e ON e.name = r.experiment
            WHERE r.status = 'running' AND r.lease_expires_at < now()
            ORDER BY r.lease_expires_at LIMIT \(limit)
            FOR UPDATE OF r SKIP LOCKED
            """)
        var requeued = 0
        var failed = 0
        for row in rows {
            let runID = try row.decode(0, as: Int64.self)
            let sweepID = try row.decode(2, as: UUID.self)
            let attempts = try row.decode(9, as: Int.self)
            let parameters = try? JSONDecoder().decode(TrainingParameters.self, from: Data(try row.decode(8, as: String.self).utf8))
            let interval = CandleInterval(seconds: try row.decode(6, as: Int.self))
            if attempts < maxAttempts, let parameters, let interval {
                let job = TrainingJob(
                    jobID: try row.decode(1, as: UUID.self), sweepID: sweepID, experiment: try row.decode(3, as: String.self),
                    modelName: try row.decode(4, as: String.self), pair: try row.decode(5, as: String.self), interval: interval,
                    datasetVersion: try row.decode(7, as: Int.self), parameters: parameters,
                    supersedable: try row.decode(10, as: String.self) == "dataset.ready" ? true : nil,
                    spec: try row.decode(11, as: String?.self).flatMap { try? JSONDecoder().decode(ForecastSpec.self, from: Data($0.utf8)) }
                )
                try connection.query(
                    """
                    UPDATE registry.runs SET status = 'queued', error = 'trainer lost; requeued', trainer = NULL, heartbeat_at = NULL,
                        lease_expires_at = NULL WHERE id = \(runID)
                    """)
                try Outbox.enqueue(
                    Envelope(payload: job, correlationID: sweepID.uuidString.lowercased()), routingKey: RoutingKey.trainingJob,
                    exchange: Exchange.events,
                    schema: Self.schema, on: connection)
                requeued += 1
            } else {
                try connection.query(
                    """
                    UPDATE registry.runs
                    SET status = 'failed', error = \("trainer lost (\(attempts) attempts)"), lease_expires_at = NULL, ended_at = now()
                    WHERE id = \(runID)
                    """)
                failed += 1
                _ = try decideIfClosed(sweepID: sweepID, on: connection)
            }
        }
        return (requeued, failed)
    }

    // MARK: Runs

    func recordEpoch(_ metric: TrainingEpochMetric, on connection: PostgresConnection) throws {
        guard
            let runID = try connection.query(
                """
                UPDATE registry.runs SET status = CASE WHEN status = 'queued' THEN 'running' ELSE status END,
                    attempts = CASE WHEN status = 'queued' THEN attempts + 1 ELSE attempts END,
                    started_at = coalesce(started_at, now()), trainer = \(metric.trainer),
                    heartbeat_at = now(), lease_expires_at = now() + make_interval(secs => \(leaseSeconds))
                WHERE job_id = \(metric.jobID) AND status IN ('queued', 'running') RETURNING id
                """
            ).first?.decode(0, as: Int64.self)
        else { return }
        var values: [(String, Double)] = [("loss", metric.loss), ("learning_rate", metric.learningRate), ("epoch_seconds", metric.seconds)]
        if let validationLoss = metric.validationLoss { values.append(("validation_loss", validationLoss)) }
        for (key, value) in values where value.isFinite {
            try connection.query(
                """
                INSERT INTO registry.run_metrics (run_id, key, step, value) VALUES (\(runID), \(key), \(metric.epoch), \(value))
                ON CONFLICT (run_id, key, step) DO UPDATE SET value = EXCLUDED.value, recorded_at = now()
                """)
        }
    }

    /// Stores a job's result once (a repeat is ignored), then runs the gate when it was the sweep's last. A succeeded
    /// job's model file must already be stored (`storeArtifact`, the trainer's upload) with the size and SHA-256 the
    /// message names: missing is `artifactMissing` (retried, then dead-lettered), different is `artifactMismatch`.
    func recordCompletion(_ completed: TrainingCompleted, on connection: PostgresConnection) throws -> GateDecision? {
        guard
            let run = try connection.query("SELECT id, status, sweep_id FROM registry.runs WHERE job_id = \(completed.jobID) FOR UPDATE")
                .first
        else {
            throw PermanentFailure("no run for job \(completed.jobID)")
        }
        let runID = try run.decode(0, as: Int64.self)
        guard try !["finished", "failed", "superseded"].contains(run.decode(1, as: String.self)) else { return nil }
        let status = completed.succeeded ? "finished" : "failed"
        if completed.succeeded {
            guard let reference = completed.artifact else {
                throw RegistryError(.artifactMismatch, "job \(completed.jobID) succeeded without naming its model file")
            }
            guard let stored = try storedArtifact(runID: runID, on: connection) else {
                throw RegistryError(.artifactMissing, "job \(completed.jobID): no model file stored for run \(runID)")
            }
            guard stored.bytes == reference.bytes, stored.sha256 == reference.sha256 else {
                throw RegistryError(
                    .artifactMismatch,
                    "job \(completed.jobID): the stored model file (\(stored.bytes) bytes, SHA-256 \(stored.sha256)) "
                        + "is not the one reported (\(reference.bytes) bytes, SHA-256 \(reference.sha256))")
            }
        }
        let error = completed.error
        let encoder = JSONEncoder()
        let test = try completed.test.map { String(decoding: try encoder.encode($0), as: UTF8.self) }
        let naive = try completed.naive.map { String(decoding: try encoder.encode($0), as: UTF8.self) }
        try connection.query(
            """
            UPDATE registry.runs SET status = \(status), error = \(error), trainer = \(completed.trainer),
                epochs_run = \(completed.epochsRun), best_epoch = \(completed.bestEpoch), validation_loss = \(completed.validationLoss),
                test_metrics = \(test)::jsonb, naive_metrics = \(naive)::jsonb, train_seconds = \(completed.trainSeconds),
                started_at = coalesce(started_at, now()), ended_at = now(), lease_expires_at = NULL
            WHERE id = \(runID)
            """)
        // The rows the run's test metrics cover: the gate uses them only for exactly its dataset version's test rows.
        if let rows = completed.testRows {
            try connection.query("UPDATE registry.runs SET test_start = \(rows.start), test_end = \(rows.end) WHERE id = \(runID)")
        }
        let sweepID = try run.decode(2, as: UUID.self)
        let open = try connection.query(
            "SELECT count(*) FILTER (WHERE status IN ('queued', 'running')) FROM registry.runs WHERE sweep_id = \(sweepID)"
        )[0].decode(0, as: Int.self)
        guard open == 0 else { return nil }
        return try decide(sweepID: sweepID, on: connection)
    }

    /// Stores the model file of a job's run, as the trainer uploads it before it publishes `training.completed`.
    /// Idempotent: the same bytes again return the stored record (`created` false); other bytes are a conflict.
    /// `sha256` is the content's, when the caller has computed it already.
    func storeArtifact(
        jobID: UUID, content: [UInt8], sha256: String? = nil, on connection: PostgresConnection
    ) throws -> (ArtifactRecord, created: Bool) {
        let sha256 = sha256 ?? ModelFileDigest.sha256Hex(content)
        guard
            let runID = try connection.query("SELECT id FROM registry.runs WHERE job_id = \(jobID) FOR UPDATE").first?.decode(
                0, as: Int64.self)
        else {
            throw RegistryError(.notFound, "no run for job \(jobID)")
        }
        if let stored = try storedArtifact(runID: runID, on: connection) {
            guard stored.sha256 == sha256, stored.bytes == content.count else {
                throw RegistryError(
                    .conflict, "run \(runID) already has another model file (\(stored.bytes) bytes, SHA-256 \(stored.sha256))")
            }
            return (stored, false)
        }
        let record = ArtifactRecord(name: Self.artifactName, bytes: content.count, sha256: sha256)
        try connection.query(
            """
            INSERT INTO registry.artifacts (run_id, name, content, byte_count, crc32, sha256)
            VALUES (\(runID), \(record.name), \(content), \(record.bytes), \(Int64(CRC32.checksum(content))), \(record.sha256))
            """)
        return (record, true)
    }

    /// The name every model file is stored under (its format's extension).
    static let artifactName = "model.cclstm"

    func storedArtifact(runID: Int64, on connection: PostgresConnection) throws -> ArtifactRecord? {
        try connection.query("SELECT name, byte_count, sha256 FROM registry.artifacts WHERE run_id = \(runID)").first.map { row in
            ArtifactRecord(
                name: try row.decode(0, as: String.self), bytes: try row.decode(1, as: Int.self), sha256: try row.decode(2, as: String.self)
            )
        }
    }

    // MARK: The gate

    /// A model version's accuracy in USD on a dataset version's test rows.
    struct TestScore: Sendable, Equatable {
        var rmse: Double
        var mase: Double
        var rows: Range<Int>
    }

    /// The sweep's best run on validation loss becomes `challenger`, and `champion` only if it beats the
    /// current champion on the same test rows and its MASE is within `maximumMASE`. The test rows are the sweep's
    /// dataset version's `training_end..<row_count`, as the preprocessor cut them under its spec: the challenger's
    /// reported scores count only when it reports exactly those rows (else it is scored here), the champion is
    /// scored here on them.
    func decide(sweepID: UUID, on connection: PostgresConnection) throws -> GateDecision {
        guard
            let sweep = try connection.query(
                "SELECT model_name, dataset_version, decided_at IS NOT NULL FROM registry.sweeps WHERE id = \(sweepID) FOR UPDATE"
            ).first
        else { throw RegistryError(.notFound, "no sweep \(sweepID)") }
        let modelName = try sweep.decode(0, as: String.self)
        let datasetVersion = try sweep.decode(1, as: Int.self)
        if try sweep.decode(2, as: Bool.self) {
            throw RegistryError(.conflict, "sweep \(sweepID) was already decided")
        }
        try connection.query("UPDATE registry.sweeps SET decided_at = now() WHERE id = \(sweepID)")
        guard
            let best = try connection.query(
                """
                SELECT id, (test_metrics->>'rmse')::float8, (test_metrics->>'mase')::float8, test_start, test_end FROM registry.runs
                WHERE sweep_id = \(sweepID) AND status = 'finished' AND validation_loss IS NOT NULL ORDER BY validation_loss, id LIMIT 1
                """
            ).first
        else {
            return try record(
                GateDecision(promoted: false, reason: "no run of the sweep finished"), sweepID: sweepID, modelName: modelName,
                on: connection)
        }
        let runID = try best.decode(0, as: Int64.self)
        let version = try connection.query(
            """
            INSERT INTO registry.model_versions (model_name, version, run_id, dataset_version, spec)
            SELECT \(modelName), coalesce(max(version), 0) + 1, \(runID), \(datasetVersion),
                (SELECT spec FROM registry.runs WHERE id = \(runID))
            FROM registry.model_versions WHERE model_name = \(modelName)
            RETURNING version
            """
        )[0].decode(0, as: Int.self)
        try moveAlias(
            "challenger", of: modelName, to: version, actor: "gate", reason: "best validation loss of sweep \(sweepID)", on: connection)

        let testSet = try self.testSet(modelName: modelName, datasetVersion: datasetVersion, on: connection)
        var challenger = TestScore(rmse: try best.decode(1, as: Double.self), mase: try best.decode(2, as: Double.self), rows: 0..<0)
        if let start = try best.decode(3, as: Int?.self), let end = try best.decode(4, as: Int?.self), start <= end {
            challenger.rows = start..<end
        }
        if challenger.rows != testSet.rows {
            // Scored on other rows (or by a trainer that did not say which): score it on the gate's rows.
            challenger = try score(modelName: modelName, version: version, on: testSet, connection: connection)
        }
        var decision = GateDecision(challengerVersion: version, promoted: false, reason: "")
        var champion: TestScore?
        if let championVersion = try aliasVersion("champion", of: modelName, on: connection) {
            decision.championVersion = championVersion
            champion = try score(modelName: modelName, version: championVersion, on: testSet, connection: connection)
        }
        let rows = "rows \(testSet.rows.lowerBound)..<\(testSet.rows.upperBound)"
        if !(challenger.mase <= maximumMASE) {
            decision.reason = String(
                format: "challenger v%d has MASE %.3f, above the %.3f threshold against the naive forecast", version, challenger.mase,
                maximumMASE)
        } else if let champion, let championVersion = decision.championVersion, !(challenger.rmse < champion.rmse) {
            decision.reason = String(
                format: "challenger v%d does not beat champion v%d on the same test window (\(rows), RMSE %.1f vs %.1f)", version,
                championVersion,
                challenger.rmse, champion.rmse)
        } else {
            decision.promoted = true
            decision.reason =
                champion.map {
                    String(
                        format: "beats champion v%d on the same test window (\(rows), RMSE %.1f vs %.1f), MASE %.3f",
                        decision.championVersion ?? 0,
                        challenger.rmse, $0.rmse, challenger.mase)
                } ?? String(format: "first champion: MASE %.3f within %.3f", challenger.mase, maximumMASE)
            try promote(modelName: modelName, version: version, actor: "gate", reason: decision.reason, on: connection)
        }
        return try record(decision, sweepID: sweepID, modelName: modelName, challenger: challenger, champion: champion, on: connection)
    }

    private func record(
        _ decision: GateDecision, sweepID: UUID, modelName: String, challenger: TestScore? = nil, champion: TestScore? = nil,
        on connection: PostgresConnection
    ) throws -> GateDecision {
        try connection.query(
            """
            INSERT INTO registry.promotion_decisions (sweep_id, model_name, challenger_version, champion_version, promoted, reason,
                challenger_rmse, champion_rmse, challenger_mase, challenger_test_start, challenger_test_end, champion_test_start,
                champion_test_end)
            VALUES (\(sweepID), \(modelName), \(decision.challengerVersion), \(decision.championVersion), \(decision.promoted),
                \(decision.reason), \(challenger?.rmse), \(champion?.rmse), \(challenger?.mase), \(challenger?.rows.lowerBound),
                \(challenger?.rows.upperBound), \(champion?.rows.lowerBound), \(champion?.rows.upperBound))
            """)
        return decision
    }

    /// A dataset version's closes and its test rows, `training_end..<row_count` as stored (never recomputed).
    struct TestSet: Sendable {
        var closes: [Double]
        var rows: Range<Int>
    }

    func testSet(modelName: String, datasetVersion: Int, on connection: PostgresConnection) throws -> TestSet {
        guard
            let dataset = try connection.query(
                """
                SELECT d.closes::float8[], d.training_end FROM features.dataset_versions_v1 d
                JOIN registry.experiments e ON e.pair = d.pair AND e.interval_seconds = d.interval_seconds
                JOIN registry.registered_models m ON m.experiment = e.name
                WHERE m.name = \(modelName) AND d.version = \(datasetVersion)
                """
            ).first
        else { throw RegistryError(.notFound, "dataset version \(datasetVersion) not found") }
        let closes = try dataset.decode(0, as: PostgresDoubleArray.self).values
        return TestSet(closes: closes, rows: try dataset.decode(1, as: Int.self)..<closes.count)
    }

    /// A stored model version scored in USD on `testSet`'s rows (each forecast from the closes before its row).
    func score(modelName: String, version: Int, on testSet: TestSet, connection: PostgresConnection) throws -> TestScore {
        let model = try TrainedModel(decoding: try artifact(modelName: modelName, version: version, on: connection).content)
        let evaluation = try model.evaluate(closes: testSet.closes, targets: testSet.rows)
        return TestScore(rmse: evaluation.model.rmse, mase: evaluation.model.mase, rows: testSet.rows)
    }

    // MARK: Aliases

    func aliasVersion(_ alias: String, of modelName: String, on connection: PostgresConnection) throws -> Int? {
        try connection.query("SELECT version FROM registry.aliases WHERE model_name = \(modelName) AND alias = \(alias)").first?.decode(
            0, as: Int.self)
    }

    @discardableResult
    func moveAlias(_ alias: String, of modelName: String, to version: Int, actor: String, reason: String, on connection: PostgresConnection)
        throws -> Int?
    {
        guard
            try connection.query("SELECT 1 FROM registry.model_versions WHERE model_name = \(modelName) AND version = \(version)").first
                != nil
        else {
            throw RegistryError(.notFound, "model \(modelName) has no version \(version)")
        }
        let previous = try aliasVersion(alias, of: modelName, on: connection)
        try connection.query(
            """
            INSERT INTO registry.aliases (model_name, alias, version) VALUES (\(modelName), \(alias), \(version))
            ON CONFLICT (model_name, alias) DO UPDATE SET version = EXCLUDED.version, updated_at = now()
            """)
        try connection.query(
            """
            INSERT INTO registry.alias_history (model_name, alias, from_version, to_version, actor, reason)
            VALUES (\(modelName), \(alias), \(previous), \(version), \(actor), \(reason))
            """)
        return previous
    }

    /// Points `champion` at `version` and announces it with `model.promoted.<name>`.
    func promote(modelName: String, version: Int, actor: String, reason: String, on connection: PostgresConnection) throws {
        let previous = try moveAlias("champion", of: modelName, to: version, actor: actor, reason: reason, on: connection)
        guard
            let row = try connection.query(
                """
                SELECT e.pair, e.interval_seconds, v.dataset_version, a.crc32, v.spec::text FROM registry.model_versions v
                JOIN registry.registered_models m ON m.name = v.model_name JOIN registry.experiments e ON e.name = m.experiment
                JOIN registry.artifacts a ON a.run_id = v.run_id
                WHERE v.model_name = \(modelName) AND v.version = \(version)
                """
            ).first
        else { throw RegistryError(.notFound, "model \(modelName) v\(version) has no artifact") }
        let event = ModelPromoted(
            modelName: modelName, alias: "champion", version: version, previousVersion: previous, reason: reason,
            pair: try row.decode(0, as: String.self),
            interval: try CandleInterval(storedSeconds: try row.decode(1, as: Int.self)), datasetVersion: try row.decode(2, as: Int.self),
            artifactCRC32: UInt32(truncatingIfNeeded: try row.decode(3, as: Int64.self)),
            spec: try row.decode(4, as: String?.self).flatMap { try? JSONDecoder().decode(ForecastSpec.self, from: Data($0.utf8)) })
        try Outbox.enqueue(
            Envelope(payload: event), routingKey: event.routingKey, exchange: Exchange.events, schema: Self.schema, on: connection)
    }

    /// What a rollback's reason is prefixed with in the alias history and `model.promoted`.
    static let rollbackPrefix = "rollback: "

    /// Moves `champion` back: to `version`, or to the last different version it pointed at before.
    func rollback(modelName: String, to version: Int?, actor: String, reason: String, on connection: PostgresConnection) throws -> Int {
        let target: Int
        if let version {
            target = version
        } else {
            let current = try aliasVersion("champion", of: modelName, on: connection)
            guard
                let previous = try connection.query(
                    """
                    SELECT from_version FROM registry.alias_history WHERE model_name = \(modelName) AND alias = 'champion'
                        AND from_version IS NOT NULL AND from_version IS DISTINCT FROM \(current)
                    ORDER BY id DESC LIMIT 1
                    """
                ).first?.decode(0, as: Int.self)
            else { throw RegistryError(.conflict, "\(modelName) has no earlier champion to roll back to") }
            target = previous
        }
        try promote(modelName: modelName, version: target, actor: actor, reason: Self.rollbackPrefix + reason, on: connection)
        return target
    }

    /// A version's model file as stored, with the SHA-256 recorded when it was stored (not recomputed: a byte
    /// changed since then makes the file disagree with its digest, and the predictor refuses it).
    func artifact(modelName: String, version: Int, on connection: PostgresConnection) throws -> StoredArtifact {
        guard
            let row = try connection.query(
                """
                SELECT a.content, a.sha256 FROM registry.model_versions v JOIN registry.artifacts a ON a.run_id = v.run_id
                WHERE v.model_name = \(modelName) AND v.version = \(version)
                """
            ).first
        else { throw RegistryError(.notFound, "model \(modelName) has no version \(version)") }
        return StoredArtifact(content: try row.decode(0, as: [UInt8].self), sha256: try row.decode(1, as: String.self))
    }
}

/// A model file and its SHA-256 (64 lowercase hex digits), as the registry serves them.
struct StoredArtifact: Sendable {
    var content: [UInt8]
    var sha256: String
}
