import Foundation
import TestSupport
import Testing

/// The monitor's dashboard and work share one value made at start from its settings: a bad setting stops the
/// start (exit 2 naming the variable) rather than leaving the dashboard out.
@Suite("Monitor start", .serialized)
struct MonitorStartConfigurationTests {
    @Test("a bad registry URL exits 2, names the variable and never serves")
    func badRegistryURLStopsTheStart() async throws {
        let port = 18_478
        let process = try ServiceProcess(
            "monitor", environment: ["CANDLECAST_HTTP_PORT": "\(port)", "CANDLECAST_REGISTRY_URL": "ftp://127.0.0.1/registry"])
        defer { process.kill() }
        #expect(try await process.waitForExit(timeout: .seconds(10)) == 2, "\(process.log.suffix(500))")
        #expect(process.log.contains("CANDLECAST_REGISTRY_URL"), "\(process.log.suffix(500))")
        #expect(await httpGet("http://127.0.0.1:\(port)/healthz") == nil)
    }
}
