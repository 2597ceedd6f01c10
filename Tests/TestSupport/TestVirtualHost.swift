import Foundation
import Messaging

/// A RabbitMQ virtual host of a test's own: its exchanges and queues see no other test's messages. On the local
/// node, or on the three-node cluster of `scripts/servers.sh cluster-start`.
public struct TestVirtualHost: Sendable {
    public let name: String
    public let onCluster: Bool

    public static func create(onCluster: Bool = false) async throws -> TestVirtualHost {
        let name = "candlecast-test-" + UUID().uuidString.prefix(8).lowercased()
        if onCluster {
            guard TestEnvironment.variables["CANDLECAST_CLUSTER_AMQP_URL"] != nil else {
                throw TestSetupError("no broker cluster: run scripts/servers.sh cluster-start (scripts/test.sh does)")
            }
            try await TestEnvironment.servers("cluster-vhost-add", name)
        } else {
            try await TestEnvironment.servers("vhost-add", name)
        }
        return TestVirtualHost(name: name, onCluster: onCluster)
    }

    /// `CANDLECAST_AMQP_URL` for services started in this virtual host (every node's, on the cluster).
    public var url: String {
        if onCluster, let cluster = TestEnvironment.variables["CANDLECAST_CLUSTER_AMQP_URL"] {
            // A multi-host URL, which URLComponents cannot edit: its path is the last part.
            return (cluster.hasSuffix("/") ? String(cluster.dropLast()) : cluster) + "/" + name
        }
        let base = TestEnvironment.variables["CANDLECAST_AMQP_URL"] ?? "amqp://candlecast@127.0.0.1:5672/"
        guard var components = URLComponents(string: base) else { return base }
        components.path = "/" + name
        return components.string ?? base
    }

    public func broker() throws -> BrokerConfiguration {
        var configuration = try TestEnvironment.broker()
        if onCluster {
            let local = configuration
            configuration = try BrokerConfiguration(url: url, password: local.password, heartbeatSeconds: local.heartbeatSeconds)
            configuration.reconnectBackoff = local.reconnectBackoff
        }
        configuration.virtualHost = name
        return configuration
    }

    public func delete() async {
        try? await TestEnvironment.servers(onCluster ? "cluster-vhost-delete" : "vhost-delete", name)
    }
}
