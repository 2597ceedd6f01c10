import Contracts
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Messaging
import ServiceKit
import Storage

enum RegistryService {
    static let definition = ServiceDefinition(
        name: .registry, defaultHTTPPort: 8084, migrations: RegistrySchema.migrations,
        settings: { _ = try RegistrySettings($0); _ = try OutboxOptions($0) },
        routes: { router, context in
            guard let settings = try? RegistrySettings(context.configuration.environment) else { return }
            RegistryAPI(database: context.database, store: RegistryStore(maximumMASE: settings.maximumMASE), settings: settings, logger: context.logger)
                .add(to: router)
        },
        work: { context in
            let settings = try RegistrySettings(context.configuration.environment)
            let store = RegistryStore(maximumMASE: settings.maximumMASE, leaseSeconds: settings.leaseSeconds, maxAttempts: settings.maxAttempts)
            let relay = OutboxRelay(
                schema: RegistrySchema.name, database: context.database, publisher: context.publisher, logger: context.logger,
                options: try OutboxOptions(context.configuration.environment))
            let subscriptions = ServiceName.registry.subscriptions
            let consumers = try subscriptions.map { try context.consumer(for: $0, prefetch: 16) }
            let database = context.database, logger = context.logger
            await withTaskGroup(of: Void.self) { group in
                group.addTask { try? await relay.run() }
                group.addTask { await sweepLostRuns(store: store, database: database, logger: logger) }
                for consumer in consumers {
                    group.addTask { await consume(consumer, store: store, grid: settings.grid, database: database, logger: logger) }
                }
                await context.waitForShutdown()
                for consumer in consumers { await consumer.stop() }
                group.cancelAll()
            }
        })

    /// The lease sweeper: every quarter lease (at least 1 s), expired running runs are requeued or failed.
    static func sweepLostRuns(store: RegistryStore, database: PostgresClient, logger: Logger) async {
        let period = Duration.milliseconds(max(1000, store.leaseSeconds * 250))
        while !Task.isCancelled {
            do {
                let (requeued, failed) = try await database.transaction { try store.expireLostRuns(on: $0) }
                if requeued + failed > 0 {
                    logger.warning("trainer lost", metadata: ["runs.requeued": "\(requeued)", "runs.failed": "\(failed)"])
                }
            } catch {
                logger.warning("lease sweep failed", metadata: ["error": "\(error)"])
            }
            try? await Task.sleep(for: period)
        }
    }

    /// Dataset versions start sweeps; epoch metrics and results are tracked; a sweep's last result runs the gate.
    static func consume(_ consumer: Consumer, store: RegistryStore, grid: SweepGrid, database: PostgresClient, logger: Logger) async {
        await consumer.handle([
            MessageHandler(DatasetReady.self) { envelope, _ in
                let ready = envelope.payload
                let sweep = try await database.transaction { connection in
                    try store.startSweep(pair: ready.pair, interval: ready.interval, datasetVersion: ready.version, grid: grid, trigger: "dataset.ready", on: connection)
                }
                if let (id, jobs) = sweep {
                    logger.info("sweep started", metadata: ["sweep.id": "\(id)", "jobs": "\(jobs.count)", "dataset_version": "\(ready.version)"])
                }
            },
            MessageHandler(TrainingEpochMetric.self) { envelope, _ in
                let metric = envelope.payload
                try await database.transaction { try store.recordEpoch(metric, on: $0) }
            },
            MessageHandler(TrainingCompleted.self) { envelope, _ in
                let completed = envelope.payload
                let decision = try await database.transaction { try store.recordCompletion(completed, on: $0) }
                if let decision {
                    logger.notice("promotion gate", metadata: ["sweep.id": "\(completed.sweepID)", "promoted": "\(decision.promoted)", "reason": "\(decision.reason)"])
                }
            },
        ])
    }
}

