import Foundation
import TestSupport
import Testing

/// Starts the built executables against the local servers, as a deployment would.
@Suite("Service executables", .serialized)
struct ServiceLifecycleTests {
    static let services = ["ingestor", "preprocessor", "trainer", "registry", "predictor", "monitor"]

    @Test(
        "starts, becomes ready once broker and database are up, and exits 0 within 5 s of SIGTERM", arguments: Array(services.enumerated()))
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
        try await eventually(timeout: .seconds(20), "/healthz to answer") {
            await httpGet("http://127.0.0.1:\(port)/healthz")?.status == 200
        }
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
            "predictor",
            environment: ["CANDLECAST_AMQP_PASSWORD_FILE": "", "CANDLECAST_AMQP_PASSWORD": "", "CANDLECAST_HTTP_PORT": "18151"])
        defer { service.kill() }
        #expect(try await service.waitForExit(timeout: .seconds(5)) == 2)
        #expect(service.log.contains("CANDLECAST_AMQP_PASSWORD"))
    }

    /// Each bad value is refused at start, before any connection: exit 2 and the variable's name, never a
    /// retry loop later (an out-of-range sweep grid once blocked `registry.datasets` for good).
    static let badSettings: [(service: String, variable: String, value: String)] = [
        ("registry", "CANDLECAST_SWEEP_GRID", #"{"units":[8,99999]}"#),
        ("registry", "CANDLECAST_SWEEP_GRID", #"{"activation":["sigmoid"]}"#),
        (
            "registry", "CANDLECAST_SWEEP_GRID",
            #"{"batch_size":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17],"units":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16]}"#
        ),
        ("registry", "CANDLECAST_PROMOTION_MAX_MASE", "NaN"),
        ("preprocessor", "CANDLECAST_TRAIN_FRACTION", "1.5"),
        ("preprocessor", "CANDLECAST_FEATURE_WINDOW", "99999999999999999999"),
        ("preprocessor", "CANDLECAST_DATASET_MIN_ROWS", "3"),
        ("preprocessor", "CANDLECAST_PREPROCESSOR_BATCH", "0"),
        ("ingestor", "CANDLECAST_INGEST_INTERVALS", "99999999999999999d"),
        ("ingestor", "CANDLECAST_INGEST_PAIRS", "XBT/USD"),
        ("ingestor", "CANDLECAST_KRAKEN_TIMEOUT_SECONDS", "-1"),
        ("predictor", "CANDLECAST_MODEL_MAX_AGE_DAYS", "9223372036854775807"),
        ("monitor", "CANDLECAST_MONITOR_REFRESH_SECONDS", "0"),
        ("trainer", "CANDLECAST_BLAS_THREADS", "0"),
        ("predictor", "CANDLECAST_HTTP_PORT", "70000"),
        ("predictor", "CANDLECAST_MAX_DELIVERY_ATTEMPTS", "0"),
        ("predictor", "CANDLECAST_AMQP_URL", "amqp://candlecast@127.0.0.1:99999999/"),
        ("predictor", "CANDLECAST_AMQP_HEARTBEAT", "99999999999"),
        ("predictor", "CANDLECAST_DATABASE_URL", "mysql://candlecast@127.0.0.1/candlecast"),
    ]

    @Test("a bad setting exits 2 at start and names its variable", arguments: 0..<Self.badSettings.count)
    func badSettingExitsAtStart(index: Int) async throws {
        let (service, variable, value) = Self.badSettings[index]
        let process = try ServiceProcess(service, environment: ["CANDLECAST_HTTP_PORT": "18152"].merging([variable: value]) { $1 })
        defer { process.kill() }
        #expect(try await process.waitForExit(timeout: .seconds(10)) == 2, "\(service) \(variable)=\(value): \(process.log.suffix(500))")
        #expect(process.log.contains(variable), "\(service) \(variable)=\(value): \(process.log.suffix(500))")
    }
}
