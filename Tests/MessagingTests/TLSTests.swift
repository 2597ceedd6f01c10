import Foundation
import TestSupport
import Testing

@testable import Messaging

/// AMQP over TLS against the real RabbitMQ, with the certificates scripts/servers.sh generated: a CA of its own,
/// the server's certificate for localhost and 127.0.0.1, and an unrelated CA.
@Suite("AMQP over TLS")
struct AMQPTLSTests {
    static func secureBroker(caFile: String, host: String = "localhost") throws -> BrokerConfiguration {
        let plain = try TestEnvironment.broker()
        let port = Int(TestEnvironment.variables["CANDLECAST_AMQPS_PORT"] ?? "") ?? 5671
        let vhost = plain.virtualHost.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(["-"])) ?? plain.virtualHost
        var configuration = try BrokerConfiguration(
            url: "amqps://\(plain.user)@\(host):\(port)/\(vhost)", password: plain.password, tls: .init(caFile: caFile))
        configuration.reconnectBackoff = plain.reconnectBackoff
        return configuration
    }

    @Test("amqps with the CA that signed the broker's certificate: published, confirmed and consumed; another CA or host name is refused")
    func roundTripAndRefusal() async throws {
        let ca = try #require(TestEnvironment.variables["CANDLECAST_TLS_CA_FILE"], "scripts/servers.sh start writes it to .local/env")
        let otherCA = try #require(TestEnvironment.variables["CANDLECAST_TLS_OTHER_CA_FILE"])
        do {
            let broker = try Self.secureBroker(caFile: ca)
            let queue = TestQueue()
            let publisher = try Publisher(
                configuration: broker, options: Publisher.Options(topology: queue.topology), logger: TestEnvironment.logger)
            let collector = DeliveryCollector(
                try Consumer(
                    configuration: broker, options: Consumer.Options(queue: queue.queue, topology: queue.topology),
                    logger: TestEnvironment.logger))
            try await publisher.publish(queue.message(#"{"over":"tls"}"#))
            let received = try await collector.waitFor(1)
            #expect(String(decoding: received[0].body, as: UTF8.self) == #"{"over":"tls"}"#)
            await publisher.close()
            await queue.cleanUp(broker)
        }
        // The broker's certificate does not chain to this CA: the handshake fails, nothing is sent.
        let untrusted = try Self.secureBroker(caFile: otherCA)
        #expect(Self.connectionError(untrusted)?.code == .connectionFailed)
        // The host is verified too: rabbitmq-c 0.11 matches the certificate's DNS names only, so 127.0.0.1 (in its IP
        // names, not its DNS names) is refused like any name the certificate does not carry.
        #expect(
            Self.connectionError(try Self.secureBroker(caFile: ca, host: "127.0.0.1"))?.message.contains("hostname verification failed")
                == true)
        // A CA file that cannot be read is a configuration error, said as such.
        let missing = try Self.secureBroker(caFile: "/nonexistent/ca.pem")
        #expect(Self.connectionError(missing)?.code == .invalidConfiguration)
        // TLS spoken to the plain port: refused, not hung.
        var wrongPort = try Self.secureBroker(caFile: ca)
        wrongPort.endpoints = [.init(host: "localhost", port: try TestEnvironment.broker().port)]
        wrongPort.connectTimeout = .seconds(3)
        #expect(Self.connectionError(wrongPort) != nil)
    }

    /// The error of a connection attempt, or nil when it connected.
    static func connectionError(_ configuration: BrokerConfiguration) -> BrokerError? {
        do {
            try AMQPSession(configuration: configuration).close()
            return nil
        } catch {
            return error as? BrokerError ?? BrokerError(.connectionFailed, "\(error)")
        }
    }
}
