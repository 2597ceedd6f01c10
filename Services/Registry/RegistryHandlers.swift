import Contracts
import Forecasting
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import OpenAPIRuntime
import RegistryAPI
import ServiceKit
import Storage

/// The registry's HTTP API, the server side of docs/registry-openapi.yaml: every answer is a typed value of that
/// document, built from decoded rows. Reads are open; writes need the bearer token.
struct RegistryHandlers: APIProtocol {
    /// JSON bodies of the write endpoints.
    static let jsonBodyLimit = 64 * 1024
    /// Model files (`PUT /v1/jobs/{job_id}/artifact`).
    static let artifactLimit = 64 << 20
    /// Model and dataset versions: positive, within what every message and column that carries one holds.
    static let versions = 1...ContractRules.maximumCount
    /// Reasons of alias moves, as `model.promoted` carries them.
    static let reasonLimit = ContractRules.maximumReasonLength

    let database: PostgresClient
    let store: RegistryStore
    let settings: RegistrySettings
    let logger: Logger

    /// Serves the document's operations on `router`: JSON writes bounded to 64 KiB, model files to 64 MiB.
    func add(to router: Router<BasicRequestContext>) throws {
        let configuration = Configuration(dateTranscoder: RFC3339Dates())
        let token = settings.token
        try OpenAPIServer.add(to: router, bodyLimit: Self.jsonBodyLimit) { json in
            try OpenAPIServer.add(to: router, bodyLimit: Self.artifactLimit) { files in
                try registerHandlers(
                    on: WriteGuard(json: json, files: files, token: token), configuration: configuration, middlewares: [RawReprDigest()])
            }
        }
    }

    // MARK: Reads

    func getV1Experiments(_ input: Operations.GetV1Experiments.Input) async throws -> Operations.GetV1Experiments.Output {
        let rows = try await database.query("SELECT name, pair, interval_seconds, created_at FROM registry.experiments ORDER BY name")
        let experiments = try rows.map { row in
            Components.Schemas.Experiment(
                name: try row.decode("name", as: String.self), pair: try row.decode("pair", as: String.self),
                interval: try Self.interval(seconds: row.decode("interval_seconds", as: Int.self)),
                createdAt: try row.decode("created_at", as: Date.self))
        }
        return .ok(.init(body: .json(experiments)))
    }

    func getV1Runs(_ input: Operations.GetV1Runs.Input) async throws -> Operations.GetV1Runs.Output {
        let experiment = try input.query.experiment.map { try HTTPInput.modelName($0, field: "query parameter experiment") }
        let limit = try HTTPInput.integer(input.query.limit ?? 100, "query parameter limit", in: 1...1000)
        let queued = try HTTPInput.timeRange(from: input.query.from, to: input.query.to)
        let rows = try await runs(id: nil, experiment: experiment, queued: queued, limit: limit)
        return .ok(.init(body: .json(try rows.map(Self.run))))
    }

    func getV1RunsId(_ input: Operations.GetV1RunsId.Input) async throws -> Operations.GetV1RunsId.Output {
        let id = try HTTPInput.integer(input.path.id, "path parameter id", in: 1...Int64.max)
        guard let row = try await runs(id: id, experiment: nil, queued: nil, limit: 1).first else {
            throw HTTPError(.notFound, message: "no run \(id)")
        }
        var run = try Self.run(row)
        run.metricHistory = try await database.query(
            "SELECT key, step, value, recorded_at FROM registry.run_metrics WHERE run_id = \(id) ORDER BY key, step"
        ).map { row in
            Components.Schemas.MetricPoint(
                key: try row.decode("key", as: String.self), step: try row.decode("step", as: Int.self),
                value: try row.decode("value", as: Double.self),
                time: try row.decode("recorded_at", as: Date.self))
        }
        run.artifact = try await database.query("SELECT name, byte_count, sha256 FROM registry.artifacts WHERE run_id = \(id)").first.map(
            Self.artifact)
        return .ok(.init(body: .json(run)))
    }

