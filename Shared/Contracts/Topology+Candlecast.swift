import Messaging

/// Candlecast's exchanges. Events go through one durable topic exchange; dead letters through another.
public enum Exchange {
    public static let events = "candlecast.events"
    public static let deadLetters = "candlecast.dead-letters"
}

/// The six services. Each consumes from queues named `<service>.<purpose>` and owns one dead-letter queue.
public enum ServiceName: String, Sendable, CaseIterable {
    case ingestor, preprocessor, trainer, registry, predictor, monitor

    /// Dead letters of every queue of this service carry this routing key on the dead-letter exchange.
    public var deadLetterRoutingKey: String { rawValue }
    public var deadLetterQueue: String { "\(rawValue).dead-letters" }
    public var deadLetterRoute: DeadLetterRoute { DeadLetterRoute(exchange: Exchange.deadLetters, routingKey: deadLetterRoutingKey) }
}

/// A queue a service consumes, and the routing keys (topic patterns) that fill it.
public struct QueueSubscription: Sendable, Equatable {
    /// How replicas of one service share the queue.
    public enum Sharing: Sendable, Equatable {
        /// Competing consumers: each message goes to one replica (their handlers are idempotent).
        case competing
        /// One replica at a time consumes, in order; the others stand by (RabbitMQ's single active consumer).
        case singleActive
        /// Every replica has a queue of its own (`<queue>.<replica>`), so every replica sees every message; the
        /// queue is deleted a while after its replica is gone. Quorum too: a replica whose broker node fails
        /// finds its queue, and what arrived meanwhile, on another node.
        case perReplica
    }

    public let queue: String
    public let bindingKeys: [String]
    public let sharing: Sharing

    public init(queue: String, bindingKeys: [String], sharing: Sharing = .competing) {
        self.queue = queue
        self.bindingKeys = bindingKeys
        self.sharing = sharing
    }

    /// How a replica names itself in its queues: `<host>-<pid>`, with anything but letters, digits and `-` as `-`.
    public static func replicaName(host: String, processID: Int32) -> String {
        "\(host)-\(processID)".map { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") ? $0 : "-" }.reduce(into: "") { $0.append($1) }
    }

    /// The queue one replica consumes: its own for `perReplica`, else the shared one.
    public func queueName(replica: String) -> String { sharing == .perReplica ? "\(queue).\(replica)" : queue }
}

/// Routing keys of the message contract. Pairs and intervals are lower-case tokens (`xbtusd`, `1d`).
public enum RoutingKey {
    public static func candleClosed(pair: String, interval: String) -> String { "candle.closed.\(pair).\(interval)" }
    public static func candlesBackfilled(pair: String, interval: String) -> String { "candle.backfilled.\(pair).\(interval)" }
    public static func featuresWindow(pair: String, interval: String) -> String { "features.window.\(pair).\(interval)" }
    public static func datasetReady(pair: String, interval: String) -> String { "dataset.ready.\(pair).\(interval)" }
    public static let trainingJob = "training.job"
    public static let trainingCompleted = "training.completed"
    public static func modelPromoted(name: String) -> String { "model.promoted.\(name)" }
    public static func forecastCreated(pair: String, interval: String) -> String { "forecast.created.\(pair).\(interval)" }
    public static func metric(service: ServiceName, name: String) -> String { "metric.\(service.rawValue).\(name)" }
}

extension ServiceName {
    /// The queues this service consumes (DESIGN.md section 2).
    public var subscriptions: [QueueSubscription] {
        switch self {
        case .ingestor:
            return []
        case .preprocessor:
            // In order, on one replica at a time: a dataset version is cut after every N candles of a series.
            return [
                QueueSubscription(
                    queue: "preprocessor.candles", bindingKeys: ["candle.closed.#", "candle.backfilled.#"], sharing: .singleActive)
            ]
        case .trainer:
            // One work queue shared by every trainer replica (competing consumers).
            return [QueueSubscription(queue: "training.jobs", bindingKeys: [RoutingKey.trainingJob])]
        case .registry:
            return [
                QueueSubscription(queue: "registry.datasets", bindingKeys: ["dataset.ready.#"]),
                QueueSubscription(queue: "registry.training-results", bindingKeys: [RoutingKey.trainingCompleted, "metric.trainer.#"]),
            ]
        case .predictor:
            return [
                QueueSubscription(queue: "predictor.windows", bindingKeys: ["features.window.#"]),
                // Every replica that serves forecasts must swap its champion.
                QueueSubscription(queue: "predictor.models", bindingKeys: ["model.promoted.#"], sharing: .perReplica),
                QueueSubscription(queue: "predictor.candles", bindingKeys: ["candle.closed.#"]),
            ]
        case .monitor:
            // The monitor's counters live in its memory, so one replica at a time counts; a second stands by.
            return [
                QueueSubscription(
                    queue: "monitor.metrics", bindingKeys: ["metric.#", RoutingKey.trainingCompleted], sharing: .singleActive),
                QueueSubscription(queue: "monitor.forecasts", bindingKeys: ["forecast.created.#"], sharing: .singleActive),
                QueueSubscription(
                    queue: "monitor.candles", bindingKeys: ["candle.closed.#", "candle.backfilled.#"], sharing: .singleActive),
                QueueSubscription(queue: "monitor.models", bindingKeys: ["model.promoted.#"], sharing: .singleActive),
                // Every event, only counted: how many each service produced.
                QueueSubscription(queue: "monitor.events", bindingKeys: ["#"], sharing: .singleActive),
            ]
        }
    }

