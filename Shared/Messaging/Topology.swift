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
        /// How the broker stores the queue. A queue cannot change type in place: see `QueueMigration`.
        public enum Kind: Sendable, Equatable {
            /// One node's queue: for temporary queues (a subscriber's, a test's).
            case classic
            /// Replicated over the cluster's nodes by Raft. The broker dead-letters a message once it has been
            /// returned `deliveryLimit` times (a handler that crashes its process on it included; nil: no limit),
            /// and dead-letters at least once: a dead letter leaves the queue only when its target queue confirmed it.
            case quorum(deliveryLimit: Int?)
        }

        public var name: String
        public var kind: Kind
        /// Where the broker routes messages rejected without requeue (`x-dead-letter-exchange`).
        public var deadLetterExchange: String?
        /// The routing key those dead letters carry (`x-dead-letter-routing-key`).
        public var deadLetterRoutingKey: String?
        /// The broker deletes the queue after it has had no consumer for this long (`x-expires`); nil keeps it.
        public var expiresAfter: Duration?
        /// Only one consumer at a time gets the queue's messages, in order; the others wait as standbys
        /// (`x-single-active-consumer`). For queues whose messages must be handled one after another.
        public var singleActiveConsumer: Bool

        public init(
            name: String, kind: Kind = .classic, deadLetterExchange: String? = nil, deadLetterRoutingKey: String? = nil,
            expiresAfter: Duration? = nil, singleActiveConsumer: Bool = false
        ) {
            self.name = name
            self.kind = kind
            self.deadLetterExchange = deadLetterExchange
            self.deadLetterRoutingKey = deadLetterRoutingKey
            self.expiresAfter = expiresAfter
            self.singleActiveConsumer = singleActiveConsumer
        }

        public var isQuorum: Bool {
            if case .quorum = kind { return true }
            return false
        }

        var arguments: [String: HeaderValue] {
            var arguments: [String: HeaderValue] = [:]
            if let deadLetterExchange { arguments["x-dead-letter-exchange"] = .string(deadLetterExchange) }
            if let deadLetterRoutingKey { arguments["x-dead-letter-routing-key"] = .string(deadLetterRoutingKey) }
            if let expiresAfter {
                arguments["x-expires"] = .int(
                    expiresAfter.components.seconds * 1000 + expiresAfter.components.attoseconds / 1_000_000_000_000_000)
            }
            if singleActiveConsumer { arguments["x-single-active-consumer"] = .bool(true) }
            if case .quorum(let deliveryLimit) = kind {
                arguments["x-queue-type"] = .string("quorum")
                if let deliveryLimit { arguments["x-delivery-limit"] = .int(Int64(deliveryLimit)) }
                if deadLetterExchange != nil {
                    // At-least-once dead-lettering needs reject-publish: the queue never drops its head to make room.
                    arguments["x-dead-letter-strategy"] = .string("at-least-once")
                    arguments["x-overflow"] = .string("reject-publish")
                }
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