    func getV1SweepsId(_ input: Operations.GetV1SweepsId.Input) async throws -> Operations.GetV1SweepsId.Output {
        let id = try Self.uuid(input.path.id, "path parameter id")
        guard
            let row = try await database.query(
                """
                SELECT id, experiment, model_name, dataset_version, grid::text AS grid, trigger, job_count, created_at, decided_at
                FROM registry.sweeps WHERE id = \(id)
                """
            ).first
        else { throw HTTPError(.notFound, message: "no sweep \(id.uuidString.lowercased())") }
        let decision = try await database.query(
            """
            SELECT challenger_version, champion_version, promoted, reason, challenger_rmse, champion_rmse, challenger_mase, champion_mase,
                   challenger_winkler80, champion_winkler80, decided_at
            FROM registry.promotion_decisions WHERE sweep_id = \(id)
            """
        ).first.map { row in
            Components.Schemas.GateDecision(
                challengerVersion: try row.decode("challenger_version", as: Int?.self),
                championVersion: try row.decode("champion_version", as: Int?.self),
                promoted: try row.decode("promoted", as: Bool.self), reason: try row.decode("reason", as: String.self),
                challengerRmse: try row.decode("challenger_rmse", as: Double?.self),
                championRmse: try row.decode("champion_rmse", as: Double?.self),
                challengerMase: try row.decode("challenger_mase", as: Double?.self),
                championMase: try row.decode("champion_mase", as: Double?.self),
                challengerWinkler: try row.decode("challenger_winkler80", as: Double?.self),
                championWinkler: try row.decode("champion_winkler80", as: Double?.self),
                decidedAt: try row.decode("decided_at", as: Date.self))
        }
        let runs = try await database.query("SELECT id, job_id, status, trainer FROM registry.runs WHERE sweep_id = \(id) ORDER BY id").map
        { row in
            Components.Schemas.SweepRun(
                id: try row.decode("id", as: Int64.self), jobId: try row.decode("job_id", as: UUID.self).uuidString.lowercased(),
                status: try Self.enumValue(row.decode("status", as: String.self)), trainer: try row.decode("trainer", as: String?.self))
        }
        let sweep = Components.Schemas.Sweep(
            id: id.uuidString.lowercased(), experiment: try row.decode("experiment", as: String.self),
            modelName: try row.decode("model_name", as: String.self),
            datasetVersion: try row.decode("dataset_version", as: Int.self), grid: try Self.json(row.decode("grid", as: String.self)),
            trigger: try row.decode("trigger", as: String.self), jobCount: try row.decode("job_count", as: Int.self),
            createdAt: try row.decode("created_at", as: Date.self), decidedAt: try row.decode("decided_at", as: Date?.self),
            decision: decision, runs: runs)
        return .ok(.init(body: .json(sweep)))
    }

    func getV1Models(_ input: Operations.GetV1Models.Input) async throws -> Operations.GetV1Models.Output {
        let rows = try await database.query(
            """
            SELECT m.name, m.experiment, m.created_at,
                   (SELECT count(*) FROM registry.model_versions v WHERE v.model_name = m.name) AS versions
            FROM registry.registered_models m ORDER BY m.name
            """)
        let aliases = try await database.query("SELECT model_name, alias, version FROM registry.aliases").reduce(
            into: [String: [String: Int]]()
        ) {
            try $0[$1.decode("model_name", as: String.self), default: [:]][$1.decode("alias", as: String.self)] = $1.decode(
                "version", as: Int.self)
        }
        let models = try rows.map { row in
            let name = try row.decode("name", as: String.self)
            return Components.Schemas.RegisteredModel(
                name: name, experiment: try row.decode("experiment", as: String.self),
                createdAt: try row.decode("created_at", as: Date.self),
                aliases: .init(additionalProperties: aliases[name] ?? [:]), versions: try row.decode("versions", as: Int.self))
        }
        return .ok(.init(body: .json(models)))
    }

    func getV1ModelsNameVersions(_ input: Operations.GetV1ModelsNameVersions.Input) async throws
        -> Operations.GetV1ModelsNameVersions.Output
    {
        let name = try HTTPInput.modelName(input.path.name, field: "path parameter name")
        try await requireModel(name)
        return .ok(.init(body: .json(try await versions(of: name, version: nil))))
    }

    func getV1ModelsNameVersionsVersion(
        _ input: Operations.GetV1ModelsNameVersionsVersion.Input
    ) async throws -> Operations.GetV1ModelsNameVersionsVersion.Output {
        let name = try HTTPInput.modelName(input.path.name, field: "path parameter name")
        let version = try HTTPInput.integer(input.path.version, "path parameter version", in: Self.versions)
        guard let found = try await versions(of: name, version: version).first else {
            throw HTTPError(.notFound, message: "model \(name) has no version \(version)")
        }
        return .ok(.init(body: .json(found)))
    }

