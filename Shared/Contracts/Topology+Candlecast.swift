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
    public let queue: String
    public let bindingKeys: [String]
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
            return [QueueSubscription(queue: "preprocessor.candles", bindingKeys: ["candle.closed.#", "candle.backfilled.#"])]
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
                QueueSubscription(queue: "predictor.models", bindingKeys: ["model.promoted.#"]),
                QueueSubscription(queue: "predictor.candles", bindingKeys: ["candle.closed.#"]),
            ]
        case .monitor:
            return [
                QueueSubscription(queue: "monitor.metrics", bindingKeys: ["metric.#", RoutingKey.trainingCompleted]),
                QueueSubscription(queue: "monitor.forecasts", bindingKeys: ["forecast.created.#"]),
                QueueSubscription(queue: "monitor.candles", bindingKeys: ["candle.closed.#", "candle.backfilled.#"]),
                QueueSubscription(queue: "monitor.models", bindingKeys: ["model.promoted.#"]),
                // Every event, only counted: how many each service produced.
                QueueSubscription(queue: "monitor.events", bindingKeys: ["#"]),
            ]
        }
    }

    /// Everything this service declares at start: both exchanges, its queues with their dead-lettering, its
    /// dead-letter queue and the bindings.
    public var topology: Topology {
        var topology = Topology(
            exchanges: [
                Topology.Exchange(name: Exchange.events, kind: .topic),
                Topology.Exchange(name: Exchange.deadLetters, kind: .topic),
            ],
            queues: [Topology.Queue(name: deadLetterQueue)],
            bindings: [Topology.Binding(queue: deadLetterQueue, exchange: Exchange.deadLetters, routingKey: deadLetterRoutingKey)])
        if self == .monitor {
            // The monitor watches every service's dead-letter queue, so it declares them all (idempotently).
            for service in ServiceName.allCases where service != self {
                topology.queues.append(Topology.Queue(name: service.deadLetterQueue))
                topology.bindings.append(
                    Topology.Binding(
                        queue: service.deadLetterQueue, exchange: Exchange.deadLetters, routingKey: service.deadLetterRoutingKey))
            }
        }
        for subscription in subscriptions {
            topology.queues.append(
                Topology.Queue(
                    name: subscription.queue, deadLetterExchange: Exchange.deadLetters, deadLetterRoutingKey: deadLetterRoutingKey))
            for key in subscription.bindingKeys {
                topology.bindings.append(Topology.Binding(queue: subscription.queue, exchange: Exchange.events, routingKey: key))
            }
        }
        return topology
    }
}
