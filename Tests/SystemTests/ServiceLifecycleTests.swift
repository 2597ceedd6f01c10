import Foundation
import TestSupport
import Testing

/// Starts the built executables against the local servers, as a deployment would.
@Suite("Service executables", .serialized)
struct ServiceLifecycleTests {
    static let services = ["ingestor", "preprocessor", "trainer", "registry", "predictor", "monitor"]

    @Test("starts, becomes ready once broker and database are up, and exits 0 within 5 s of SIGTERM", arguments: Array(services.enumerated()))
    func startsBecomesReadyAndStopsOnSigterm(index: Int, name: String) async throws {
        let port = 18_100 + index
        let service = try ServiceProcess(name, environment: ["CANDLECAST_HTTP_PORT": "\(port)", "CANDLECAST_LOG_LEVEL": "info"])
        defer { service.kill() }

        try await eventually(timeout: .seconds(20), "\(name) /readyz to answer 200") {
            await httpGet("http://127.0.0.1:\(port)/readyz")?.status == 200
        }
        let ready = await httpGet("http://127.0.0.1:\(port)/readyz")
        #expect(ready?.body.contains(#""broker":true"#) == true)
        #expect(ready?.body.contains(#""database":true"#) == true)
        #expect(await httpGet("http://127.0.0.1:\(port)/healthz")?.status == 200)
        let metrics = await httpGet("http://127.0.0.1:\(port)/metrics")
        #expect(metrics?.status == 200)
        #expect(metrics?.body.contains("candlecast_messages_published_total") == true)

        let signalled = ContinuousClock.now
        service.signal(SIGTERM)
        let status = try await service.waitForExit(timeout: .seconds(5))
        #expect(status == 0, "\(name) did not exit 0 within 5 s of SIGTERM; log:\n\(service.log)")
        #expect(ContinuousClock.now - signalled < .seconds(5))
        #expect(service.log.contains(#""message":"stopped""#))
    }

    @Test("is not ready while the broker is unreachable, and still stops cleanly")
    func notReadyWithoutBroker() async throws {
        let port = 18_150
        let service = try ServiceProcess(
            "registry",
            environment: ["CANDLECAST_HTTP_PORT": "\(port)", "CANDLECAST_AMQP_URL": "amqp://candlecast@127.0.0.1:1/"])
        defer { service.kill() }
        try await eventually(timeout: .seconds(20), "/healthz to answer") { await httpGet("http://127.0.0.1:\(port)/healthz")?.status == 200 }
        for _ in 0..<5 {
            let ready = await httpGet("http://127.0.0.1:\(port)/readyz")
            #expect(ready?.status == 503)
            #expect(ready?.body.contains(#""broker":false"#) == true)
            try await Task.sleep(for: .milliseconds(300))
        }
        service.signal(SIGINT)
        #expect(try await service.waitForExit(timeout: .seconds(5)) == 0)
    }

    @Test("refuses to start without its secrets, with a clear message")
    func missingSecret() async throws {
        let service = try ServiceProcess(
            "predictor", environment: ["CANDLECAST_AMQP_PASSWORD_FILE": "", "CANDLECAST_AMQP_PASSWORD": "", "CANDLECAST_HTTP_PORT": "18151"])
        defer { service.kill() }
        #expect(try await service.waitForExit(timeout: .seconds(5)) == 2)
        #expect(service.log.contains("CANDLECAST_AMQP_PASSWORD"))
    }
}
