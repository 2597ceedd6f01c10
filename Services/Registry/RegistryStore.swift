import Contracts
import Forecasting
import Foundation
import Messaging
import RegistryAPI
import ServiceKit
import Storage

/// Registry settings beyond the common ones: `CANDLECAST_SWEEP_GRID` (JSON: lists per parameter),
/// `CANDLECAST_SWEEP_BASELINES` (`naive-empirical`: comma-separated model families other than `lstm` that every
/// sweep also trains, one job each; empty: none), `CANDLECAST_PROMOTION_MAX_MASE` (1.0: a challenger must not be
/// worse than the naive forecast), `CANDLECAST_REGISTRY_TOKEN` / `_FILE` (bearer token of the write endpoints; unset:
/// writes refused).
struct RegistrySettings: Sendable {
    var grid: SweepGrid
    var sweepBaselines: [ModelFamily]
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
        // Set and empty means no baselines (unlike other settings, where empty is unset).
        let baselinesText = environment.values["CANDLECAST_SWEEP_BASELINES"] ?? ModelFamily.naive.rawValue
        sweepBaselines = try Self.baselines(baselinesText)
        let points = grid.points
        let jobs = points.count + grid.baselines(adding: sweepBaselines).count
        guard (1...256).contains(jobs) else {
            throw ConfigurationError(key: "CANDLECAST_SWEEP_GRID", reason: "\(jobs) jobs per sweep; a sweep may have 1 to 256")
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

    /// `CANDLECAST_SWEEP_BASELINES`: families other than `lstm`, comma-separated, each once; empty entries are skipped.
    static func baselines(_ text: String) throws -> [ModelFamily] {
        var families: [ModelFamily] = []
        for entry in text.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !entry.isEmpty {
            guard let family = ModelFamily(rawValue: entry), family != .lstm else {
                let known = ModelFamily.allCases.filter { $0 != .lstm }.map(\.rawValue).joined(separator: ", ")
                throw ConfigurationError(key: "CANDLECAST_SWEEP_BASELINES", reason: "\(entry) is not a baseline (known: \(known))")
            }
            if !families.contains(family) { families.append(family) }
        }
        return families
    }
}

/// Lists of values per parameter; a sweep trains every combination. Missing lists take the defaults of
/// `TrainingParameters` (the BTC-daily-v1 reference: LSTM(350, relu), window 14, batch 32; the gaussian head for a
/// log-return target, else the point head). `model` lists families: `lstm` (or no list) trains the LSTM grid points,
/// each baseline listed adds one job of its own, as the registry's `CANDLECAST_SWEEP_BASELINES` do.
struct SweepGrid: Codable, Sendable, Equatable {
    var model: [ModelFamily]?
    var head: [OutputHead]?
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
        case model, head, units, layers, activation, target, window, epochs, patience, seed
        case batchSize = "batch_size"
        case learningRate = "learning_rate"
    }

    /// The baseline families a sweep of this grid trains: those it lists and `configured`, in `ModelFamily` order.
    func baselines(adding configured: [ModelFamily]) -> [ModelFamily] {
        ModelFamily.allCases.filter { $0 != .lstm && ((model ?? []).contains($0) || configured.contains($0)) }
    }