/// The registry's HTTP API (docs/registry-openapi.yaml). Reads are open; writes need the bearer token.
struct RegistryAPI: Sendable {
    /// The model file's SHA-256 (hex), which the predictor checks before loading it; also sent as RFC 9530 `Repr-Digest`.
    static let checksumHeader = HTTPField.Name("X-Checksum-SHA256")!
    static let reprDigestHeader = HTTPField.Name("Repr-Digest")!
    let database: PostgresClient
    let store: RegistryStore
    let settings: RegistrySettings
    let logger: Logger

    func add(to router: Router<BasicRequestContext>) {
        let router = DeclaredRoutes(router)
        router.get("v1/experiments") { _, _ in
            try await json("SELECT name, pair, interval_seconds, created_at FROM registry.experiments ORDER BY name")
        }
        router.get("v1/sweeps/:id") { _, context in
            let id = try uuidParameter(context, "id")
            return try await json(
                """
                SELECT s.*, (SELECT row_to_json(d) FROM registry.promotion_decisions d WHERE d.sweep_id = s.id) AS decision,
                       (SELECT json_agg(json_build_object('id', r.id, 'job_id', r.job_id, 'status', r.status, 'trainer', r.trainer) ORDER BY r.id)
                        FROM registry.runs r WHERE r.sweep_id = s.id) AS runs
                FROM registry.sweeps s WHERE s.id = \(id)
                """, single: true)
        }
        router.get("v1/runs") { request, _ in
            let experiment = try request.uri.queryParameters.get("experiment").map { try HTTPInput.modelName(String($0), field: "query parameter experiment") }
            let limit = try request.integerQuery("limit", in: 1...1000) ?? 100
            return try await json(
                """
                SELECT id, job_id, sweep_id, experiment, status, params, dataset_version, trainer, error, epochs_run, validation_loss,
                       test_metrics, naive_metrics, train_seconds, queued_at, started_at, ended_at
                FROM registry.runs WHERE (\(experiment)::text IS NULL OR experiment = \(experiment)) ORDER BY id DESC LIMIT \(limit)
                """)
        }
        router.get("v1/runs/:id") { _, context in
            let id = try context.integerParameter("id", as: Int64.self, in: 1...Int64.max)
            return try await json(
                """
                SELECT r.*, (SELECT coalesce(json_agg(json_build_object('key', m.key, 'step', m.step, 'value', m.value, 'time', m.recorded_at) ORDER BY m.key, m.step), '[]')
                             FROM registry.run_metrics m WHERE m.run_id = r.id) AS metric_history,
                            (SELECT json_build_object('name', a.name, 'bytes', a.byte_count, 'sha256', a.sha256) FROM registry.artifacts a WHERE a.run_id = r.id) AS artifact
                FROM registry.runs r WHERE r.id = \(id)
                """, single: true)
        }
        router.get("v1/models") { _, _ in
            try await json(
                """
                SELECT m.name, m.experiment, m.created_at,
                       (SELECT coalesce(json_object_agg(a.alias, a.version), '{}') FROM registry.aliases a WHERE a.model_name = m.name) AS aliases,
                       (SELECT count(*) FROM registry.model_versions v WHERE v.model_name = m.name) AS versions
                FROM registry.registered_models m ORDER BY m.name
                """)
        }
        router.get("v1/models/:name/versions") { _, context in
            let name = try context.modelNameParameter()
            try await requireModel(name)
            return try await json(versionsQuery(name: name, version: nil))
        }
        router.get("v1/models/:name/versions/:version") { _, context in
            let name = try context.modelNameParameter()
            let version = try versionParameter(context)
            return try await json(versionsQuery(name: name, version: version), single: true)
        }
        router.get("v1/models/:name/versions/:version/artifact") { _, context in
            let name = try context.modelNameParameter()
            let version = try versionParameter(context)
            let store = self.store
            let artifact = try await mapped { try await database.withConnection { try store.artifact(modelName: name, version: version, on: $0) } }
            return Response(
                status: .ok,
                headers: [
                    .contentType: "application/octet-stream", .contentDisposition: "attachment; filename=\"\(name)-v\(version).cclstm\"",
                    Self.checksumHeader: artifact.sha256, Self.reprDigestHeader: artifact.reprDigest,
                ],
                body: ResponseBody(byteBuffer: ByteBuffer(bytes: artifact.content)))
        }
        router.get("v1/models/:name/aliases") { _, context in
            let name = try context.modelNameParameter()
            try await requireModel(name)
            return try await json(
                """
                SELECT json_build_object(
                    'aliases', (SELECT coalesce(json_agg(a ORDER BY a.alias), '[]') FROM registry.aliases a WHERE a.model_name = \(name)),
                    'history', (SELECT coalesce(json_agg(h ORDER BY h.id), '[]') FROM registry.alias_history h WHERE h.model_name = \(name)))
                """, raw: true)
        }
        router.post("v1/sweeps") { request, context in
            try authorize(request)
            let body = try await decode(SweepRequest.self, request, context)
            let interval = try HTTPInput.interval(body.interval)
            let pair = try HTTPInput.pair(body.pair)
            let datasetVersion = try HTTPInput.integer(body.datasetVersion, "dataset_version", in: Self.versions)
            let grid = body.grid ?? settings.grid
            let store = self.store
            let result = try await mapped {
                try await database.transaction { connection in
                    try store.startSweep(pair: pair, interval: interval, datasetVersion: datasetVersion, grid: grid, trigger: "api", on: connection)
                }
            }
            guard let (id, jobs) = result else { throw HTTPError(.conflict, message: "sweep already exists") }
            return HealthRoutes.jsonResponse(.created, ["sweep_id": id.uuidString.lowercased(), "jobs": jobs.count])
        }
        router.post("v1/models/:name/promote") { request, context in
            try authorize(request)
            let name = try context.modelNameParameter()
            let body = try await decode(PromoteRequest.self, request, context)
            guard let version = body.version else { throw HTTPError(.badRequest, message: "version is required") }
            try HTTPInput.integer(version, "version", in: Self.versions)
            let reason = try HTTPInput.text(body.reason ?? "manual promotion", "reason", limit: Self.reasonLimit)
            let store = self.store
            try await mapped {
                try await database.transaction { try store.promote(modelName: name, version: version, actor: "api", reason: reason, on: $0) }
            }
            return HealthRoutes.jsonResponse(.ok, ["model": name, "champion": version])
        }
        router.post("v1/models/:name/rollback") { request, context in
            try authorize(request)
            let name = try context.modelNameParameter()
            let body = try await decode(PromoteRequest.self, request, context)
            if let version = body.version { try HTTPInput.integer(version, "version", in: Self.versions) }
            let reason = try HTTPInput.text(body.reason ?? "manual rollback", "reason", limit: Self.reasonLimit - RegistryStore.rollbackPrefix.count)
            let store = self.store
            let version = try await mapped {
                try await database.transaction { try store.rollback(modelName: name, to: body.version, actor: "api", reason: reason, on: $0) }
            }
            return HealthRoutes.jsonResponse(.ok, ["model": name, "champion": version])
        }
    }

