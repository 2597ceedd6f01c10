import Contracts
import Foundation
import ServiceKit
import TestSupport
import Testing

@testable import Predictor

@Suite("Stale forecasts: the model's data age, the same after a promotion and after a restart", .serialized)
struct StalenessTests {
    static let thirtyDays = Duration.seconds(30 * 86_400)

    @Test("the rule: more than the limit between the model's newest training candle and the window's newest")
    func rule() {
        let trained: Int64 = 1_703_980_800  // 2023-12-31
        #expect(!ModelStaleness.isStale(trainedThrough: trained, windowEndOpenTime: trained, maximumAge: Self.thirtyDays))
        #expect(!ModelStaleness.isStale(trainedThrough: trained, windowEndOpenTime: trained + 30 * 86_400, maximumAge: Self.thirtyDays))
        #expect(ModelStaleness.isStale(trainedThrough: trained, windowEndOpenTime: trained + 30 * 86_400 + 1, maximumAge: Self.thirtyDays))
        // A model whose training data cannot be found is not vouched for.
        #expect(ModelStaleness.isStale(trainedThrough: nil, windowEndOpenTime: trained, maximumAge: Self.thirtyDays))
    }

    @Test("a champion loaded on promotion and the same champion reloaded after a restart flag the same windows")
    func sameFlagAcrossRestart() async throws {
        let stack = try await ForecastingStack(port: 18_455)
        let version = try await stack.registerModel(seed: 3)
        // Loaded on promotion (the model.promoted path).
        try await stack.predictor.handle(try await stack.promotedEvent(version: version))
        for index in 0..<25 { try await stack.predictor.handle(try #require(try await stack.closeCandle(index).1)) }
        // A restart: a new predictor with nothing in memory loads the champion from the registry on its first window.
        let restarted = Predictor(
            predictions: Predictions(maximumModelAge: Self.thirtyDays),
            source: RegistryModelSource(baseURL: URL(string: "http://127.0.0.1:\(stack.port)")!, http: stack.http), models: ModelHolder(),
            latest: LatestForecasts(), database: stack.client, logger: TestEnvironment.logger)
        for index in 25..<35 { try await restarted.handle(try #require(try await stack.closeCandle(index).1)) }

        let trainedThrough = try await stack.client.query(
            "SELECT last_open_time FROM features.dataset_versions_v1 WHERE pair = 'XBTUSD' AND interval_seconds = 86400 AND version = 1"
        )[0].decode(0, as: Int64.self)
        let events = try await stack.forecastEvents()
        #expect(events.count == 35)
        for (index, event) in events.enumerated() {
            let windowEnd = stack.rows2024[index].time
            #expect(event.modelVersion == version)
            // Data time only: stale once the window's newest candle is more than 30 days past the model's data.
            #expect(event.stale == (windowEnd - trainedThrough > 30 * 86_400), "forecast \(index) (window end \(windowEnd))")
        }
        // The boundary falls after the restart, so both loading paths are exercised on both sides of it.
        #expect(events.prefix(25).allSatisfy { !$0.stale })
        #expect(events.suffix(10).contains { $0.stale } && events.suffix(10).contains { !$0.stale })
        await stack.tearDown()
    }
}
