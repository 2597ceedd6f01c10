import Contracts
import Crypto
import Forecasting
import Foundation
import Hummingbird
@testable import Ingestor
import Logging
import Messaging
@testable import Preprocessor
@testable import Registry
import ServiceKit
import Storage
import TestSupport
import Testing
@testable import Trainer

let dataDirectory = TestEnvironment.sharedDataDirectory

/// Database with candles 2013-2023 and dataset version 1, the registry's consumers and relay, and trainers.
final class TrainingPipeline: Sendable {
    let database: TestDatabase
    let client: PostgresClient
    let broker: BrokerConfiguration
    let publisher: Publisher
    let store: RegistryStore
    let tasks = SharedList<Task<Void, Never>>()
    let consumers = SharedList<Consumer>()
    let logger = TestEnvironment.logger

    init(maximumMASE: Double) async throws {
        database = try await TestDatabase.create()
        client = database.client(connections: 4)
        for plan in [IngestSchema.migrations, FeaturesSchema.migrations, RegistrySchema.migrations] {
            try await client.migrate(plan, logger: TestEnvironment.logger)
        }
        _ = try await HistoryBackfill(database: client, logger: TestEnvironment.logger).run(
            path: dataDirectory + "/kraken_XBTUSD_1440.csv", pair: "XBTUSD", interval: .oneDay)
        _ = try await client.transaction { connection in
            try FeatureStore.createVersion(pair: "XBTUSD", interval: .oneDay, policy: DatasetPolicy(), reason: "test", on: connection)
        }
        broker = try TestEnvironment.broker()
        let topology = ServiceName.registry.topology.merged(with: ServiceName.trainer.topology)
        for queue in ["training.jobs", "registry.training-results", "registry.datasets"] {
            try await BrokerAdmin.declare(topology, configuration: broker)
            try await BrokerAdmin.purge(queue: queue, configuration: broker)
        }
        publisher = try Publisher(configuration: broker, options: Publisher.Options(topology: topology), logger: TestEnvironment.logger)
        store = RegistryStore(maximumMASE: maximumMASE)
        let relay = OutboxRelay(schema: RegistrySchema.name, database: client, publisher: publisher, logger: logger, pollInterval: .milliseconds(20))
        tasks.append(Task { try? await relay.run() })
        let results = try Consumer(
            configuration: broker, options: Consumer.Options(queue: "registry.training-results", prefetch: 16, topology: topology, deadLetterRoute: ServiceName.registry.deadLetterRoute),
            deadLetterPublisher: publisher, logger: logger)
        consumers.append(results)
        let store = self.store, client = self.client, logger = self.logger
        tasks.append(Task { await RegistryService.consume(results, store: store, grid: SweepGrid(), database: client, logger: logger) })
    }

    /// An in-process trainer replica on the shared work queue.
    func startTrainer(_ name: String) throws -> TrainingWorker {
        let consumer = try Consumer(
            configuration: broker, options: Consumer.Options(queue: "training.jobs", prefetch: 1, topology: ServiceName.trainer.topology, deadLetterRoute: ServiceName.trainer.deadLetterRoute),
            deadLetterPublisher: publisher, logger: logger)
        consumers.append(consumer)
        let worker = TrainingWorker(database: client, publisher: publisher, logger: logger, trainer: name, blasThreads: 1)
        tasks.append(Task { await worker.consume(consumer) })
        return worker
    }

    func sweep(_ grid: SweepGrid) async throws -> UUID {
        let store = self.store
        let result = try await client.transaction { connection in
            try store.startSweep(pair: "XBTUSD", interval: .oneDay, datasetVersion: 1, grid: grid, trigger: "api", on: connection)
        }
        return try #require(result).0
    }

    func decision(_ sweep: UUID, timeout: Duration = .seconds(120)) async throws -> (promoted: Bool, reason: String, challenger: Int?) {
        try await eventually(timeout: timeout, "sweep \(sweep) to be decided") {
            try await self.client.query("SELECT 1 FROM registry.promotion_decisions WHERE sweep_id = \(sweep)").first != nil
        }
        let row = try await client.query("SELECT promoted, reason, challenger_version FROM registry.promotion_decisions WHERE sweep_id = \(sweep)")[0]
        return (try row.decode(0, as: Bool.self), try row.decode(1, as: String.self), try row.decode(2, as: Int?.self))
    }

    func count(_ sql: PostgresQuery) async throws -> Int { try await client.query(sql)[0].decode(0, as: Int.self) }

    func tearDown() async {
        for consumer in consumers.values { await consumer.stop() }
        for task in tasks.values { task.cancel() }
        await publisher.close()
        await client.close()
        await database.drop()
    }
}

