import Contracts
import Foundation
import Messaging
import Storage
import TestSupport
import Testing

/// Bad messages on every queue and bad requests on every endpoint: each refused with a reason, nothing changed,
/// nothing crashed.
@Suite("Hostile input", .serialized)
struct HostileInputTests {
    /// Every queue a service consumes with a typed handler, and the message type it expects.
    static let queues: [(service: ServiceName, queue: String, type: String)] = [
        (.preprocessor, "preprocessor.candles", CandleClosed.messageType),
        (.trainer, "training.jobs", TrainingJob.messageType),
        (.registry, "registry.datasets", DatasetReady.messageType),
        (.registry, "registry.training-results", TrainingCompleted.messageType),
        (.predictor, "predictor.windows", FeatureWindow.messageType),
        (.predictor, "predictor.models", ModelPromoted.messageType),
        (.predictor, "predictor.candles", CandleClosed.messageType),
        (.monitor, "monitor.metrics", ForecastScored.messageType),
        (.monitor, "monitor.forecasts", ForecastCreated.messageType),
        (.monitor, "monitor.candles", CandleClosed.messageType),
        (.monitor, "monitor.models", ModelPromoted.messageType),
    ]

    /// The kinds of poison, as (name, body, type, schema version) for a queue expecting `type`.
    static func poison(for type: String) throws -> [(String, [UInt8], String, Int64)] {
        let sample = try ContractSamples.json(ofType: type)
        func json(_ object: Any) throws -> [UInt8] { Array(try JSONSerialization.data(withJSONObject: object)) }
        // Every number made negative and every decimal string "NaN": each payload has a value that must be positive.
        let text = String(decoding: try json(sample), as: UTF8.self)
        let hostileValues = Array(
            text
                .replacingOccurrences(of: #"([:\[,])(\d)"#, with: "$1-$2", options: .regularExpression)
                .replacingOccurrences(of: #":"\d+(\.\d+)?""#, with: #":"NaN""#, options: .regularExpression).utf8)
        var tenMegabytes = Array(#"{"pair":""#.utf8)
        tenMegabytes += [UInt8](repeating: UInt8(ascii: "x"), count: 10 << 20)
        tenMegabytes += Array(#""}"#.utf8)
        let nonFinite = Array(
            String(decoding: try json(sample), as: UTF8.self).replacingOccurrences(
                of: #":(\d+)"#, with: ":1e999", options: .regularExpression
            ).utf8)
        return [
            ("malformed JSON", Array("{\"pair\": \"XBTUSD\", ".utf8), type, 1),
            ("wrong type", try json(sample), "candle.exploded", 1),
            ("unknown schema version", try json(sample), type, 99),
            ("missing fields", try json(["pair": "XBTUSD"]), type, 1),
            ("negative numbers, NaN prices", hostileValues, type, 1),
            ("non-finite numbers", nonFinite, type, 1),
            ("10 MB body", tenMegabytes, type, 1),
            ("invalid UTF-8", [0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0xc3, 0x28, 0x7d], type, 1),
        ]
    }

    @Test("poison on every queue: each message dead-lettered with a reason, counted by the monitor, and the consumers go on")
    func poisonOnEveryQueue() async throws {
        let system = try await SystemHarness(basePort: 18_880)
        try await system.run {
            try await system.startAll()
            let publisher = try Publisher(configuration: system.broker, options: Publisher.Options(), logger: TestEnvironment.logger)
            var expected: [ServiceName: Int] = [:]
            var messages: [OutgoingMessage] = []
            for (service, sharedQueue, type) in Self.queues {
                // The predictor's promotions arrive on a queue of its own process.
                let queue =
                    sharedQueue == "predictor.models"
                    ? sharedQueue + "."
                        + QueueSubscription.replicaName(
                            host: ProcessInfo.processInfo.hostName, processID: system.processes["predictor"]?.pid ?? 0)
                    : sharedQueue
                for (_, body, messageType, version) in try Self.poison(for: type) {
                    // Straight to the queue through the default exchange, as a confused or hostile publisher could.
                    messages.append(
                        OutgoingMessage(
                            exchange: "", routingKey: queue, body: body,
                            properties: MessageProperties(
                                contentType: "application/json", messageID: UUID().uuidString, type: messageType,
                                headers: [schemaVersionHeader: .int(version)])))
                    expected[service, default: 0] += 1
                }
            }
            let expectedCounts = expected
            let published = ContinuousClock.now
            try await publisher.publish(contentsOf: messages)
            try await eventually(timeout: .seconds(120), "every poison message dead-lettered") {
                for (service, count) in expectedCounts {
                    guard (try? await BrokerAdmin.messageCount(queue: service.deadLetterQueue, configuration: system.broker)) == count
                    else { return false }
                }
                return true
            }
            let drained = ContinuousClock.now - published
            try await eventually(timeout: .seconds(30), "the monitor's dead-letter gauges") {
                let metrics = await httpGet(system.monitorURL + "/metrics")?.body ?? ""
                return expectedCounts.allSatisfy {
                    sample(metrics, "candlecast_dead_letter_queue_messages", labels: ["service=\"\($0.key.rawValue)\""]) == Double($0.value)
                }
            }
            for role in SystemHarness.roles { try await system.waitReady(role) }

            // Each dead letter says why.
            for service in expected.keys {
                let consumer = try Consumer(
                    configuration: system.broker, options: Consumer.Options(queue: service.deadLetterQueue), logger: TestEnvironment.logger)
                let collector = DeliveryCollector(consumer)
                try await eventually(timeout: .seconds(30), "\(service) dead letters read") {
                    collector.deliveries.count == expectedCounts[service]
                }
                for delivery in collector.deliveries {
                    let reason = delivery.properties.headers[DeadLetterHeader.reason]?.stringValue ?? ""
                    #expect(!reason.isEmpty, "a dead letter of \(service) without a reason")
                }
                await consumer.stop()
            }
            // The consumers kept their pace: a valid candle after the poison still becomes a stored candle and a window.
            try await system.backfillHistory()
            try await eventually(timeout: .seconds(60), "dataset version 1 after the poison") {
                (try? await system.client.query("SELECT count(*) FROM features.dataset_versions").first?.decode(0, as: Int.self)) == 1
            }
            print(
                """
                reliability | \(messages.count) poison messages \
                (\(try Self.poison(for: CandleClosed.messageType).map(\.0).joined(separator: ", "))) on \(Self.queues.count) queues of 5 \
                services | \(messages.count) dead-lettered with a reason in \(drained) | lost 0 | duplicated 0 | no restart: every service \
                stayed ready
                """
            )
            await publisher.close()
        }
    }

    @Test("hostile HTTP on every endpoint: 4xx with a message, nothing changed, no crash")
    func hostileHTTP() async throws {
        let system = try await SystemHarness(basePort: 18_980)
        try await system.run {
            try await system.startAll()
            let registry = system.registryURL
            let predictor = system.predictorURL
            let monitor = system.monitorURL
            let preprocessor = "http://127.0.0.1:\(system.ports.preprocessor)"
            let auth = ["Authorization": "Bearer \(system.token)", "Content-Type": "application/json"]
            let sql = "x'; DROP TABLE registry.runs; --"
            let sqlPath = sql.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? ""
            let huge = Data(repeating: UInt8(ascii: "1"), count: 5 << 20)
            let before = try await Self.stateCounts(system.client)
            var checked = 0
            var refused = 0

            func expectRefused(_ method: String, _ url: String, headers: [String: String] = [:], body: Data? = nil) async {
                let answer = await httpRequest(method, url, headers: headers, body: body)
                let status = answer?.status ?? 0
                #expect((400..<500).contains(status), "\(method) \(url.prefix(120)) answered \(status)")
                checked += 1
                if (400..<500).contains(status) { refused += 1 }
            }
            // Reads: malformed path and query parameters.
            for path in [
                "/v1/sweeps/\(sqlPath)", "/v1/sweeps/123", "/v1/runs/\(sqlPath)", "/v1/runs/99999999999999999999999", "/v1/runs?limit=abc",
                "/v1/models/\(sqlPath)/versions", "/v1/models/..%2F..%2Fetc%2Fpasswd/versions", "/v1/models/lstm-xbtusd-1d/versions/abc",
                "/v1/models/..%2F..%2Fetc/versions/1/artifact", "/v1/models/lstm-xbtusd-1d/versions/-1/artifact",
                "/v1/models/lstm-xbtusd-1d/versions/99999999999999999999/artifact", "/v1/models/\(sqlPath)/aliases",
            ] {
                await expectRefused("GET", registry + path)
            }
            for path in [
                "/v1/forecasts/latest?pair=\(sqlPath)&interval=1d", "/v1/forecasts/latest?pair=XBTUSD&interval=7x",
                "/v1/forecasts?pair=XBTUSD&interval=1d&from=abc",
                "/v1/forecasts?pair=XBTUSD&interval=1d&from=10&to=5", "/v1/forecasts?pair=XBTUSD&interval=1d&limit=-1",
                "/v1/model?pair=\(sqlPath)&interval=1d",
                // Once "Swift runtime failure: arithmetic overflow": the interval multiplied before its range was checked.
                "/v1/forecasts/latest?pair=XBTUSD&interval=99999999999999999d", "/v1/forecasts?pair=XBTUSD&interval=99999999999999999w",
                "/v1/model?pair=XBTUSD&interval=9223372036854775807m", "/v1/forecasts?pair=XBTUSD&interval=1d&limit=99999999999999999999",
                // from/to are RFC 3339 dates or timestamps only: unix seconds, impossible dates and offsets are refused.
                "/v1/forecasts?from=1704153600", "/v1/forecasts?to=2024-02-30", "/v1/forecasts?from=2024-01-01T00:00:00%2B99:00",
            ] {
                await expectRefused("GET", predictor + path)
            }
            for path in [
                "/v1/datasets/\(sqlPath)/1d", "/v1/datasets/XBTUSD/%2E%2E%2F", "/v1/datasets/XBTUSD/99999999999999999d",
                "/v1/datasets/XBTUSD/153722867280912931h",
            ] {
                await expectRefused("GET", preprocessor + path)
            }
            await expectRefused("POST", preprocessor + "/v1/datasets/XBTUSD/99999999999999999d")
            for path in [
                "/?pair=\(sqlPath)", "/?interval=..%2F..", "/?days=-5", "/?from=2024-13-45", "/?from=2024-05-01&to=2024-01-01",
                "/?pair=XBTUSD&interval=99999999999999999d", "/?days=99999999999999999999",
            ] {
                await expectRefused("GET", monitor + path)
            }
            // Writes: no token, a wrong token (same and different length), then hostile bodies with the right one.
            let sweepBody = Data(#"{"pair":"XBTUSD","interval":"1d","dataset_version":1}"#.utf8)
            for write in ["/v1/sweeps", "/v1/models/lstm-xbtusd-1d/promote", "/v1/models/lstm-xbtusd-1d/rollback"] {
                await expectRefused("POST", registry + write, headers: ["Content-Type": "application/json"], body: sweepBody)
                await expectRefused(
                    "POST", registry + write, headers: ["Authorization": "Bearer " + String(repeating: "x", count: system.token.count)],
                    body: sweepBody)
                await expectRefused("POST", registry + write, headers: ["Authorization": "Bearer x"], body: sweepBody)
                await expectRefused("POST", registry + write, headers: ["Authorization": system.token], body: sweepBody)
                for body in [
                    Data("{not json".utf8), Data(#"{"pair":5,"interval":[],"dataset_version":"one","version":"x"}"#.utf8),
                    Data(#"{"pair":"\#(sql)","interval":"1d","dataset_version":1,"version":1}"#.utf8),
                    Data(
                        #"""
                        {"pair":"XBTUSD","interval":"99999999999999999d","dataset_version":99999999999999999999,\#
                        "version":99999999999999999999}
                        """#.utf8), huge,
                ] {
                    await expectRefused("POST", registry + write, headers: auth, body: body)
                }
            }
            await expectRefused("POST", registry + "/v1/models/..%2F..%2Fetc/promote", headers: auth, body: Data(#"{"version":1}"#.utf8))
            await expectRefused("POST", preprocessor + "/v1/datasets/\(sqlPath)/1d")
            await expectRefused("POST", preprocessor + "/v1/datasets/XBTUSD/1d")  // no candles yet: 409
            for body in [
                Data("{not json".utf8), Data(#"{"pair":"XBTUSD","interval":"1d","closes":"many"}"#.utf8),
                Data(#"{"pair":"XBTUSD","interval":"1d","closes":[1]}"#.utf8),
                Data(#"{"pair":"XBTUSD","interval":"1d","closes":[-1,-2,-3,-4,-5,-6,-7,-8,-9,-10,-11,-12,-13,-14]}"#.utf8),
                Data(#"{"pair":"XBTUSD","interval":"1d","closes":[1e999,1,1,1,1,1,1,1,1,1,1,1,1,1]}"#.utf8),
                Data(#"{"pair":"\#(sql)","interval":"1d","closes":[1,1,1,1,1,1,1,1,1,1,1,1,1,1]}"#.utf8), huge,
            ] {
                await expectRefused("POST", predictor + "/v1/predict", headers: ["Content-Type": "application/json"], body: body)
            }

            #expect(try await Self.stateCounts(system.client) == before, "nothing changed")
            for role in SystemHarness.roles { try await system.waitReady(role) }
            for (role, status) in try await system.stopAll() { #expect(status == 0, "\(role) did not stop cleanly") }
            print(
                """
                reliability | \(checked) hostile requests on the registry, predictor, preprocessor and monitor APIs (bad JSON, 5 MB \
                bodies, wrong types, SQL in every field, path traversal, missing and wrong tokens) | \(refused) answered 4xx | 0 rows \
                changed | no crash, no restart
                """
            )
        }
    }

    /// Row counts of every table a write endpoint could touch.
    static func stateCounts(_ client: PostgresClient) async throws -> [Int] {
        let row = try await client.query(
            """
            SELECT (SELECT count(*) FROM registry.sweeps), (SELECT count(*) FROM registry.runs),
                   (SELECT count(*) FROM registry.alias_history), (SELECT count(*) FROM registry.aliases),
                   (SELECT count(*) FROM features.dataset_versions), (SELECT count(*) FROM predictions.forecasts)
            """)
        return try (0..<6).map { try row[0].decode($0, as: Int.self) }
    }
}
