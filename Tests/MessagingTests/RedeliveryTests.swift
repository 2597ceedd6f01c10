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
}
