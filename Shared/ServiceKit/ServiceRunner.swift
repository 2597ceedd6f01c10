import Contracts
import Foundation
import Hummingbird
import Logging
import Messaging
import Metrics
import Prometheus
import ServiceLifecycle
import Storage
import Synchronization

/// What makes one executable a Candlecast service: its name, its schema, its HTTP routes and its work.
public struct ServiceDefinition: Sendable {
    /// The service's work, started once its schema is migrated; cancelled on graceful shutdown.
    public typealias Work = @Sendable (ServiceContext) async throws -> Void

    public var name: ServiceName
    public var defaultHTTPPort: Int
    /// The service's own schema; nil for stateless services (the trainer).
    public var migrations: SchemaMigrations?
    /// Adds the service's routes beside `/healthz`, `/readyz` and `/metrics` and returns its work, both built on
    /// one value made here (Hummingbird's `Application` and a swift-service-lifecycle `Service` sharing their
    /// state), never on a process global. An error thrown here is a configuration error: the start stops (exit 2).
    public var start: @Sendable (Router<BasicRequestContext>, ServiceContext) throws -> Work
    /// Reads and checks the service's own settings, so that a bad value stops the service at start (exit 2,
    /// naming the variable) rather than when the work first needs it.
    public var settings: @Sendable (EnvironmentReader) throws -> Void
    /// Bucket bounds of the service's value histograms (swift-metrics recorders that aggregate), by metric name.
    public var histogramBuckets: [String: [Double]]
    /// Bucket bounds of the service's timers, by metric name.
    public var durationBuckets: [String: [Duration]]

    public init(
        name: ServiceName, defaultHTTPPort: Int, migrations: SchemaMigrations?,
        histogramBuckets: [String: [Double]] = [:], durationBuckets: [String: [Duration]] = [:],
        settings: @escaping @Sendable (EnvironmentReader) throws -> Void = { _ in },
        routes: @escaping @Sendable (Router<BasicRequestContext>, ServiceContext) throws -> Void = { _, _ in },
        work: @escaping Work
    ) {
        self.name = name
        self.defaultHTTPPort = defaultHTTPPort
        self.migrations = migrations
        self.start = { router, context in
            try routes(router, context)
            return work
        }
        self.histogramBuckets = histogramBuckets
        self.durationBuckets = durationBuckets
        self.settings = settings
    }

    /// A service whose routes and work share one value: `shared` builds it once at start (reading the service's
    /// settings; what it throws stops the start, exit 2), then `routes` and `work` each receive it.
    public init<Shared: Sendable>(
        name: ServiceName, defaultHTTPPort: Int, migrations: SchemaMigrations?,
        histogramBuckets: [String: [Double]] = [:], durationBuckets: [String: [Duration]] = [:],
        settings: @escaping @Sendable (EnvironmentReader) throws -> Void = { _ in },
        shared: @escaping @Sendable (ServiceContext) throws -> Shared,
        routes: @escaping @Sendable (Router<BasicRequestContext>, Shared) throws -> Void,
        work: @escaping @Sendable (Shared, ServiceContext) async throws -> Void
    ) {
        self.init(
            name: name, defaultHTTPPort: defaultHTTPPort, migrations: migrations, histogramBuckets: histogramBuckets,
            durationBuckets: durationBuckets, settings: settings, work: { _ in })
        self.start = { router, context in
            let value = try shared(context)
            try routes(router, value)
            return { context in try await work(value, context) }
        }
    }
}

/// The connections and settings a service's work uses. Consumers made here are part of its readiness and
/// are stopped when it shuts down.
public struct ServiceContext: Sendable {
    public let name: ServiceName
    public let configuration: ServiceConfiguration
    public let logger: Logger
    public let publisher: Publisher
    public let database: PostgresClient
    public let readiness: Readiness
    /// The process's one HTTP client (for the generated clients of other services), shut down at exit.
    public let http: OutgoingHTTP
    let consumers: ConsumerRegistry

