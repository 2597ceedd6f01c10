import Foundation
import Logging
import Metrics
import Synchronization

/// Consumes one queue with manual acknowledgements over its own connection and I/O thread.
///
/// Deliveries arrive as Sendable values through `deliveries`. The consumer declares its topology and
/// re-subscribes after every reconnection, so it survives broker restarts; messages that were unacked when
/// a connection died are redelivered by the broker (with `redelivered` set), and acks of deliveries from a
/// dead connection are dropped rather than sent on the new one.
public final class Consumer: Sendable {
    public struct Options: Sendable {
        public var queue: String
        /// Most unacked deliveries the broker hands this consumer at once (basic.qos).
        public var prefetch: UInt16
        public var topology: Topology
        /// Where `Delivery.deadLetter(reason:)` republishes a message, with its reason in a header.
        public var deadLetterRoute: DeadLetterRoute?
        /// What `handle` does with a message whose handler failed.
        public var redelivery: RedeliveryPolicy

        public init(
            queue: String, prefetch: UInt16 = 32, topology: Topology = Topology(), deadLetterRoute: DeadLetterRoute? = nil,
            redelivery: RedeliveryPolicy = RedeliveryPolicy()
        ) {
            self.queue = queue
            self.prefetch = prefetch
            self.topology = topology
            self.deadLetterRoute = deadLetterRoute
            self.redelivery = redelivery
        }
    }

    fileprivate enum Settlement: Sendable {
        case ack
        case reject(requeue: Bool)
    }

    fileprivate struct Command: Sendable {
        let deliveryTag: UInt64
        let generation: UInt64
        let settlement: Settlement
    }

    fileprivate struct SharedState {
        var commands: [Command] = []
        var stopping = false
        var connected = false
        /// The connection generation whose delivery tags are valid now.
        var generation: UInt64 = 0
        var connections = 0
        var hasStopped = false
        var stopped: [CheckedContinuation<Void, Never>] = []
    }

    public let deliveries: AsyncStream<Delivery>
    let options: Options
    let deadLetterPublisher: Publisher?
    let logger: Logger
    private let continuation: AsyncStream<Delivery>.Continuation
    private let shared = Mutex(SharedState())
    private let wake: WakeSignal
    /// Failures per message, for the redelivery budget of `handle`.
    let attempts = AttemptLedger()

    /// - Parameter deadLetterPublisher: publishes the dead letters of `Delivery.deadLetter(reason:)`.
    public init(configuration: BrokerConfiguration, options: Options, deadLetterPublisher: Publisher? = nil, logger: Logger) throws {
        self.options = options
        self.deadLetterPublisher = deadLetterPublisher
        var logger = logger
        logger[metadataKey: "queue"] = "\(options.queue)"
        self.logger = logger
        self.wake = try WakeSignal()
        // Unbounded is bounded in practice: the broker never has more than `prefetch` unacked deliveries out.
        (deliveries, continuation) = AsyncStream.makeStream(of: Delivery.self)
        let loop = ConsumerLoop(configuration: configuration, options: options, logger: logger)
        startIOThread(name: "amqp-consumer") { [self] in loop.run(owner: self) }
    }

    /// Whether the consumer is connected and subscribed.
    public var isConnected: Bool { shared.withLock { $0.connected } }

    /// Stops consuming: pending acks are sent, the connection is closed (unacked deliveries go back to the
    /// queue) and `deliveries` finishes.
    public func stop() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let alreadyStopped = shared.withLock { state -> Bool in
                state.stopping = true
                if state.hasStopped { return true }
                state.stopped.append(continuation)
                return false
            }
            if alreadyStopped { continuation.resume() } else { wake.signal() }
        }
    }

    fileprivate func settle(_ delivery: Delivery, _ settlement: Settlement) {
        shared.withLock {
            $0.commands.append(Command(deliveryTag: delivery.deliveryTag, generation: delivery.generation, settlement: settlement))
        }
        wake.signal()
    }

    fileprivate func takeCommands() -> (commands: [Command], stopping: Bool) {
        shared.withLock { state in
            defer { state.commands.removeAll(keepingCapacity: true) }
            return (state.commands, state.stopping)
        }
    }

    /// Whether settling `delivery` still reaches the broker: the consumer runs, on the connection that delivered it.
    func isCurrent(_ delivery: Delivery) -> Bool {
        shared.withLock { $0.connected && !$0.stopping && $0.generation == delivery.generation }
    }

    fileprivate func setConnected(_ connected: Bool, generation: UInt64) {
        shared.withLock { state in
            state.connected = connected
            state.generation = generation
            if connected { state.connections += 1 }
        }
    }

    /// How many connections were opened so far: 1 means no reconnection happened.
    public var connectionCount: Int { shared.withLock { $0.connections } }

    fileprivate func waitForWork(socket: Int32?, timeout: Duration) { wake.wait(socket: socket, timeout: timeout) }

    fileprivate func yield(_ delivery: Delivery) { continuation.yield(delivery) }

    fileprivate func finish() {
        continuation.finish()
        let waiters = shared.withLock { state in
            state.hasStopped = true
            state.connected = false
            defer { state.stopped.removeAll() }
            return state.stopped
        }
        for waiter in waiters { waiter.resume() }
    }
}