    func getV1ModelsNameVersionsVersionArtifact(
        _ input: Operations.GetV1ModelsNameVersionsVersionArtifact.Input
    ) async throws -> Operations.GetV1ModelsNameVersionsVersionArtifact.Output {
        let name = try HTTPInput.modelName(input.path.name, field: "path parameter name")
        let version = try HTTPInput.integer(input.path.version, "path parameter version", in: Self.versions)
        let store = self.store
        let artifact = try await mapped {
            try await database.withConnection { try store.artifact(modelName: name, version: version, on: $0) }
        }
        let headers = Operations.GetV1ModelsNameVersionsVersionArtifact.Output.Ok.Headers(
            xChecksumSHA256: artifact.sha256, reprDigest: ModelFileDigest.reprDigest(ofHex: artifact.sha256),
            contentDisposition: "attachment; filename=\"\(name)-v\(version).cclstm\"")
        return .ok(.init(headers: headers, body: .binary(HTTPBody(artifact.content))))
    }

    func getV1ModelsNameAliases(_ input: Operations.GetV1ModelsNameAliases.Input) async throws -> Operations.GetV1ModelsNameAliases.Output {
        let name = try HTTPInput.modelName(input.path.name, field: "path parameter name")
        try await requireModel(name)
        let aliases = try await database.query(
            "SELECT model_name, alias, version, updated_at FROM registry.aliases WHERE model_name = \(name) ORDER BY alias"
        ).map { row in
            Components.Schemas.Alias(
                modelName: try row.decode("model_name", as: String.self), alias: try row.decode("alias", as: String.self),
                version: try row.decode("version", as: Int.self), updatedAt: try row.decode("updated_at", as: Date.self))
        }
        let history = try await database.query(
            """
            SELECT id, model_name, alias, from_version, to_version, actor, reason, moved_at FROM registry.alias_history
            WHERE model_name = \(name) ORDER BY id
            """
        ).map { row in
            Components.Schemas.AliasMove(
                id: try row.decode("id", as: Int64.self), modelName: try row.decode("model_name", as: String.self),
                alias: try row.decode("alias", as: String.self), fromVersion: try row.decode("from_version", as: Int?.self),
                toVersion: try row.decode("to_version", as: Int.self), actor: try row.decode("actor", as: String.self),
                reason: try row.decode("reason", as: String.self), movedAt: try row.decode("moved_at", as: Date.self))
        }
        return .ok(.init(body: .json(.init(aliases: aliases, history: history))))
    }

    // MARK: Writes (the bearer token is checked by `WriteGuard` before any of these runs)

    func putV1JobsJobIdArtifact(_ input: Operations.PutV1JobsJobIdArtifact.Input) async throws -> Operations.PutV1JobsJobIdArtifact.Output {
        let jobID = try Self.uuid(input.path.jobId, "path parameter job_id")
        let claimed = input.headers.xChecksumSHA256
        guard ModelFileDigest.isSHA256Hex(claimed) else {
            throw HTTPError(.badRequest, message: "header X-Checksum-SHA256 must be 64 lowercase hex digits")
        }
        guard case .binary(let body) = input.body else {
            throw HTTPError(.unsupportedMediaType, message: "the model file is application/octet-stream")
        }
        let content = try await [UInt8](collecting: body, upTo: Self.artifactLimit)
        guard ModelFileDigest.sha256Hex(content) == claimed else {
            throw HTTPError(.badRequest, message: "header X-Checksum-SHA256 is not the SHA-256 of the body (\(content.count) bytes)")
        }
        do {
            _ = try ForecastModel(decoding: content)
        } catch {
            throw HTTPError(.badRequest, message: "the body is not a model file: \(error)")
        }
        let store = self.store
        let (stored, created) = try await mapped {
            try await database.transaction { try store.storeArtifact(jobID: jobID, content: content, sha256: claimed, on: $0) }
        }
        let artifact = Components.Schemas.Artifact(name: stored.name, bytes: stored.bytes, sha256: stored.sha256)
        if created {
            logger.info(
                "artifact stored",
                metadata: ["job.id": "\(jobID)", "artifact.bytes": "\(stored.bytes)", "artifact.sha256": "\(stored.sha256)"])
            return .created(.init(body: .json(artifact)))
        }
        return .ok(.init(body: .json(artifact)))
    }

