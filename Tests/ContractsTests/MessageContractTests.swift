import CandlecastClient
import Foundation
import Logging
import Messaging
import TestSupport
import Testing

/// docs/asyncapi.yaml is what a program in another language follows: it must say what the code sends.
@Suite("Message contract document")
struct MessageContractTests {
    @Test("every message type of the catalogue is documented with its routing key, producer, schema version and exact fields")
    func documentMatchesCode() async throws {
        let document = try await Self.asyncAPI()
        let channels = try #require(document["channels"] as? [String: Any])
        let messages = try #require((document["components"] as? [String: Any])?["messages"] as? [String: [String: Any]])
        #expect(Set(ContractSamples.all.map { type(of: $0).messageType }) == Set(MessageCatalog.all.map(\.type)))
        #expect(messages.count == MessageCatalog.all.count)
        for kind in MessageCatalog.all {
            let channel = kind.routingKey.replacingOccurrences(of: "<", with: "{").replacingOccurrences(of: ">", with: "}")
            #expect(channels[channel] != nil, "no channel \(channel) for \(kind.type)")
            let entry = try #require(messages.values.first { $0["name"] as? String == kind.type }, "no message named \(kind.type)")
            #expect(entry["x-producer"] as? String == kind.producer.rawValue)
            #expect(entry["x-schema-version"] as? Int == kind.schemaVersion)
            let payload = try #require(entry["payload"] as? [String: Any])
            let documented = Set((payload["properties"] as? [String: Any] ?? [:]).keys)
            let required = Set(payload["required"] as? [String] ?? [])
            let sample = try #require(ContractSamples.all.first { type(of: $0).messageType == kind.type })
            let encoded = try #require(JSONSerialization.jsonObject(with: try JSONEncoder().encode(sample)) as? [String: Any])
            #expect(
                Set(encoded.keys) == documented,
                "\(kind.type): the code sends \(encoded.keys.sorted()), the document lists \(documented.sorted())")
            #expect(required.isSubset(of: documented))
        }
    }

    static func asyncAPI() async throws -> [String: Any] {
        let path = TestEnvironment.repositoryRoot.appendingPathComponent("docs/asyncapi.yaml").path
        let output = NSTemporaryDirectory() + "candlecast-asyncapi.json"
        let status = try await TestEnvironment.run(
            "/bin/sh",
            [
                "-c",
                """
                python3 -c 'import json, sys, yaml; json.dump(yaml.safe_load(open(sys.argv[1])), open(sys.argv[2], \"w\"))' \(path) \
                \(output)
                """,
            ])
        guard status == 0,
            let object = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: output))) as? [String: Any]
        else {
            throw TestSetupError("cannot read docs/asyncapi.yaml as YAML (\(status))")
        }
        return object
    }
}

/// The Swift client library and the Python example, against the real broker.
@Suite("Forecast subscribers", .serialized)
struct ForecastSubscriberTests {
    /// Even days carry ranges and an up probability (a calibrated model), odd days none (an uncalibrated one).
    static func forecast(day: Int64, version: Int = 1) -> ForecastCreated {
        let point = 40_000 + Double(day)
        let calibrated = day.isMultiple(of: 2)
        return ForecastCreated(
            pair: "XBTUSD", interval: .oneDay, targetOpenTime: 1_704_067_200 + day * 86_400, predictedClose: point,
            lastClose: 39_000,
            modelName: "lstm-xbtusd-1d", modelVersion: version, datasetVersion: 1, producedAt: Date(timeIntervalSince1970: 1_750_000_000),
            stale: false,
            intervals: calibrated
                ? [
                    ForecastInterval(level: 0.8, lower: point - 1_000.25, upper: point + 1_100.5),
                    ForecastInterval(level: 0.95, lower: point - 2_000.75, upper: point + 2_300),
                ] : nil,
            probabilityUp: calibrated ? 0.5 + Double(day) / 100 : nil)
    }

