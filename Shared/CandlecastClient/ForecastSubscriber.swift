@_exported import Contracts
import Logging
import Messaging

@_exported import struct Messaging.BrokerConfiguration

/// Receives Candlecast's forecasts (`forecast.created` events) as typed values: `ForecastCreated` (from Contracts,
/// re-exported) with the point forecast `predictedClose`, its 80 % and 95 % ranges `intervals` (`interval(0.8)`,
/// `interval(0.95)`) and `probabilityUp`, P(close above `lastClose`). The last two are optional: nil for a forecast of
/// a model without calibration, and from a predictor older than these fields (the same schema version 1, so this
/// library reads both old and new forecasts). Every forecast is validated on receipt: the intervals come in
/// `IntervalLevels.all` order, nested, and the probability is in 0...1 (else it goes to the dead-letter queue).
///
/// Delivery is at-least-once: a forecast is acknowledged only after your handler returns, so one that was
/// being handled when your program stopped comes again. A forecast is identified by pair, interval,
/// target open time and model version; make your handling idempotent on those four.
///
///     let broker = try BrokerConfiguration(url: "amqp://me@broker:5672/", password: secret)
///     let subscriber = try ForecastSubscriber(broker: broker, options: .init(queue: "my-app.forecasts", pair: "XBTUSD"))
///     await subscriber.forecasts { forecast in
///         print(forecast.pair, forecast.predictedClose, forecast.interval(0.8) as Any, forecast.probabilityUp as Any)
///     }
public final class ForecastSubscriber: Sendable {
    public struct Options: Sendable {
        /// A durable queue of your own: forecasts wait in it while your program is down. nil: a temporary
        /// queue, deleted by the broker a minute after the subscriber goes away (for tailing).
        public var queue: String?
        /// Only this pair (e.g. "XBTUSD"); nil for every pair.
        public var pair: String?
        /// Only this interval; nil for every interval.
        public var interval: CandleInterval?
        /// Forecasts delivered ahead of your handler.
        public var prefetch: UInt16
        /// Your durable queue is a quorum queue, replicated over a cluster's nodes, so it survives the loss of one.
        /// false: a classic queue (one node's), as versions before quorum queues declared it. A temporary queue is
        /// always classic.
        public var replicated: Bool

        public init(
            queue: String? = nil, pair: String? = nil, interval: CandleInterval? = nil, prefetch: UInt16 = 16, replicated: Bool = true
        ) {
            self.queue = queue
            self.pair = pair
            self.interval = interval
            self.prefetch = prefetch
            self.replicated = replicated
        }
    }

    /// The queue the subscriber reads; its undecodable messages go to `<queue>.dead-letters`.
    public let queue: String
    private let consumer: Consumer

    public init(broker: BrokerConfiguration, options: Options = Options(), logger: Logger = Logger(label: "candlecast.client")) throws {
        let temporary = options.queue == nil
        queue = options.queue ?? "candlecast.client.\(UInt64.random(in: 0...UInt64.max))"
        let expiry: Duration? = temporary ? .seconds(60) : nil
        let kind: Topology.Queue.Kind = !temporary && options.replicated ? .quorum(deliveryLimit: ServiceName.deliveryLimit) : .classic
        let deadLetters = queue + ".dead-letters"
        let routingKey = RoutingKey.forecastCreated(pair: options.pair.map(pairToken) ?? "*", interval: options.interval?.name ?? "*")
        let topology = Topology(
            exchanges: [
                Topology.Exchange(name: Exchange.events, kind: .topic), Topology.Exchange(name: Exchange.deadLetters, kind: .topic),
            ],
            queues: [
                Topology.Queue(
                    name: queue, kind: kind, deadLetterExchange: Exchange.deadLetters, deadLetterRoutingKey: deadLetters,
                    expiresAfter: expiry),
                Topology.Queue(name: deadLetters, kind: kind, expiresAfter: expiry),
            ],
            bindings: [
                Topology.Binding(queue: queue, exchange: Exchange.events, routingKey: routingKey),
                Topology.Binding(queue: deadLetters, exchange: Exchange.deadLetters, routingKey: deadLetters),
            ])
        // No dead-letter publisher: a forecast that does not decode is rejected and the broker moves it to
        // the queue's dead-letter queue (x-dead-letter-exchange), so nothing is dropped.
        consumer = try Consumer(
            configuration: broker, options: Consumer.Options(queue: queue, prefetch: options.prefetch, topology: topology), logger: logger)
    }

    /// True while connected to the broker (it reconnects by itself).
    public var isConnected: Bool { consumer.isConnected }

    /// Calls `handler` for every forecast until `stop()`. A handler that throws gets the forecast again a
    /// second later.
    public func forecasts(_ handler: @escaping @Sendable (ForecastCreated) async throws -> Void) async {
        await consumer.handle(ForecastCreated.self) { envelope, _ in try await handler(envelope.payload) }
    }

    /// Stops receiving; forecasts not yet acknowledged stay in the queue.
    public func stop() async {
        await consumer.stop()
    }
}
