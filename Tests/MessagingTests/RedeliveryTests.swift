import Foundation
import Synchronization
import TestSupport
import Testing

@testable import Messaging

/// Bounded redelivery against the real RabbitMQ: a message whose handler keeps failing ends in the dead-letter
/// queue with its last error; a transient failure is retried without using the budget.
@Suite("Bounded redelivery against RabbitMQ", .serialized)
struct RedeliveryTests {
    struct SQLConstraintViolation: Error, CustomStringConvertible {
        var description: String { "SQLSTATE 23514: check constraint violated" }
    }

    final class Attempts: Sendable {
        private let counts = Mutex<[String: Int]>([:])
        func record(_ text: String) -> Int {
            counts.withLock {
                $0[text, default: 0] += 1
                return $0[text]!
            }
        }
        func count(_ text: String) -> Int { counts.withLock { $0[text] ?? 0 } }
    }

    /// A throwaway queue, a consumer handling `Greeting`s under a policy, a publisher and a collector of the
    /// dead letters: what every test here sets up.
    struct Rig {
        let broker: BrokerConfiguration
        let queue = TestQueue()
        let publisher: Publisher
        let consumer: Consumer
        let handling: Task<Void, Never>
        let deadLetters: Consumer
        let deadCollector: DeliveryCollector

        init(policy: RedeliveryPolicy, _ handler: @escaping @Sendable (Envelope<Greeting>, Delivery) async throws -> Void) throws {
            let logger = TestEnvironment.logger
            broker = try TestEnvironment.broker()
            publisher = try Publisher(configuration: broker, options: Publisher.Options(topology: queue.topology), logger: logger)
            let consumer = try Consumer(
                configuration: broker,
                options: Consumer.Options(
                    queue: queue.queue, topology: queue.topology, deadLetterRoute: queue.deadLetterRoute, redelivery: policy),
                deadLetterPublisher: publisher, logger: logger)
            self.consumer = consumer
            handling = Task { await consumer.handle(Greeting.self, handler) }
            deadLetters = try Consumer(
                configuration: broker, options: Consumer.Options(queue: queue.deadLetterQueue, topology: queue.topology), logger: logger)
            deadCollector = DeliveryCollector(deadLetters)
        }

        func publish(_ texts: String...) async throws {
            try await publisher.publish(
                contentsOf: texts.map {
                    try EnvelopeCodec.encode(Envelope(payload: Greeting(text: $0)), exchange: queue.exchange, routingKey: queue.routingKey)
                })
        }

        func tearDown() async {
            await consumer.stop()
            await handling.value
            await deadLetters.stop()
            await publisher.close()
            await queue.cleanUp(broker)
        }
    }

