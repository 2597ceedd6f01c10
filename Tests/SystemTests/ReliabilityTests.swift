import CandlecastClient
import Foundation
import Messaging
import Storage
import TestSupport
import Testing

/// Faults injected into a running system, with the counts that show nothing was lost or done twice. Each
/// test prints one row of the README's reliability table.
@Suite("Reliability", .serialized)
struct ReliabilityTests {
    /// A system with history, a champion and a subscriber, ready for the 2024 replay.
    static func forecastingSystem(
        basePort: Int, brokerCluster: Bool = false, databasePair: Bool = false, replicas: [String] = []
    ) async throws -> (SystemHarness, ForecastSubscriber, SharedList<ForecastCreated>, Task<Void, Never>) {
        let system = try await SystemHarness(
            basePort: basePort, brokerCluster: brokerCluster, databasePair: databasePair, replicas: replicas)
        return try await system.tearingDownOnFailure {
            try await system.startAll()
            let subscriber = try ForecastSubscriber(
                broker: system.broker, options: .init(queue: "reliability.client"), logger: TestEnvironment.logger)
            let received = SharedList<ForecastCreated>()
            let task = Task { await subscriber.forecasts { received.append($0) } }
            try await system.backfillHistory()
            try await system.waitForRuns(2)
            try await system.ensureChampion(sweepID: try #require(await system.runs().first?["sweep_id"] as? String))
            try await eventually(timeout: .seconds(60), "the first forecast") { received.values.count >= 1 }
            return (system, subscriber, received, task)
        }
    }

    /// After the replay: every 2024 candle stored once and unrevised, every target forecast once per model version
    /// that saw its window, every forecast of a past candle scored; returns the subscriber's duplicate deliveries.
    static func verifyReplay(_ system: SystemHarness, _ received: SharedList<ForecastCreated>) async throws -> (
        forecasts: Int, duplicates: Int
    ) {
        let expected = system.expectedTargets
        try await eventually(timeout: .seconds(300), "a forecast for each of \(expected.count) targets") {
            Set(try await system.storedForecasts().map(\.target)) == expected
        }
        try await eventually(timeout: .seconds(120), "every stored forecast delivered and every past target scored") {
            let stored = try await system.storedForecasts()
            let delivered = Set(received.values.map { "\($0.targetOpenTime)/\($0.modelVersion)" })
            return stored.allSatisfy { delivered.contains("\($0.target)/\($0.version)") }
                && stored.filter { $0.actual == nil }.allSatisfy { $0.target == expected.max() }
        }
        let candles = try await system.storedCandles2024()
        #expect(candles.count == system.rows2024.count, "every 2024 candle stored once")
        #expect(candles.revised == 0, "no candle stored twice as a revision")
        let stored = try await system.storedForecasts()
        let keys = stored.map { "\($0.target)/\($0.version)" }
        #expect(Set(keys).count == keys.count)
        let deliveries = received.values.map { "\($0.targetOpenTime)/\($0.modelVersion)" }
        #expect(Set(deliveries) == Set(keys), "the subscriber got every stored forecast and nothing else")
        return (stored.count, deliveries.count - Set(deliveries).count)
    }

    @Test(
        """
        SIGKILL of each service in turn mid-replay: candles stored once, one forecast per window and model version, no training job lost \
        or done twice
        """
    )
    func killEachService() async throws {
        let (system, subscriber, received, task) = try await Self.forecastingSystem(basePort: 18_680)
        try await system.run {
            // A second sweep, slow enough in a debug build that the trainer and the registry die with jobs in flight.
            let sweep = await httpRequest(
                "POST", system.registryURL + "/v1/sweeps",
                headers: ["Authorization": "Bearer \(system.token)", "Content-Type": "application/json"],
                body: Data(
                    #"""
                    {"pair":"XBTUSD","interval":"1d","dataset_version":1,"grid":{"units":[24],"epochs":[30],"patience":[100],\#
                    "batch_size":[16,32,64,128]}}
                    """#.utf8))
            #expect(sweep?.status == 201)
            var recovery: [String: Duration] = [:]
            try await eventually(timeout: .seconds(60), "a job running") {
                await system.runs().contains { $0["status"] as? String == "running" }
            }
            // Kill the trainer that holds a running job (trainers name themselves <host>-<pid>).
            let holder = await system.runs().first { $0["status"] as? String == "running" }?["trainer"] as? String ?? ""
            let victim = ["trainer-a", "trainer-b"].first { holder.hasSuffix("-\(system.processes[$0]?.pid ?? -1)") } ?? "trainer-a"
            recovery["trainer (mid-job)"] = try await system.killAndRestart(victim)
            try await system.tick(60)
            recovery["registry (during a sweep)"] = try await system.killAndRestart("registry")
            try await system.tick(60)
            recovery["predictor (mid-stream)"] = try await system.killAndRestart("predictor")
            try await system.tick(60)
            recovery["preprocessor (mid-stream)"] = try await system.killAndRestart("preprocessor")
            try await system.tick(60)
            recovery["ingestor (while polling)"] = try await system.killAndRestart("ingestor")
            try await system.tick(system.rows2024.count - 240)

            let (forecasts, duplicates) = try await Self.verifyReplay(system, received)
            // Every job of both sweeps ran exactly once to the end.
            try await system.waitForRuns(6)
            let perJob = try await system.client.query("SELECT job_id, count(*) FROM registry.runs GROUP BY job_id")
            let runsPerJob = try perJob.map { try $0.decode(1, as: Int.self) }
            #expect(runsPerJob.count == 6 && runsPerJob.allSatisfy { $0 == 1 }, "one run per job")
            #expect(await system.runs().allSatisfy { $0["status"] as? String == "finished" })
            print(
                """
                reliability | SIGKILL of trainer (mid-job), registry, predictor, preprocessor, ingestor during the 2024 replay | \
                \(system.rows2024.count) candles, \(forecasts) forecasts, 6 jobs | lost 0 | duplicate forecasts stored 0, redelivered to \
                the subscriber \(duplicates) | ready again after \
                \(recovery.map { "\($0.key) \($0.value)" }.sorted().joined(separator: ", "))
                """
            )
            await subscriber.stop()
            await task.value
        }
    }

    @Test("RabbitMQ stopped for 30 s and PostgreSQL restarted mid-replay: every service reconnects, the same counts hold")
    func serverOutages() async throws {
        let (system, subscriber, received, task) = try await Self.forecastingSystem(basePort: 18_780)
        try await system.run {
            try await system.tick(100)
            try await eventually(timeout: .seconds(60), "the first 100 candles forecast") {
                Set(received.values.map(\.targetOpenTime)).count >= 101
            }
            try await TestEnvironment.servers("rabbit-stop-app")
            let brokerDown = ContinuousClock.now
            try await system.tick(20, pause: .milliseconds(1400))  // Kraken keeps closing candles during the outage
            try await Task.sleep(until: brokerDown + .seconds(30))
            try await TestEnvironment.servers("rabbit-start-app")
            let brokerBack = ContinuousClock.now
            try await eventually(timeout: .seconds(120), "the outage's candles forecast") {
                Set(received.values.map(\.targetOpenTime)).count >= 121
            }
            let brokerRecovery = ContinuousClock.now - brokerBack
            for role in SystemHarness.roles { try await system.waitReady(role) }

            try await system.tick(100)
            try await TestEnvironment.servers("postgres-restart")
            let databaseBack = ContinuousClock.now
            try await system.tick(system.rows2024.count - 220)
            try await eventually(timeout: .seconds(120), "forecasts after the database restart") {
                Set(received.values.map(\.targetOpenTime)).count >= 222
            }
            let databaseRecovery = ContinuousClock.now - databaseBack
            let (forecasts, duplicates) = try await Self.verifyReplay(system, received)
            for role in SystemHarness.roles { try await system.waitReady(role) }
            print(
                """
                reliability | RabbitMQ stopped 30 s, then PostgreSQL restarted, during the 2024 replay | \(system.rows2024.count) candles, \
                \(forecasts) forecasts | lost 0 | duplicate forecasts stored 0, redelivered to the subscriber \(duplicates) | forecasts \
                flowing again \(brokerRecovery) after RabbitMQ came back, \(databaseRecovery) after PostgreSQL
                """
            )
            await subscriber.stop()
            await task.value
        }
    }
}