    struct SweepRequest: Decodable {
        var pair: String
        var interval: String
        var datasetVersion: Int
        var grid: SweepGrid?
        enum CodingKeys: String, CodingKey {
            case pair, interval, grid
            case datasetVersion = "dataset_version"
        }
    }

    struct PromoteRequest: Decodable {
        var version: Int?
        var reason: String?
    }

    private func versionsQuery(name: String, version: Int?) -> PostgresQuery {
        """
        SELECT v.model_name, v.version, v.run_id, v.dataset_version, v.created_at, r.params, r.validation_loss, r.test_metrics, r.naive_metrics,
               r.trainer, a.byte_count AS artifact_bytes, a.sha256 AS artifact_sha256,
               (SELECT coalesce(json_agg(al.alias ORDER BY al.alias), '[]') FROM registry.aliases al WHERE al.model_name = v.model_name AND al.version = v.version) AS aliases
        FROM registry.model_versions v JOIN registry.runs r ON r.id = v.run_id LEFT JOIN registry.artifacts a ON a.run_id = v.run_id
        WHERE v.model_name = \(name) AND (\(version)::integer IS NULL OR v.version = \(version)) ORDER BY v.version
        """
    }

    private func requireModel(_ name: String) async throws {
        guard try await database.query("SELECT 1 FROM registry.registered_models WHERE name = \(name)").first != nil else {
            throw HTTPError(.notFound, message: "no model named \(name)")
        }
    }

