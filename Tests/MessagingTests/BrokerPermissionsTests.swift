import Contracts
import Foundation
import TestSupport
import Testing

@testable import Messaging

/// Who may publish what (scripts/broker-users.sh, applied by `scripts/servers.sh broker-users VHOST`): with each
/// service's own broker user, its topology, its own events and its queues work, and every other service's event
/// is refused by the broker (channel closed with 403 ACCESS_REFUSED).
@Suite("Broker permissions: a user per service", .serialized)
struct BrokerPermissionsTests {
    static func configuration(_ user: String, vhost: TestVirtualHost) throws -> BrokerConfiguration {
        var configuration = try vhost.broker()
        configuration.user = user
        configuration.password = try String(
            contentsOfFile: TestEnvironment.repositoryRoot.appendingPathComponent(".local/secrets/amqp_password_\(user)").path,
            encoding: .utf8
        ).trimmingCharacters(in: .whitespacesAndNewlines)
        return configuration
    }

    /// The catalog's routing key with its placeholders filled in.
    static func concrete(_ routingKey: String) -> String {
        routingKey.replacingOccurrences(of: "<pair>", with: "xbtusd").replacingOccurrences(of: "<interval>", with: "1d")
            .replacingOccurrences(of: "<name>", with: "lstm-xbtusd-1d")
    }

    enum Outcome: Equatable {
        case confirmed
        case refused(String)
    }

