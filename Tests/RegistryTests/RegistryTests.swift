import Contracts
import Crypto
import Forecasting
import Foundation
import Hummingbird
import Logging
import Messaging
import OpenAPIRuntime
import RegistryAPI
import ServiceKit
import Storage
import Synchronization
import TestSupport
import Testing

@testable import Ingestor
@testable import Preprocessor
@testable import Registry
@testable import Trainer

let dataDirectory = TestEnvironment.sharedDataDirectory

/// Database with candles 2013-2023 and dataset version 1, the registry's consumers, relay and HTTP API (where the
/// trainers store their model files), and trainers.
final class TrainingPipeline: Sendable {
    let database: TestDatabase
    let client: PostgresClient
    let broker: BrokerConfiguration
    let publisher: Publisher
    let store: RegistryStore
    let tasks = SharedList<Task<Void, Never>>()
    let consumers = SharedList<Consumer>()
    let logger = TestEnvironment.logger
    /// The trainers' client to the registry's API, shut down in `tearDown`.
    let http = OutgoingHTTP()
    static let token = "pipeline-token"
    let registryURL: String
    /// A port per pipeline: suites of this target share the process, one pipeline after another.
    private static let nextPort = Mutex(18_420)

    /// `baselines`: the families every sweep trains beside its grid (none unless a test asks: most tests count jobs).
    init(
        maximumMASE: Double, baselines: [ModelFamily] = [],
        redelivery: RedeliveryPolicy = RedeliveryPolicy(
            maximumAttempts: 3, retryDelay: .milliseconds(200), isTransient: isTransientFailure)
    ) async throws {
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
        try await BrokerAdmin.declare(topology, configuration: broker)
        for queue in ["training.jobs", "registry.training-results", "registry.datasets", ServiceName.registry.deadLetterQueue] {
            try await BrokerAdmin.purge(queue: queue, configuration: broker)
        }
        publisher = try Publisher(configuration: broker, options: Publisher.Options(topology: topology), logger: TestEnvironment.logger)
        store = RegistryStore(maximumMASE: maximumMASE, sweepBaselines: baselines)
        let relay = OutboxRelay(
            schema: RegistrySchema.name, database: client, publisher: publisher, logger: logger, pollInterval: .milliseconds(20))
        tasks.append(Task { try? await relay.run() })
        let results = try Consumer(
            configuration: broker,
            options: Consumer.Options(
                queue: "registry.training-results", prefetch: 16, topology: topology, deadLetterRoute: ServiceName.registry.deadLetterRoute,
                redelivery: redelivery),
            deadLetterPublisher: publisher, logger: logger)
        consumers.append(results)
        let store = self.store
        let client = self.client
        let logger = self.logger
        tasks.append(Task { await RegistryService.consume(results, store: store, grid: SweepGrid(), database: client, logger: logger) })

        let port = Self.nextPort.withLock { port in
            defer { port += 1 }
            return port
        }
        registryURL = "http://127.0.0.1:\(port)"
        let settings = try RegistrySettings(EnvironmentReader(["CANDLECAST_REGISTRY_TOKEN": Self.token]))
        let router = Router()
        try RegistryHandlers(database: client, store: store, settings: settings, logger: logger).add(to: router)
        let app = Application(router: router, configuration: ApplicationConfiguration(address: .hostname("127.0.0.1", port: port)))
        tasks.append(Task { try? await app.run() })
        let url = registryURL
        try await eventually("the registry API to listen") { await httpRequest("GET", url + "/v1/models") != nil }
    }

    /// The trainer's settings for this pipeline's registry.
    func trainerSettings(_ extra: [String: String] = [:]) throws -> TrainerSettings {
        try TrainerSettings(
            EnvironmentReader(["CANDLECAST_REGISTRY_URL": registryURL, "CANDLECAST_REGISTRY_TOKEN": Self.token].merging(extra) { $1 }))
    }