    /// Runs a query that returns rows and answers them as JSON built by PostgreSQL (`json_agg`).
    private func json(_ query: PostgresQuery, single: Bool = false, raw: Bool = false) async throws -> Response {
        let wrapped = raw ? query : PostgresQuery(
            unsafeSQL: single ? "SELECT row_to_json(t) FROM (\(query.sql)) t" : "SELECT coalesce(json_agg(t), '[]') FROM (\(query.sql)) t", binds: query.binds)
        guard let text = try await database.query(wrapped).first?.decode(0, as: String?.self) else {
            throw HTTPError(.notFound, message: "not found")
        }
        return Response(status: .ok, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
    }

    /// Turns registry errors into HTTP errors with their message.
    @discardableResult
    private func mapped<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as RegistryError {
            switch error.kind {
            case .notFound: throw HTTPError(.notFound, message: error.description)
            case .invalid: throw HTTPError(.badRequest, message: error.description)
            case .conflict: throw HTTPError(.conflict, message: error.description)
            }
        }
    }

    private func authorize(_ request: Request) throws {
        guard let token = settings.token else { throw HTTPError(.forbidden, message: "writes are disabled: no CANDLECAST_REGISTRY_TOKEN configured") }
        let header = request.headers[.authorization] ?? ""
        guard header.hasPrefix("Bearer "), constantTimeEqual(Array(header.dropFirst(7).utf8), Array(token.utf8)) else {
            throw HTTPError(.unauthorized, headers: [.wwwAuthenticate: "Bearer"], message: "a valid bearer token is required")
        }
    }

    private func decode<T: Decodable>(_ type: T.Type, _ request: Request, _ context: BasicRequestContext) async throws -> T {
        let buffer: ByteBuffer
        do {
            buffer = try await request.body.collect(upTo: 64 * 1024)
        } catch {
            throw HTTPError(.contentTooLarge, message: "the body is larger than 64 KiB")
        }
        do {
            return try JSONDecoder().decode(T.self, from: Data(buffer.readableBytesView))
        } catch {
            throw HTTPError(.badRequest, message: "invalid JSON body: \(error)")
        }
    }

    /// Model and dataset versions: positive, within what every message and column that carries one holds.
    static let versions = 1...ContractRules.maximumCount
    /// Reasons of alias moves, as `model.promoted` carries them.
    static let reasonLimit = ContractRules.maximumReasonLength

    private func versionParameter(_ context: BasicRequestContext) throws -> Int {
        try context.integerParameter("version", in: Self.versions)
    }

    private func uuidParameter(_ context: BasicRequestContext, _ key: String) throws -> UUID {
        guard let id = context.parameters.get(key).flatMap(UUID.init(uuidString:)) else { throw HTTPError(.badRequest, message: "\(key) must be a UUID") }
        return id
    }
}

/// Compares secrets without an early exit, so response time does not reveal how much of a token matched.
func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    var difference = UInt8(a.count == b.count ? 0 : 1)
    for index in 0..<max(a.count, b.count) {
        difference |= (index < a.count ? a[index] : 0) ^ (index < b.count ? b[index] : 0)
    }
    return difference == 0
}
