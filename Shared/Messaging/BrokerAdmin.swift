import Foundation

/// Short administrative operations (queue depth, purge, declare) on a connection of their own, run on a
/// fresh thread so that the blocking calls stay off Swift's cooperative pool.
public enum BrokerAdmin {
    public static func declare(_ topology: Topology, configuration: BrokerConfiguration) async throws {
        try await withSession(configuration) { try $0.declare(topology) }
    }

    public static func messageCount(queue: String, configuration: BrokerConfiguration) async throws -> Int {
        try await withSession(configuration) { Int(try $0.messageCount(queue: queue)) }
    }

    /// Depths of several queues over one connection; every queue must exist.
    public static func messageCounts(queues: [String], configuration: BrokerConfiguration) async throws -> [String: Int] {
        try await withSession(configuration) { session in
            var counts: [String: Int] = [:]
            for queue in queues { counts[queue] = Int(try session.messageCount(queue: queue)) }
            return counts
        }
    }

    public static func purge(queue: String, configuration: BrokerConfiguration) async throws {
        try await withSession(configuration) { try $0.purge(queue: queue) }
    }

    public static func delete(queue: String, configuration: BrokerConfiguration) async throws {
        try await withSession(configuration) { try $0.delete(queue: queue) }
    }

    private static func withSession<T: Sendable>(
        _ configuration: BrokerConfiguration, _ body: @escaping @Sendable (AMQPSession) throws -> T
    ) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            startIOThread(name: "amqp-admin") {
                continuation.resume(
                    with: Result {
                        let (session, _) = try AMQPSession.connect(configuration)
                        defer { session.close() }
                        return try body(session)
                    })
            }
        }
    }
}
