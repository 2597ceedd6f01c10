import Contracts
import Foundation
import Messaging
import ServiceKit
import Storage
import TestSupport
import Testing

@testable import Registry
@testable import Trainer

/// Point 7 of the hardening issue: lost trainers and superseded sweeps, against the real PostgreSQL and RabbitMQ.
@Suite("Training leases and superseded sweeps", .serialized)
struct TrainingLeaseTests {
    /// A copy of dataset version 1 as version `version` (another content hash), as a newer `dataset.ready` would bring.
    static func addDatasetVersion(_ version: Int, _ pipeline: TrainingPipeline) async throws {
        try await pipeline.client.transaction { connection in
            try connection.executeScript(
                """
                CREATE TEMP TABLE copy_v ON COMMIT DROP AS SELECT * FROM features.dataset_versions WHERE pair = 'XBTUSD' AND version = 1;
                UPDATE copy_v SET version = \(version), content_hash = content_hash || '-\(version)';
                INSERT INTO features.dataset_versions SELECT * FROM copy_v;
                """)
        }
    }

    @Test("the lease setting is validated at start")
    func leaseSettingValidated() throws {
        #expect(throws: ConfigurationError.self) { try RegistrySettings(EnvironmentReader(["CANDLECAST_TRAINING_LEASE_SECONDS": "0"])) }
        #expect(throws: ConfigurationError.self) { try RegistrySettings(EnvironmentReader(["CANDLECAST_TRAINING_MAX_ATTEMPTS": "x"])) }
        #expect(try RegistrySettings(EnvironmentReader(["CANDLECAST_TRAINING_LEASE_SECONDS": "2"])).leaseSeconds == 2)
    }

