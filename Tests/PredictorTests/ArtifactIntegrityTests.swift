import Contracts
import Foundation
import Logging
import Messaging
import ServiceKit
import Storage
import TestSupport
import Testing

@testable import Predictor

/// Keeps what a logger was told, so that a test can read the reason the predictor gave.
private struct CapturingLogHandler: LogHandler {
    let records: SharedList<String>
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .info

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let fields = (event.metadata ?? [:]).merging(metadata) { event, _ in event }
            .sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        records.append("\(event.level) \(event.message) \(fields)")
    }
}

@Suite("Predictor: model artifacts identified by SHA-256", .serialized)
struct ArtifactIntegrityTests {
    @Test("one byte changed in a stored artifact: the predictor refuses it, logs why, and keeps serving its current champion")
    func corruptedArtifactIsRefused() async throws {
        let stack = try await ForecastingStack(port: 18_452)
        let records = SharedList<String>()
        let predictor = Predictor(
            predictions: stack.predictor.predictions, source: stack.predictor.source, models: ModelHolder(), latest: LatestForecasts(),
            database: stack.client, logger: Logger(label: "predictor") { _ in CapturingLogHandler(records: records) })

        // v1 is stored with the SHA-256 of its bytes and becomes the champion.
        let first = try await stack.registerModel(seed: 1)
        let stored = try await stack.client.query(
            """
            SELECT a.sha256, encode(sha256(a.content), 'hex') FROM registry.artifacts a
            JOIN registry.model_versions v ON v.run_id = a.run_id WHERE v.model_name = 'lstm-xbtusd-1d' AND v.version = \(first)
            """)[0]
        #expect(try stored.decode(0, as: String.self) == stored.decode(1, as: String.self))
        #expect(try stored.decode(0, as: String.self).count == 64)
        try await predictor.handle(try await stack.promotedEvent(version: first))
        #expect(predictor.models.current("lstm-xbtusd-1d")?.version == first)

        // v2 is trained and stored; then one byte of its file changes in the registry's database.
        let second = try await stack.registerModel(seed: 2)
        let changed = try await stack.client.execute(
            """
            UPDATE registry.artifacts SET content = set_byte(content, 100, (get_byte(content, 100) + 1) % 256)
            WHERE run_id = (SELECT run_id FROM registry.model_versions WHERE model_name = 'lstm-xbtusd-1d' AND version = \(second))
            """)
        #expect(changed == 1)
        let promotion = try await stack.promotedEvent(version: second)
        let refusal = await #expect(throws: PermanentFailure.self) { try await predictor.handle(promotion) }
        #expect(refusal?.description.contains("SHA-256") == true)
        #expect(refusal?.description.contains("v\(second)") == true)

        // The log says which model was refused, why, and what is still served.
        let logged = records.values.filter { $0.contains("promoted model refused") }
        #expect(logged.count == 1)
        #expect(logged.first?.contains("SHA-256") == true)
        #expect(logged.first?.contains("current=\(first)") == true)

        // The champion in memory is still v1, and the next window is forecast with it.
        #expect(predictor.models.current("lstm-xbtusd-1d")?.version == first)
        let (_, window) = try await stack.closeCandle(0)
        try await predictor.handle(try #require(window))
        let forecasts = try await stack.forecastEvents()
        #expect(forecasts.last?.modelVersion == first)

        // The same file restored loads: the refusal was the digest, not the version.
        try await stack.client.execute(
            """
            UPDATE registry.artifacts SET content = set_byte(content, 100, (get_byte(content, 100) + 255) % 256)
            WHERE run_id = (SELECT run_id FROM registry.model_versions WHERE model_name = 'lstm-xbtusd-1d' AND version = \(second))
            """)
        try await predictor.handle(promotion)
        #expect(predictor.models.current("lstm-xbtusd-1d")?.version == second)
        await stack.tearDown()
    }
}
