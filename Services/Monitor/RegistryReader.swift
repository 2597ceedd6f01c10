import Foundation
import ServiceKit
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Reads alias history and runs from the registry's HTTP API for the dashboard. The registry owns them;
/// the monitor only shows them, so an unreachable registry leaves those panels empty with a note.
struct RegistryReader: Sendable {
    let baseURL: URL

    struct AliasMove: Sendable {
        var alias: String
        var fromVersion: Int?
        var toVersion: Int
        var actor: String
        var reason: String
        var movedAt: String
    }

    struct RunSummary: Sendable {
        var id: Int
        var status: String
        var trainer: String?
        var parameters: String
        var testRMSE: Double?
        var testMASE: Double?
        var naiveRMSE: Double?
        var trainSeconds: Double?
        var endedAt: String?
    }

    func aliasHistory(model: String) async throws -> [AliasMove] {
        let (data, status) = try await get("v1/models/\(model)/aliases")
        guard status == 200, let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw RegistryUnavailable(status: status)
        }
        return (object["history"] as? [[String: Any]] ?? []).map { move in
            AliasMove(
                alias: move["alias"] as? String ?? "?", fromVersion: (move["from_version"] as? NSNumber)?.intValue,
                toVersion: (move["to_version"] as? NSNumber)?.intValue ?? 0, actor: move["actor"] as? String ?? "",
                reason: move["reason"] as? String ?? "", movedAt: move["moved_at"] as? String ?? "")
        }
    }

    func recentRuns(limit: Int) async throws -> [RunSummary] {
        try await getArray("v1/runs?limit=\(limit)").map { run in
            let test = run["test_metrics"] as? [String: Any]
            let naive = run["naive_metrics"] as? [String: Any]
            let parameters = (run["params"] as? [String: Any]).map { params in
                params.keys.sorted().filter { ["units", "layers", "target", "batch_size", "learning_rate", "seed"].contains($0) }
                    .map { "\($0)=\(params[$0].map { "\($0)" } ?? "")" }.joined(separator: " ")
            } ?? ""
            return RunSummary(
                id: (run["id"] as? NSNumber)?.intValue ?? 0, status: run["status"] as? String ?? "?", trainer: run["trainer"] as? String,
                parameters: parameters, testRMSE: (test?["rmse"] as? NSNumber)?.doubleValue, testMASE: (test?["mase"] as? NSNumber)?.doubleValue,
                naiveRMSE: (naive?["rmse"] as? NSNumber)?.doubleValue, trainSeconds: (run["train_seconds"] as? NSNumber)?.doubleValue,
                endedAt: run["ended_at"] as? String)
        }
    }

    /// Whether the registry knows `version` of `model`; nil when it cannot say (unreachable, or an error).
    func versionExists(model: String, version: Int) async -> Bool? {
        guard let (_, status) = try? await get("v1/models/\(model)/versions/\(version)") else { return nil }
        switch status {
        case 200: return true
        case 404: return false
        default: return nil
        }
    }

    struct RegistryUnavailable: Error, CustomStringConvertible {
        let status: Int
        var description: String { "the registry answered \(status)" }
    }

    private func getArray(_ path: String) async throws -> [[String: Any]] {
        let (data, status) = try await get(path)
        guard status == 200, let array = try JSONSerialization.jsonObject(with: data) as? [[String: Any]] else { throw RegistryUnavailable(status: status) }
        return array
    }

    private func get(_ path: String) async throws -> (Data, Int) {
        guard let url = URL(string: path, relativeTo: baseURL) else { throw RegistryUnavailable(status: 0) }
        var request = URLRequest(url: url)
        request.timeoutInterval = 3
        let (data, response) = try await URLSession.shared.fetch(request)
        return (data, (response as? HTTPURLResponse)?.statusCode ?? 0)
    }
}