/// Where dead letters go: the dead-letter exchange and the routing key of this service's dead-letter queue.
public struct DeadLetterRoute: Sendable, Equatable {
    public var exchange: String
    public var routingKey: String
    public init(exchange: String, routingKey: String) {
        self.exchange = exchange
        self.routingKey = routingKey
    }
}

/// Header names that dead letters carry.
public enum DeadLetterHeader {
    public static let reason = "x-candlecast-dead-letter-reason"
    public static let originalExchange = "x-candlecast-original-exchange"
    public static let originalRoutingKey = "x-candlecast-original-routing-key"
    public static let queue = "x-candlecast-queue"
}

/// One message delivered to a consumer. Settle it exactly once: `ack`, `reject` or `deadLetter`.
public struct Delivery: Sendable {
    public let body: [UInt8]
    public let properties: MessageProperties
    public let exchange: String
    public let routingKey: String
    /// The broker delivered this message before (to this or another consumer) without an ack.
    public let redelivered: Bool
    let deliveryTag: UInt64
    /// Which connection of the consumer received it: delivery tags are only valid on that one.
    let generation: UInt64
    let consumer: Consumer

    /// The effect of this message is durable: the broker may forget it.
    public func ack() { consumer.settle(self, .ack) }

    /// Gives the message back (`requeue`) or lets the broker dead-letter it through the queue's
    /// `x-dead-letter-exchange` (its `x-death` header then says `rejected`).
    public func reject(requeue: Bool) { consumer.settle(self, .reject(requeue: requeue)) }

    /// Moves the message to the dead-letter queue with a reason header, then acks it. If the dead letter
    /// cannot be published, the message is rejected without requeue so the broker dead-letters it instead:
    /// it is never simply dropped.
    public func deadLetter(reason: String) async {
        let consumer = self.consumer
        guard let route = consumer.options.deadLetterRoute, let publisher = consumer.deadLetterPublisher else {
            consumer.logger.warning("dead-lettering through the broker (no dead-letter route)", metadata: ["reason": "\(reason)"])
            reject(requeue: false)
            return
        }
        var properties = self.properties
        properties.headers[DeadLetterHeader.reason] = .string(String(reason.prefix(1000)))
        properties.headers[DeadLetterHeader.originalExchange] = .string(exchange)
        properties.headers[DeadLetterHeader.originalRoutingKey] = .string(routingKey)
        properties.headers[DeadLetterHeader.queue] = .string(consumer.options.queue)
        properties.deliveryMode = MessageProperties.persistentDeliveryMode
        do {
            try await publisher.publish(
                OutgoingMessage(exchange: route.exchange, routingKey: route.routingKey, body: body, properties: properties))
            deadLettered.increment()
            consumer.logger.warning(
                "dead-lettered a message",
                metadata: ["reason": "\(reason)", "routing_key": "\(routingKey)", "message.id": "\(properties.messageID ?? "-")"])
            ack()
        } catch {
            consumer.logger.error("cannot publish a dead letter; rejecting instead", metadata: ["error": "\(error)"])
            reject(requeue: false)
        }
    }

    private var deadLettered: Counter {
        Counter(label: "candlecast_messages_dead_lettered_total", dimensions: [("queue", consumer.options.queue)])
    }
}