    /// An in-process trainer replica on the shared work queue.
    func startTrainer(_ name: String) throws -> TrainingWorker {
        let consumer = try Consumer(
            configuration: broker,
            options: Consumer.Options(
                queue: "training.jobs", prefetch: 1, topology: ServiceName.trainer.topology,
                deadLetterRoute: ServiceName.trainer.deadLetterRoute),
            deadLetterPublisher: publisher, logger: logger)
        consumers.append(consumer)
        let uploader = ArtifactUploader(settings: try trainerSettings(), http: http, logger: logger)
        let worker = TrainingWorker(
            database: client, publisher: publisher, logger: logger, trainer: name, blasThreads: 1, uploader: uploader)
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
        let row = try await client.query(
            "SELECT promoted, reason, challenger_version FROM registry.promotion_decisions WHERE sweep_id = \(sweep)")[0]
        return (try row.decode(0, as: Bool.self), try row.decode(1, as: String.self), try row.decode(2, as: Int?.self))
    }

    func count(_ sql: PostgresQuery) async throws -> Int { try await client.query(sql)[0].decode(0, as: Int.self) }

    func tearDown() async {
        for consumer in consumers.values { await consumer.stop() }
        for task in tasks.values { task.cancel() }
        await publisher.close()
        await http.shutdown()
        await client.close()
        await database.drop()
    }
}

