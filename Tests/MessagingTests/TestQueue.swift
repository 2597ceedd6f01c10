import Foundation
import Messaging
import TestSupport

/// A throwaway exchange, queue and dead-letter queue per test, deleted afterwards.
struct TestQueue {
    let exchange: String
    let queue: String
    let deadLetterExchange: String
    let deadLetterQueue: String
    let routingKey = "test.event"

    init() {
        let base = TestEnvironment.uniqueName("test")
        exchange = base + ".events"
        queue = base + ".queue"
        deadLetterExchange = base + ".dead-letters"
        deadLetterQueue = base + ".dead-letters"
    }

    var topology: Topology {
        Topology(
            exchanges: [Topology.Exchange(name: exchange, kind: .topic), Topology.Exchange(name: deadLetterExchange, kind: .topic)],
            queues: [
                Topology.Queue(name: queue, deadLetterExchange: deadLetterExchange, deadLetterRoutingKey: "dead"),
                Topology.Queue(name: deadLetterQueue),
            ],
            bindings: [
                Topology.Binding(queue: queue, exchange: exchange, routingKey: "test.#"),
                Topology.Binding(queue: deadLetterQueue, exchange: deadLetterExchange, routingKey: "dead"),
            ])
    }

    var deadLetterRoute: DeadLetterRoute { DeadLetterRoute(exchange: deadLetterExchange, routingKey: "dead") }

    func message(_ text: String, type: String = "test.event", headers: [String: HeaderValue] = [:]) -> OutgoingMessage {
        OutgoingMessage(
            exchange: exchange, routingKey: routingKey, body: Array(text.utf8),
            properties: MessageProperties(
                contentType: "application/json", deliveryMode: MessageProperties.persistentDeliveryMode,
                messageID: UUID().uuidString, type: type, headers: headers))
    }

    func cleanUp(_ configuration: BrokerConfiguration) async {
        for name in [queue, deadLetterQueue] { try? await BrokerAdmin.delete(queue: name, configuration: configuration) }
    }
}