    func postV1Sweeps(_ input: Operations.PostV1Sweeps.Input) async throws -> Operations.PostV1Sweeps.Output {
        guard case .json(let body) = input.body else { throw HTTPError(.unsupportedMediaType, message: "the body is application/json") }
        let pair = try HTTPInput.pair(body.pair)
        let interval = try HTTPInput.interval(body.interval.rawValue)
        let datasetVersion = try HTTPInput.integer(body.datasetVersion, "dataset_version", in: Self.versions)
        let grid: SweepGrid
        do {
            // The document's grid and the store's are the same JSON: one becomes the other through it.
            grid = try body.grid.map { try JSONDecoder().decode(SweepGrid.self, from: JSONEncoder().encode($0)) } ?? settings.grid
        } catch {
            throw HTTPError(.badRequest, message: "grid: \(error)")
        }
        let store = self.store
        let result = try await mapped {
            try await database.transaction { connection in
                try store.startSweep(
                    pair: pair, interval: interval, datasetVersion: datasetVersion, grid: grid, trigger: "api", on: connection)
            }
        }
        guard let (id, jobs) = result else { throw HTTPError(.conflict, message: "sweep already exists") }
        return .created(.init(body: .json(.init(sweepId: id.uuidString.lowercased(), jobs: jobs.count))))
    }

    func postV1ModelsNamePromote(_ input: Operations.PostV1ModelsNamePromote.Input) async throws
        -> Operations.PostV1ModelsNamePromote.Output
    {
        let name = try HTTPInput.modelName(input.path.name, field: "path parameter name")
        guard case .json(let body) = input.body else { throw HTTPError(.unsupportedMediaType, message: "the body is application/json") }
        let version = try HTTPInput.integer(body.version, "version", in: Self.versions)
        let reason = try HTTPInput.text(body.reason ?? "manual promotion", "reason", limit: Self.reasonLimit)
        let store = self.store
        try await mapped {
            try await database.transaction { try store.promote(modelName: name, version: version, actor: "api", reason: reason, on: $0) }
        }
        return .ok(.init(body: .json(.init(model: name, champion: version))))
    }

    func postV1ModelsNameRollback(_ input: Operations.PostV1ModelsNameRollback.Input) async throws
        -> Operations.PostV1ModelsNameRollback.Output
    {
        let name = try HTTPInput.modelName(input.path.name, field: "path parameter name")
        guard case .json(let body) = input.body else { throw HTTPError(.unsupportedMediaType, message: "the body is application/json") }
        if let version = body.version { try HTTPInput.integer(version, "version", in: Self.versions) }
        let reason = try HTTPInput.text(
            body.reason ?? "manual rollback", "reason", limit: Self.reasonLimit - RegistryStore.rollbackPrefix.count)
        let store = self.store
        let version = try await mapped {
            try await database.transaction { try store.rollback(modelName: name, to: body.version, actor: "api", reason: reason, on: $0) }
        }
        return .ok(.init(body: .json(.init(model: name, champion: version))))
    }

    // MARK: Rows to typed values

    /// Runs, newest first: one by `id`, or those of `experiment` queued within `queued` (unix seconds, whole
    /// seconds included: `HTTPInput.timeRange`, the rule of every list's `from`/`to`).
    private func runs(id: Int64?, experiment: String?, queued: ClosedRange<Int64>?, limit: Int) async throws -> [PostgresRow] {
        let from = queued?.lowerBound
        let before = queued.map { $0.upperBound + 1 }
        return try await database.query(
            """
            SELECT id, job_id, sweep_id, experiment, status, params::text AS params, dataset_version, trainer, error, epochs_run,
                   best_epoch, validation_loss, test_metrics::text AS test_metrics, naive_metrics::text AS naive_metrics, train_seconds,
                   attempts, queued_at, started_at, ended_at, heartbeat_at, lease_expires_at, model,
                   validation_metrics::text AS validation_metrics, test_distribution::text AS test_distribution,
                   naive_distribution::text AS naive_distribution, validation_distribution::text AS validation_distribution
            FROM registry.runs
            WHERE (\(id)::bigint IS NULL OR id = \(id)) AND (\(experiment)::text IS NULL OR experiment = \(experiment))
              AND (\(from)::bigint IS NULL OR queued_at >= to_timestamp(\(from)::double precision))
              AND (\(before)::bigint IS NULL OR queued_at < to_timestamp(\(before)::double precision))
            ORDER BY id DESC LIMIT \(limit)
            """)
    }