/// The state that only the consumer's I/O thread touches.
private final class ConsumerLoop: @unchecked Sendable {
    // @unchecked: handed to exactly one thread at start and never touched elsewhere afterwards.
    private let configuration: BrokerConfiguration
    private let options: Consumer.Options
    private let logger: Logger
    private var session: AMQPSession?
    /// The broker node tried first on the next connect: the one after the node whose connection was lost.
    private var preferredNode = 0
    private var generation: UInt64 = 0
    private var backoff: Backoff
    private let received: Counter
    private let reconnections = Counter(label: "candlecast_broker_reconnections_total", dimensions: [("role", "consumer")])

    init(configuration: BrokerConfiguration, options: Consumer.Options, logger: Logger) {
        self.configuration = configuration
        self.options = options
        self.logger = logger
        self.backoff = Backoff(configuration.reconnectBackoff)
        self.received = Counter(label: "candlecast_messages_received_total", dimensions: [("queue", options.queue)])
    }

    func run(owner: Consumer) {
        while true {
            let (commands, stopping) = owner.takeCommands()
            if let session {
                do {
                    try apply(commands, on: session)
                } catch {
                    connectionLost(owner: owner, error: error)
                    continue
                }
            }
            if stopping { break }
            guard let session = connectedSession(owner: owner) else {
                owner.waitForWork(socket: nil, timeout: backoff.advance())
                continue
            }
            do {
                if !session.hasBufferedInput {
                    owner.waitForWork(socket: session.socketDescriptor, timeout: pollInterval)
                }
                while let event = try session.nextEvent(timeout: .microseconds(1)) {
                    switch event {
                    case .delivery(let message):
                        received.increment()
                        owner.yield(
                            Delivery(
                                body: message.body, properties: message.properties, exchange: message.exchange,
                                routingKey: message.routingKey, redelivered: message.redelivered,
                                deliveryTag: message.deliveryTag, generation: generation, consumer: owner))
                    case .consumerCancelled:
                        throw BrokerError(.connectionLost, "the broker cancelled the consumer (queue deleted?)")
                    default:
                        break
                    }
                }
            } catch {
                connectionLost(owner: owner, error: error)
            }
        }
        session?.close()
        session = nil
        owner.finish()
        logger.debug("consumer stopped")
    }

    private var pollInterval: Duration {
        configuration.heartbeatSeconds > 0 ? min(.seconds(1), .seconds(configuration.heartbeatSeconds) / 2) : .seconds(1)
    }

    private func apply(_ commands: [Consumer.Command], on session: AMQPSession) throws {
        for command in commands {
            guard command.generation == generation else {
                // The connection that delivered it is gone; the broker has already requeued the message.
                logger.debug("dropping a settlement from a previous connection", metadata: ["delivery_tag": "\(command.deliveryTag)"])
                continue
            }
            switch command.settlement {
            case .ack: try session.ack(command.deliveryTag)
            case .reject(let requeue): try session.reject(command.deliveryTag, requeue: requeue)
            }
        }
    }

    private func connectedSession(owner: Consumer) -> AMQPSession? {
        if let session { return session }
        do {
            let (session, node) = try AMQPSession.connect(configuration, preferring: preferredNode)
            do {
                try session.declare(options.topology)
                try session.consume(queue: options.queue, prefetch: options.prefetch, consumerTag: "")
            } catch {
                session.close()
                // This node let the client in but refused the rest: the next attempt starts at the next node.
                preferredNode = node + 1
                throw error
            }
            self.session = session
            preferredNode = node
            generation += 1
            backoff.reset()
            owner.setConnected(true, generation: generation)
            logger.info("consumer subscribed", metadata: ["broker.node": "\(session.endpoint)", "prefetch": "\(options.prefetch)"])
            return session
        } catch {
            logger.warning("consumer cannot subscribe", metadata: ["error": "\(error)"])
            return nil
        }
    }

    private func connectionLost(owner: Consumer, error: any Error) {
        if let session { preferredNode = configuration.endpoints.firstIndex(of: session.endpoint).map { $0 + 1 } ?? 0 }
        logger.warning(
            "consumer lost its connection", metadata: ["error": "\(error)", "broker.node": "\(session.map { "\($0.endpoint)" } ?? "-")"])
        session?.abandon()
        session = nil
        generation += 1
        owner.setConnected(false, generation: generation)
        reconnections.increment()
    }
}
