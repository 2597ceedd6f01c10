import Contracts
import Forecasting
import Foundation
import Messaging
import OpenAPIRuntime
import RegistryAPI
import ServiceKit
import Synchronization

/// A champion model in memory, with what a forecast records about it.
struct LoadedModel: Sendable {
    var name: String
    var version: Int
    var createdAt: Date
    /// Any kind: an LSTM (calibrated or not) or a baseline such as naive-empirical.
    var model: ForecastModel
    /// The dataset version it was trained on: `ModelStaleness` measures the model's age from its newest candle.
    var datasetVersion: Int? = nil

    /// The forecast from the last `model.window` closes (oldest first): the point, and the intervals and up probability
    /// when the model is calibrated (an LSTM from before model file version 3 serves its point forecast only).
    func forecast(closes: [Double]) throws -> ServedForecast {
        guard model.isCalibrated else { return ServedForecast(point: try model.pointForecasts(windows: [closes])[0]) }
        let distribution = try model.forecasts(windows: [closes])[0]
        return ServedForecast(point: distribution.point, intervals: distribution.intervals, probabilityUp: distribution.probabilityUp)
    }
}

/// What the predictor serves for one window: what `forecast.created` and the HTTP API carry.
struct ServedForecast: Sendable, Equatable {
    var point: Double
    /// `IntervalLevels.all`, nested; nil for an uncalibrated model.
    var intervals: [ForecastInterval]? = nil
    var probabilityUp: Double? = nil

    /// Throws `reason` unless the point is a price and the intervals and probability pass the contract's rules.
    func validate() throws(ValidationFailure) {
        try ContractRules.price(point, "predicted_close")
        try intervals?.validate("intervals")
        if let probabilityUp { try ContractRules.probability(probabilityUp, "probability_up") }
    }
}

/// Why a champion could not be looked up or loaded. `code` is for programs (retry or give up), `description` for
/// the log and the dead-letter reason.
struct ModelSourceError: Error, Sendable, CustomStringConvertible {
    struct Code: Hashable, Sendable, CustomStringConvertible {
        let name: String
        var description: String { name }

        /// No connection to the registry, or it broke before an answer.
        static let registryUnreachable = Code(name: "registryUnreachable")
        /// The registry did not answer within the timeout.
        static let registryTimedOut = Code(name: "registryTimedOut")
        /// The registry answered with an error of its own (5xx, or a status its document does not list).
        static let registryFailed = Code(name: "registryFailed")
        /// The registry answered in a form its document does not describe.
        static let undocumentedAnswer = Code(name: "undocumentedAnswer")
        /// The registry does not know the model version (a forged or stale promotion).
        static let notInRegistry = Code(name: "notInRegistry")
        /// The artifact came without a valid `X-Checksum-SHA256`.
        static let checksumMissing = Code(name: "checksumMissing")
        /// The artifact's SHA-256 is not the one the registry recorded.
        static let checksumMismatch = Code(name: "checksumMismatch")
        /// The artifact passed its checksum but is not a model file this build reads.
        static let undecodableModel = Code(name: "undecodableModel")
    }

    let code: Code
    let model: String
    let version: Int?
    /// The registry's HTTP status, when it answered.
    let status: Int?
    let reason: String

    init(_ code: Code, model: String, version: Int? = nil, status: Int? = nil, _ reason: String) {
        self.code = code
        self.model = model
        self.version = version
        self.status = status
        self.reason = reason
    }

    /// The registry's trouble, worth retrying; the others are the model version's own and never change.
    var isTransient: Bool { [.registryUnreachable, .registryTimedOut, .registryFailed].contains(code) }

    var description: String { "\(model)\(version.map { " v\($0)" } ?? ""): \(reason)" }

    /// As the consumers take it (Messaging): `PermanentFailure` dead-letters the message at once with this reason,
    /// `TransientFailure` retries it without using its attempts.
    var deliveryFailure: any Error { isTransient ? TransientFailure(description) : PermanentFailure(description) }
}

/// Fetches champions from the registry's HTTP API (the client generated from docs/registry-openapi.yaml) and
/// verifies each model file's checksum.
struct RegistryModelSource: Sendable {
    let registry: RegistryAPI.Client

    /// `timeout` bounds each call, the artifact's download included.
    init(baseURL: URL, http: OutgoingHTTP, timeout: Duration = .seconds(30)) {
        registry = RegistryAPI.Client(serverURL: baseURL, transport: http.transport(timeout: timeout))
    }

    /// The current champion of `name`, or nil when the model has none yet. Failures as the consumers take them
    /// (`ModelSourceError.deliveryFailure`); a cancelled task ends with `CancellationError`.
    func champion(of name: String) async throws -> LoadedModel? {
        try await delivering { try await lookUpChampion(of: name) }
    }