/// Tiny models: debug builds train them in seconds.
func tinyGrid(batchSizes: [Int], units: Int = 4, epochs: Int = 3, target: String = "log-return", learningRate: Double = 0.001) -> SweepGrid {
    var grid = SweepGrid()
    grid.units = [units]
    grid.batchSize = batchSizes
    grid.epochs = [epochs]
    grid.target = [target]
    grid.learningRate = [learningRate]
    return grid
}

@Suite("Trainer and registry against PostgreSQL and RabbitMQ", .serialized)
struct RegistryIntegrationTests {
    @Test("a 4-job sweep is shared by two trainers; the gate promotes a champion and refuses a worse challenger; rollback moves it back")
    func sweepGateAndRollback() async throws {
        let pipeline = try await TrainingPipeline(maximumMASE: 1.5)
        _ = try pipeline.startTrainer("trainer-a")
        _ = try pipeline.startTrainer("trainer-b")

        let first = try await pipeline.sweep(tinyGrid(batchSizes: [64, 128, 256, 512]))
        let decided = try await pipeline.decision(first)
        #expect(decided.promoted, "\(decided.reason)")
        #expect(decided.challenger == 1)
        let trainers = try await pipeline.client.query("SELECT DISTINCT trainer FROM registry.runs WHERE sweep_id = \(first)").map { try $0.decode(0, as: String.self) }
        #expect(Set(trainers) == ["trainer-a", "trainer-b"], "both replicas took jobs")
        #expect(try await pipeline.count("SELECT count(*) FROM registry.runs WHERE sweep_id = \(first) AND status = 'finished'") == 4)
        #expect(try await pipeline.count("SELECT count(*) FROM registry.run_metrics m JOIN registry.runs r ON r.id = m.run_id WHERE r.sweep_id = \(first) AND m.key = 'loss'") >= 4)
        #expect(try await pipeline.count("SELECT version FROM registry.aliases WHERE alias = 'champion'") == 1)

        // A challenger that the naive forecast beats by far (one epoch of a 1-unit model on raw scaled closes).
        let second = try await pipeline.sweep(tinyGrid(batchSizes: [512], units: 1, epochs: 1, target: "next-scaled-close", learningRate: 0.0001))
        let refused = try await pipeline.decision(second)
        #expect(!refused.promoted)
        #expect(refused.challenger == 2)
        #expect(refused.reason.contains("MASE") || refused.reason.contains("does not beat champion"), "\(refused.reason)")
        #expect(try await pipeline.count("SELECT version FROM registry.aliases WHERE alias = 'champion'") == 1)
        #expect(try await pipeline.count("SELECT version FROM registry.aliases WHERE alias = 'challenger'") == 2)

        // Manual promotion, then rollback: champion back to v1, each move in the history, each announced.
        let store = pipeline.store
        try await pipeline.client.transaction { try store.promote(modelName: "lstm-xbtusd-1d", version: 2, actor: "test", reason: "manual", on: $0) }
        let back = try await pipeline.client.transaction { try store.rollback(modelName: "lstm-xbtusd-1d", to: nil, actor: "test", reason: "worse in production", on: $0) }
        #expect(back == 1)
        let moves = try await pipeline.client.query(
            "SELECT from_version, to_version, actor FROM registry.alias_history WHERE alias = 'champion' ORDER BY id"
        ).map { "\(try $0.decode(0, as: Int?.self).map(String.init) ?? "-")>\(try $0.decode(1, as: Int.self)) \(try $0.decode(2, as: String.self))" }
        #expect(moves == ["->1 gate", "1>2 test", "2>1 test"])
        #expect(try await pipeline.count("SELECT count(*) FROM registry.outbox WHERE message_type = 'model.promoted'") == 3)
        await pipeline.tearDown()
    }

    @Test("a job delivered twice produces one run and one model version")
    func duplicateJobIsIdempotent() async throws {
        let pipeline = try await TrainingPipeline(maximumMASE: 1.5)
        let sweep = try await pipeline.sweep(tinyGrid(batchSizes: [256]))
        // The relay publishes the job; publish it a second time, as a broker redelivery would hand it over again.
        let job = try await pipeline.client.query("SELECT body FROM registry.outbox WHERE message_type = 'training.job'")[0].decode(0, as: String.self)
        let envelope = try JSONDecoder().decode(TrainingJob.self, from: Data(job.utf8))
        try await pipeline.publisher.publish(EnvelopeCodec.encode(Envelope(payload: envelope), exchange: Exchange.events, routingKey: RoutingKey.trainingJob))
        _ = try pipeline.startTrainer("trainer-a")
        let decided = try await pipeline.decision(sweep)
        #expect(decided.challenger == 1)
        try await eventually("the second delivery to be trained and ignored") {
            try await BrokerAdmin.messageCount(queue: "training.jobs", configuration: pipeline.broker) == 0
        }
        try await Task.sleep(for: .seconds(3))
        #expect(try await pipeline.count("SELECT count(*) FROM registry.runs") == 1)
        #expect(try await pipeline.count("SELECT count(*) FROM registry.model_versions") == 1)
        await pipeline.tearDown()
    }

