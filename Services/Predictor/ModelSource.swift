import Contracts
import Crypto
import Forecasting
import ServiceKit
import Foundation
import Messaging
import Synchronization
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// A champion model in memory, with what a forecast records about it.
struct LoadedModel: Sendable {
    var name: String
    var version: Int
    var createdAt: Date
    var model: TrainedModel
}

struct ModelSourceError: Error, CustomStringConvertible {
    let description: String
}

/// Fetches champions from the registry's HTTP API and verifies each model file's checksum.
struct RegistryModelSource: Sendable {
    let baseURL: URL

    /// The current champion of `name`, or nil when the model has none yet.
    func champion(of name: String) async throws -> LoadedModel? {
        let (data, status, _) = try await get("v1/models/\(name)/versions")
        if status == 404 { return nil }
        guard status == 200, let versions = try JSONSerialization.jsonObject(with: data) as? [[String: Any]] else {
            throw ModelSourceError(description: "registry answered \(status) for the versions of \(name)")
        }
        guard let entry = versions.first(where: { ($0["aliases"] as? [String])?.contains("champion") == true }),
            let version = (entry["version"] as? NSNumber)?.intValue
        else { return nil }
        return try await load(name: name, version: version, createdAt: Self.date(entry["created_at"]))
    }

    /// Downloads one version's model file and checks its SHA-256 against the one the registry recorded when it
    /// stored the file (`X-Checksum-SHA256`) before decoding it (the file's own CRC-32 is then checked too).
    /// A mismatch is permanent: the promotion is dead-lettered with the reason and the current model stays.
    func load(name: String, version: Int, createdAt: Date? = nil) async throws -> LoadedModel {
        let (data, status, headers) = try await get("v1/models/\(name)/versions/\(version)/artifact")
        // A version the registry does not know can never load (a forged or stale promotion); other answers are
        // the registry's own trouble and worth retrying.
        if status == 404 { throw PermanentFailure("\(name) v\(version) is not in the registry") }
        guard status == 200 else { throw TransientFailure("registry answered \(status) for \(name) v\(version)'s artifact") }
        let bytes = [UInt8](data)
        guard let expected = headers["x-checksum-sha256"]?.lowercased(), ArtifactDigest.isHex(expected) else {
            throw PermanentFailure("\(name) v\(version): the registry sent no valid X-Checksum-SHA256 for the model file")
        }
        let computed = ArtifactDigest.sha256(bytes)
        guard computed == expected else {
            throw PermanentFailure("\(name) v\(version): model file refused: its SHA-256 \(computed) is not the registry's \(expected) (\(bytes.count) bytes)")
        }
        return LoadedModel(name: name, version: version, createdAt: createdAt ?? Date(), model: try TrainedModel(decoding: bytes))
    }

    private func get(_ path: String) async throws -> (Data, Int, [String: String]) {
        var request = URLRequest(url: baseURL.appendingPathComponent(path))
        request.timeoutInterval = 30
        let (data, response) = try await URLSession.shared.fetch(request)
        guard let http = response as? HTTPURLResponse else { throw ModelSourceError(description: "no HTTP response from the registry") }
        var headers: [String: String] = [:]
        for (key, value) in http.allHeaderFields { headers["\(key)".lowercased()] = "\(value)" }
        return (data, http.statusCode, headers)
    }

    private static func date(_ value: Any?) -> Date? {
        guard let text = value as? String else { return nil }
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.date(from: text) ?? ISO8601DateFormatter().date(from: text)
    }
}

/// SHA-256 of model files, as 64 lowercase hex digits (the registry's `artifact_sha256`).
enum ArtifactDigest {
    static func sha256(_ bytes: [UInt8]) -> String {
        SHA256.hash(data: bytes).map { byte in
            let hex = String(byte, radix: 16)
            return byte < 16 ? "0" + hex : hex
        }.joined()
    }

    static func isHex(_ text: String) -> Bool {
        text.utf8.count == 64 && text.utf8.allSatisfy { ("0"..."9").contains(Character(UnicodeScalar($0))) || ("a"..."f").contains(Character(UnicodeScalar($0))) }
    }
}

/// The models in use, swapped atomically: a forecast uses the model it started with.
final class ModelHolder: Sendable {
    private let models = Mutex<[String: LoadedModel]>([:])
    func current(_ name: String) -> LoadedModel? { models.withLock { $0[name] } }
    func install(_ model: LoadedModel) { models.withLock { $0[model.name] = model } }
    var all: [LoadedModel] { models.withLock { Array($0.values) } }
}