    /// One version's model file, verified (see `download`); failures as `champion(of:)`'s.
    func load(name: String, version: Int, createdAt: Date? = nil) async throws -> LoadedModel {
        try await delivering { try await download(name: name, version: version, createdAt: createdAt) }
    }

    func lookUpChampion(of name: String) async throws -> LoadedModel? {
        let versions: [RegistryAPI.Components.Schemas.ModelVersion]
        switch try await calling(name, nil, { try await registry.getV1ModelsNameVersions(path: .init(name: name)) }) {
        case .ok(let answer): versions = try answer.body.json
        case .notFound: return nil
        case .badRequest(let answer):
            throw ModelSourceError(.notInRegistry, model: name, status: 400, (try? answer.body.json.error.message) ?? "bad name")
        case .undocumented(let status, _):
            throw ModelSourceError(.registryFailed, model: name, status: status, "registry answered \(status)")
        }
        guard let champion = versions.first(where: { $0.aliases.contains("champion") }) else { return nil }
        var loaded = try await download(name: name, version: champion.version, createdAt: champion.createdAt)
        loaded.datasetVersion = champion.datasetVersion
        return loaded
    }

    /// Downloads one version's model file and checks its SHA-256 against the one the registry recorded when it
    /// stored the file (`X-Checksum-SHA256`) before decoding it (the file's own CRC-32 is then checked too).
    /// A mismatch is permanent: the promotion is dead-lettered with the reason and the current model stays.
    func download(name: String, version: Int, createdAt: Date? = nil) async throws -> LoadedModel {
        let call = { try await registry.getV1ModelsNameVersionsVersionArtifact(path: .init(name: name, version: version)) }
        let answer: RegistryAPI.Operations.GetV1ModelsNameVersionsVersionArtifact.Output.Ok
        switch try await calling(name, version, call) {
        case .ok(let ok): answer = ok
        // A version the registry does not know can never load; other answers are the registry's own trouble.
        case .notFound: throw ModelSourceError(.notInRegistry, model: name, version: version, status: 404, "not in the registry")
        case .badRequest:
            throw ModelSourceError(.notInRegistry, model: name, version: version, status: 400, "not a version the registry takes")
        case .undocumented(let status, _):
            throw ModelSourceError(
                .registryFailed, model: name, version: version, status: status, "registry answered \(status) for the artifact")
        }
        let bytes: [UInt8]
        do {
            bytes = try await [UInt8](collecting: try answer.body.binary, upTo: Self.largestModelFile)
        } catch {
            throw Self.failure(error, model: name, version: version)
        }
        // The document makes the header required: an answer without one does not decode (`undocumentedAnswer`).
        let expected = answer.headers.xChecksumSHA256.lowercased()
        guard ModelFileDigest.isSHA256Hex(expected) else {
            throw ModelSourceError(
                .checksumMissing, model: name, version: version, "the registry sent no valid X-Checksum-SHA256 for the model file")
        }
        let computed = ModelFileDigest.sha256Hex(bytes)
        guard computed == expected else {
            throw ModelSourceError(
                .checksumMismatch, model: name, version: version,
                "model file refused: its SHA-256 \(computed) is not the registry's \(expected) (\(bytes.count) bytes)")
        }
        let model: ForecastModel
        do {
            model = try ForecastModel(decoding: bytes)
        } catch {
            throw ModelSourceError(.undecodableModel, model: name, version: version, "model file refused: \(error)")
        }
        return LoadedModel(name: name, version: version, createdAt: createdAt ?? Date(), model: model)
    }

    /// Model files are a few MB; more is not a model.
    static let largestModelFile = 256 << 20

    private func calling<T>(_ name: String, _ version: Int?, _ call: () async throws -> T) async throws -> T {
        do {
            return try await call()
        } catch {
            throw Self.failure(error, model: name, version: version)
        }
    }

    private static func failure(_ error: any Error, model: String, version: Int?) -> any Error {
        switch OutgoingHTTP.failure(of: error) {
        case .cancelled: return CancellationError()
        case .timedOut: return ModelSourceError(.registryTimedOut, model: model, version: version, "the registry did not answer in time")
        case .unreachable:
            return ModelSourceError(
                .registryUnreachable, model: model, version: version, "cannot reach the registry: \(OutgoingHTTP.cause(of: error))")
        case .undocumentedAnswer:
            return ModelSourceError(
                .undocumentedAnswer, model: model, version: version,
                "the registry's answer is not its document's: \(OutgoingHTTP.cause(of: error))")
        }
    }

    private func delivering<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as ModelSourceError {
            throw error.deliveryFailure
        }
    }
}

/// The models in use, swapped atomically: a forecast uses the model it started with.
final class ModelHolder: Sendable {
    private let models = Mutex<[String: LoadedModel]>([:])
    func current(_ name: String) -> LoadedModel? { models.withLock { $0[name] } }
    func install(_ model: LoadedModel) { models.withLock { $0[model.name] = model } }
    var all: [LoadedModel] { models.withLock { Array($0.values) } }
}