    static func run(_ row: PostgresRow) throws -> Components.Schemas.Run {
        Components.Schemas.Run(
            id: try row.decode("id", as: Int64.self), jobId: try row.decode("job_id", as: UUID.self).uuidString.lowercased(),
            sweepId: try row.decode("sweep_id", as: UUID.self).uuidString.lowercased(),
            experiment: try row.decode("experiment", as: String.self),
            status: try enumValue(row.decode("status", as: String.self)), params: try json(row.decode("params", as: String.self)),
            datasetVersion: try row.decode("dataset_version", as: Int.self), trainer: try row.decode("trainer", as: String?.self),
            error: try row.decode("error", as: String?.self), epochsRun: try row.decode("epochs_run", as: Int?.self),
            bestEpoch: try row.decode("best_epoch", as: Int?.self), validationLoss: try row.decode("validation_loss", as: Double?.self),
            model: try enumValue(row.decode("model", as: String.self)),
            testMetrics: try row.decode("test_metrics", as: String?.self).map(json),
            naiveMetrics: try row.decode("naive_metrics", as: String?.self).map(json),
            validationMetrics: try row.decode("validation_metrics", as: String?.self).map(json),
            testDistribution: try row.decode("test_distribution", as: String?.self).map(json),
            naiveDistribution: try row.decode("naive_distribution", as: String?.self).map(json),
            validationDistribution: try row.decode("validation_distribution", as: String?.self).map(json),
            trainSeconds: try row.decode("train_seconds", as: Double?.self), attempts: try row.decode("attempts", as: Int.self),
            queuedAt: try row.decode("queued_at", as: Date.self), startedAt: try row.decode("started_at", as: Date?.self),
            endedAt: try row.decode("ended_at", as: Date?.self), heartbeatAt: try row.decode("heartbeat_at", as: Date?.self),
            leaseExpiresAt: try row.decode("lease_expires_at", as: Date?.self))
    }

    static func artifact(_ row: PostgresRow) throws -> Components.Schemas.Artifact {
        Components.Schemas.Artifact(
            name: try row.decode("name", as: String.self), bytes: try row.decode("byte_count", as: Int.self),
            sha256: try row.decode("sha256", as: String.self))
    }

    private func versions(of name: String, version: Int?) async throws -> [Components.Schemas.ModelVersion] {
        let aliases = try await database.query(
            "SELECT version, alias FROM registry.aliases WHERE model_name = \(name) ORDER BY alias"
        ).reduce(into: [Int: [String]]()) {
            try $0[$1.decode("version", as: Int.self), default: []].append($1.decode("alias", as: String.self))
        }
        return try await database.query(
            """
            SELECT v.model_name, v.version, v.run_id, v.dataset_version, v.created_at, r.params::text AS params, r.validation_loss,
                   r.test_metrics::text AS test_metrics, r.naive_metrics::text AS naive_metrics, r.trainer, a.byte_count, a.sha256, r.model,
                   r.validation_metrics::text AS validation_metrics, r.test_distribution::text AS test_distribution,
                   r.naive_distribution::text AS naive_distribution
            FROM registry.model_versions v JOIN registry.runs r ON r.id = v.run_id LEFT JOIN registry.artifacts a ON a.run_id = v.run_id
            WHERE v.model_name = \(name) AND (\(version)::integer IS NULL OR v.version = \(version)) ORDER BY v.version
            """
        ).map { row in
            let number = try row.decode("version", as: Int.self)
            return Components.Schemas.ModelVersion(
                modelName: try row.decode("model_name", as: String.self), version: number,
                model: try Self.enumValue(row.decode("model", as: String.self)), runId: try row.decode("run_id", as: Int64.self),
                datasetVersion: try row.decode("dataset_version", as: Int.self), createdAt: try row.decode("created_at", as: Date.self),
                aliases: aliases[number] ?? [], params: try Self.json(row.decode("params", as: String.self)),
                trainer: try row.decode("trainer", as: String?.self), validationLoss: try row.decode("validation_loss", as: Double?.self),
                testMetrics: try row.decode("test_metrics", as: String?.self).map(Self.json),
                naiveMetrics: try row.decode("naive_metrics", as: String?.self).map(Self.json),
                validationMetrics: try row.decode("validation_metrics", as: String?.self).map(Self.json),
                testDistribution: try row.decode("test_distribution", as: String?.self).map(Self.json),
                naiveDistribution: try row.decode("naive_distribution", as: String?.self).map(Self.json),
                artifactBytes: try row.decode("byte_count", as: Int?.self), artifactSha256: try row.decode("sha256", as: String?.self))
        }
    }

