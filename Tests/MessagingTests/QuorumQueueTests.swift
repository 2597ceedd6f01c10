import Contracts
import Foundation
import TestSupport
import Testing

@testable import Messaging

/// Quorum queues against the real RabbitMQ: the broker's delivery limit and at-least-once dead-lettering, the
/// handler's budget counted by the broker across replicas, and moving an older deployment's classic queues.
@Suite("Quorum queues: delivery limit, shared budget, migration from classic queues", .serialized)
struct QuorumQueueTests {
    struct SQLConstraintViolation: Error, CustomStringConvertible {
        var description: String { "SQLSTATE 23514: check constraint violated" }
    }

    static func quorum(_ queue: TestQueue, deliveryLimit: Int) -> Topology {
        var topology = queue.topology
        for index in topology.queues.indices { topology.queues[index].kind = .quorum(deliveryLimit: deliveryLimit) }
        return topology
    }

    static func publish(_ texts: [String], to queue: TestQueue, _ publisher: Publisher) async throws {
        try await publisher.publish(
            contentsOf: texts.map {
                try EnvelopeCodec.encode(Envelope(payload: Greeting(text: $0)), exchange: queue.exchange, routingKey: queue.routingKey)
            })
    }

    @Test("a message given back more often than the delivery limit is dead-lettered by the broker, at least once, as delivery_limit")
    func brokerDeliveryLimit() async throws {
        let broker = try TestEnvironment.broker()
        let queue = TestQueue()
        let topology = Self.quorum(queue, deliveryLimit: 2)
        let publisher = try Publisher(configuration: broker, options: Publisher.Options(topology: topology), logger: TestEnvironment.logger)
        // A consumer that never gets through the message, as one whose process dies on it would.
        let consumer = try Consumer(
            configuration: broker, options: Consumer.Options(queue: queue.queue, topology: topology), logger: TestEnvironment.logger)
        let counts = SharedList<Int>()
        let giving = Task {
            for await delivery in consumer.deliveries {
                counts.append(delivery.deliveryCount)
                delivery.reject(requeue: true)
            }
        }
        let deadLetters = DeliveryCollector(
            try Consumer(
                configuration: broker, options: Consumer.Options(queue: queue.deadLetterQueue, topology: topology),
                logger: TestEnvironment.logger))
        try await Self.publish(["poison"], to: queue, publisher)

        let dead = try await deadLetters.waitFor(1)
        #expect(String(decoding: dead[0].body, as: UTF8.self).contains("poison"))
        guard case .array(let deaths) = dead[0].properties.headers["x-death"], case .table(let death) = deaths.first else {
            Issue.record("no x-death header on the dead letter: \(dead[0].properties.headers)")
            return
        }
        #expect(death["reason"] == .string("delivery_limit"))
        #expect(death["queue"] == .string(queue.queue))
        // Delivered once, then given back twice more (the limit), each time with the broker's count.
        #expect(counts.values == [0, 1, 2])
        try await Task.sleep(for: .milliseconds(300))
        #expect(try await BrokerAdmin.messageCount(queue: queue.queue, configuration: broker) == 0)
        await consumer.stop()
        await giving.value
        await publisher.close()
        await queue.cleanUp(broker)
    }

