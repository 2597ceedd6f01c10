/// Exchanges, queues and bindings that a service declares at start. Declaring is idempotent: the broker
/// accepts a declaration that matches what exists, so every replica of every service can declare.
public struct Topology: Sendable, Equatable {
    public struct Exchange: Sendable, Equatable {
        public enum Kind: String, Sendable { case topic, direct, fanout }
        public var name: String
        public var kind: Kind
        public init(name: String, kind: Kind) {
            self.name = name
            self.kind = kind
        }
    }

    public struct Queue: Sendable, Equatable {
        public var name: String
        /// Where the broker routes messages rejected without requeue (`x-dead-letter-exchange`).
        public var deadLetterExchange: String?
        /// The routing key those dead letters carry (`x-dead-letter-routing-key`).
        public var deadLetterRoutingKey: String?
        /// The broker deletes the queue after it has had no consumer for this long (`x-expires`); nil keeps it.
        public var expiresAfter: Duration?
        public init(name: String, deadLetterExchange: String? = nil, deadLetterRoutingKey: String? = nil, expiresAfter: Duration? = nil) {
            self.name = name
            self.deadLetterExchange = deadLetterExchange
            self.deadLetterRoutingKey = deadLetterRoutingKey
            self.expiresAfter = expiresAfter
        }

        var arguments: [String: HeaderValue] {
            var arguments: [String: HeaderValue] = [:]
            if let deadLetterExchange { arguments["x-dead-letter-exchange"] = .string(deadLetterExchange) }
            if let deadLetterRoutingKey { arguments["x-dead-letter-routing-key"] = .string(deadLetterRoutingKey) }
            if let expiresAfter {
                arguments["x-expires"] = .int(
                    expiresAfter.components.seconds * 1000 + expiresAfter.components.attoseconds / 1_000_000_000_000_000)
            }
            return arguments
        }
    }

    public struct Binding: Sendable, Equatable {
        public var queue: String
        public var exchange: String
        public var routingKey: String
        public init(queue: String, exchange: String, routingKey: String) {
            self.queue = queue
            self.exchange = exchange
            self.routingKey = routingKey
        }
    }

    public var exchanges: [Exchange]
    public var queues: [Queue]
    public var bindings: [Binding]

    public init(exchanges: [Exchange] = [], queues: [Queue] = [], bindings: [Binding] = []) {
        self.exchanges = exchanges
        self.queues = queues
        self.bindings = bindings
    }

    /// Both topologies' declarations, without repeating any.
    public func merged(with other: Topology) -> Topology {
        func union<T: Equatable>(_ a: [T], _ b: [T]) -> [T] { a + b.filter { !a.contains($0) } }
        return Topology(
            exchanges: union(exchanges, other.exchanges), queues: union(queues, other.queues),
            bindings: union(bindings, other.bindings))
    }
}
