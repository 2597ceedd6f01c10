import Foundation
import TestSupport
import Testing

/// The settings the predictor's routes and work share are read once, when that shared value is made at start:
/// a bad one stops the start (exit 2 naming the variable) instead of leaving the routes out (`try?`) and the
/// service half up.
@Suite("Predictor start", .serialized)
struct StartConfigurationTests {
    static let badSettings: [(variable: String, value: String)] = [
        ("CANDLECAST_REGISTRY_URL", "ftp://127.0.0.1/registry"),
        ("CANDLECAST_MODEL_MAX_AGE_DAYS", "0"),
        ("CANDLECAST_OUTBOX_PRUNE_SECONDS", "0"),
    ]

    @Test("a bad setting of the shared predictor exits 2, names the variable and never serves", arguments: 0..<Self.badSettings.count)
    func badSettingStopsTheStart(index: Int) async throws {
        let (variable, value) = Self.badSettings[index]
        let port = 18_474 + index
        let process = try ServiceProcess("predictor", environment: ["CANDLECAST_HTTP_PORT": "\(port)", variable: value])
        defer { process.kill() }
        #expect(try await process.waitForExit(timeout: .seconds(10)) == 2, "\(variable)=\(value): \(process.log.suffix(500))")
        #expect(process.log.contains(variable), "\(variable)=\(value): \(process.log.suffix(500))")
        #expect(await httpGet("http://127.0.0.1:\(port)/healthz") == nil)
    }
}