    /// The LSTM grid points: none when `model` lists only baselines.
    var points: [TrainingParameters] {
        if let model, !model.isEmpty, !model.contains(.lstm) { return [] }
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
        expand(target) {
            $0.target = $1
            $0.head = .default(for: $1)
        }
        expand(head) { $0.head = $1 }
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
    /// Baselines every sweep trains beside its grid (`CANDLECAST_SWEEP_BASELINES`).
    var sweepBaselines: [ModelFamily] = []
    static let schema = RegistrySchema.name

    init(maximumMASE: Double, leaseSeconds: Int = 300, maxAttempts: Int = 3, sweepBaselines: [ModelFamily] = []) {
        self.maximumMASE = maximumMASE
        self.leaseSeconds = leaseSeconds
        self.maxAttempts = maxAttempts
        self.sweepBaselines = sweepBaselines
    }

    /// The store the service runs with.
    init(_ settings: RegistrySettings) {
        self.init(
            maximumMASE: settings.maximumMASE, leaseSeconds: settings.leaseSeconds, maxAttempts: settings.maxAttempts,
            sweepBaselines: settings.sweepBaselines)
    }

    static func experimentName(pair: String, interval: CandleInterval) -> String { "\(pair.lowercased())-\(interval.name)" }
    static func modelName(pair: String, interval: CandleInterval) -> String { Contracts.modelName(pair: pair, interval: interval) }

    // MARK: Sweeps

    /// Creates a sweep with one queued run and one `training.job` per grid point and per baseline (the grid's and
    /// `sweepBaselines`). An automatic sweep (`trigger` `dataset.ready`) happens once per dataset version: nil when it
    /// already exists.
    func startSweep(
        pair: String, interval: CandleInterval, datasetVersion: Int, grid: SweepGrid, trigger: String, on connection: PostgresConnection
    ) throws -> (UUID, [TrainingJob])? {
        let points = grid.points
        let baselines = grid.baselines(adding: sweepBaselines)
        guard (1...256).contains(points.count + baselines.count) else {
            throw RegistryError(.invalid, "a sweep needs 1 to 256 jobs, got \(points.count) grid points and \(baselines.count) baselines")
        }
        for point in points {
            do { try point.validate() } catch { throw RegistryError(.invalid, error.reason) }
        }
        guard
            let dataset = try connection.query(
                """
                SELECT spec::text, row_count, training_end FROM features.dataset_versions_v1
                WHERE pair = \(pair) AND interval_seconds = \(Int(interval.seconds)) AND version = \(datasetVersion)
                """
            ).first
        else {
            throw RegistryError(.notFound, "dataset version \(datasetVersion) of \(pair) \(interval) does not exist")
        }
        // Each job's spec is composed here, once, from the dataset version's and the grid point (a baseline's: its
        // window); the trainer trains under it and the gate and the predictor read it back.
        let datasetSpec = try JSONDecoder().decode(ForecastSpec.self, from: Data(try dataset.decode(0, as: String.self).utf8))
        var parameters = points
        for family in baselines {
            parameters.append(
                try Self.baselineParameters(
                    family, datasetSpec: datasetSpec, rowCount: try dataset.decode(1, as: Int.self),
                    trainingEnd: try dataset.decode(2, as: Int.self)))
        }
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
            VALUES (\(sweepID), \(experiment), \(modelName), \(datasetVersion), \(gridJSON)::jsonb, \(trigger), \(parameters.count))
            ON CONFLICT DO NOTHING
            """
        ).affectedRows
        guard inserted == 1 else { return nil }
        let automatic = trigger == "dataset.ready"
        if automatic { try supersedeQueuedRuns(modelName: modelName, before: datasetVersion, on: connection) }
        var jobs: [TrainingJob] = []
        for point in parameters {
            let job = TrainingJob(
                jobID: UUID(), sweepID: sweepID, experiment: experiment, modelName: modelName, pair: pair, interval: interval,
                datasetVersion: datasetVersion, parameters: point, supersedable: automatic ? true : nil, spec: point.spec(on: datasetSpec))
            let params = String(decoding: try JSONEncoder().encode(point), as: UTF8.self)
            let spec = String(decoding: try JSONEncoder().encode(job.spec), as: UTF8.self)
            try connection.query(
                """
                INSERT INTO registry.runs (job_id, sweep_id, experiment, status, params, dataset_version, spec, model)
                VALUES (\(job.jobID), \(sweepID), \(experiment), 'queued', \(params)::jsonb, \(datasetVersion), \(spec)::jsonb,
                    \(point.model.rawValue))
                """)
            try Outbox.enqueue(
                Envelope(payload: job, correlationID: sweepID.uuidString.lowercased()), routingKey: RoutingKey.trainingJob,
                exchange: Exchange.events,
                schema: Self.schema, on: connection)
            jobs.append(job)
        }
        return (sweepID, jobs)
    }

    /// A baseline's job parameters on a dataset version: its window, and the dataset's target and activation, so that
    /// `spec(on:)` the dataset's spec is the baseline's (`ForecastModel.naive(_:on:)`); the network parameters are unused.
    static func baselineParameters(_ family: ModelFamily, datasetSpec: ForecastSpec, rowCount: Int, trainingEnd: Int) throws
        -> TrainingParameters
    {
        switch family {
        case .lstm:
            throw RegistryError(.invalid, "lstm is not a baseline")
        case .naive:
            let baseline: NaiveBaseline
            do {
                baseline = try NaiveBaseline.candidate(
                    on: try ChronologicalSplit.ofDataset(count: rowCount, trainingEnd: trainingEnd, spec: datasetSpec))
            } catch {
                throw RegistryError(.invalid, "the dataset version is too short for the naive baseline: \(error)")
            }
            return TrainingParameters(
                model: .naive, activation: datasetSpec.activation, target: datasetSpec.target, window: baseline.window, head: .point)
        }
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
        func json(_ value: (some Encodable)?) throws -> String? {
            try value.map { String(decoding: try encoder.encode($0), as: UTF8.self) }
        }
        try connection.query(
            """
            UPDATE registry.runs SET status = \(status), error = \(error), trainer = \(completed.trainer),
                epochs_run = \(completed.epochsRun), best_epoch = \(completed.bestEpoch), validation_loss = \(completed.validationLoss),
                test_metrics = \(try json(completed.test))::jsonb, naive_metrics = \(try json(completed.naive))::jsonb,
                validation_metrics = \(try json(completed.validation))::jsonb,
                test_distribution = \(try json(completed.testDistribution))::jsonb,
                naive_distribution = \(try json(completed.naiveDistribution))::jsonb,
                validation_distribution = \(try json(completed.validationDistribution))::jsonb,
                validation_start = \(completed.validationRows?.start), validation_end = \(completed.validationRows?.end),
                train_seconds = \(completed.trainSeconds), started_at = coalesce(started_at, now()), ended_at = now(),
                lease_expires_at = NULL
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

    /// A model version's accuracy in USD on a dataset version's test rows: point accuracy and the 80 % interval's
    /// Winkler score (nil for a model without intervals, an LSTM trained before calibration).
    struct TestScore: Sendable, Equatable {
        var rmse: Double
        var mase: Double
        var winkler: Double?
        var rows: Range<Int>
    }

    /// A finished run as the gate ranks it: validation scores on the sweep's validation rows (nil for a run from
    /// before them, or scored on other rows), and the test scores it reported.
    struct GateCandidate: Sendable, Equatable {
        var runID: Int64
        var family: ModelFamily
        var validationMASE: Double?
        var validationWinkler: Double?
        var validationLoss: Double?
        /// Usable only when on the gate's test rows and with the 80 % Winkler score; otherwise the gate scores the file.
        var reportedTest: TestScore?

        /// Whether the gate can rank it at all.
        var isRankable: Bool { validationMASE != nil || validationLoss != nil }

        /// The gate's order: lowest validation MASE, then lowest validation 80 % Winkler score, then lowest run id; runs
        /// without validation scores (from before them) after all others, by validation loss, then run id.
        static func ranksBefore(_ a: GateCandidate, _ b: GateCandidate) -> Bool {
            switch (a.validationMASE, b.validationMASE) {
            case (let first?, let second?):
                if first != second { return first < second }
                let (firstWinkler, secondWinkler) = (a.validationWinkler ?? .infinity, b.validationWinkler ?? .infinity)
                if firstWinkler != secondWinkler { return firstWinkler < secondWinkler }
                return a.runID < b.runID
            case (.some, nil): return true
            case (nil, .some): return false
            case (nil, nil):
                let (first, second) = (a.validationLoss ?? .infinity, b.validationLoss ?? .infinity)
                return first != second ? first < second : a.runID < b.runID
            }
        }
    }

    /// The finished runs of a sweep, ranked (`GateCandidate.ranksBefore`); validation scores count only on `validationRows`.
    func rankedCandidates(sweepID: UUID, validationRows: Range<Int>, testRows: Range<Int>, on connection: PostgresConnection) throws
        -> [GateCandidate]
    {
        let decoder = JSONDecoder()
        func decoded<T: Decodable>(_ text: String?, as type: T.Type) -> T? {
            text.flatMap { try? decoder.decode(T.self, from: Data($0.utf8)) }
        }
        let rows = try connection.query(
            """
            SELECT id, model, validation_loss, validation_metrics::text, validation_distribution::text, validation_start, validation_end,
                   test_metrics::text, test_distribution::text, test_start, test_end
            FROM registry.runs WHERE sweep_id = \(sweepID) AND status = 'finished'
            """)
        let candidates = try rows.map { row in
            var candidate = GateCandidate(
                runID: try row.decode(0, as: Int64.self), family: ModelFamily(rawValue: try row.decode(1, as: String.self)) ?? .lstm,
                validationLoss: try row.decode(2, as: Double?.self))
            let validated = try row.decode(5, as: Int?.self).flatMap { start in
                try row.decode(6, as: Int?.self).map { start..<max(start, $0) }
            }
            if validated == validationRows, let scores = decoded(try row.decode(3, as: String?.self), as: ForecastScores.self) {
                candidate.validationMASE = scores.mase
                candidate.validationWinkler =
                    decoded(try row.decode(4, as: String?.self), as: DistributionScores.self)?
                    .interval(IntervalLevels.gated)?.winkler
            }
            let tested = try row.decode(9, as: Int?.self).flatMap { start in
                try row.decode(10, as: Int?.self).map { start..<max(start, $0) }
            }
            if tested == testRows, let scores = decoded(try row.decode(7, as: String?.self), as: ForecastScores.self),
                let winkler = decoded(try row.decode(8, as: String?.self), as: DistributionScores.self)?.interval(IntervalLevels.gated)?
                    .winkler
            {
                candidate.reportedTest = TestScore(rmse: scores.rmse, mase: scores.mase, winkler: winkler, rows: testRows)
            }
            return candidate
        }
        return candidates.filter(\.isRankable).sorted(by: GateCandidate.ranksBefore)
    }

    /// The sweep's best candidate on the validation rows (`rankedCandidates`), of any family, becomes `challenger`,
    /// and `champion` only if its test MASE is within `maximumMASE` and, when there is a champion, it is not worse
    /// than the champion on the same test rows in MASE and in 80 % Winkler score (both <=: a tie promotes; a champion
    /// without intervals is compared on MASE only). The test rows are the sweep's dataset version's
    /// `training_end..<row_count`, as the preprocessor cut them; reported scores count only on exactly those rows,
    /// else the model file is scored here, as the champion always is. When no model is champion yet and the
    /// challenger is refused, the sweep's naive baseline becomes the first champion if its MASE is within the threshold.
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
        let testSet = try self.testSet(modelName: modelName, datasetVersion: datasetVersion, on: connection)
        let ranked = try rankedCandidates(
            sweepID: sweepID, validationRows: testSet.validationRows, testRows: testSet.rows, on: connection)
        guard let best = ranked.first else {
            return try record(
                GateDecision(promoted: false, reason: "no run of the sweep finished"), sweepID: sweepID, modelName: modelName,
                on: connection)
        }
        let rows = "rows \(testSet.rows.lowerBound)..<\(testSet.rows.upperBound)"
        let picked =
            best.validationMASE != nil
            ? "lowest validation MASE of sweep \(sweepID)" : "best validation loss of sweep \(sweepID) (no validation scores)"
        let version = try registerVersion(runID: best.runID, modelName: modelName, datasetVersion: datasetVersion, on: connection)
        try moveAlias("challenger", of: modelName, to: version, actor: "gate", reason: picked, on: connection)
        let challenger = try testScore(best, version: version, modelName: modelName, on: testSet, connection: connection)
        let challengerName = "challenger v\(version) (\(best.family.rawValue))"

        var decision = GateDecision(challengerVersion: version, promoted: false, reason: "")
        var champion: TestScore?
        if let championVersion = try aliasVersion("champion", of: modelName, on: connection) {
            decision.championVersion = championVersion
            champion = try score(modelName: modelName, version: championVersion, on: testSet, connection: connection)
        }
        var recorded = challenger
        let challengerVerdict = judge(
            challenger, named: challengerName, champion: champion, championVersion: decision.championVersion, rows: rows,
            runnerUp: runnerUp(ranked.dropFirst(), testSet: testSet))
        decision.reason = challengerVerdict.reason
        if challengerVerdict.passes {
            decision.promoted = true
            try promote(modelName: modelName, version: version, actor: "gate", reason: decision.reason, on: connection)
        } else if let baseline = ranked.first(where: { $0.family == .naive && $0.runID != best.runID }) {
            // The refused challenger would leave no champion, or an older one going stale: the sweep's baseline, trained on
            // the same dataset version, is judged by the same rule (the honest forecast when no model wins).
            let baselineVersion = try registerVersion(
                runID: baseline.runID, modelName: modelName, datasetVersion: datasetVersion, on: connection)
            let baselineScore = try testScore(baseline, version: baselineVersion, modelName: modelName, on: testSet, connection: connection)
            let name = "the sweep's naive-empirical baseline v\(baselineVersion)"
            let baselineVerdict: (passes: Bool, reason: String)
            if champion == nil {
                let (baselineMASE, threshold) = MetricText.distinguishable(baselineScore.mase, maximumMASE, fractionDigits: 3)
                baselineVerdict =
                    baselineScore.mase <= maximumMASE
                    ? (
                        true,
                        "no champion yet, so \(name) is the first champion: test MASE \(baselineMASE) within the \(threshold) "
                            + "threshold, 80% Winkler \(Self.winklerText(baselineScore.winkler))"
                    )
                    : (false, "\(name) has test MASE \(baselineMASE), above the threshold too: no champion")
            } else {
                baselineVerdict = judge(
                    baselineScore, named: name, champion: champion, championVersion: decision.championVersion, rows: rows, runnerUp: "")
            }
            decision.reason += "; " + baselineVerdict.reason
            if baselineVerdict.passes {
                try moveAlias(
                    "challenger", of: modelName, to: baselineVersion, actor: "gate",
                    reason: "v\(version) refused: the sweep's naive baseline", on: connection)
                decision.challengerVersion = baselineVersion
                recorded = baselineScore
                decision.promoted = true
                try promote(modelName: modelName, version: baselineVersion, actor: "gate", reason: decision.reason, on: connection)
            }
        }
        return try record(decision, sweepID: sweepID, modelName: modelName, challenger: recorded, champion: champion, on: connection)
    }

    /// The gate's rule for one candidate: its test MASE within `maximumMASE` and, when there is a champion, not worse than
    /// it on the same test rows in MASE and 80 % Winkler (`compare`). The reason quotes the figures.
    func judge(
        _ candidate: TestScore, named name: String, champion: TestScore?, championVersion: Int?, rows: String, runnerUp: String
    ) -> (passes: Bool, reason: String) {
        let (mase, threshold) = MetricText.distinguishable(candidate.mase, maximumMASE, fractionDigits: 3)
        guard candidate.mase <= maximumMASE else {
            return (
                false,
                "\(name) has test MASE \(mase), above the \(threshold) threshold against the naive forecast "
                    + "(\(rows), 80% Winkler \(Self.winklerText(candidate.winkler)))"
            )
        }
        if let champion, let championVersion {
            let verdict = Self.compare(candidate, named: name, with: champion, championVersion: championVersion, rows: rows)
            return (verdict.notWorse, verdict.reason)
        }
        return (
            true,
            "first champion: \(name) has test MASE \(mase) within the \(threshold) threshold, 80% Winkler "
                + "\(Self.winklerText(candidate.winkler)) (\(rows))" + runnerUp
        )
    }

    /// The gate's rule against a champion: not worse on the same test rows in MASE and in 80 % Winkler score (both <=,
    /// a tie passes; a champion without intervals is compared on MASE only), with the reason quoting both figures.
    static func compare(_ candidate: TestScore, named name: String, with champion: TestScore, championVersion: Int, rows: String)
        -> (notWorse: Bool, reason: String)
    {
        let (mase, championMASE) = MetricText.distinguishable(candidate.mase, champion.mase, fractionDigits: 3)
        let notWorseInMASE = candidate.mase <= champion.mase
        var figures = "MASE \(mase) vs \(championMASE)"
        let notWorseInWinkler: Bool
        if let championWinkler = champion.winkler {
            let (winkler, championText) = MetricText.distinguishable(candidate.winkler ?? .infinity, championWinkler, fractionDigits: 0)
            figures += ", 80% Winkler \(candidate.winkler == nil ? "none (no intervals)" : winkler) vs \(championText) USD"
            notWorseInWinkler = candidate.winkler.map { $0 <= championWinkler } ?? false
        } else {
            figures +=
                ", 80% Winkler \(winklerText(candidate.winkler)) vs none: champion v\(championVersion) has no intervals "
                + "(trained before calibration), so MASE alone decides"
            notWorseInWinkler = true
        }
        let comparison = "champion v\(championVersion) on the same test \(rows): \(figures)"
        if notWorseInMASE && notWorseInWinkler { return (true, "\(name) is not worse than \(comparison)") }
        let worse = [notWorseInMASE ? nil : "MASE", notWorseInWinkler ? nil : "80% Winkler"].compactMap { $0 }
        return (false, "\(name) is worse in \(worse.joined(separator: " and ")) than \(comparison)")
    }

    /// The next-ranked candidate's reported test figures beside a first champion's, so that the reason says what it beat.
    private func runnerUp(_ others: ArraySlice<GateCandidate>, testSet: TestSet) -> String {
        guard let next = others.first else { return "" }
        let ranking = next.validationMASE.map { "validation MASE \(String(format: "%.4f", $0))" } ?? "a higher validation loss"
        guard let test = next.reportedTest else { return "; next candidate: run \(next.runID) (\(next.family.rawValue)), \(ranking)" }
        return "; next candidate: run \(next.runID) (\(next.family.rawValue)), \(ranking), test MASE \(String(format: "%.3f", test.mase)), "
            + "80% Winkler \(Self.winklerText(test.winkler))"
    }

    static func winklerText(_ winkler: Double?) -> String { winkler.map { String(format: "%.0f USD", $0) } ?? "none (no intervals)" }

    /// Registers a run's model as the next version of `modelName`.
    private func registerVersion(runID: Int64, modelName: String, datasetVersion: Int, on connection: PostgresConnection) throws -> Int {
        try connection.query(
            """
            INSERT INTO registry.model_versions (model_name, version, run_id, dataset_version, spec)
            SELECT \(modelName), coalesce(max(version), 0) + 1, \(runID), \(datasetVersion),
                (SELECT spec FROM registry.runs WHERE id = \(runID))
            FROM registry.model_versions WHERE model_name = \(modelName)
            RETURNING version
            """
        )[0].decode(0, as: Int.self)
    }

    /// A candidate's test score: as reported when on the gate's rows, else its model file scored here.
    private func testScore(
        _ candidate: GateCandidate, version: Int, modelName: String, on testSet: TestSet, connection: PostgresConnection
    ) throws -> TestScore {
        if let reported = candidate.reportedTest, reported.rows == testSet.rows { return reported }
        return try score(modelName: modelName, version: version, on: testSet, connection: connection)
    }

    private func record(
        _ decision: GateDecision, sweepID: UUID, modelName: String, challenger: TestScore? = nil, champion: TestScore? = nil,
        on connection: PostgresConnection
    ) throws -> GateDecision {
        try connection.query(
            """
            INSERT INTO registry.promotion_decisions (sweep_id, model_name, challenger_version, champion_version, promoted, reason,
                challenger_rmse, champion_rmse, challenger_mase, champion_mase, challenger_winkler80, champion_winkler80,
                challenger_test_start, challenger_test_end, champion_test_start, champion_test_end)
            VALUES (\(sweepID), \(modelName), \(decision.challengerVersion), \(decision.championVersion), \(decision.promoted),
                \(decision.reason), \(challenger?.rmse), \(champion?.rmse), \(challenger?.mase), \(champion?.mase), \(challenger?.winkler),
                \(champion?.winkler), \(challenger?.rows.lowerBound), \(challenger?.rows.upperBound), \(champion?.rows.lowerBound),
                \(champion?.rows.upperBound))
            """)
        return decision
    }

    /// A dataset version's closes, its test rows (`training_end..<row_count` as stored, never recomputed) and its
    /// validation rows (its own split's, which every candidate of a sweep is ranked on).
    struct TestSet: Sendable {
        var closes: [Double]
        var rows: Range<Int>
        var validationRows: Range<Int>
    }

    func testSet(modelName: String, datasetVersion: Int, on connection: PostgresConnection) throws -> TestSet {
        guard
            let dataset = try connection.query(
                """
                SELECT d.closes::float8[], d.training_end, d.spec::text FROM features.dataset_versions_v1 d
                JOIN registry.experiments e ON e.pair = d.pair AND e.interval_seconds = d.interval_seconds
                JOIN registry.registered_models m ON m.experiment = e.name
                WHERE m.name = \(modelName) AND d.version = \(datasetVersion)
                """
            ).first
        else { throw RegistryError(.notFound, "dataset version \(datasetVersion) not found") }
        let closes = try dataset.decode(0, as: PostgresDoubleArray.self).values
        let trainingEnd = try dataset.decode(1, as: Int.self)
        let spec = try JSONDecoder().decode(ForecastSpec.self, from: Data(try dataset.decode(2, as: String.self).utf8))
        // A dataset too short to split has no validation rows: every candidate then ranks by validation loss.
        let validationRows =
            (try? ChronologicalSplit.ofDataset(count: closes.count, trainingEnd: trainingEnd, spec: spec))?
            .validationTargets ?? 0..<0
        return TestSet(closes: closes, rows: trainingEnd..<closes.count, validationRows: validationRows)
    }

    /// A stored model version of any family scored in USD on `testSet`'s rows (each forecast from the closes before its
    /// row): point accuracy, and the 80 % interval's Winkler score when the model has intervals.
    func score(modelName: String, version: Int, on testSet: TestSet, connection: PostgresConnection) throws -> TestScore {
        let model = try ForecastModel(decoding: try artifact(modelName: modelName, version: version, on: connection).content)
        guard model.isCalibrated else {
            let windows = try makeWindows(series: testSet.closes, window: model.window, targets: testSet.rows)
            let metrics = try ForecastMetrics(
                predictions: try model.pointForecasts(windows: windows.inputs), actuals: windows.targets,
                previous: testSet.rows.map { testSet.closes[$0 - 1] })
            return TestScore(rmse: metrics.rmse, mase: metrics.mase, winkler: nil, rows: testSet.rows)
        }
        let evaluation = try model.evaluate(closes: testSet.closes, targets: testSet.rows)
        return TestScore(
            rmse: evaluation.point.model.rmse, mase: evaluation.point.model.mase,
            winkler: evaluation.model.interval(IntervalLevels.gated)?.winkler, rows: testSet.rows)
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
