import Foundation
import Messaging
import TestSupport
import Testing

/// Against the real RabbitMQ started by scripts/servers.sh.
@Suite("Messaging against RabbitMQ", .serialized)
struct BrokerIntegrationTests {
    let logger = TestEnvironment.logger

    @Test("a confirmed publish is consumed and acked")
    func confirmedPublishIsConsumedAndAcked() async throws {
        let broker = try TestEnvironment.broker()
        let queue = TestQueue()
        let publisher = try Publisher(configuration: broker, options: Publisher.Options(topology: queue.topology), logger: logger)
        let consumer = try Consumer(
            configuration: broker, options: Consumer.Options(queue: queue.queue, topology: queue.topology), logger: logger)
        let collector = DeliveryCollector(consumer, settle: .ack)

        try await publisher.publish(queue.message(#"{"hello":"world"}"#))
        let deliveries = try await collector.waitFor(1)
        #expect(collector.bodies == [#"{"hello":"world"}"#])
        #expect(deliveries[0].properties.deliveryMode == 2)
        #expect(deliveries[0].properties.contentType == "application/json")
        #expect(deliveries[0].routingKey == queue.routingKey)

        // Closing the connection would requeue an unacked message: an empty queue afterwards proves the ack.
        await consumer.stop()
        try await eventually("the queue to be empty") {
            try await BrokerAdmin.messageCount(queue: queue.queue, configuration: broker) == 0
        }
        #expect(try await BrokerAdmin.messageCount(queue: queue.queue, configuration: broker) == 0)
        await publisher.close()
        await queue.cleanUp(broker)
    }

    @Test("pipelined publishes are all confirmed and delivered in order")
    func pipelinedPublishes() async throws {
        let broker = try TestEnvironment.broker()
        let queue = TestQueue()
        let publisher = try Publisher(configuration: broker, options: Publisher.Options(topology: queue.topology), logger: logger)
        let messages = (0..<2000).map { queue.message(#"{"n":\#($0)}"#) }
        try await publisher.publish(contentsOf: messages)
        #expect(try await BrokerAdmin.messageCount(queue: queue.queue, configuration: broker) == 2000)

        let consumer = try Consumer(
            configuration: broker, options: Consumer.Options(queue: queue.queue, prefetch: 200, topology: queue.topology), logger: logger)
        let collector = DeliveryCollector(consumer)
        try await collector.waitFor(2000)
        #expect(collector.bodies == (0..<2000).map { #"{"n":\#($0)}"# })
        await consumer.stop()
        await publisher.close()
        await queue.cleanUp(broker)
    }

    @Test("a nack without requeue lands in the dead-letter queue with its reason")
    func rejectedMessageIsDeadLettered() async throws {
        let broker = try TestEnvironment.broker()
        let queue = TestQueue()
        let publisher = try Publisher(configuration: broker, options: Publisher.Options(topology: queue.topology), logger: logger)
        let consumer = try Consumer(
            configuration: broker, options: Consumer.Options(queue: queue.queue, topology: queue.topology), logger: logger)
        let rejecting = DeliveryCollector(consumer, settle: .rejectWithoutRequeue)
        let deadLetters = try Consumer(
            configuration: broker, options: Consumer.Options(queue: queue.deadLetterQueue, topology: queue.topology), logger: logger)
        let deadCollector = DeliveryCollector(deadLetters)

        try await publisher.publish(queue.message(#"{"will":"be rejected"}"#))
        try await rejecting.waitFor(1)
        let dead = try await deadCollector.waitFor(1)
        #expect(deadCollector.bodies == [#"{"will":"be rejected"}"#])
        // The broker's own record: x-death names the reason and the queue.
        guard case .array(let deaths)? = dead[0].properties.headers["x-death"], case .table(let death)? = deaths.first else {
            Issue.record("no x-death header: \(dead[0].properties.headers)")
            return
        }
        #expect(death["reason"] == .string("rejected"))
        #expect(death["queue"] == .string(queue.queue))
        await consumer.stop()
        await deadLetters.stop()
        await publisher.close()
        await queue.cleanUp(broker)
    }

    @Test("a malformed body is dead-lettered with a reason header and the consumer goes on")
    func malformedMessagesAreDeadLetteredAndConsumingContinues() async throws {
        let broker = try TestEnvironment.broker()
        let queue = TestQueue()
        let publisher = try Publisher(configuration: broker, options: Publisher.Options(topology: queue.topology), logger: logger)
        let consumer = try Consumer(
            configuration: broker,
            options: Consumer.Options(queue: queue.queue, topology: queue.topology, deadLetterRoute: queue.deadLetterRoute),
            deadLetterPublisher: publisher, logger: logger)
        let handled = HandledPayloads()
        let handling = Task { await consumer.handle(Greeting.self) { envelope, _ in handled.append(envelope.payload.text) } }
        let deadLetters = try Consumer(
            configuration: broker, options: Consumer.Options(queue: queue.deadLetterQueue, topology: queue.topology), logger: logger)
        let deadCollector = DeliveryCollector(deadLetters)

        func valid(_ text: String) throws -> OutgoingMessage {
            try EnvelopeCodec.encode(Envelope(payload: Greeting(text: text)), exchange: queue.exchange, routingKey: queue.routingKey)
        }
        var wrongVersion = try valid("wrong version")
        wrongVersion.properties.headers[schemaVersionHeader] = .int(99)
        var wrongType = try valid("wrong type")
        wrongType.properties.type = "something.else"
        var invalidUTF8 = try valid("x")
        invalidUTF8.body = [0x7B, 0xFF, 0xFE, 0x7D]
        var missingField = try valid("x")
        missingField.body = Array(#"{"other":1}"#.utf8)
        var empty = try valid("x")
        empty.body = Array("   ".utf8)
        try await publisher.publish(contentsOf: [
            try valid("first"),
            {
                var message = try valid("x")
                message.body = Array("{not json".utf8)
                return message
            }(),
            wrongVersion, wrongType, invalidUTF8, missingField, empty,
            try valid("after the poison"),
        ])

        try await eventually("both valid messages handled") { handled.values.count == 2 }
        #expect(handled.values == ["first", "after the poison"])
        let dead = try await deadCollector.waitFor(6)
        let reasons = dead.map { $0.properties.headers[DeadLetterHeader.reason]?.stringValue ?? "none" }
        #expect(reasons[0].hasPrefix("malformed JSON body"))
        #expect(reasons[1] == "schema version 99 is not supported (expected 1)")
        #expect(reasons[2] == "message type something.else is not test.greeting")
        #expect(reasons[3].hasPrefix("malformed JSON body"))
        #expect(reasons[4] == "malformed JSON body: missing field text")
        #expect(reasons[5].hasPrefix("malformed JSON body"))
        #expect(dead.allSatisfy { $0.properties.headers[DeadLetterHeader.originalRoutingKey] == .string(queue.routingKey) })
        #expect(String(decoding: dead[0].body, as: UTF8.self) == "{not json")

        await consumer.stop()
        await handling.value
        await deadLetters.stop()
        await publisher.close()
        await queue.cleanUp(broker)
    }

    @Test("an idle connection stays alive for 3 heartbeat intervals")
    func idleConnectionSurvivesHeartbeats() async throws {
        let broker = try TestEnvironment.broker(heartbeatSeconds: 1)
        let queue = TestQueue()
        let publisher = try Publisher(configuration: broker, options: Publisher.Options(topology: queue.topology), logger: logger)
        let consumer = try Consumer(
            configuration: broker, options: Consumer.Options(queue: queue.queue, topology: queue.topology), logger: logger)
        let collector = DeliveryCollector(consumer)
        try await eventually("both connected") { publisher.isConnected && consumer.isConnected }

        // The broker closes a connection after two missed heartbeats: idle for 3.5 intervals.
        try await Task.sleep(for: .milliseconds(3500))
        #expect(publisher.isConnected && consumer.isConnected)
        try await publisher.publish(queue.message(#"{"after":"idle"}"#))
        try await collector.waitFor(1)
        #expect(publisher.connectionCount == 1, "the publisher had to reconnect")
        #expect(consumer.connectionCount == 1, "the consumer had to reconnect")
        await consumer.stop()
        await publisher.close()
        await queue.cleanUp(broker)
    }

    @Test("a consumer and a publisher survive the broker's stop_app/start_app")
    func survivesBrokerRestart() async throws {
        let broker = try TestEnvironment.broker(heartbeatSeconds: 2)
        let queue = TestQueue()
        let publisher = try Publisher(configuration: broker, options: Publisher.Options(topology: queue.topology), logger: logger)
        let consumer = try Consumer(
            configuration: broker, options: Consumer.Options(queue: queue.queue, topology: queue.topology), logger: logger)
        let collector = DeliveryCollector(consumer)
        try await publisher.publish(queue.message(#"{"n":"before"}"#))
        try await collector.waitFor(1)

        try await TestEnvironment.servers("rabbit-stop-app")
        try await eventually("both to notice the outage") { !publisher.isConnected && !consumer.isConnected }
        // Published while the broker is down: held and sent once it is back.
        let duringOutage = Task { try await publisher.publish(queue.message(#"{"n":"during"}"#)) }
        try await Task.sleep(for: .milliseconds(500))
        try await TestEnvironment.servers("rabbit-start-app")

        try await duringOutage.value
        try await publisher.publish(queue.message(#"{"n":"after"}"#))
        try await collector.waitFor(3, timeout: .seconds(30))
        #expect(collector.bodies == [#"{"n":"before"}"#, #"{"n":"during"}"#, #"{"n":"after"}"#])
        #expect(consumer.connectionCount >= 2)
        await consumer.stop()
        await publisher.close()
        await queue.cleanUp(broker)
    }

    @Test("a publish that cannot be confirmed in time throws instead of hanging")
    func unreachableBrokerTimesOut() async throws {
        var broker = try TestEnvironment.broker()
        broker.port = 1  // nothing listens there
        let publisher = try Publisher(configuration: broker, options: Publisher.Options(confirmTimeout: .milliseconds(600)), logger: logger)
        let queue = TestQueue()
        await #expect(throws: BrokerError.self) { try await publisher.publish(queue.message("{}")) }
        await publisher.close()
    }
}

struct Greeting: MessagePayload, Equatable {
    static let messageType = "test.greeting"
    static let schemaVersion = 1
    var text: String
}

typealias HandledPayloads = SharedList<String>
