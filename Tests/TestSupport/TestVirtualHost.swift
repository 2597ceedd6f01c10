import Foundation
import Messaging

/// A RabbitMQ virtual host of a test's own: its exchanges and queues see no other test's messages.
public struct TestVirtualHost: Sendable {
    public let name: String

    public static func create() async throws -> TestVirtualHost {
        let name = "candlecast-test-" + UUID().uuidString.prefix(8).lowercased()
        try await TestEnvironment.servers("vhost-add", name)
        return TestVirtualHost(name: name)
    }

    /// `CANDLECAST_AMQP_URL` for services started in this virtual host.
    public var url: String {
        let base = TestEnvironment.variables["CANDLECAST_AMQP_URL"] ?? "amqp://candlecast@127.0.0.1:5672/"
        guard var components = URLComponents(string: base) else { return base }
        components.path = "/" + name
        return components.string ?? base
    }

    public func broker() throws -> BrokerConfiguration {
        var configuration = try TestEnvironment.broker()
        configuration.virtualHost = name
        return configuration
    }

    public func delete() async {
        try? await TestEnvironment.servers("vhost-delete", name)
    }
}
