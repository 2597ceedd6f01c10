import ArgumentParser
import Contracts
import Foundation
import Logging
import Messaging
import ServiceKit

struct Queues: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The broker's queues: move an older deployment's classic queues to quorum queues.", subcommands: [Migrate.self])

    struct Migrate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Move every service queue that is still a classic queue to a quorum queue, with its messages and bindings.",
            discussion: """
                Stop the services first (a queue with a consumer is refused). Safe to run again: queues that are quorum \
                queues already are left alone. Retired queues (predictor.models, now one queue per predictor replica) are \
                deleted. Uses the broker settings of this shell (CANDLECAST_AMQP_URL and its password) with a user that may \
                configure every queue (the administrator, not a service's user).
                """)

        func run() async throws {
            try await reporting { services in
                let broker = try services.endpoints.broker()
                let topology = ServiceName.allCases.map(\.topology).reduce(Topology()) { $0.merged(with: $1) }
                var logger = Logger(label: "candlecast.queues")
                logger.logLevel = .warning
                let report: QueueMigration.Report
                do {
                    report = try await QueueMigration.migrate(
                        topology, retiring: ServiceName.retiredQueues, configuration: broker, logger: logger)
                } catch let error as BrokerError {
                    throw CommandFailure(.unreachable, error.message)
                }
                var rows = report.migrated.sorted { $0.key < $1.key }.map { [$0.key, "moved to a quorum queue", "\($0.value)"] }
                rows += report.deleted.sorted { $0.key < $1.key }.map { [$0.key, "retired: deleted", "\($0.value)"] }
                rows += report.unchanged.sorted().map { [$0, "quorum queue already", "-"] }
                print(Table.render(["queue", "what was done", "messages"], rows))
            }
        }
    }
}
