import Foundation
import Logging

/// Moves queues that an earlier deployment declared as classic queues to the type the topology declares
/// (quorum), keeping their messages and bindings, and deletes retired queues. A queue cannot change type in
/// place, so each one goes through a temporary queue:
///
/// 1. `<queue>.migrating` is declared as the target type and bound like the queue, then the queue is unbound:
///    from then on new messages reach only the temporary queue;
/// 2. the queue's messages are moved to the temporary queue (each one published with a confirm before it is
///    acked), and the empty classic queue is deleted;
/// 3. the queue is declared again as the target type and bound, the temporary queue unbound, its messages
///    moved back, and it is deleted.
///
/// A message is never only in flight: at worst (a crash between a confirm and its ack) it is in both queues,
/// which the consumers' idempotence absorbs. Consumers must be stopped first: a queue that has one is refused.
/// Running it again is harmless: queues already of the right type are left alone, and a temporary queue left
/// by an interrupted run is drained into its queue.
public enum QueueMigration {
    public struct Report: Sendable, Equatable {
        /// Queues moved to their declared type, with the messages they held.
        public var migrated: [String: Int] = [:]
        /// Queues that already had their declared type (or did not exist and were declared).
        public var unchanged: [String] = []
        /// Retired queues deleted, with the messages they held.
        public var deleted: [String: Int] = [:]
    }

    public static let temporarySuffix = ".migrating"
    /// The exclusive queue a running migration holds.
    public static let lockQueue = "candlecast.queues-migrate.lock"

    public static func migrate(
        _ topology: Topology, retiring retired: [String] = [], configuration: BrokerConfiguration, logger: Logger
    ) async throws -> Report {
        try await withCheckedThrowingContinuation { continuation in
            startIOThread(name: "amqp-migration") {
                continuation.resume(with: Result { try run(topology, retired: retired, configuration: configuration, logger: logger) })
            }
        }
    }

    private static func run(_ topology: Topology, retired: [String], configuration: BrokerConfiguration, logger: Logger) throws
        -> Report
    {
        var report = Report()
        // A failed declaration closes the channel: each probe gets a connection of its own.
        func session() throws -> AMQPSession { try AMQPSession.connect(configuration).0 }
        // One migration at a time: two would each get messages the other's deletion could take with it.
        // No heartbeats on the lock's connection: it stays idle (unread) for the whole run.
        var lockConfiguration = configuration
        lockConfiguration.heartbeatSeconds = 0
        let lock = try AMQPSession.connect(lockConfiguration).0
        do {
            try lock.declareExclusive(lockQueue)
        } catch let error as BrokerError where error.message.contains("405 RESOURCE_LOCKED") {
            lock.abandon()
            throw BrokerError(.brokerRejected, "another `candlecast queues migrate` is running on this virtual host; nothing was changed")
        } catch {
            lock.abandon()
            throw error
        }
        defer { lock.close() }
        let exchanges = Topology(exchanges: topology.exchanges)
        try withClosing(session()) { try $0.declare(exchanges) }
        // Nothing is touched while any of the queues has a consumer: the services must be stopped first.
        var consumed: [String] = []
        for name in topology.queues.map(\.name) + retired {
            let consumers = try withClosing(session()) { try $0.queueState(name)?.consumers ?? 0 }
            if consumers > 0 { consumed.append("\(name) (\(consumers))") }
        }
        guard consumed.isEmpty else {
            throw BrokerError(
                .brokerRejected,
                "queues with consumers: \(consumed.joined(separator: ", ")); stop the services before migrating their queues; "
                    + "nothing was changed"
            )
        }

        for queue in topology.queues {
            let bindings = topology.bindings.filter { $0.queue == queue.name }
            let declared = Topology(queues: [queue], bindings: bindings)
            let probe = try session()
            do {
                try probe.declare(declared)
                probe.close()
            } catch let error as BrokerError where error.code == .queueTypeMismatch {
                probe.abandon()
                let moved = try migrate(queue, bindings: bindings, session: session, logger: logger)
                report.migrated[queue.name] = moved
                continue
            } catch {
                probe.abandon()
                throw error
            }
            // Declared as wanted; a temporary queue left by an interrupted run still holds messages.
            let temporary = queue.name + temporarySuffix
            if try withClosing(session(), { try $0.queueState(temporary) }) != nil {
                try withClosing(session()) { session in
                    for binding in bindings {
                        try session.unbind(Topology.Binding(queue: temporary, exchange: binding.exchange, routingKey: binding.routingKey))
                    }
                }
                let moved = try drain(temporary, into: queue.name, session: session)
                logger.notice(
                    "drained a temporary queue left by an interrupted migration",
                    metadata: ["queue": "\(queue.name)", "messages": "\(moved)"])
                report.migrated[queue.name] = moved
            } else {
                report.unchanged.append(queue.name)
            }
        }

        for name in retired {
            guard let state = try withClosing(session(), { try $0.queueState(name) }) else { continue }
            guard state.consumers == 0 else {
                throw BrokerError(
                    .brokerRejected, "the retired queue \(name) still has \(state.consumers) consumer(s): stop the old services first")
            }
            try withClosing(session()) { try $0.delete(queue: name) }
            report.deleted[name] = state.messages
            logger.notice("deleted a retired queue", metadata: ["queue": "\(name)", "messages": "\(state.messages)"])
        }
        return report
    }

