import Contracts
import Foundation
import Logging
import Messaging
import OpenAPIRuntime
import RegistryAPI
import ServiceKit

/// Trainer settings beyond the common ones. The trainer hands each model file to the registry before it reports the
/// job, so it needs the registry's API and write token:
///
/// | variable | default | meaning |
/// |---|---|---|
/// | `CANDLECAST_REGISTRY_URL` | `http://127.0.0.1:8084` | the registry's HTTP API |
/// | `CANDLECAST_REGISTRY_TOKEN` / `_FILE` | required | the registry's bearer token (its write endpoints) |
/// | `CANDLECAST_ARTIFACT_UPLOAD_ATTEMPTS` | `5` | tries of one upload on transient errors before the job is requeued |
/// | `CANDLECAST_ARTIFACT_UPLOAD_TIMEOUT_SECONDS` | `60` | bound of one upload attempt |
struct TrainerSettings: Sendable {
    var registryURL: URL
    var registryToken: String
    var uploadAttempts: Int
    var uploadTimeout: Duration

    init(_ environment: EnvironmentReader) throws {
        let url = environment.string("CANDLECAST_REGISTRY_URL", default: "http://127.0.0.1:8084")
        guard let registryURL = URL(string: url), registryURL.scheme?.hasPrefix("http") == true, registryURL.host != nil else {
            throw ConfigurationError(key: "CANDLECAST_REGISTRY_URL", reason: "\(url) is not an http(s) URL")
        }
        guard let token = try environment.secret("CANDLECAST_REGISTRY_TOKEN") else {
            throw ConfigurationError(
                .missing, key: "CANDLECAST_REGISTRY_TOKEN",
                reason: "required: the trainer stores its model files through the registry's write API")
        }
        self.registryURL = registryURL
        registryToken = token
        uploadAttempts = try environment.int("CANDLECAST_ARTIFACT_UPLOAD_ATTEMPTS", default: 5, in: 1...100)
        uploadTimeout = try environment.seconds("CANDLECAST_ARTIFACT_UPLOAD_TIMEOUT_SECONDS", default: 60, in: 1...3600)
    }
}

/// The registry would not take a model file, for a reason retrying cannot change (wrong token, another file already
/// stored for the run, no such job): the job is reported as failed with this reason.
struct ArtifactUploadRefused: Error, CustomStringConvertible {
    let status: Int
    let message: String
    var description: String { "the registry refused the model file (\(status)): \(message)" }
}

/// Hands model files to the registry (`PUT /v1/jobs/{job_id}/artifact`, the generated client over AsyncHTTPClient)
/// before `training.completed` names them. Transient trouble (unreachable, timed out, 5xx) is retried with backoff a
/// bounded number of times, then thrown as `TransientFailure` so the job goes back to the queue; cancellation ends
/// the upload at once.
struct ArtifactUploader: Sendable {
    let client: Client
    let attempts: Int
    let firstDelay: Duration
    let logger: Logger

    init(settings: TrainerSettings, http: OutgoingHTTP, logger: Logger, firstDelay: Duration = .milliseconds(500)) {
        client = Client(
            serverURL: settings.registryURL, configuration: Configuration(dateTranscoder: RFC3339Dates()),
            transport: http.transport(timeout: settings.uploadTimeout), middlewares: [BearerToken(token: settings.registryToken)])
        attempts = settings.uploadAttempts
        self.firstDelay = firstDelay
        self.logger = logger
    }

    func upload(_ content: [UInt8], jobID: UUID) async throws -> ArtifactReference {
        let sha256 = ModelFileDigest.sha256Hex(content)
        var delay = firstDelay
        for attempt in 1...attempts {
            var cause = ""
            do {
                let output = try await client.putV1JobsJobIdArtifact(
                    path: .init(jobId: jobID.uuidString.lowercased()), headers: .init(xChecksumSHA256: sha256),
                    body: .binary(HTTPBody(content)))
                switch output {
                case .created(let answer): return try reference(try answer.body.json, expected: sha256, content.count)
                case .ok(let answer): return try reference(try answer.body.json, expected: sha256, content.count)
                case .badRequest(let answer): throw ArtifactUploadRefused(status: 400, message: Self.message(try? answer.body.json))
                case .unauthorized(let answer): throw ArtifactUploadRefused(status: 401, message: Self.message(try? answer.body.json))
                case .forbidden(let answer): throw ArtifactUploadRefused(status: 403, message: Self.message(try? answer.body.json))
                case .notFound(let answer): throw ArtifactUploadRefused(status: 404, message: Self.message(try? answer.body.json))
                case .conflict(let answer): throw ArtifactUploadRefused(status: 409, message: Self.message(try? answer.body.json))
                case .contentTooLarge(let answer): throw ArtifactUploadRefused(status: 413, message: Self.message(try? answer.body.json))
                case .undocumented(let status, _) where (500..<600).contains(status): cause = "the registry answered \(status)"
                case .undocumented(let status, _):
                    throw ArtifactUploadRefused(status: status, message: "an answer the registry's document does not list")
                }
            } catch let refused as ArtifactUploadRefused {
                throw refused
            } catch {
                switch OutgoingHTTP.failure(of: error) {
                case .cancelled: throw CancellationError()
                case .unreachable, .timedOut: cause = OutgoingHTTP.cause(of: error)
                case .undocumentedAnswer: throw ArtifactUploadRefused(status: 0, message: OutgoingHTTP.cause(of: error))
                }
            }
            guard attempt < attempts else {
                throw TransientFailure("model file of job \(jobID) not stored after \(attempts) attempts: \(cause)")
            }
            logger.warning(
                "artifact upload failed; retrying",
                metadata: ["job.id": "\(jobID)", "attempt": "\(attempt)", "error": "\(cause)", "retry_in": "\(delay)"])
            try await Task.sleep(for: delay)
            delay = min(delay * 2, .seconds(30))
        }
        throw TransientFailure("model file of job \(jobID) not stored")
    }

    /// What `training.completed` names: the registry's record, which must be of the bytes just sent.
    private func reference(_ stored: Components.Schemas.Artifact, expected sha256: String, _ bytes: Int) throws -> ArtifactReference {
        guard stored.sha256 == sha256, stored.bytes == bytes else {
            throw ArtifactUploadRefused(status: 200, message: "the registry recorded \(stored.bytes) bytes with SHA-256 \(stored.sha256)")
        }
        return ArtifactReference(name: stored.name, bytes: stored.bytes, sha256: stored.sha256)
    }

    private static func message(_ error: Components.Schemas._Error?) -> String { error?.error.message ?? "no reason given" }
}