    /// Returns after which the broker dead-letters a message of a service queue (`x-delivery-limit`): the backstop
    /// for a message that kills its consumer's process. Handler failures are dead-lettered earlier, with their
    /// reason, after `CANDLECAST_MAX_DELIVERY_ATTEMPTS`. Part of the queues' declaration, so every replica must agree.
    public static let deliveryLimit = 20

    /// How long a replica's own queue outlives its replica: long enough that a replica cut off from the broker
    /// for hours still finds the promotions it missed.
    public static let replicaQueueExpiry: Duration = .seconds(86_400)

    /// A durable service queue: quorum, dead-lettered at least once to this service's dead-letter queue.
    private func serviceQueue(_ name: String, singleActiveConsumer: Bool = false) -> Topology.Queue {
        Topology.Queue(
            name: name, kind: .quorum(deliveryLimit: Self.deliveryLimit), deadLetterExchange: Exchange.deadLetters,
            deadLetterRoutingKey: deadLetterRoutingKey, singleActiveConsumer: singleActiveConsumer)
    }

    /// No delivery limit: reading the dead letters (and giving them back) must never make the broker drop one.
    private static func deadLetterQueue(of service: ServiceName) -> Topology.Queue {
        Topology.Queue(name: service.deadLetterQueue, kind: .quorum(deliveryLimit: nil))
    }

    /// Everything this service declares at start: both exchanges, its shared queues with their dead-lettering,
    /// its dead-letter queue and the bindings. Queues of one replica are in `topology(replica:)`.
    public var topology: Topology {
        var topology = Topology(
            exchanges: [
                Topology.Exchange(name: Exchange.events, kind: .topic),
                Topology.Exchange(name: Exchange.deadLetters, kind: .topic),
            ],
            queues: [Self.deadLetterQueue(of: self)],
            bindings: [Topology.Binding(queue: deadLetterQueue, exchange: Exchange.deadLetters, routingKey: deadLetterRoutingKey)])
        if self == .monitor {
            // The monitor watches every service's dead-letter queue, so it declares them all (idempotently).
            for service in ServiceName.allCases where service != self {
                topology.queues.append(Self.deadLetterQueue(of: service))
                topology.bindings.append(
                    Topology.Binding(
                        queue: service.deadLetterQueue, exchange: Exchange.deadLetters, routingKey: service.deadLetterRoutingKey))
            }
        }
        for subscription in subscriptions where subscription.sharing != .perReplica {
            topology.queues.append(serviceQueue(subscription.queue, singleActiveConsumer: subscription.sharing == .singleActive))
            for key in subscription.bindingKeys {
                topology.bindings.append(Topology.Binding(queue: subscription.queue, exchange: Exchange.events, routingKey: key))
            }
        }
        return topology
    }

    /// The service's topology plus the queues of one replica (`QueueSubscription.Sharing.perReplica`).
    public func topology(replica: String) -> Topology {
        var topology = self.topology
        for subscription in subscriptions where subscription.sharing == .perReplica {
            let queue = subscription.queueName(replica: replica)
            var replicaQueue = serviceQueue(queue)
            replicaQueue.expiresAfter = Self.replicaQueueExpiry
            topology.queues.append(replicaQueue)
            for key in subscription.bindingKeys {
                topology.bindings.append(Topology.Binding(queue: queue, exchange: Exchange.events, routingKey: key))
            }
        }
        return topology
    }

    /// Queues earlier versions declared that nothing consumes any more: `QueueMigration` deletes them.
    public static let retiredQueues = ["predictor.models"]
}