    /// The three steps above for one queue; returns how many messages it held.
    private static func migrate(
        _ queue: Topology.Queue, bindings: [Topology.Binding], session: () throws -> AMQPSession, logger: Logger
    ) throws -> Int {
        guard let state = try withClosing(session(), { try $0.queueState(queue.name) }) else { return 0 }
        guard state.consumers == 0 else {
            throw BrokerError(
                .brokerRejected, "\(queue.name) has \(state.consumers) consumer(s): stop the services before migrating their queues")
        }
        var temporary = queue
        temporary.name = queue.name + temporarySuffix
        // basic.get, which the move uses, is refused on a queue with a single active consumer.
        temporary.singleActiveConsumer = false
        let temporaryBindings = bindings.map { Topology.Binding(queue: temporary.name, exchange: $0.exchange, routingKey: $0.routingKey) }
        // Two connections: a channel that deleted a queue must not publish to the queue declared again under its
        // name (RabbitMQ 3.10's channel keeps the old queue's process and fails with 541 INTERNAL_ERROR).
        try withClosing(session()) { session in
            try session.declare(Topology(queues: [temporary], bindings: temporaryBindings))
            for binding in bindings { try session.unbind(binding) }
        }
        let moved = try drain(queue.name, into: temporary.name, session: session)
        try withClosing(session()) { session in
            try session.declare(Topology(queues: [queue], bindings: bindings))
            for binding in temporaryBindings { try session.unbind(binding) }
        }
        _ = try drain(temporary.name, into: queue.name, session: session)
        logger.notice("migrated a queue", metadata: ["queue": "\(queue.name)", "messages": "\(moved)", "type": "\(queue.kind)"])
        return moved
    }

    /// Moves every message of `source` (no longer bound) to `target`, then deletes `source` once a passive
    /// declaration finds it empty: a message routed to it just before its unbinding is moved on the next round
    /// rather than deleted with it. (Quorum queues refuse queue.delete's if-empty flag.) Returns how many were moved.
    private static func drain(_ source: String, into target: String, session: () throws -> AMQPSession) throws -> Int {
        try withClosing(session()) { session in
            var moved = 0
            for _ in 1...10 {
                moved += try move(from: source, to: target, session: session)
                guard try session.queueState(source)?.messages ?? 0 == 0 else { continue }
                try session.delete(queue: source)
                return moved
            }
            throw BrokerError(
                .brokerRejected, "\(source) keeps receiving messages after it was unbound; is something publishing to it directly?")
        }
    }

    /// Moves every message of `source` to `target` through the default exchange, each confirmed before its ack.
    /// Returns how many were moved.
    private static func move(from source: String, to target: String, session: AMQPSession) throws -> Int {
        try session.enablePublisherConfirmsOnce()
        var moved = 0
        while let message = try session.get(queue: source) {
            var properties = message.properties
            properties.deliveryMode = MessageProperties.persistentDeliveryMode
            // The default exchange routes by queue name: keep where the message first went, for its dead letter.
            properties.headers["x-candlecast-migrated-from"] = .string(source)
            if properties.headers[DeadLetterHeader.originalRoutingKey] == nil && !message.routingKey.isEmpty
                && message.exchange != ""
            {
                properties.headers[DeadLetterHeader.originalExchange] = .string(message.exchange)
                properties.headers[DeadLetterHeader.originalRoutingKey] = .string(message.routingKey)
            }
            try session.publish(OutgoingMessage(exchange: "", routingKey: target, body: message.body, properties: properties))
            try session.awaitConfirm(session.lastPublishTag, timeout: .seconds(30))
            try session.ack(message.deliveryTag)
            moved += 1
        }
        return moved
    }

    private static func withClosing<T>(_ session: AMQPSession, _ body: (AMQPSession) throws -> T) throws -> T {
        do {
            let result = try body(session)
            session.close()
            return result
        } catch {
            session.abandon()
            throw error
        }
    }
}