    /// One confirmed publish on a fresh connection: the broker either confirms it or closes the channel.
    static func publish(_ configuration: BrokerConfiguration, exchange: String, routingKey: String) async throws -> Outcome {
        try await withCheckedThrowingContinuation { continuation in
            Thread {
                continuation.resume(
                    with: Result {
                        let session = try AMQPSession(configuration: configuration)
                        defer { session.abandon() }
                        try session.enablePublisherConfirms()
                        try session.publish(
                            OutgoingMessage(
                                exchange: exchange, routingKey: routingKey, body: Array(#"{}"#.utf8), properties: MessageProperties()))
                        let deadline = ContinuousClock.now + .seconds(5)
                        while ContinuousClock.now < deadline {
                            do {
                                if case .confirmed = try session.nextEvent(timeout: .milliseconds(100)) { return .confirmed }
                            } catch let error as BrokerError {
                                return .refused(error.message)
                            }
                        }
                        return .refused("no confirm within 5 s")
                    })
            }.start()
        }
    }

    /// basic.consume on a fresh connection: nil when the broker accepted it, else its refusal.
    static func consume(_ configuration: BrokerConfiguration, queue: String) async throws -> String? {
        try await withCheckedThrowingContinuation { continuation in
            Thread {
                continuation.resume(
                    with: Result {
                        let session = try AMQPSession(configuration: configuration)
                        defer { session.close() }
                        do {
                            try session.consume(queue: queue, prefetch: 1, consumerTag: "")
                            return nil
                        } catch let error as BrokerError {
                            return error.message
                        }
                    })
            }.start()
        }
    }

    @Test("each service declares its topology, publishes its own events and consumes its queues; every other event is refused")
    func leastPrivilege() async throws {
        let vhost = try await TestVirtualHost.create()
        try await TestEnvironment.servers("broker-users", vhost.name)
        var refused = 0
        var allowed = 0

        for service in ServiceName.allCases {
            let configuration = try Self.configuration("candlecast_\(service.rawValue)", vhost: vhost)
            let replica = "host-\(service.rawValue)-1"
            try await BrokerAdmin.declare(service.topology(replica: replica), configuration: configuration)
            // Its queues, a replica's own among them: it may consume them.
            for subscription in service.subscriptions {
                let queue = subscription.queueName(replica: replica)
                let refusal = try await Self.consume(configuration, queue: queue)
                #expect(refusal == nil, "\(service) cannot consume \(queue): \(refusal ?? "")")
                allowed += 1
            }
            // Its own dead letters, to its own dead-letter queue only.
            #expect(
                try await Self.publish(configuration, exchange: Exchange.deadLetters, routingKey: service.deadLetterRoutingKey)
                    == .confirmed)
            for other in ServiceName.allCases where other != service {
                let outcome = try await Self.publish(configuration, exchange: Exchange.deadLetters, routingKey: other.deadLetterRoutingKey)
                #expect(outcome != .confirmed, "\(service) could dead-letter as \(other)")
                refused += 1
            }
        }

        for kind in MessageCatalog.all {
            let routingKey = Self.concrete(kind.routingKey)
            for service in ServiceName.allCases {
                let configuration = try Self.configuration("candlecast_\(service.rawValue)", vhost: vhost)
                let outcome = try await Self.publish(configuration, exchange: Exchange.events, routingKey: routingKey)
                if service == kind.producer {
                    #expect(outcome == .confirmed, "\(service) could not publish its own \(routingKey): \(outcome)")
                    allowed += 1
                } else {
                    guard case .refused(let reason) = outcome else {
                        Issue.record("\(service) published \(routingKey), which only \(kind.producer) may")
                        continue
                    }
                    #expect(reason.contains("403") && reason.contains("ACCESS_REFUSED"), "\(reason)")
                    refused += 1
                }
            }
            // The read-only subscriber publishes nothing.
            let subscriber = try Self.configuration("candlecast_subscriber", vhost: vhost)
            guard case .refused(let reason) = try await Self.publish(subscriber, exchange: Exchange.events, routingKey: routingKey) else {
                Issue.record("the subscriber user published \(routingKey)")
                continue
            }
            #expect(reason.contains("403"), "\(reason)")
            refused += 1
        }

        // A service may not declare another service's queue, nor publish through the default exchange into one.
        let predictor = try Self.configuration("candlecast_predictor", vhost: vhost)
        await #expect(throws: BrokerError.self) {
            try await BrokerAdmin.declare(ServiceName.registry.topology, configuration: predictor)
        }
        #expect(try await Self.publish(predictor, exchange: "", routingKey: "registry.datasets") != .confirmed)
        // Nor consume another service's queue: every service's queue against every other service's user.
        for service in ServiceName.allCases {
            let configuration = try Self.configuration("candlecast_\(service.rawValue)", vhost: vhost)
            for other in ServiceName.allCases where other != service {
                for subscription in other.subscriptions {
                    let refusal = try await Self.consume(configuration, queue: subscription.queue)
                    #expect(refusal?.contains("403") == true, "\(service) could consume \(subscription.queue)")
                    refused += 1
                }
            }
        }
        refused += 2

        // Through the Publisher the services use: a forged publish fails (never confirmed), an own one is confirmed.
        let publisher = try Publisher(
            configuration: predictor, options: Publisher.Options(confirmTimeout: .seconds(3), topology: ServiceName.predictor.topology),
            logger: TestEnvironment.logger)
        try await publisher.publish(
            OutgoingMessage(
                exchange: Exchange.events, routingKey: "forecast.created.xbtusd.1d", body: Array("{}".utf8), properties: MessageProperties()
            ))
        let forged = ContinuousClock.now
        do {
            try await publisher.publish(
                OutgoingMessage(
                    exchange: Exchange.events, routingKey: "candle.closed.xbtusd.1d", body: Array("{}".utf8),
                    properties: MessageProperties()))
            Issue.record("the forged publish was confirmed")
        } catch let error as BrokerError {
            // Refused at once with the broker's reason, not after the confirm timeout of reconnect-and-resend.
            #expect(error.code == .brokerRejected && error.message.contains("403"), "\(error)")
            #expect(ContinuousClock.now - forged < .seconds(2))
        }
        // The refusal does not leave the publisher in a reconnect loop: it is connected again and still publishes.
        try await eventually(timeout: .seconds(10), "the publisher reconnected") { publisher.isConnected }
        try await publisher.publish(
            OutgoingMessage(
                exchange: Exchange.events, routingKey: "forecast.created.xbtusd.1d", body: Array("{}".utf8), properties: MessageProperties()
            ))
        await publisher.close()

        await vhost.delete()
        print(
            """
            reliability | broker permissions: \(allowed) own publishes and consumes accepted, \(refused) forged publishes and declarations \
            refused by the broker (403 ACCESS_REFUSED)
            """
        )
    }

    @Test("the subscriber user reads forecasts through CandlecastClient-style temporary queues, and nothing else")
    func subscriber() async throws {
        let vhost = try await TestVirtualHost.create()
        try await TestEnvironment.servers("broker-users", vhost.name)
        let subscriber = try Self.configuration("candlecast_subscriber", vhost: vhost)
        let queue = "candlecast.client.\(UInt64.random(in: 0...UInt64.max))"
        func topology(_ bindingKey: String) -> Topology {
            Topology(
                exchanges: [
                    Topology.Exchange(name: Exchange.events, kind: .topic), Topology.Exchange(name: Exchange.deadLetters, kind: .topic),
                ],
                queues: [
                    Topology.Queue(
                        name: queue, deadLetterExchange: Exchange.deadLetters, deadLetterRoutingKey: queue + ".dead-letters",
                        expiresAfter: .seconds(60)),
                    Topology.Queue(name: queue + ".dead-letters", expiresAfter: .seconds(60)),
                ],
                bindings: [
                    Topology.Binding(queue: queue, exchange: Exchange.events, routingKey: bindingKey),
                    Topology.Binding(queue: queue + ".dead-letters", exchange: Exchange.deadLetters, routingKey: queue + ".dead-letters"),
                ])
        }
        try await BrokerAdmin.declare(topology("forecast.created.*.*"), configuration: subscriber)
        // Forecasts published by the predictor reach it.
        let predictor = try Self.configuration("candlecast_predictor", vhost: vhost)
        #expect(try await Self.publish(predictor, exchange: Exchange.events, routingKey: "forecast.created.xbtusd.1d") == .confirmed)
        try await eventually(timeout: .seconds(5), "forecast queued") {
            try await BrokerAdmin.messageCount(queue: queue, configuration: subscriber) == 1
        }
        // Binding to candles, or declaring a service's queue, is refused.
        await #expect(throws: BrokerError.self) { try await BrokerAdmin.declare(topology("candle.#"), configuration: subscriber) }
        await #expect(throws: BrokerError.self) { try await BrokerAdmin.declare(ServiceName.monitor.topology, configuration: subscriber) }
        try await BrokerAdmin.declare(ServiceName.predictor.topology, configuration: predictor)
        await #expect(throws: BrokerError.self) { try await BrokerAdmin.purge(queue: "predictor.windows", configuration: subscriber) }
        await vhost.delete()
    }
}