    @Test(
        """
        two replicas on a quorum queue: a failing message is dead-lettered with its reason within their budgets; a transient \
        failure is retried in place and uses none
        """
    )
    func budgetSharedByReplicas() async throws {
        let broker = try TestEnvironment.broker()
        let queue = TestQueue()
        let topology = Self.quorum(queue, deliveryLimit: 20)
        // Declared once before the four connections start: none of them creates a quorum queue while another
        // subscribes to it (a queue is long-lived in a deployment; this test is about budgets, not creation races).
        try await BrokerAdmin.declare(topology, configuration: broker)
        let publisher = try Publisher(configuration: broker, options: Publisher.Options(topology: topology), logger: TestEnvironment.logger)
        let failures = SharedList<Int>()
        let transientTries = SharedList<Int>()
        let countsWhenHandled = SharedList<Int>()
        let policy = RedeliveryPolicy(maximumAttempts: 3, retryDelay: .milliseconds(20)) { $0 is TransientFailure }
        var replicas: [(Consumer, Task<Void, Never>)] = []
        for _ in 0..<2 {
            let consumer = try Consumer(
                configuration: broker,
                options: Consumer.Options(
                    queue: queue.queue, prefetch: 1, topology: topology, deadLetterRoute: queue.deadLetterRoute, redelivery: policy),
                deadLetterPublisher: publisher, logger: TestEnvironment.logger)
            let task = Task {
                await consumer.handle(Greeting.self) { envelope, delivery in
                    switch envelope.payload.text {
                    case "always fails":
                        failures.append(1)
                        throw SQLConstraintViolation()
                    case "database away":
                        transientTries.append(1)
                        if transientTries.values.count <= 3 { throw TransientFailure("database unreachable") }
                        countsWhenHandled.append(delivery.deliveryCount)
                    default:
                        break
                    }
                }
            }
            replicas.append((consumer, task))
        }
        let deadLetterConsumer = try Consumer(
            configuration: broker, options: Consumer.Options(queue: queue.deadLetterQueue, topology: topology),
            logger: TestEnvironment.logger)
        let deadLetters = DeliveryCollector(deadLetterConsumer)
        let consumers = replicas.map(\.0) + [deadLetterConsumer]
        try await eventually(timeout: .seconds(10), "both replicas and the dead-letter consumer subscribed") {
            consumers.allSatisfy(\.isConnected)
        }
        try await Self.publish(["always fails", "database away"], to: queue, publisher)

        let dead: [Delivery]
        do {
            dead = try await deadLetters.waitFor(1)
        } catch {
            // Says whether the dead letter reached its queue and only the consumer missed it, or never got there.
            let waiting = try? await BrokerAdmin.messageCount(queue: queue.deadLetterQueue, configuration: broker)
            Issue.record("\(error); messages in the dead-letter queue: \(waiting.map(String.init) ?? "unknown")")
            throw error
        }
        try await eventually(timeout: .seconds(10), "the transient message handled") { countsWhenHandled.values.count == 1 }
        try await Task.sleep(for: .milliseconds(300))
        // Each replica counts its own failures; whichever reaches 3 first dead-letters it: 3 to 5 attempts in all,
        // well under the broker's limit.
        #expect((3...5).contains(failures.values.count), "\(failures.values.count) attempts")
        let reason = dead[0].properties.headers[DeadLetterHeader.reason]?.stringValue ?? ""
        #expect(reason.contains("handler failed 3 times"), "\(reason)")
        #expect(deadLetters.deliveries.count == 1)
        #expect(countsWhenHandled.values == [0], "retried in place: the broker never got it back")
        for (consumer, task) in replicas {
            await consumer.stop()
            await task.value
        }
        await publisher.close()
        await queue.cleanUp(broker)
    }

    /// Every service's topology as a version before quorum queues declared it: classic queues, no single active
    /// consumer, and the one `predictor.models` queue shared by every predictor.
    static var classicDeployment: Topology {
        var topology = ServiceName.allCases.map(\.topology).reduce(Topology()) { $0.merged(with: $1) }
        for index in topology.queues.indices {
            topology.queues[index].kind = .classic
            topology.queues[index].singleActiveConsumer = false
        }
        topology.queues.append(
            Topology.Queue(name: "predictor.models", deadLetterExchange: Exchange.deadLetters, deadLetterRoutingKey: "predictor"))
        topology.bindings.append(Topology.Binding(queue: "predictor.models", exchange: Exchange.events, routingKey: "model.promoted.#"))
        return topology
    }

