import Foundation
import Messaging
import Storage
import TestSupport
import Testing

/// Retraining cannot outrun the trainers: a replay fast enough to cut a dataset version every 30 candles while
/// the trainers are still busy leaves at most the newest sweep queued; the older sweeps' queued jobs are
/// superseded, and no run is left running.
@Suite("Training backlog", .serialized)
struct TrainingBacklogTests {
    @Test("2024 replayed fast with a new dataset version every 30 candles: the queue stays within one sweep, nothing stays running")
    func fastReplayKeepsTheQueueBounded() async throws {
        // Slow enough jobs (about a second each on these machines) that the trainers fall behind the replay.
        let system = try await SystemHarness(
            basePort: 19_180, sweepGrid: #"{"units":[16],"epochs":[30],"patience":[30],"batch_size":[32,64,128]}"#, datasetEvery: 30)
        try await system.run {
            try await system.startAll()
            try await system.backfillHistory()
            try await system.tick(system.rows2024.count, pause: .milliseconds(20))
            try await eventually(timeout: .seconds(60), "the replay's dataset versions") {
                try await system.client.query("SELECT count(*) FROM features.dataset_versions").first?.decode(0, as: Int.self) ?? 0 >= 6
            }
            let versions =
                try await system.client.query("SELECT count(*) FROM features.dataset_versions").first?.decode(0, as: Int.self) ?? 0
            var deepest = 0
            var mostQueuedRuns = 0
            let deadline = ContinuousClock.now + .seconds(600)
            while true {
                let jobs = (try? await BrokerAdmin.messageCount(queue: "training.jobs", configuration: system.broker)) ?? 0
                deepest = max(deepest, jobs)
                let open = try await system.client.query("SELECT count(*) FROM registry.runs WHERE status IN ('queued', 'running')").first?
                    .decode(0, as: Int.self)
                let queued =
                    try await system.client.query("SELECT count(*) FROM registry.runs WHERE status = 'queued'").first?.decode(
                        0, as: Int.self) ?? 0
                mostQueuedRuns = max(mostQueuedRuns, queued)
                if open == 0 && jobs == 0 { break }
                guard ContinuousClock.now < deadline else { throw TestSetupError("runs still open after 600 s") }
                try await Task.sleep(for: .milliseconds(100))
            }
            let rows = try await system.client.query("SELECT status, count(*) FROM registry.runs GROUP BY status ORDER BY status")
            let counts = Dictionary(
                uniqueKeysWithValues: try rows.map { (try $0.decode(0, as: String.self), try $0.decode(1, as: Int.self)) })
            let sweeps = try await system.client.query("SELECT count(*) FROM registry.sweeps").first?.decode(0, as: Int.self) ?? 0
            #expect(sweeps >= versions, "one automatic sweep per dataset version")
            #expect(counts["superseded", default: 0] > 0, "older sweeps were superseded: \(counts)")
            #expect(counts["finished", default: 0] >= 3, "the newest sweep trained: \(counts)")
            // Each sweep has 3 jobs: never more than the newest sweep's wait to be trained. (The broker queue may hold
            // more messages for a moment: a superseded job is still delivered, and a trainer acks it at once.)
            // One sweep's jobs: the 3 grid points and the naive baseline (CANDLECAST_SWEEP_BASELINES' default).
            #expect(mostQueuedRuns <= 4, "at most one sweep's jobs queued for training, saw \(mostQueuedRuns)")
            #expect(
                counts["finished", default: 0] + counts["failed", default: 0] < sweeps * 3 / 2,
                "most of the older sweeps' jobs were never trained")
            print(
                """
                reliability | 2024 replayed at 50 candles/s, a dataset version every 30 candles, 3-job sweeps on 2 trainers | \(versions) \
                sweeps, \(sweeps * 3) jobs | runs: \
                \(counts.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")) | at most \(mostQueuedRuns) \
                runs queued for training at once (broker queue at most \(deepest) messages, superseded ones acked untrained), 0 left running
                """
            )
        }
    }
}
