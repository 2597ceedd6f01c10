import CandlecastClient
import Contracts
import Foundation
import Messaging
import Storage
import TestSupport
import Testing

/// Outgrowing one machine: the 2024 replay on a three-node RabbitMQ cluster with a node stopped, on a PostgreSQL
/// primary and synchronous standby with the primary crashed, and with every consuming service replicated. Each
/// test prints one row of the README's scaling-out table.
@Suite("Scaling out", .serialized)
struct ScaleOutTests {
    /// The node of the three-node cluster (1...3) that holds most of `service`'s connections.
    static func clusterNode(of service: String) async throws -> Int {
        let output = try await TestEnvironment.output(
            TestEnvironment.repositoryRoot.appendingPathComponent("scripts/servers.sh").path, ["cluster-connections"])
        let ports = (TestEnvironment.variables["CANDLECAST_CLUSTER_PORTS"] ?? "5681 5682 5683").split(separator: " ").map(String.init)
        var counts: [Int: Int] = [:]
        for line in output.split(separator: "\n") {
            let fields = line.split(separator: "\t", omittingEmptySubsequences: false)
            guard fields.count >= 3, fields[2] == service, let index = ports.firstIndex(where: { fields[0].hasSuffix("-\($0)@localhost") })
            else {
                continue
            }
            counts[index + 1, default: 0] += 1
        }
        guard let node = counts.max(by: { $0.value < $1.value })?.key else {
            throw TestSetupError("no connection of \(service) on the cluster: \(output)")
        }
        return node
    }

    @Test(
        "a broker node stopped mid-replay, the one the predictor is connected to: every service moves to another node; the same counts hold"
    )
    func brokerNodeStopped() async throws {
        let (system, subscriber, received, task) = try await ReliabilityTests.forecastingSystem(basePort: 19_080, brokerCluster: true)
        let stoppedNode = SharedList<Int>()
        // The node comes back for the tests after this one, whatever happens here.
        let restarted = SharedList<Int>()
        func restartStoppedNode() async {
            guard let node = stoppedNode.values.first, restarted.values.isEmpty else { return }
            restarted.append(node)
            try? await TestEnvironment.servers("cluster-node-start", "\(node)")
        }
        do {
            try await system.run {
                try await system.tick(100)
                try await eventually(timeout: .seconds(60), "the first 100 candles forecast") {
                    Set(received.values.map(\.targetOpenTime)).count >= 101
                }
                let node = try await Self.clusterNode(of: "predictor")
                try await TestEnvironment.servers("cluster-node-stop", "\(node)")
                stoppedNode.append(node)
                let stopped = ContinuousClock.now
                // Kraken keeps closing candles while the services move.
                try await system.tick(20, pause: .milliseconds(250))
                try await eventually(timeout: .seconds(120), "the candles closed while the node was down forecast") {
                    Set(received.values.map(\.targetOpenTime)).count >= 121
                }
                let recovery = ContinuousClock.now - stopped
                for role in system.roles { try await system.waitReady(role) }
                let moved = try await Self.clusterNode(of: "predictor")
                #expect(moved != node, "the predictor is on another node")

                try await system.tick(system.rows2024.count - 120)
                let (forecasts, duplicates) = try await ReliabilityTests.verifyReplay(system, received)
                let perJob = try await system.client.query("SELECT count(*) FROM registry.runs GROUP BY job_id")
                #expect(try perJob.allSatisfy { try $0.decode(0, as: Int.self) == 1 }, "each training job one run")
                // Back before the teardown: deleting a virtual host waits on every queue replica of a node that is down.
                await restartStoppedNode()
                print(
                    """
                    scale-out | RabbitMQ node \(node) of 3 (the predictor's) stopped during the 2024 replay | \
                    \(system.rows2024.count) candles, \(forecasts) forecasts | lost 0 | duplicate forecasts stored 0, redelivered to the \
                    subscriber \(duplicates) | forecasts flowing again \(recovery) after the node stopped (the predictor moved to \
                    node \(moved))
                    """
                )
                await subscriber.stop()
                await task.value
            }
        } catch {
            await restartStoppedNode()
            throw error
        }
    }