    @Test("a handler that keeps failing: 5 attempts, then the dead-letter queue with the last error; valid work goes on")
    func failingHandlerIsDeadLetteredAfterItsBudget() async throws {
        let attempts = Attempts()
        let handled = HandledPayloads()
        let rig = try Rig(policy: RedeliveryPolicy(maximumAttempts: 5, retryDelay: .milliseconds(20))) { envelope, _ in
            let attempt = attempts.record(envelope.payload.text)
            if envelope.payload.text == "always fails" { throw SQLConstraintViolation() }
            // Fails twice, then succeeds: under the budget, so it is handled, not dead-lettered.
            if envelope.payload.text == "fails twice", attempt <= 2 { throw SQLConstraintViolation() }
            handled.append(envelope.payload.text)
        }
        try await rig.publish("always fails", "fails twice", "fine")

        let dead = try await rig.deadCollector.waitFor(1)
        #expect(String(decoding: dead[0].body, as: UTF8.self).contains("always fails"))
        #expect(
            dead[0].properties.headers[DeadLetterHeader.reason]?.stringValue
                == "handler failed 5 times; last error: SQLSTATE 23514: check constraint violated")
        try await eventually("the other two handled") { handled.values.count == 2 }
        #expect(Set(handled.values) == ["fails twice", "fine"])
        #expect(attempts.count("always fails") == 5)
        #expect(attempts.count("fails twice") == 3)
        // Nothing else reached the dead-letter queue, and nothing is left in the work queue.
        try await Task.sleep(for: .milliseconds(300))
        #expect(rig.deadCollector.bodies.count == 1)
        #expect(try await BrokerAdmin.messageCount(queue: rig.queue.queue, configuration: rig.broker) == 0)
        await rig.tearDown()
    }

    @Test("a transient failure (database unreachable) is retried past the budget with backoff, then handled")
    func transientFailuresDoNotUseTheBudget() async throws {
        let attempts = Attempts()
        let handled = HandledPayloads()
        let started = ContinuousClock.now
        let policy = RedeliveryPolicy(maximumAttempts: 2, retryDelay: .milliseconds(10), maximumTransientDelay: .milliseconds(80))
        let rig = try Rig(policy: policy) { envelope, _ in
            // Six transient failures: three times the budget of 2.
            if attempts.record(envelope.payload.text) <= 6 { throw TransientFailure("database unreachable") }
            handled.append(envelope.payload.text)
        }
        try await rig.publish("patient")

        try await eventually("the message handled after the outage") { handled.values == ["patient"] }
        let elapsed = ContinuousClock.now - started
        #expect(attempts.count("patient") == 7)
        // Backoff 10, 20, 40, 80, 80, 80 ms: at least 310 ms passed.
        #expect(elapsed >= .milliseconds(300))
        #expect(rig.deadCollector.bodies.isEmpty)
        await rig.tearDown()
    }

    @Test("the attempt ledger stays bounded: past its capacity the oldest entries go, and nothing traps")
    func attemptLedgerIsBounded() {
        let ledger = AttemptLedger(capacity: 100)
        for key in 0..<10_000 { _ = ledger.recordFailure("m\(key)") }
        #expect(ledger.recordFailure("m9999") == 2, "the newest entries are kept")
        #expect(ledger.recordFailure("m0") == 1, "the oldest entries were evicted")
        ledger.forget("m249")
        #expect(ledger.recordFailure("m249") == 1)
    }

    @Test("a permanent failure is dead-lettered at once")
    func permanentFailureIsDeadLetteredAtOnce() async throws {
        let attempts = Attempts()
        let rig = try Rig(policy: RedeliveryPolicy()) { envelope, _ in
            _ = attempts.record(envelope.payload.text)
            throw PermanentFailure("model v9999 is not in the registry")
        }
        try await rig.publish("unknown")
        let dead = try await rig.deadCollector.waitFor(1)
        #expect(dead[0].properties.headers[DeadLetterHeader.reason]?.stringValue == "model v9999 is not in the registry")
        #expect(attempts.count("unknown") == 1)
        await rig.tearDown()
    }

    @Test(
        """
        a backlog is handled in batches; a batch holding a failing message is handled one at a time, so only that message uses \
        its budget and is dead-lettered, a malformed one is dead-lettered alone, every other one is committed exactly once
        """
    )
    func backlogInBatches() async throws {
        let logger = TestEnvironment.logger
        let broker = try TestEnvironment.broker()
        let queue = TestQueue()
        let publisher = try Publisher(configuration: broker, options: Publisher.Options(topology: queue.topology), logger: logger)
        let texts = (0..<60).map { $0 == 37 ? "poison" : "candle \($0)" }
        // The backlog waits on the queue before the consumer starts, as after an outage.
        try await publisher.publish(
            contentsOf: try texts.map {
                try EnvelopeCodec.encode(Envelope(payload: Greeting(text: $0)), exchange: queue.exchange, routingKey: queue.routingKey)
            } + [queue.message("{not json", type: Greeting.messageType)])
        let committed = SharedList<String>()
        let batchSizes = SharedList<Int>()
        let poisonAttempts = Attempts()
        let consumer = try Consumer(
            configuration: broker,
            options: Consumer.Options(
                queue: queue.queue, prefetch: 32, topology: queue.topology, deadLetterRoute: queue.deadLetterRoute,
                redelivery: RedeliveryPolicy(maximumAttempts: 3, retryDelay: .milliseconds(10))),
            deadLetterPublisher: publisher, logger: logger)
        let handling = Task {
            await consumer.handleBatches(upTo: 16, decode: { try EnvelopeCodec.decode(Greeting.self, from: $0).payload.text }) { batch in
                batchSizes.append(batch.count)
                // One transaction: all of the batch or none of it.
                if batch.contains("poison") {
                    _ = poisonAttempts.record("poison")
                    throw SQLConstraintViolation()
                }
                for text in batch { committed.append(text) }
            }
        }
        let deadLetters = try Consumer(
            configuration: broker, options: Consumer.Options(queue: queue.deadLetterQueue, topology: queue.topology), logger: logger)
        let deadCollector = DeliveryCollector(deadLetters)

        let dead = try await deadCollector.waitFor(2)
        try await eventually("the 59 good messages committed") { committed.values.count >= 59 }
        try await Task.sleep(for: .milliseconds(300))
        #expect(committed.values.count == 59)
        #expect(Set(committed.values) == Set(texts).subtracting(["poison"]))
        let reasons = dead.compactMap { $0.properties.headers[DeadLetterHeader.reason]?.stringValue }
        #expect(reasons.contains("handler failed 3 times; last error: SQLSTATE 23514: check constraint violated"))
        #expect(reasons.count == 2, "the malformed message has its decoding error as the reason: \(reasons)")
        // Three attempts alone, after the batch that held it when that batch was more than it (a requeued message may
        // also land in another batch first); a batch of the poison alone already counts as its first attempt.
        #expect(poisonAttempts.count("poison") >= 3)
        #expect(batchSizes.values.max() ?? 0 > 1, "\(batchSizes.values)")
        #expect(batchSizes.values.allSatisfy { $0 <= 16 })
        #expect(deadCollector.bodies.count == 2)
        #expect(try await BrokerAdmin.messageCount(queue: queue.queue, configuration: broker) == 0)
        await consumer.stop()
        await handling.value
        await deadLetters.stop()
        await publisher.close()
        await queue.cleanUp(broker)
    }
}