    /// Subscribes to one of the service's queues, with this service's topology and dead-letter route.
    /// This process among the service's replicas: `<host>-<pid>`, unique while it runs.
    public var replica: String { Self.replica }
    static let replica = QueueSubscription.replicaName(
        host: ProcessInfo.processInfo.hostName, processID: ProcessInfo.processInfo.processIdentifier)

    public func consumer(for subscription: QueueSubscription, prefetch: UInt16 = 32) throws -> Consumer {
        let queue = subscription.queueName(replica: replica)
        let consumer = try Consumer(
            configuration: configuration.broker,
            options: Consumer.Options(
                queue: queue, prefetch: prefetch,
                topology: subscription.sharing == .perReplica ? name.topology(replica: replica) : name.topology,
                deadLetterRoute: name.deadLetterRoute,
                redelivery: RedeliveryPolicy(maximumAttempts: configuration.maximumDeliveryAttempts, isTransient: isTransientFailure)),
            deadLetterPublisher: publisher, logger: logger)
        consumers.add(consumer)
        readiness.add("consumer \(queue)") { consumer.isConnected }
        return consumer
    }
}

/// Broker or database unreachable (or briefly overloaded): worth retrying without using a message's attempts.
/// Everything else a handler throws (a constraint violation, a permission error, a bug) counts as a failure of
/// the message.
public let isTransientFailure: @Sendable (any Error) -> Bool = { error in
    if let error = error as? PostgresError {
        // 40001 serialization failure, 40P01 deadlock, 53xxx insufficient resources, 55P03 lock not available.
        return error.isConnectionProblem || ["40001", "40P01", "55P03"].contains(error.sqlState) || error.sqlState?.hasPrefix("53") == true
    }
    // An HTTP peer (the registry) unreachable or timing out.
    if error is URLError { return true }
    return RedeliveryPolicy.isBrokerProblem(error)
}

final class ConsumerRegistry: Sendable {
    private let consumers = Mutex<[Consumer]>([])
    func add(_ consumer: Consumer) { consumers.withLock { $0.append(consumer) } }
    func stopAll() async {
        for consumer in consumers.withLock({ $0 }) { await consumer.stop() }
    }
}