    @Test(
        "a run whose trainer stops heartbeating is requeued and finished by another trainer; past its attempts it fails with 'trainer lost'"
    )
    func lostTrainer() async throws {
        let pipeline = try await TrainingPipeline(maximumMASE: 100)
        defer { Task { await pipeline.tearDown() } }
        let store = RegistryStore(maximumMASE: 100, leaseSeconds: 2, maxAttempts: 2)
        let sweep = try await pipeline.sweep(tinyGrid(batchSizes: [32]))
        let jobID = try await pipeline.client.query("SELECT job_id FROM registry.runs WHERE sweep_id = \(sweep)")[0].decode(
            0, as: UUID.self)
        // A trainer that sent one epoch metric and then vanished (no trainer consumes the queue yet).
        let ghost = TrainingEpochMetric(
            jobID: jobID, trainer: "ghost", epoch: 1, loss: 1, validationLoss: 1, learningRate: 0.001, seconds: 0.1)
        try await pipeline.client.transaction { try store.recordEpoch(ghost, on: $0) }
        #expect(
            try await pipeline.count("SELECT count(*) FROM registry.runs WHERE status = 'running' AND lease_expires_at IS NOT NULL") == 1)
        #expect(try await pipeline.client.transaction { try store.expireLostRuns(on: $0) } == (0, 0))  // lease not expired yet
        try await Task.sleep(for: .milliseconds(2500))
        // Two registry replicas sweep at once: the row lock (SKIP LOCKED) lets one of them requeue the run.
        async let first = pipeline.client.transaction { try store.expireLostRuns(on: $0) }
        async let second = pipeline.client.transaction { try store.expireLostRuns(on: $0) }
        let passes = try await [first, second]
        #expect(passes.map { $0.requeued }.reduce(0, +) == 1)
        #expect(
            try await pipeline.count(
                "SELECT count(*) FROM registry.runs WHERE status = 'queued' AND attempts = 1 AND error LIKE 'trainer lost%'") == 1)

        // The ghost comes back for one more epoch, then vanishes again: attempt 2 of 2, so the run fails for good.
        try await pipeline.client.transaction { try store.recordEpoch(ghost, on: $0) }
        try await Task.sleep(for: .milliseconds(2500))
        #expect(try await pipeline.client.transaction { try store.expireLostRuns(on: $0) } == (0, 1))
        #expect(try await pipeline.client.transaction { try store.expireLostRuns(on: $0) } == (0, 0))  // idempotent
        #expect(
            try await pipeline.count("SELECT count(*) FROM registry.runs WHERE status = 'failed' AND error = 'trainer lost (2 attempts)'")
                == 1)
        let decision = try await pipeline.decision(sweep, timeout: .seconds(5))
        #expect(!decision.promoted)

        // A second sweep: its trainer is lost once, the requeued job is trained by another trainer.
        let retried = try await pipeline.sweep(tinyGrid(batchSizes: [16]))
        let retriedJob = try await pipeline.client.query("SELECT job_id FROM registry.runs WHERE sweep_id = \(retried)")[0].decode(
            0, as: UUID.self)
        let ghost2 = TrainingEpochMetric(
            jobID: retriedJob, trainer: "ghost", epoch: 1, loss: 1, validationLoss: 1, learningRate: 0.001, seconds: 0.1)
        try await pipeline.client.transaction { try store.recordEpoch(ghost2, on: $0) }
        try await Task.sleep(for: .milliseconds(2500))
        #expect(try await pipeline.client.transaction { try store.expireLostRuns(on: $0) } == (1, 0))
        _ = try pipeline.startTrainer("survivor")
        _ = try await pipeline.decision(retried, timeout: .seconds(120))
        #expect(
            try await pipeline.count(
                "SELECT count(*) FROM registry.runs WHERE sweep_id = \(retried) AND status = 'finished' AND trainer = 'survivor'") == 1)
        #expect(try await pipeline.count("SELECT count(*) FROM registry.runs WHERE status IN ('queued', 'running')") == 0)
    }

    @Test("two dataset versions with no trainer running: the old sweep's queued jobs are superseded, only the newest sweep trains")
    func newerDatasetSupersedes() async throws {
        let pipeline = try await TrainingPipeline(maximumMASE: 100)
        defer { Task { await pipeline.tearDown() } }
        let store = pipeline.store
        try await Self.addDatasetVersion(2, pipeline)
        let grid = tinyGrid(batchSizes: [16, 32, 64])
        let old = try #require(
            try await pipeline.client.transaction { connection in
                try store.startSweep(
                    pair: "XBTUSD", interval: .oneDay, datasetVersion: 1, grid: grid, trigger: "dataset.ready", on: connection)
            })
        let new = try #require(
            try await pipeline.client.transaction { connection in
                try store.startSweep(
                    pair: "XBTUSD", interval: .oneDay, datasetVersion: 2, grid: grid, trigger: "dataset.ready", on: connection)
            })
        #expect(try await pipeline.count("SELECT count(*) FROM registry.runs WHERE sweep_id = \(old.0) AND status = 'superseded'") == 3)
        #expect(try await pipeline.count("SELECT count(*) FROM registry.runs WHERE status = 'queued'") == 3)
        #expect(try await pipeline.count("SELECT count(*) FROM registry.promotion_decisions WHERE sweep_id = \(old.0)") == 1)

        let started = ContinuousClock.now
        _ = try pipeline.startTrainer("only")
        _ = try await pipeline.decision(new.0, timeout: .seconds(180))
        // The 3 superseded jobs still in the queue are acked without training: no epoch of theirs is recorded.
        try await eventually(timeout: .seconds(30), "the work queue to drain") {
            try await BrokerAdmin.messageCount(queue: "training.jobs", configuration: pipeline.broker) == 0
        }
        #expect(try await pipeline.count("SELECT count(*) FROM registry.runs WHERE sweep_id = \(new.0) AND status = 'finished'") == 3)
        #expect(
            try await pipeline.count(
                "SELECT count(*) FROM registry.runs WHERE sweep_id = \(old.0) AND status = 'superseded' AND trainer IS NULL") == 3)
        #expect(
            try await pipeline.count(
                "SELECT count(*) FROM registry.run_metrics m JOIN registry.runs r ON r.id = m.run_id WHERE r.sweep_id = \(old.0)") == 0)
        #expect(try await pipeline.count("SELECT count(*) FROM registry.runs WHERE status IN ('queued', 'running')") == 0)
        print("superseded sweep: 3 old jobs skipped, 3 new trained in \(ContinuousClock.now - started)")
    }
}