    @Test(
        "CandlecastClient: typed forecasts in order, acked after the handler; an undecodable one goes to the subscriber's dead-letter queue"
    )
    func swiftClient() async throws {
        let broker = try TestEnvironment.broker()
        let queue = TestEnvironment.uniqueName("test.client")
        let subscriber = try ForecastSubscriber(
            broker: broker, options: .init(queue: queue, pair: "XBTUSD"), logger: TestEnvironment.logger)
        let publisher = try Publisher(configuration: broker, options: Publisher.Options(), logger: TestEnvironment.logger)
        try await eventually("the subscriber connected") { subscriber.isConnected }
        let sent = (0..<20).map { Self.forecast(day: $0) }
        var messages = try sent.map {
            try EnvelopeCodec.encode(Envelope(payload: $0), exchange: Exchange.events, routingKey: $0.routingKey)
        }
        messages.insert(
            OutgoingMessage(
                exchange: Exchange.events, routingKey: "forecast.created.xbtusd.1d", body: Array(#"{"pair": 5}"#.utf8),
                properties: MessageProperties(
                    contentType: "application/json", type: ForecastCreated.messageType, headers: [schemaVersionHeader: .int(1)])),
            at: 10)
        // Another pair is not delivered to a subscriber of XBTUSD.
        var other = Self.forecast(day: 99)
        other.pair = "ETHUSD"
        messages.append(try EnvelopeCodec.encode(Envelope(payload: other), exchange: Exchange.events, routingKey: other.routingKey))
        try await publisher.publish(contentsOf: messages)

        let received = SharedList<ForecastCreated>()
        let task = Task { await subscriber.forecasts { received.append($0) } }
        try await eventually("20 forecasts") { received.values.count == 20 }
        try await Task.sleep(for: .milliseconds(300))
        // Equal field by field: the ranges and the up probability arrive as sent, and are nil where none were sent.
        #expect(received.values == sent)
        #expect(received.values.filter { $0.intervals != nil }.count == 10)
        #expect(received.values.first?.interval(0.95)?.upper == 42_300 && received.values.first?.probabilityUp == 0.5)
        try await eventually("the undecodable message dead-lettered") {
            (try? await BrokerAdmin.messageCount(queue: queue + ".dead-letters", configuration: broker)) == 1
        }
        await subscriber.stop()
        await task.value
        #expect(try await BrokerAdmin.messageCount(queue: queue, configuration: broker) == 0)
        for name in [queue, queue + ".dead-letters"] { try await BrokerAdmin.delete(queue: name, configuration: broker) }
        await publisher.close()
    }

    @Test("the pika example prints every forecast published to its queue")
    func pikaExample() async throws {
        let broker = try TestEnvironment.broker()
        let queue = TestEnvironment.uniqueName("test.pika")
        // Declared as the example declares it (durable, bound to its pattern), so nothing published before it starts is missed.
        try await BrokerAdmin.declare(
            Topology(
                exchanges: [Topology.Exchange(name: Exchange.events, kind: .topic)], queues: [Topology.Queue(name: queue)],
                bindings: [Topology.Binding(queue: queue, exchange: Exchange.events, routingKey: "forecast.created.xbtusd.*")]),
            configuration: broker)
        let publisher = try Publisher(configuration: broker, options: Publisher.Options(), logger: TestEnvironment.logger)
        let sent = (0..<5).map { Self.forecast(day: $0, version: 7) }
        try await publisher.publish(
            contentsOf: sent.map { try EnvelopeCodec.encode(Envelope(payload: $0), exchange: Exchange.events, routingKey: $0.routingKey) })
        let lines = try await PikaExample.run(queue: queue, pair: "xbtusd", count: 5)
        #expect(lines.count == 5)
        for (line, forecast) in zip(lines, sent) {
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            #expect(object["target_open_time"] as? Int64 == forecast.targetOpenTime)
            #expect(object["predicted_close"] as? Double == forecast.predictedClose)
            #expect(object["model_version"] as? Int == 7)
            // The ranges and P(up) as [lower, upper] and a number; JSON null where the forecast has none.
            for (key, level) in [("range_80", 0.8), ("range_95", 0.95)] {
                if let interval = forecast.interval(level) {
                    #expect(object[key] as? [Double] == [interval.lower, interval.upper], "\(key): \(line)")
                } else {
                    #expect(object[key] is NSNull, "\(key): \(line)")
                }
            }
            if let probability = forecast.probabilityUp {
                #expect(object["probability_up"] as? Double == probability, "\(line)")
            } else {
                #expect(object["probability_up"] is NSNull, "\(line)")
            }
        }
        #expect(try await BrokerAdmin.messageCount(queue: queue, configuration: broker) == 0)
        try await BrokerAdmin.delete(queue: queue, configuration: broker)
        await publisher.close()
    }
}