/// Tiny models: debug builds train them in seconds.
func tinyGrid(batchSizes: [Int], units: Int = 4, epochs: Int = 3, target: ForecastTarget = .logReturn, learningRate: Double = 0.001)
    -> SweepGrid
{
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
        let trainers = try await pipeline.client.query("SELECT DISTINCT trainer FROM registry.runs WHERE sweep_id = \(first)").map {
            try $0.decode(0, as: String.self)
        }
        #expect(Set(trainers) == ["trainer-a", "trainer-b"], "both replicas took jobs")
        #expect(try await pipeline.count("SELECT count(*) FROM registry.runs WHERE sweep_id = \(first) AND status = 'finished'") == 4)
        #expect(
            try await pipeline.count(
                """
                SELECT count(*) FROM registry.run_metrics m JOIN registry.runs r ON r.id = m.run_id
                WHERE r.sweep_id = \(first) AND m.key = 'loss'
                """
            ) >= 4)
        #expect(try await pipeline.count("SELECT version FROM registry.aliases WHERE alias = 'champion'") == 1)

        // A challenger that the naive forecast beats by far (one epoch of a 1-unit model on raw scaled closes).
        let second = try await pipeline.sweep(
            tinyGrid(batchSizes: [512], units: 1, epochs: 1, target: .nextScaledClose, learningRate: 0.0001))
        let refused = try await pipeline.decision(second)
        #expect(!refused.promoted)
        #expect(refused.challenger == 2)
        #expect(refused.reason.contains("MASE") || refused.reason.contains("does not beat champion"), "\(refused.reason)")
        #expect(try await pipeline.count("SELECT version FROM registry.aliases WHERE alias = 'champion'") == 1)
        #expect(try await pipeline.count("SELECT version FROM registry.aliases WHERE alias = 'challenger'") == 2)

        // Manual promotion, then rollback: champion back to v1, each move in the history, each announced.
        let store = pipeline.store
        try await pipeline.client.transaction {
            try store.promote(modelName: "lstm-xbtusd-1d", version: 2, actor: "test", reason: "manual", on: $0)
        }
        let back = try await pipeline.client.transaction {
            try store.rollback(modelName: "lstm-xbtusd-1d", to: nil, actor: "test", reason: "worse in production", on: $0)
        }
        #expect(back == 1)
        let moves = try await pipeline.client.query(
            "SELECT from_version, to_version, actor FROM registry.alias_history WHERE alias = 'champion' ORDER BY id"
        ).map {
            """
            \(try $0.decode(0, as: Int?.self).map(String.init) ?? "-")>\(try $0.decode(1, as: Int.self)) \
            \(try $0.decode(2, as: String.self))
            """
        }
        #expect(moves == ["->1 gate", "1>2 test", "2>1 test"])
        #expect(try await pipeline.count("SELECT count(*) FROM registry.outbox WHERE message_type = 'model.promoted'") == 3)
        await pipeline.tearDown()
    }

    @Test("a job delivered twice produces one run and one model version")
    func duplicateJobIsIdempotent() async throws {
        let pipeline = try await TrainingPipeline(maximumMASE: 1.5)
        let sweep = try await pipeline.sweep(tinyGrid(batchSizes: [256]))
        // The relay publishes the job; publish it a second time, as a broker redelivery would hand it over again.
        let job = try await pipeline.client.query("SELECT body FROM registry.outbox WHERE message_type = 'training.job'")[0].decode(
            0, as: String.self)
        let envelope = try JSONDecoder().decode(TrainingJob.self, from: Data(job.utf8))
        try await pipeline.publisher.publish(
            EnvelopeCodec.encode(Envelope(payload: envelope), exchange: Exchange.events, routingKey: RoutingKey.trainingJob))
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

    @Test(
        "the HTTP API: typed answers (interval \"1d\", UTC timestamps ending in Z), artifact with checksum, token-guarded writes, clear 4xx"
    )
    func httpAPI() async throws {
        let pipeline = try await TrainingPipeline(maximumMASE: 1.5)
        _ = try pipeline.startTrainer("trainer-a")
        let sweep = try await pipeline.sweep(tinyGrid(batchSizes: [256]))
        _ = try await pipeline.decision(sweep)
        let base = pipeline.registryURL

        func get(_ path: String) async -> (Int, Any?) {
            guard let response = await httpRequest("GET", base + path) else { return (0, nil) }
            return (response.status, try? JSONSerialization.jsonObject(with: response.body))
        }
        // The wire: one convention for intervals and timestamps.
        let experiments = try #require(await get("/v1/experiments").1 as? [[String: Any]])
        #expect(experiments.first?["interval"] as? String == "1d")
        #expect(experiments.first?["interval_seconds"] == nil)
        let runs = try #require(await get("/v1/runs?experiment=xbtusd-1d").1 as? [[String: Any]])
        let runID = try #require((runs.first?["id"] as? NSNumber)?.intValue)
        let run = try #require(await get("/v1/runs/\(runID)").1 as? [String: Any])
        for key in ["queued_at", "started_at", "ended_at"] {
            let text = try #require(run[key] as? String, "\(key) in \(run)")
            #expect(text.hasSuffix("Z") && text.contains("T"), "\(key) = \(text)")
        }
        #expect((run["metric_history"] as? [[String: Any]])?.first?["time"] as? String != nil)
        #expect(((run["metric_history"] as? [[String: Any]])?.first?["time"] as? String)?.hasSuffix("Z") == true)
        let queuedAt = try #require(run["queued_at"] as? String)
        #expect((await get("/v1/runs?from=\(queuedAt)").1 as? [Any])?.count == 1)
        #expect((await get("/v1/runs?to=\(queuedAt)").1 as? [Any])?.count == 1, "to includes its whole second")
        #expect((await get("/v1/runs?to=2000-01-01").1 as? [Any])?.count == 0)
        #expect(await get("/v1/runs?to=0001-01-01T00:00:00Z").0 == 400, "before 1970: refused, not a server error")
        #expect(
            (await get("/v1/runs?from=2000-01-01T00:00:00.5%2B01:00").1 as? [Any])?.count == 1, "fractions and offsets are RFC 3339 too")
        #expect(await get("/v1/runs?from=yesterday").0 == 400)

        // The same answers through the generated client: every field the document names decodes.
        let registry = Client(
            serverURL: try #require(URL(string: base)), configuration: Configuration(dateTranscoder: RFC3339Dates()),
            transport: pipeline.http.transport(timeout: .seconds(10)))
        let typedRuns = try await registry.getV1Runs(query: .init(experiment: "xbtusd-1d")).ok.body.json
        #expect(typedRuns.first?.params.units == 4)
        #expect(typedRuns.first?.testMetrics?.mase.isFinite == true)
        let typedRun = try await registry.getV1RunsId(path: .init(id: Int64(runID))).ok.body.json
        #expect(typedRun.artifact?.name == "model.cclstm")
        let models = try await registry.getV1Models().ok.body.json
        #expect(models.first?.name == "lstm-xbtusd-1d")
        #expect(models.first?.aliases.additionalProperties["champion"] == 1)
        let versions = try await registry.getV1ModelsNameVersions(path: .init(name: "lstm-xbtusd-1d")).ok.body.json
        #expect(versions.map(\.version) == [1])
        #expect(versions.first?.aliases.contains("champion") == true)
        #expect(versions.first?.artifactSha256 == typedRun.artifact?.sha256)
        let aliases = try await registry.getV1ModelsNameAliases(path: .init(name: "lstm-xbtusd-1d")).ok.body.json
        #expect(aliases.history.first?.toVersion == 1)
        let typedSweep = try await registry.getV1SweepsId(path: .init(id: sweep.uuidString.lowercased())).ok.body.json
        #expect(typedSweep.decision?.promoted == true)
        #expect(typedSweep.runs.map(\.status) == [.finished])
        #expect(try await registry.getV1Experiments().ok.body.json.first?.interval == ._1d)

        let artifact = try #require(await httpRequest("GET", base + "/v1/models/lstm-xbtusd-1d/versions/1/artifact"))
        #expect(artifact.status == 200)
        let digest = SHA256.hash(data: [UInt8](artifact.body))
        #expect(artifact.headers["x-checksum-sha256"] == digest.map { String(format: "%02x", $0) }.joined())
        #expect(artifact.headers["repr-digest"] == "sha-256=:\(Data(digest).base64EncodedString()):")
        #expect(versions.first?.artifactSha256 == artifact.headers["x-checksum-sha256"])
        #expect(versions.first?.artifactBytes == artifact.body.count)
        let model = try TrainedModel(decoding: artifact.body)
        #expect(model.configuration.window == 14)

        // Errors.
        #expect(await get("/v1/models/nope/versions").0 == 404)
        #expect(await get("/v1/models/lstm-xbtusd-1d/versions/99").0 == 404)
        #expect(await get("/v1/models/lstm-xbtusd-1d/versions/abc").0 == 400)
        #expect(await get("/v1/models/..%2F..%2Fetc%2Fpasswd/versions").0 == 400)
        #expect(await get("/v1/runs/x").0 == 400)
        #expect(await get("/v1/runs/0").0 == 400)
        #expect(await get("/v1/runs?limit=0").0 == 400)
        #expect(await get("/v1/sweeps/not-a-uuid").0 == 400)
        let undeclared = await httpRequest("DELETE", base + "/v1/models")
        #expect(undeclared?.status == 405)
        #expect(undeclared?.headers["allow"]?.contains("GET") == true)
        #expect(await httpRequest("GET", base + "/v1/jobs/\(UUID())/artifact")?.status == 405)
        let promote = Data(#"{"version":1,"reason":"test"}"#.utf8)
        let anonymous = await httpRequest(
            "POST", base + "/v1/models/lstm-xbtusd-1d/promote", headers: ["Content-Type": "application/json"], body: promote)
        #expect(anonymous?.status == 401)
        #expect(anonymous?.headers["www-authenticate"] == "Bearer")
        #expect(
            await httpRequest(
                "POST", base + "/v1/models/lstm-xbtusd-1d/promote", headers: ["Authorization": "Bearer wrong"], body: promote)?.status
                == 401)
        let auth = ["Authorization": "Bearer \(TrainingPipeline.token)", "Content-Type": "application/json"]
        let badJSON = await httpRequest("POST", base + "/v1/models/lstm-xbtusd-1d/promote", headers: auth, body: Data("{bad json".utf8))
        #expect(badJSON?.status == 400)
        #expect(badJSON.map { String(decoding: $0.body, as: UTF8.self) }?.contains("message") == true)
        #expect(
            await httpRequest("POST", base + "/v1/models/lstm-xbtusd-1d/promote", headers: auth, body: Data(#"{"version":"one"}"#.utf8))?
                .status == 400)
        #expect(
            await httpRequest("POST", base + "/v1/models/lstm-xbtusd-1d/promote", headers: auth, body: Data(#"{"version":42}"#.utf8))?
                .status == 404)
        #expect(
            await httpRequest(
                "POST", base + "/v1/models/lstm-xbtusd-1d/promote", headers: auth, body: Data(repeating: 0x20, count: 200_000))?.status
                == 413)
        #expect(await httpRequest("POST", base + "/v1/models/lstm-xbtusd-1d/promote", headers: auth, body: promote)?.status == 200)
        #expect(await httpRequest("POST", base + "/v1/models/lstm-xbtusd-1d/rollback", headers: auth, body: Data("{}".utf8))?.status == 409)
        let sweepBody = Data(#"{"pair":"XBTUSD","interval":"1d","dataset_version":7}"#.utf8)
        #expect(await httpRequest("POST", base + "/v1/sweeps", headers: auth, body: sweepBody)?.status == 404)
        let tiny = #""grid":{"units":[4],"epochs":[1],"batch_size":[256]}"#
        let created = await httpRequest(
            "POST", base + "/v1/sweeps", headers: auth, body: Data(#"{"pair":"XBTUSD","interval":"1d","dataset_version":1,\#(tiny)}"#.utf8))
        #expect(created?.status == 201)
        #expect(
            await httpRequest(
                "POST", base + "/v1/sweeps", headers: auth, body: Data(#"{"pair":"XBTUSD","interval":"1day","dataset_version":1}"#.utf8))?
                .status == 400)
        #expect(
            await httpRequest(
                "POST", base + "/v1/sweeps", headers: auth,
                body: Data(#"{"pair":"XBTUSD; DROP TABLE x","interval":"1d","dataset_version":1}"#.utf8))?.status == 400)
        #expect(try await pipeline.count("SELECT count(*) FROM registry.sweeps") == 2)

        // Writes are refused outright when no token is configured.
        let closed = Router()
        try RegistryHandlers(
            database: pipeline.client, store: pipeline.store, settings: try RegistrySettings(EnvironmentReader([:])),
            logger: pipeline.logger
        )
        .add(to: closed)
        let closedApp = Application(router: closed, configuration: ApplicationConfiguration(address: .hostname("127.0.0.1", port: 18_400)))
        let serving = Task { try await closedApp.run() }
        try await eventually("the token-less API to listen") { await httpRequest("GET", "http://127.0.0.1:18400/v1/models") != nil }
        #expect(
            await httpRequest("POST", "http://127.0.0.1:18400/v1/models/lstm-xbtusd-1d/promote", headers: auth, body: promote)?.status
                == 403)
        serving.cancel()
        await pipeline.tearDown()
    }
}

/// Artifacts by reference: the trainer uploads the model file, `training.completed` names it by size and SHA-256.
@Suite("Model files by reference", .serialized)
struct ArtifactReferenceTests {
    /// One finished-looking result for `jobID` naming `artifact`.
    static func completion(jobID: UUID, sweepID: UUID, artifact: ArtifactReference) -> TrainingCompleted {
        let scores = ForecastScores(rmse: 1000, mae: 800, mape: 0.02, r2: 0.9, mase: 0.95)
        return TrainingCompleted(
            jobID: jobID, sweepID: sweepID, trainer: "test", succeeded: true, error: nil, epochsRun: 1, bestEpoch: 1, validationLoss: 0.01,
            trainSeconds: 1, test: scores, naive: scores, artifact: artifact)
    }

    /// A real model file (tiny, untrained): the registry refuses bytes that are not one.
    static func modelFile(seed: UInt64 = 1) throws -> [UInt8] {
        var training = TrainingConfiguration()
        training.epochs = 1
        training.seed = seed
        let closes = (0..<300).map { 100 + sin(Double($0) / 5) * 10 }
        return try Trainer(model: .btcDailyV1(units: 2, target: .logReturn), training: training)
            .train(closes: closes, split: try ChronologicalSplit(count: closes.count)).encode()
    }

    @Test("a trained job: its model file is uploaded, training.completed carries only name, size and SHA-256, and the run is recorded")
    func uploadThenCompletion() async throws {
        let pipeline = try await TrainingPipeline(maximumMASE: 100)
        // Listen on the results' routing key beside the registry, as any subscriber would.
        let queue = TestEnvironment.uniqueName("test.completed")
        let topology = Topology(
            queues: [Topology.Queue(name: queue, expiresAfter: .seconds(60))],
            bindings: [
                Topology.Binding(queue: queue, exchange: Exchange.events, routingKey: RoutingKey.trainingCompleted)
            ])
        let listener = try Consumer(
            configuration: pipeline.broker, options: Consumer.Options(queue: queue, topology: topology), logger: pipeline.logger)
        let heard = DeliveryCollector(listener)
        _ = try pipeline.startTrainer("trainer-a")
        let sweep = try await pipeline.sweep(tinyGrid(batchSizes: [256]))
        _ = try await pipeline.decision(sweep)

        let delivery = try #require(try await heard.waitFor(1).first)
        let envelope = try EnvelopeCodec.decode(TrainingCompleted.self, from: delivery)
        let reference = try #require(envelope.payload.artifact)
        let fields = try #require(JSONSerialization.jsonObject(with: Data(delivery.body)) as? [String: Any])
        let artifactFields = try #require(fields["artifact"] as? [String: Any])
        #expect(Set(artifactFields.keys) == ["name", "bytes", "sha256"], "no model bytes on the bus")
        // "model" is the family now, never the file (schema version 1 carried the file base64 under that key).
        #expect(fields["model"] as? String == "lstm" && fields["artifact_crc32"] == nil)
        #expect(delivery.body.count < 4096, "training.completed is \(delivery.body.count) bytes")

        let stored = try await pipeline.client.query("SELECT content, byte_count, sha256 FROM registry.artifacts")
        #expect(stored.count == 1)
        let content = try stored[0].decode(0, as: [UInt8].self)
        let storedBytes = try stored[0].decode(1, as: Int.self)
        #expect(content.count == reference.bytes && storedBytes == reference.bytes)
        #expect(ModelFileDigest.sha256Hex(content) == reference.sha256)
        #expect(try stored[0].decode(2, as: String.self) == reference.sha256)
        _ = try TrainedModel(decoding: content)
        #expect(try await pipeline.count("SELECT count(*) FROM registry.runs WHERE status = 'finished'") == 1)
        await listener.stop()
        await pipeline.tearDown()
    }

    @Test("PUT /v1/jobs/{job_id}/artifact: bearer token, checksum header, idempotent for the same bytes, 409 for other bytes")
    func uploadEndpoint() async throws {
        let pipeline = try await TrainingPipeline(maximumMASE: 100)
        let sweep = try await pipeline.sweep(tinyGrid(batchSizes: [256]))
        let jobID = try await pipeline.client.query("SELECT job_id FROM registry.runs WHERE sweep_id = \(sweep)")[0].decode(
            0, as: UUID.self)
        let file = try Self.modelFile(seed: 1)
        let url = pipeline.registryURL + "/v1/jobs/\(jobID.uuidString.lowercased())/artifact"
        let sha = ModelFileDigest.sha256Hex(file)
        let headers = [
            "Authorization": "Bearer \(TrainingPipeline.token)", "Content-Type": "application/octet-stream", "X-Checksum-SHA256": sha,
        ]

        #expect(await httpRequest("PUT", url, headers: headers.filter { $0.key != "Authorization" }, body: Data(file))?.status == 401)
        #expect(
            await httpRequest(
                "PUT", url, headers: headers.merging(["X-Checksum-SHA256": String(repeating: "0", count: 64)]) { $1 },
                body: Data(file))?.status == 400)
        let garbage = [UInt8](repeating: 7, count: 100)
        #expect(
            await httpRequest(
                "PUT", url, headers: headers.merging(["X-Checksum-SHA256": ModelFileDigest.sha256Hex(garbage)]) { $1 },
                body: Data(garbage))?.status == 400, "not a model file")
        #expect(
            await httpRequest("PUT", pipeline.registryURL + "/v1/jobs/\(UUID())/artifact", headers: headers, body: Data(file))?.status
                == 404)

        // The trainer's own client: stored once, the same bytes again are fine, other bytes are refused.
        let uploader = ArtifactUploader(settings: try pipeline.trainerSettings(), http: pipeline.http, logger: pipeline.logger)
        let first = try await uploader.upload(file, jobID: jobID)
        #expect(first == ArtifactReference(name: "model.cclstm", bytes: file.count, sha256: sha))
        #expect(try await uploader.upload(file, jobID: jobID) == first)
        let again = await httpRequest("PUT", url, headers: headers, body: Data(file))
        #expect(again?.status == 200)
        let other = try Self.modelFile(seed: 2)
        #expect(other != file)
        await #expect(throws: ArtifactUploadRefused.self) { _ = try await uploader.upload(other, jobID: jobID) }
        #expect(
            await httpRequest(
                "PUT", url, headers: headers.merging(["X-Checksum-SHA256": ModelFileDigest.sha256Hex(other)]) { $1 },
                body: Data(other))?.status == 409)
        #expect(try await pipeline.count("SELECT count(*) FROM registry.artifacts") == 1)
        #expect(try await pipeline.client.query("SELECT content FROM registry.artifacts")[0].decode(0, as: [UInt8].self) == file)

        // An unreachable registry: bounded retries, then a transient failure (the job goes back to the queue).
        let down = ArtifactUploader(
            settings: try TrainerSettings(
                EnvironmentReader([
                    "CANDLECAST_REGISTRY_URL": "http://127.0.0.1:9", "CANDLECAST_REGISTRY_TOKEN": "x",
                    "CANDLECAST_ARTIFACT_UPLOAD_ATTEMPTS": "2",
                ])), http: pipeline.http, logger: pipeline.logger, firstDelay: .milliseconds(10))
        await #expect(throws: TransientFailure.self) { _ = try await down.upload(file, jobID: jobID) }
        // Cancelled mid-retry: the upload ends at once.
        let patient = ArtifactUploader(
            settings: try TrainerSettings(
                EnvironmentReader([
                    "CANDLECAST_REGISTRY_URL": "http://127.0.0.1:9", "CANDLECAST_REGISTRY_TOKEN": "x",
                    "CANDLECAST_ARTIFACT_UPLOAD_ATTEMPTS": "50",
                ])), http: pipeline.http, logger: pipeline.logger, firstDelay: .seconds(5))
        let started = ContinuousClock.now
        let task = Task { try await patient.upload(file, jobID: jobID) }
        try await Task.sleep(for: .milliseconds(300))
        task.cancel()
        await #expect(throws: CancellationError.self) { _ = try await task.value }
        #expect(ContinuousClock.now - started < .seconds(3))
        await pipeline.tearDown()
    }

    @Test(
        """
        a completion whose model file is missing is retried, then dead-lettered; a mismatched one is dead-lettered at once; neither is \
        recorded
        """
    )
    func missingOrMismatchedArtifact() async throws {
        let pipeline = try await TrainingPipeline(maximumMASE: 100)
        let deadLetters = try Consumer(
            configuration: pipeline.broker,
            options: Consumer.Options(queue: ServiceName.registry.deadLetterQueue, topology: ServiceName.registry.topology),
            logger: pipeline.logger)
        let dead = DeliveryCollector(deadLetters)
        let sweep = try await pipeline.sweep(tinyGrid(batchSizes: [256, 512]))
        let jobs = try await pipeline.client.query("SELECT job_id FROM registry.runs WHERE sweep_id = \(sweep) ORDER BY id").map {
            try $0.decode(0, as: UUID.self)
        }
        let file = try Self.modelFile()
        let reference = ArtifactReference(name: "model.cclstm", bytes: file.count, sha256: ModelFileDigest.sha256Hex(file))
        func publish(_ completed: TrainingCompleted) async throws {
            try await pipeline.publisher.publish(
                EnvelopeCodec.encode(Envelope(payload: completed), exchange: Exchange.events, routingKey: RoutingKey.trainingCompleted))
        }

        // Missing: nothing was uploaded for job 0.
        try await publish(Self.completion(jobID: jobs[0], sweepID: sweep, artifact: reference))
        let missing = try await dead.waitFor(1, timeout: .seconds(20))[0]
        #expect(
            missing.properties.headers[DeadLetterHeader.reason]?.stringValue?.contains("handler failed 3 times") == true,
            "\(missing.properties.headers)")
        #expect(missing.properties.headers[DeadLetterHeader.reason]?.stringValue?.contains("no model file stored") == true)

        // Mismatched: job 1's stored file is not the one its result names.
        let store = pipeline.store
        _ = try await pipeline.client.transaction { try store.storeArtifact(jobID: jobs[1], content: file, on: $0) }
        var wrong = reference
        wrong.sha256 = String(repeating: "ab", count: 32)
        try await publish(Self.completion(jobID: jobs[1], sweepID: sweep, artifact: wrong))
        let mismatched = try await dead.waitFor(2, timeout: .seconds(10))[1]
        #expect(
            mismatched.properties.headers[DeadLetterHeader.reason]?.stringValue?.contains("is not the one reported") == true,
            "\(mismatched.properties.headers)")
        #expect(try await pipeline.count("SELECT count(*) FROM registry.runs WHERE status = 'queued'") == 2, "neither result was recorded")
        #expect(try await pipeline.count("SELECT count(*) FROM registry.model_versions") == 0)

        // The right reference for job 1 is recorded.
        try await publish(Self.completion(jobID: jobs[1], sweepID: sweep, artifact: reference))
        try await eventually("job 1 to be recorded") {
            try await pipeline.count("SELECT count(*) FROM registry.runs WHERE status = 'finished'") == 1
        }
        await deadLetters.stop()
        await pipeline.tearDown()
    }

    @Test("the trainer's settings: registry URL and token are validated at start")
    func trainerSettings() throws {
        #expect(throws: ConfigurationError.self) { try TrainerSettings(EnvironmentReader([:])) }
        #expect(throws: ConfigurationError.self) {
            try TrainerSettings(EnvironmentReader(["CANDLECAST_REGISTRY_TOKEN": "t", "CANDLECAST_REGISTRY_URL": "ftp://x"]))
        }
        #expect(throws: ConfigurationError.self) {
            try TrainerSettings(EnvironmentReader(["CANDLECAST_REGISTRY_TOKEN": "t", "CANDLECAST_ARTIFACT_UPLOAD_ATTEMPTS": "0"]))
        }
        let settings = try TrainerSettings(EnvironmentReader(["CANDLECAST_REGISTRY_TOKEN": "t"]))
        #expect(settings.registryURL.absoluteString == "http://127.0.0.1:8084" && settings.uploadAttempts == 5)
    }

    @Test("RegistryError carries a code callers switch on")
    func errorCodes() async throws {
        let pipeline = try await TrainingPipeline(maximumMASE: 100)
        let store = pipeline.store
        do {
            _ = try await pipeline.client.transaction { try store.storeArtifact(jobID: UUID(), content: [1, 2, 3], on: $0) }
            Issue.record("stored a file for no job")
        } catch let error as RegistryError {
            #expect(error.code == .notFound)
            #expect(error.message.contains("no run for job"))
        }
        do {
            _ = try await pipeline.client.transaction {
                try store.rollback(modelName: "lstm-xbtusd-1d", to: nil, actor: "t", reason: "r", on: $0)
            }
            Issue.record("rolled back with no champion")
        } catch let error as RegistryError {
            #expect(error.code == .conflict)
        }
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
        let environment = [
            "CANDLECAST_DATABASE_URL": components.string ?? "", "CANDLECAST_LOG_LEVEL": "info",
            "CANDLECAST_REGISTRY_URL": pipeline.registryURL, "CANDLECAST_REGISTRY_TOKEN": TrainingPipeline.token,
        ]
        let first = try ServiceProcess("trainer", environment: environment.merging(["CANDLECAST_HTTP_PORT": "18501"]) { $1 })
        defer { first.kill() }
        try await eventually(timeout: .seconds(20), "the first trainer to be ready") {
            await httpGet("http://127.0.0.1:18501/readyz")?.status == 200
        }

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