    @Test("the database primary crashes mid-replay and the synchronous standby is promoted: the same counts, no committed row lost")
    func databasePrimaryCrashes() async throws {
        let (system, subscriber, received, task) = try await ReliabilityTests.forecastingSystem(basePort: 19_180, databasePair: true)
        do {
            try await system.run {
                try await system.tick(100)
                try await eventually(timeout: .seconds(60), "the first 100 candles forecast") {
                    Set(received.values.map(\.targetOpenTime)).count >= 101
                }
                // What the primary has committed when it dies: every row of it must survive the failover.
                let forecastsBefore = Set(try await system.storedForecasts().map { "\($0.target)/\($0.version)" })
                let candlesBefore = try await system.storedCandles2024().count
                let runsBefore = try await system.client.query("SELECT count(*) FROM registry.runs")[0].decode(0, as: Int.self)
                try await TestEnvironment.servers("pg-pair-stop-primary")
                let crashed = ContinuousClock.now
                try await system.tick(5, pause: .milliseconds(250))
                try await TestEnvironment.servers("pg-pair-promote")
                let promoted = ContinuousClock.now - crashed
                try await system.tick(15, pause: .milliseconds(250))
                try await eventually(timeout: .seconds(120), "forecasts from the promoted standby") {
                    Set(received.values.map(\.targetOpenTime)).count >= 121
                }
                let recovery = ContinuousClock.now - crashed
                let readOnly = try await system.client.query("SELECT pg_is_in_recovery()")[0].decode(0, as: Bool.self)
                #expect(!readOnly, "the services write to the promoted standby")
                let forecastsAfter = Set(try await system.storedForecasts().map { "\($0.target)/\($0.version)" })
                #expect(forecastsBefore.isSubset(of: forecastsAfter), "no committed forecast lost")
                #expect(try await system.storedCandles2024().count >= candlesBefore, "no committed candle lost")
                #expect(try await system.client.query("SELECT count(*) FROM registry.runs")[0].decode(0, as: Int.self) == runsBefore)
                for role in system.roles { try await system.waitReady(role) }

                try await system.tick(system.rows2024.count - 120)
                let (forecasts, duplicates) = try await ReliabilityTests.verifyReplay(system, received)
                print(
                    """
                    scale-out | PostgreSQL primary crashed (immediate stop) during the 2024 replay, synchronous standby promoted \
                    \(promoted) later | \(system.rows2024.count) candles, \(forecasts) forecasts | lost 0 \
                    (\(forecastsBefore.count) forecasts and \(candlesBefore) candles committed before the crash, all there after) | \
                    duplicate forecasts stored 0, redelivered to the subscriber \(duplicates) | forecasts flowing again \(recovery) \
                    after the crash
                    """
                )
                await subscriber.stop()
                await task.value
            }
        } catch {
            try? await TestEnvironment.servers("pg-pair-reset")
            throw error
        }
        // A fresh pair (the old primary would be a second primary) for the next run.
        try await TestEnvironment.servers("pg-pair-reset")
    }

    @Test(
        """
        2 preprocessors, 2 predictors, 2 registries, 3 trainers and 2 monitors through the replay: the same counts, no duplicate \
        forecast, one gate decision per sweep, promotions reach both predictors, one monitor counts
        """
    )
    func everyServiceReplicated() async throws {
        let replicas = ["preprocessor-2", "predictor-2", "registry-2", "trainer-c", "monitor-2"]
        let (system, subscriber, received, task) = try await ReliabilityTests.forecastingSystem(basePort: 19_280, replicas: replicas)
        try await system.run {
            // A second sweep while both registries consume the results: exactly one decision each.
            let sweep = await httpRequest(
                "POST", system.registryURL + "/v1/sweeps",
                headers: ["Authorization": "Bearer \(system.token)", "Content-Type": "application/json"],
                body: Data(
                    #"{"pair":"XBTUSD","interval":"1d","dataset_version":1,"grid":{"units":[8],"epochs":[3],"batch_size":[16,32,64]}}"#.utf8
                ))
            #expect(sweep?.status == 201)
            try await system.tick(system.rows2024.count)
            let (forecasts, duplicates) = try await ReliabilityTests.verifyReplay(system, received)
            try await system.waitForRuns(5)
            let perJob = try await system.client.query("SELECT count(*) FROM registry.runs GROUP BY job_id")
            #expect(try perJob.allSatisfy { try $0.decode(0, as: Int.self) == 1 }, "each training job one run")
            let decisions = try await system.client.query(
                "SELECT count(*) FROM registry.sweeps WHERE decided_at IS NOT NULL")[0].decode(0, as: Int.self)
            let sweeps = try await system.client.query("SELECT count(*) FROM registry.sweeps")[0].decode(0, as: Int.self)
            #expect(sweeps == 2 && decisions == 2, "one decision per sweep")
            let trainers = Set(await system.runs().compactMap { $0["trainer"] as? String })
            // Both predictors serve the champion: the promotion reached each.
            let champion = try await system.client.query(
                "SELECT version FROM registry.aliases WHERE model_name = \(SystemHarness.modelName) AND alias = 'champion'")[0].decode(
                    0, as: Int.self)
            for role in ["predictor", "predictor-2"] {
                let port = system.ports.port(of: role)
                try await eventually(timeout: .seconds(30), "\(role) serves version \(champion)") {
                    let served = await getJSON("http://127.0.0.1:\(port)/v1/model?pair=XBTUSD&interval=1d") as? [String: Any]
                    return served?["model_version"] as? Int == champion
                }
            }
            // One monitor at a time consumes (single active consumer): one counted every forecast, the other none.
            var counted: [Double] = []
            for role in ["monitor", "monitor-2"] {
                let metrics = await httpGet("http://127.0.0.1:\(system.ports.port(of: role))/metrics")?.body ?? ""
                counted.append(sample(metrics, "candlecast_monitor_forecasts_received_total", labels: []) ?? 0)
            }
            #expect(counted.sorted().first == 0 && (counted.max() ?? 0) >= Double(forecasts), "\(counted)")
            print(
                """
                scale-out | 2 preprocessors, 2 predictors, 2 registries, 3 trainers, 2 monitors during the 2024 replay | \
                \(system.rows2024.count) candles, \(forecasts) forecasts, \(sweeps) sweeps, 5 jobs on \(trainers.count) trainers | \
                lost 0 | duplicate forecasts stored 0, redelivered to the subscriber \(duplicates) | \(decisions) gate decisions for \
                \(sweeps) sweeps, champion v\(champion) served by both predictors, forecasts counted by one monitor of two \
                \(counted.map { Int($0) })
                """
            )
            await subscriber.stop()
            await task.value
        }
    }
}