    /// A `jsonb` column (read as text) as the document's type for it.
    static func json<T: Decodable>(_ text: String) throws -> T {
        try JSONDecoder().decode(T.self, from: Data(text.utf8))
    }

    /// A stored enumeration value (a run's status) as the document's enum; a value it lacks is the registry's bug.
    static func enumValue<T: RawRepresentable<String>>(_ text: String) throws -> T {
        guard let value = T(rawValue: text) else { throw RegistryError(.invalid, "stored value \(text) is not a \(T.self)") }
        return value
    }

    static func interval(seconds: Int) throws -> Components.Schemas.Interval {
        let interval = try CandleInterval(storedSeconds: seconds)
        guard let value = Components.Schemas.Interval(rawValue: interval.name) else {
            throw RegistryError(.invalid, "interval \(interval.name) is not in the registry's document")
        }
        return value
    }

    static func uuid(_ text: String, _ field: String) throws -> UUID {
        guard let id = UUID(uuidString: text) else { throw HTTPError(.badRequest, message: "\(field) must be a UUID") }
        return id
    }

    private func requireModel(_ name: String) async throws {
        guard try await database.query("SELECT 1 FROM registry.registered_models WHERE name = \(name)").first != nil else {
            throw HTTPError(.notFound, message: "no model named \(name)")
        }
    }

    /// Registry errors as HTTP errors carrying their message.
    @discardableResult
    private func mapped<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as RegistryError {
            switch error.code {
            case .notFound: throw HTTPError(.notFound, message: error.message)
            case .conflict, .artifactMismatch: throw HTTPError(.conflict, message: error.message)
            default: throw HTTPError(.badRequest, message: error.message)
            }
        }
    }
}

/// Writes `Repr-Digest` as RFC 9530 spells it (`sha-256=:...:`): the generated code percent-encodes header values
/// (its `=` and `:`), so the value is set here from `X-Checksum-SHA256`, the same digest in hex.
struct RawReprDigest: ServerMiddleware {
    static let checksum = HTTPField.Name("X-Checksum-SHA256")!
    static let reprDigest = HTTPField.Name("Repr-Digest")!

    func intercept(
        _ request: HTTPRequest, body: HTTPBody?, metadata: ServerRequestMetadata, operationID: String,
        next: @Sendable (HTTPRequest, HTTPBody?, ServerRequestMetadata) async throws -> (HTTPResponse, HTTPBody?)
    ) async throws -> (HTTPResponse, HTTPBody?) {
        var (response, answer) = try await next(request, body, metadata)
        if let hex = response.headerFields[Self.checksum], ModelFileDigest.isSHA256Hex(hex) {
            response.headerFields[Self.reprDigest] = ModelFileDigest.reprDigest(ofHex: hex)
        }
        return (response, answer)
    }
}

/// Hands the generated operations to the transports with the registry's write rule: every method but GET needs
/// the bearer token (401 with `WWW-Authenticate` without a valid one, 403 when none is configured). Model file
/// uploads (PUT) go to the transport with the larger body limit.
struct WriteGuard: ServerTransport {
    let json: any ServerTransport
    let files: any ServerTransport
    let token: String?

    func register(
        _ handler: @escaping @Sendable (HTTPRequest, HTTPBody?, ServerRequestMetadata) async throws -> (HTTPResponse, HTTPBody?),
        method: HTTPRequest.Method, path: String
    ) throws {
        let token = self.token
        let guarded: @Sendable (HTTPRequest, HTTPBody?, ServerRequestMetadata) async throws -> (HTTPResponse, HTTPBody?) = {
            request, body, metadata in
            try Self.authorize(request.headerFields[.authorization], token: token)
            return try await handler(request, body, metadata)
        }
        try (method == .put ? files : json).register(method == .get ? handler : guarded, method: method, path: path)
    }

    static func authorize(_ header: String?, token: String?) throws {
        guard let token else { throw HTTPError(.forbidden, message: "writes are disabled: no CANDLECAST_REGISTRY_TOKEN configured") }
        let header = header ?? ""
        guard header.hasPrefix("Bearer "), constantTimeEqual(Array(header.dropFirst(7).utf8), Array(token.utf8)) else {
            throw HTTPError(.unauthorized, headers: [.wwwAuthenticate: "Bearer"], message: "a valid bearer token is required")
        }
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