public enum ServiceRunner {
    /// Reads the configuration, bootstraps logging and metrics once, connects, migrates, serves the health
    /// endpoints and runs the work until SIGTERM or SIGINT; then stops consuming, closes the broker and
    /// database connections and exits (0 after a graceful shutdown).
    public static func main(_ definition: ServiceDefinition) async -> Never {
        let serviceName = definition.name.rawValue
        let configuration: ServiceConfiguration
        do {
            configuration = try ServiceConfiguration(service: serviceName, defaultHTTPPort: definition.defaultHTTPPort)
            try definition.settings(configuration.environment)
        } catch {
            FileHandle.standardError.write(Data("\(serviceName): \(error)\n".utf8))
            exit(2)
        }
        bootstrapLogging(configuration)
        let metricsRegistry = PrometheusCollectorRegistry()
        var metricsFactory = PrometheusMetricsFactory(registry: metricsRegistry)
        metricsFactory.valueHistogramBuckets = definition.histogramBuckets
        metricsFactory.durationHistogramBuckets = definition.durationBuckets
        MetricsSystem.bootstrap(metricsFactory)
        let logger = Logger(label: serviceName)

        let database = PostgresClient(
            configuration: configuration.database, options: PostgresClient.Options(connections: configuration.databaseConnections),
            logger: logger)
        let publisher: Publisher
        do {
            publisher = try Publisher(
                configuration: configuration.broker, options: Publisher.Options(topology: definition.name.topology), logger: logger)
        } catch {
            logger.critical("cannot start the publisher", metadata: ["error": "\(error)"])
            exit(1)
        }
        let readiness = Readiness()
        let migrated = Flag()
        readiness.add("broker") { publisher.isConnected }
        readiness.add("database") { await database.ping() }
        readiness.add("schema") { migrated.isSet }
        let context = ServiceContext(
            name: definition.name, configuration: configuration, logger: logger, publisher: publisher, database: database,
            readiness: readiness, http: OutgoingHTTP(), consumers: ConsumerRegistry())

        let router = Router()
        HealthRoutes.add(to: router, readiness: readiness, metrics: metricsRegistry)
        let serviceWork: ServiceDefinition.Work
        do {
            serviceWork = try definition.start(router, context)
        } catch {
            // Nothing is served or consumed yet: leave at once, as a bad setting does above.
            logger.critical("cannot start", metadata: ["error": "\(error)"])
            FileHandle.standardError.write(Data("\(serviceName): \(error)\n".utf8))
            fflush(nil)
            _exit(2)
        }
        let http = Application(
            router: router,
            configuration: ApplicationConfiguration(
                address: .hostname(configuration.httpHost, port: configuration.httpPort), serverName: serviceName),
            onServerRunning: { channel in
                logger.info("http listening", metadata: ["http.address": "\(channel.localAddress.map { "\($0)" } ?? "?")"])
            },
            logger: logger)
        let work = WorkService(migrations: definition.migrations, work: serviceWork, context: context, migrated: migrated)
        let group = ServiceGroup(services: [http, work], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)

        logger.info("starting", metadata: ["broker.host": "\(configuration.broker.host)", "http.port": "\(configuration.httpPort)"])
        var exitCode: Int32 = 0
        do {
            try await group.run()
        } catch {
            logger.error("stopped with an error", metadata: ["error": "\(error)"])
            exitCode = 1
        }
        await context.consumers.stopAll()
        await publisher.close()
        await database.close()
        await context.http.shutdown()
        logger.info("stopped")
        // Everything is stopped and closed: leave without running the C libraries' exit handlers, which can race
        // with a thread still unwinding (seen as "double free or corruption" at exit).
        fflush(nil)
        _exit(exitCode)
    }

    /// Installs the JSON or text log handler at the configured level; call once per process.
    public static func bootstrapLogging(_ configuration: ServiceConfiguration) {
        let level = configuration.logLevel
        switch configuration.logFormat {
        case .json:
            LoggingSystem.bootstrap { label in
                var handler = JSONLogHandler(label: label)
                handler.logLevel = level
                return handler
            }
        case .text:
            LoggingSystem.bootstrap { label in
                var handler = StreamLogHandler.standardError(label: label)
                handler.logLevel = level
                return handler
            }
        }
    }
}

/// Migrates the schema (retrying while the database is unreachable), then runs the service's work until
/// graceful shutdown.
private struct WorkService: Service {
    let migrations: SchemaMigrations?
    let work: ServiceDefinition.Work
    let context: ServiceContext
    let migrated: Flag

    func run() async throws {
        try await cancelWhenGracefulShutdown {
            if let plan = migrations {
                var delay = Duration.milliseconds(200)
                while true {
                    do {
                        try await context.database.migrate(plan, logger: context.logger)
                        break
                    } catch {
                        context.logger.warning(
                            "cannot migrate the schema yet", metadata: ["schema": "\(plan.schema)", "error": "\(error)"])
                        try await Task.sleep(for: delay)
                        delay = min(delay * 2, .seconds(5))
                    }
                }
            }
            migrated.set()
            try await work(context)
        }
    }
}

/// A one-way switch shared between tasks.
final class Flag: Sendable {
    private let value = Mutex(false)
    var isSet: Bool { value.withLock { $0 } }
    func set() { value.withLock { $0 = true } }
}

extension ServiceContext {
    /// Suspends until the service is asked to stop (SIGTERM/SIGINT).
    public func waitForShutdown() async {
        try? await gracefulShutdown()
    }
}