    @Test(
        """
        an earlier deployment's classic queues: a service's declaration is refused with the way out; the migration moves each queue \
        with its messages and bindings, deletes the retired one, refuses while a consumer is attached, and is idempotent
        """
    )
    func migrationFromClassicQueues() async throws {
        let vhost = try await TestVirtualHost.create()
        let broker = try vhost.broker()
        try await BrokerAdmin.declare(Self.classicDeployment, configuration: broker)
        let publisher = try Publisher(configuration: broker, logger: TestEnvironment.logger)
        func event(_ routingKey: String, _ text: String) throws -> OutgoingMessage {
            try EnvelopeCodec.encode(Envelope(payload: Greeting(text: text)), exchange: Exchange.events, routingKey: routingKey)
        }
        try await publisher.publish(contentsOf: (1...5).map { try event("candle.closed.xbtusd.1d", "candle \($0)") })
        try await publisher.publish(contentsOf: (1...2).map { try event("model.promoted.lstm", "promotion \($0)") })

        // The service of this version cannot declare its quorum queue over the classic one, and says what to do.
        do {
            try await BrokerAdmin.declare(ServiceName.preprocessor.topology, configuration: broker)
            Issue.record("a quorum declaration over a classic queue was accepted")
        } catch let error as BrokerError {
            #expect(error.code == .queueTypeMismatch)
            #expect(error.message.contains("candlecast queues migrate"))
        }

        let target = ServiceName.allCases.map(\.topology).reduce(Topology()) { $0.merged(with: $1) }
        // Another migration running (it holds the lock): refused, nothing moved.
        let (otherMigration, _) = try AMQPSession.connect(broker)
        try otherMigration.declareExclusive(QueueMigration.lockQueue)
        do {
            _ = try await QueueMigration.migrate(target, configuration: broker, logger: TestEnvironment.logger)
            Issue.record("migrated while another migration held the lock")
        } catch let error as BrokerError {
            #expect(error.message.contains("another `candlecast queues migrate` is running"), "\(error)")
        }
        otherMigration.close()
        // An old service still consuming: refused, nothing moved.
        let oldConsumer = try Consumer(
            configuration: broker, options: Consumer.Options(queue: "monitor.events", prefetch: 1), logger: TestEnvironment.logger)
        try await eventually(timeout: .seconds(10), "the old consumer subscribed") { oldConsumer.isConnected }
        do {
            _ = try await QueueMigration.migrate(
                target, retiring: ServiceName.retiredQueues, configuration: broker, logger: TestEnvironment.logger)
            Issue.record("migrated with a consumer attached")
        } catch let error as BrokerError {
            #expect(error.message.hasPrefix("queues with consumers: monitor.events (1);"), "\(error)")
        }
        await oldConsumer.stop()

        let report = try await QueueMigration.migrate(
            target, retiring: ServiceName.retiredQueues, configuration: broker, logger: TestEnvironment.logger)
        #expect(report.migrated["preprocessor.candles"] == 5)
        #expect(report.migrated["predictor.candles"] == 5)
        #expect(report.migrated["monitor.candles"] == 5)
        #expect(report.migrated["monitor.models"] == 2)
        #expect(report.migrated["monitor.events"] == 7)
        #expect(report.migrated["training.jobs"] == 0)
        #expect(report.deleted == ["predictor.models": 2])
        #expect(Set(report.migrated.keys).union(report.unchanged) == Set(target.queues.map(\.name)))

        // Every service of this version declares its topology now; the messages and the bindings are all there.
        for service in ServiceName.allCases { try await BrokerAdmin.declare(service.topology(replica: "r1"), configuration: broker) }
        try await publisher.publish(event("candle.closed.xbtusd.1d", "candle 6"))
        let depths = try await BrokerAdmin.messageCounts(
            queues: ["preprocessor.candles", "predictor.candles", "monitor.candles", "monitor.models", "monitor.events"],
            configuration: broker)
        #expect(
            depths == ["preprocessor.candles": 6, "predictor.candles": 6, "monitor.candles": 6, "monitor.models": 2, "monitor.events": 8])
        // No temporary queue is left, and the retired queue is gone.
        for name in ["preprocessor.candles.migrating", "monitor.events.migrating", "predictor.models"] {
            await #expect(throws: BrokerError.self) { _ = try await BrokerAdmin.messageCount(queue: name, configuration: broker) }
        }
        // The messages are intact, and a consumer of the quorum queue gets them in order.
        let consumer = try Consumer(
            configuration: broker, options: Consumer.Options(queue: "preprocessor.candles", topology: ServiceName.preprocessor.topology),
            logger: TestEnvironment.logger)
        let moved = try await DeliveryCollector(consumer).waitFor(6)
        let texts = try moved.map { try EnvelopeCodec.decode(Greeting.self, from: $0).payload.text }
        #expect(texts == (1...6).map { "candle \($0)" })
        await consumer.stop()

        // Again: nothing to do.
        let again = try await QueueMigration.migrate(
            target, retiring: ServiceName.retiredQueues, configuration: broker, logger: TestEnvironment.logger)
        #expect(again.migrated.isEmpty && again.deleted.isEmpty)
        #expect(Set(again.unchanged) == Set(target.queues.map(\.name)))
        await publisher.close()
        await vhost.delete()
    }

    @Test("a client given several nodes skips the one that is down and connects to the next")
    func severalEndpoints() async throws {
        var broker = try TestEnvironment.broker()
        let live = broker.endpoints[0]
        broker.endpoints = [BrokerConfiguration.Endpoint(host: "127.0.0.1", port: 1), live]
        let (session, index) = try AMQPSession.connect(broker)
        #expect(index == 1 && session.endpoint == live)
        session.close()
        // Preferring the node after the live one wraps around to it as well.
        let (again, second) = try AMQPSession.connect(broker, preferring: 2)
        #expect(second == 1)
        again.close()
        let queue = TestQueue()
        let publisher = try Publisher(
            configuration: broker, options: Publisher.Options(topology: queue.topology), logger: TestEnvironment.logger)
        let collector = DeliveryCollector(
            try Consumer(
                configuration: broker, options: Consumer.Options(queue: queue.queue, topology: queue.topology),
                logger: TestEnvironment.logger))
        try await Self.publish(["across nodes"], to: queue, publisher)
        #expect(try await collector.waitFor(1).count == 1)
        await publisher.close()
        await queue.cleanUp(broker)
        // No node answers: one error that names each.
        broker.endpoints = [
            BrokerConfiguration.Endpoint(host: "127.0.0.1", port: 1), BrokerConfiguration.Endpoint(host: "127.0.0.1", port: 2),
        ]
        do {
            _ = try AMQPSession.connect(broker)
            Issue.record("connected with no node listening")
        } catch let error as BrokerError {
            #expect(error.message.contains("127.0.0.1:1") && error.message.contains("127.0.0.1:2"), "\(error)")
        }
    }
}