    @Test("the HTTP API: reads, artifact with checksum, token-guarded writes, clear 4xx errors")
    func httpAPI() async throws {
        let pipeline = try await TrainingPipeline(maximumMASE: 1.5)
        _ = try pipeline.startTrainer("trainer-a")
        let sweep = try await pipeline.sweep(tinyGrid(batchSizes: [256]))
        _ = try await pipeline.decision(sweep)

        var environment = EnvironmentReader(["CANDLECAST_REGISTRY_TOKEN": "s3cret-token"]).values
        environment["CANDLECAST_SWEEP_GRID"] = #"{"units":[4],"epochs":[2],"batch_size":[256]}"#
        let settings = try RegistrySettings(EnvironmentReader(environment))
        let router = Router()
        RegistryAPI(database: pipeline.client, store: pipeline.store, settings: settings, logger: pipeline.logger).add(to: router)
        let port = 18_400
        let app = Application(router: router, configuration: ApplicationConfiguration(address: .hostname("127.0.0.1", port: port)))
        let serving = Task { try await app.run() }
        let base = "http://127.0.0.1:\(port)"
        try await eventually("the API to listen") { await httpRequest("GET", base + "/v1/models") != nil }

        func get(_ path: String) async -> (Int, Any?) {
            guard let response = await httpRequest("GET", base + path) else { return (0, nil) }
            return (response.status, try? JSONSerialization.jsonObject(with: response.body))
        }
        let (modelsStatus, models) = await get("/v1/models")
        #expect(modelsStatus == 200)
        #expect((models as? [[String: Any]])?.first?["name"] as? String == "lstm-xbtusd-1d")
        #expect(await get("/v1/experiments").0 == 200)
        let (runsStatus, runs) = await get("/v1/runs?experiment=xbtusd-1d")
        #expect(runsStatus == 200)
        let runID = ((runs as? [[String: Any]])?.first?["id"] as? NSNumber)?.intValue ?? -1
        let (runStatus, run) = await get("/v1/runs/\(runID)")
        #expect(runStatus == 200)
        #expect(((run as? [String: Any])?["metric_history"] as? [Any])?.isEmpty == false)
        #expect(await get("/v1/models/lstm-xbtusd-1d/versions").0 == 200)
        #expect(await get("/v1/models/lstm-xbtusd-1d/versions/1").0 == 200)
        #expect(await get("/v1/models/lstm-xbtusd-1d/aliases").0 == 200)
        #expect(await get("/v1/sweeps/\(sweep.uuidString)").0 == 200)

        let artifact = try #require(await httpRequest("GET", base + "/v1/models/lstm-xbtusd-1d/versions/1/artifact"))
        #expect(artifact.status == 200)
        let digest = SHA256.hash(data: [UInt8](artifact.body))
        #expect(artifact.headers["x-checksum-sha256"] == digest.map { String(format: "%02x", $0) }.joined())
        #expect(artifact.headers["repr-digest"] == "sha-256=:\(Data(digest).base64EncodedString()):")
        let version = try #require(await get("/v1/models/lstm-xbtusd-1d/versions/1").1 as? [String: Any])
        #expect(version["artifact_sha256"] as? String == artifact.headers["x-checksum-sha256"])
        let model = try TrainedModel(decoding: artifact.body)
        #expect(model.configuration.window == 14)

        // Errors.
        #expect(await get("/v1/models/nope/versions").0 == 404)
        #expect(await get("/v1/models/lstm-xbtusd-1d/versions/99").0 == 404)
        #expect(await get("/v1/models/lstm-xbtusd-1d/versions/abc").0 == 400)
        #expect(await get("/v1/models/..%2F..%2Fetc%2Fpasswd/versions").0 == 400)
        #expect(await get("/v1/runs/x").0 == 400)
        #expect(await get("/v1/sweeps/not-a-uuid").0 == 400)
        let promote = Data(#"{"version":1,"reason":"test"}"#.utf8)
        #expect(await httpRequest("POST", base + "/v1/models/lstm-xbtusd-1d/promote", body: promote)?.status == 401)
        #expect(await httpRequest("POST", base + "/v1/models/lstm-xbtusd-1d/promote", headers: ["Authorization": "Bearer wrong"], body: promote)?.status == 401)
        let auth = ["Authorization": "Bearer s3cret-token", "Content-Type": "application/json"]
        #expect(await httpRequest("POST", base + "/v1/models/lstm-xbtusd-1d/promote", headers: auth, body: Data("{bad json".utf8))?.status == 400)
        #expect(await httpRequest("POST", base + "/v1/models/lstm-xbtusd-1d/promote", headers: auth, body: Data(#"{"version":"one"}"#.utf8))?.status == 400)
        #expect(await httpRequest("POST", base + "/v1/models/lstm-xbtusd-1d/promote", headers: auth, body: Data(#"{"version":42}"#.utf8))?.status == 404)
        #expect(await httpRequest("POST", base + "/v1/models/lstm-xbtusd-1d/promote", headers: auth, body: Data(repeating: 0x20, count: 200_000))?.status == 413)
        #expect(await httpRequest("POST", base + "/v1/models/lstm-xbtusd-1d/promote", headers: auth, body: promote)?.status == 200)
        #expect(await httpRequest("POST", base + "/v1/models/lstm-xbtusd-1d/rollback", headers: auth, body: Data("{}".utf8))?.status == 409)
        let sweepBody = Data(#"{"pair":"XBTUSD","interval":"1d","dataset_version":7}"#.utf8)
        #expect(await httpRequest("POST", base + "/v1/sweeps", headers: auth, body: sweepBody)?.status == 404)
        let created = await httpRequest("POST", base + "/v1/sweeps", headers: auth, body: Data(#"{"pair":"XBTUSD","interval":"1d","dataset_version":1}"#.utf8))
        #expect(created?.status == 201)
        #expect(await httpRequest("POST", base + "/v1/sweeps", headers: auth, body: Data(#"{"pair":"XBTUSD; DROP TABLE x","interval":"1d","dataset_version":1}"#.utf8))?.status == 400)
        #expect(try await pipeline.count("SELECT count(*) FROM registry.sweeps") == 2)
        serving.cancel()
        await pipeline.tearDown()
    }
}

@Suite("Trainer processes", .serialized)
struct TrainerProcessTests {
    @Test("a trainer killed with SIGKILL mid-job: the job is redelivered, finished by the other, one run and one version")
    func sigkillMidJob() async throws {
        let pipeline = try await TrainingPipeline(maximumMASE: 10)
        var components = try #require(URLComponents(string: pipeline.database.configuration.url))
        components.user = "candlecast"
        let environment = ["CANDLECAST_DATABASE_URL": components.string ?? "", "CANDLECAST_LOG_LEVEL": "info"]
        let first = try ServiceProcess("trainer", environment: environment.merging(["CANDLECAST_HTTP_PORT": "18501"]) { $1 })
        defer { first.kill() }
        try await eventually(timeout: .seconds(20), "the first trainer to be ready") { await httpGet("http://127.0.0.1:18501/readyz")?.status == 200 }

        // Long enough to be killed mid-job (epoch 1 of 40), short enough for a debug build.
        var grid = tinyGrid(batchSizes: [32], units: 8, epochs: 40)
        grid.patience = [40]
        let sweep = try await pipeline.sweep(grid)
        try await eventually(timeout: .seconds(60), "the first trainer to report an epoch") {
            try await pipeline.count("SELECT count(*) FROM registry.run_metrics WHERE key = 'loss'") >= 1
        }
        first.signal(SIGKILL)
        _ = try await first.waitForExit(timeout: .seconds(5))
        let second = try ServiceProcess("trainer", environment: environment.merging(["CANDLECAST_HTTP_PORT": "18502"]) { $1 })
        defer { second.kill() }
        let decided = try await pipeline.decision(sweep, timeout: .seconds(600))
        #expect(decided.challenger == 1)
        #expect(try await pipeline.count("SELECT count(*) FROM registry.runs") == 1)
        #expect(try await pipeline.count("SELECT count(*) FROM registry.model_versions") == 1)
        let trainer = try await pipeline.client.query("SELECT trainer FROM registry.runs")[0].decode(0, as: String.self)
        #expect(trainer.hasSuffix("-\(second.pid)"), "the run was finished by the second trainer (\(trainer))")
        second.signal(SIGTERM)
        #expect(try await second.waitForExit(timeout: .seconds(5)) == 0)
        await pipeline.tearDown()
    }
}
