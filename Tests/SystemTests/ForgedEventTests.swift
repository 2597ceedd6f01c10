import Contracts
import Foundation
import Messaging
import Storage
import TestSupport
import Testing

/// Events with a valid envelope but impossible values, or naming what does not exist, published by anyone
/// holding the broker password: every consumer dead-letters them with the reason, stores and shows nothing
/// of them, and the genuine events behind them apply.
@Suite("Forged events", .serialized)
struct ForgedEventTests {
    @Test(
        """
        a forged candle, an overflowing interval and a promotion of v9999: dead-lettered with reasons; the real promotion behind them \
        applies
        """
    )
    func forgedEventsAreDeadLettered() async throws {
        let system = try await SystemHarness(basePort: 19_080)
        try await system.run {
            try await system.startAll()
            try await system.backfillHistory()
            try await system.waitForRuns(2)
            let runs = await system.runs()
            try await system.ensureChampion(sweepID: try #require(runs.first?["sweep_id"] as? String))
            // A second sweep registers a second version, the one the real promotion will move the champion to.
            let sweep = await httpRequest(
                "POST", system.registryURL + "/v1/sweeps",
                headers: ["Authorization": "Bearer \(system.token)", "Content-Type": "application/json"],
                body: Data(#"{"pair":"XBTUSD","interval":"1d","dataset_version":1}"#.utf8))
            #expect((200..<300).contains(sweep?.status ?? 0))
            try await system.waitForRuns(4)
            try await eventually(timeout: .seconds(30), "two model versions") {
                (await getJSON(system.registryURL + "/v1/models/\(SystemHarness.modelName)/versions") as? [[String: Any]])?.count == 2
            }
            let versions = try #require(
                await getJSON(system.registryURL + "/v1/models/\(SystemHarness.modelName)/versions") as? [[String: Any]])
            let champion = try #require(versions.first { ($0["aliases"] as? [String])?.contains("champion") == true }?["version"] as? Int)
            let other = try #require(
                versions.compactMap { $0["version"] as? Int }.first { $0 != champion }, "versions: \(versions), runs: \(runs)")
            try await eventually(timeout: .seconds(60), "the first forecast, by the champion") {
                try await system.client.query("SELECT count(*) FROM predictions.forecasts").first?.decode(0, as: Int.self) == 1
            }
            let deadBefore = try await Self.deadLetterCounts(system)

            let day = system.rows2024[0]
            let publisher = try Publisher(configuration: system.broker, options: Publisher.Options(), logger: TestEnvironment.logger)
            func raw(_ type: String, _ routingKey: String, _ json: String) -> OutgoingMessage {
                OutgoingMessage(
                    exchange: Exchange.events, routingKey: routingKey, body: Array(json.utf8),
                    properties: MessageProperties(
                        contentType: "application/json", deliveryMode: 2, messageID: UUID().uuidString, type: type,
                        headers: [schemaVersionHeader: .int(1)]))
            }
            let forgedCandle = raw(
                CandleClosed.messageType, "candle.closed.xbtusd.1d",
                #"""
                {"pair":"XBTUSD","interval":"1d","open_time":\#(day.time),"open":"10","high":"5","low":"20","close":"1","volume":"1",\#
                "trades":1,"revision":0}
                """#
            )
            let overflowingInterval = raw(
                CandleClosed.messageType, "candle.closed.xbtusd.1d",
                #"""
                {"pair":"XBTUSD","interval":"99999999999999999d","open_time":\#(day.time),"open":"1","high":"1","low":"1","close":"1",\#
                "volume":"1","trades":1,"revision":0}
                """#
            )
            let overflowingTime = raw(
                CandleClosed.messageType, "candle.closed.xbtusd.1d",
                #"""
                {"pair":"XBTUSD","interval":"1d","open_time":9223372036854775807,"open":"1","high":"1","low":"1","close":"1","volume":"1",\#
                "trades":1,"revision":0}
                """#
            )
            let unknownVersion = raw(
                ModelPromoted.messageType, "model.promoted.\(SystemHarness.modelName)",
                #"""
                {"model_name":"\#(SystemHarness.modelName)","alias":"champion","version":9999,"reason":"forged","pair":"XBTUSD",\#
                "interval":"1d","dataset_version":1,"artifact_crc32":1}
                """#
            )
            try await publisher.publish(contentsOf: [forgedCandle, overflowingInterval, overflowingTime, unknownVersion])
            await publisher.close()

            // The real promotion, through the registry, right behind the forged one.
            let answer = await httpRequest(
                "POST", system.registryURL + "/v1/models/\(SystemHarness.modelName)/promote",
                headers: ["Authorization": "Bearer \(system.token)", "Content-Type": "application/json"],
                body: try JSONSerialization.data(withJSONObject: [
                    "version": other, "reason": "system test: a real promotion behind a forged one",
                ]))
            #expect(answer?.status == 200)

            // Each consumer of candle.closed dead-letters the three forged candles; the predictor and the monitor the
            // promotion of v9999.
            let expected: [ServiceName: Int] = [.preprocessor: 3, .predictor: 4, .monitor: 4]
            try await eventually(timeout: .seconds(60), "the forged events dead-lettered") {
                let counts = try await Self.deadLetterCounts(system)
                return expected.allSatisfy { counts[$0.key, default: 0] - deadBefore[$0.key, default: 0] == $0.value }
            }
            for (service, count) in expected {
                let consumer = try Consumer(
                    configuration: system.broker, options: Consumer.Options(queue: service.deadLetterQueue), logger: TestEnvironment.logger)
                let collector = DeliveryCollector(consumer)
                try await eventually(timeout: .seconds(30), "\(service) dead letters read") { collector.deliveries.count == count }
                let reasons = collector.deliveries.map { $0.properties.headers[DeadLetterHeader.reason]?.stringValue ?? "" }
                #expect(reasons.contains("invalid payload: prices out of order: need low <= open, close <= high"), "\(service): \(reasons)")
                #expect(reasons.contains { $0.contains("unsupported interval 99999999999999999d") }, "\(service): \(reasons)")
                #expect(reasons.contains { $0.contains("open_time 9223372036854775807 is outside") }, "\(service): \(reasons)")
                if service != .preprocessor {
                    #expect(reasons.contains { $0.contains("v9999") && $0.contains("not in the registry") }, "\(service): \(reasons)")
                }
                await consumer.stop()
            }

            // Nothing of them is stored or shown.
            let stored = try await system.client.query(
                """
                SELECT (SELECT count(*) FROM predictions.actuals WHERE open_time = \(day.time)),
                       (SELECT count(*) FROM features.processed_candles WHERE open_time = \(day.time)),
                       (SELECT count(*) FROM monitor.latest_candles WHERE close = 1),
                       (SELECT count(*) FROM predictions.forecasts WHERE actual_close IS NOT NULL)
                """)
            #expect(try (0..<4).map { try stored[0].decode($0, as: Int.self) } == [0, 0, 0, 0])
            // The real promotion applied: the predictor serves it and the monitor shows it; v9999 appears nowhere.
            try await eventually(timeout: .seconds(30), "the predictor on the promoted version") {
                (await getJSON(system.predictorURL + "/v1/model?pair=XBTUSD&interval=1d") as? [String: Any])?["model_version"] as? Int
                    == other
            }
            try await eventually(timeout: .seconds(30), "the monitor showing the promoted version") {
                let metrics = await httpGet(system.monitorURL + "/metrics")?.body ?? ""
                return sample(metrics, "candlecast_champion_version", labels: ["model=\"\(SystemHarness.modelName)\""]) == Double(other)
            }

            // The genuine candle of that day is then processed as if the forgery never happened: stored, scored, forecast from.
            try await system.tick(1)
            try await eventually(timeout: .seconds(60), "the genuine candle scored and the next forecast made by the promoted version") {
                let row = try await system.client.query(
                    """
                    SELECT (SELECT count(*) FROM predictions.forecasts
                            WHERE target_open_time = \(day.time) AND actual_close = \(Double(day.close)!)),
                           (SELECT count(*) FROM predictions.forecasts
                            WHERE target_open_time = \(day.time + 86_400) AND model_version = \(other))
                    """)
                return try row[0].decode(0, as: Int.self) == 1 && row[0].decode(1, as: Int.self) == 1
            }
            for role in SystemHarness.roles { try await system.waitReady(role) }
            print(
                """
                reliability | forged events with a valid envelope (impossible prices, interval 99999999999999999d, open_time 2^63-1, \
                promotion of v9999) | dead-lettered with reasons by preprocessor 3, predictor 4, monitor 4 | 0 stored, 0 shown | the real \
                promotion behind them applied; the genuine candle scored
                """
            )
        }
    }

    static func deadLetterCounts(_ system: SystemHarness) async throws -> [ServiceName: Int] {
        var counts: [ServiceName: Int] = [:]
        for service in [ServiceName.preprocessor, .predictor, .monitor] {
            counts[service] = try await BrokerAdmin.messageCount(queue: service.deadLetterQueue, configuration: system.broker)
        }
        return counts
    }
}
