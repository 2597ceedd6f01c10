import Foundation
import OpenAPIRuntime
import RegistryAPI
import ServiceKit

/// Reads alias history and runs from the registry's HTTP API (the client generated from
/// docs/registry-openapi.yaml) for the dashboard. The registry owns them; the monitor only shows them, so an
/// unreachable registry leaves those panels empty with a note.
struct RegistryReader: Sendable {
    let registry: RegistryAPI.Client

    /// `timeout` bounds each call: a page waits at most that long for a slow registry.
    init(baseURL: URL, http: OutgoingHTTP, timeout: Duration = .seconds(3)) {
        registry = RegistryAPI.Client(serverURL: baseURL, transport: http.transport(timeout: timeout))
    }

    struct AliasMove: Sendable {
        var alias: String
        var fromVersion: Int?
        var toVersion: Int
        var actor: String
        var reason: String
        /// RFC 3339, UTC.
        var movedAt: String
    }

    struct RunSummary: Sendable {
        var id: Int64
        var status: String
        var trainer: String?
        var parameters: String
        var testRMSE: Double?
        var testMASE: Double?
        var naiveRMSE: Double?
        var trainSeconds: Double?
        var endedAt: Date?
    }

    func aliasHistory(model: String) async throws -> [AliasMove] {
        switch try await calling({ try await registry.getV1ModelsNameAliases(path: .init(name: model)) }) {
        case .ok(let answer):
            return try answer.body.json.history.map { move in
                AliasMove(
                    alias: move.alias, fromVersion: move.fromVersion, toVersion: move.toVersion, actor: move.actor, reason: move.reason,
                    movedAt: move.movedAt.formatted(.iso8601))
            }
        case .notFound: return []
        case .badRequest: throw RegistryUnavailable(.refused, status: 400, "\(model) is not a model name the registry takes")
        case .undocumented(let status, _): throw RegistryUnavailable(.failed, status: status, "the registry answered \(status)")
        }
    }

    func recentRuns(limit: Int) async throws -> [RunSummary] {
        switch try await calling({ try await registry.getV1Runs(query: .init(limit: limit)) }) {
        case .ok(let answer):
            return try answer.body.json.map { run in
                RunSummary(
                    id: run.id, status: run.status.rawValue, trainer: run.trainer, parameters: Self.shown(run.params),
                    testRMSE: run.testMetrics?.rmse, testMASE: run.testMetrics?.mase, naiveRMSE: run.naiveMetrics?.rmse,
                    trainSeconds: run.trainSeconds, endedAt: run.endedAt)
            }
        case .badRequest: throw RegistryUnavailable(.refused, status: 400, "the registry refused limit \(limit)")
        case .undocumented(let status, _): throw RegistryUnavailable(.failed, status: status, "the registry answered \(status)")
        }
    }

    /// The parameters a run's row shows: those a sweep usually varies.
    static func shown(_ parameters: RegistryAPI.Components.Schemas.TrainingParameters) -> String {
        [
            "batch_size=\(parameters.batchSize)", "layers=\(parameters.layers)", "learning_rate=\(parameters.learningRate)",
            "seed=\(parameters.seed)", "target=\(parameters.target)", "units=\(parameters.units)", "window=\(parameters.window)",
        ].joined(separator: " ")
    }

    /// Whether the registry knows `version` of `model`; nil when it cannot say (unreachable, or an error).
    func versionExists(model: String, version: Int) async -> Bool? {
        let call = { try await registry.getV1ModelsNameVersionsVersion(path: .init(name: model, version: version)) }
        switch try? await calling(call) {
        case .ok?: return true
        case .notFound?: return false
        default: return nil
        }
    }

    /// Why the registry's answer is not there: `code` for programs, `description` for the page's note.
    struct RegistryUnavailable: Error, Sendable, CustomStringConvertible {
        struct Code: Hashable, Sendable, CustomStringConvertible {
            let name: String
            var description: String { name }

            /// No connection to the registry, or it broke before an answer.
            static let unreachable = Code(name: "unreachable")
            /// No answer within the reader's timeout.
            static let timedOut = Code(name: "timedOut")
            /// The registry refused the request (4xx): this reader asked for something it does not take.
            static let refused = Code(name: "refused")
            /// The registry failed (5xx, or a status its document does not list).
            static let failed = Code(name: "failed")
            /// An answer its document does not describe.
            static let undocumentedAnswer = Code(name: "undocumentedAnswer")
        }

        let code: Code
        /// The registry's HTTP status, when it answered.
        let status: Int?
        let reason: String

        init(_ code: Code, status: Int? = nil, _ reason: String) {
            self.code = code
            self.status = status
            self.reason = reason
        }

        var description: String { reason }
    }

    /// The call's answer; a failed call as `RegistryUnavailable`, a cancelled one as `CancellationError`.
    private func calling<T>(_ call: () async throws -> T) async throws -> T {
        do {
            return try await call()
        } catch {
            switch OutgoingHTTP.failure(of: error) {
            case .cancelled: throw CancellationError()
            case .timedOut: throw RegistryUnavailable(.timedOut, "the registry did not answer in time")
            case .unreachable: throw RegistryUnavailable(.unreachable, "cannot reach the registry: \(OutgoingHTTP.cause(of: error))")
            case .undocumentedAnswer:
                throw RegistryUnavailable(
                    .undocumentedAnswer, "the registry's answer is not its document's: \(OutgoingHTTP.cause(of: error))")
            }
        }
    }
}
