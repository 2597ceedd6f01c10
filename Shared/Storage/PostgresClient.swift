import Foundation
import Logging
import Metrics
import Synchronization

/// A small pool of PostgreSQL connections, each owned by a dedicated thread, so that libpq's blocking
/// calls never run on Swift's cooperative pool.
///
/// Work is a synchronous closure that receives a `PostgresConnection` and runs on that connection's
/// thread. When the connection breaks (the server restarted), the worker reconnects with backoff and runs
/// the closure again, so closures must be safe to repeat: a transaction that was cut off has rolled back.
public final class PostgresClient: Sendable {
    public struct Options: Sendable {
        public var connections: Int
        /// How many times work is retried after the connection broke, with exponential backoff.
        public var reconnectAttempts: Int
        public var reconnectBackoff: ClosedRange<Duration>

        public init(
            connections: Int = 2, reconnectAttempts: Int = 8, reconnectBackoff: ClosedRange<Duration> = .milliseconds(100) ... .seconds(3)
        ) {
            self.connections = max(1, connections)
            self.reconnectAttempts = reconnectAttempts
            self.reconnectBackoff = reconnectBackoff
        }
    }

    private let workers: [ConnectionWorker]
    private let available: Mutex<(idle: [Int], waiters: [CheckedContinuation<Int, Never>])>

    public init(configuration: DatabaseConfiguration, options: Options = Options(), logger: Logger) {
        workers = (0..<options.connections).map { index in
            ConnectionWorker(index: index, configuration: configuration, options: options, logger: logger)
        }
        available = Mutex((Array(workers.indices), []))
    }

    /// Whether a connection can be opened and answers `SELECT 1` now.
    public func ping() async -> Bool {
        (try? await withConnection(retrying: false) { try $0.query("SELECT 1") }) != nil
    }

    /// Runs `body` on a pooled connection's thread.
    public func withConnection<T: Sendable>(retrying: Bool = true, _ body: @escaping @Sendable (PostgresConnection) throws -> T)
        async throws -> T
    {
        let index = await checkOut()
        defer { checkIn(index) }
        return try await workers[index].run(retrying: retrying, body)
    }

    /// Runs `body` inside BEGIN/COMMIT; any error rolls back and is rethrown.
    public func transaction<T: Sendable>(_ body: @escaping @Sendable (PostgresConnection) throws -> T) async throws -> T {
        try await withConnection { connection in try connection.transaction(body) }
    }

    @discardableResult
    public func query(_ query: PostgresQuery) async throws -> [PostgresRow] {
        try await withConnection { try $0.query(query) }
    }

    @discardableResult
    public func execute(_ query: PostgresQuery) async throws -> Int {
        try await withConnection { try $0.execute(query).affectedRows }
    }

    /// Closes every connection and stops the worker threads. Work submitted afterwards fails.
    public func close() async {
        for worker in workers { await worker.stop() }
    }

    private func checkOut() async -> Int {
        await withCheckedContinuation { continuation in
            let index: Int? = available.withLock { state in
                if let index = state.idle.popLast() { return index }
                state.waiters.append(continuation)
                return nil
            }
            if let index { continuation.resume(returning: index) }
        }
    }

    private func checkIn(_ index: Int) {
        let waiter: CheckedContinuation<Int, Never>? = available.withLock { state in
            if !state.waiters.isEmpty { return state.waiters.removeFirst() }
            state.idle.append(index)
            return nil
        }
        waiter?.resume(returning: index)
    }
}

extension PostgresConnection {
    /// BEGIN, `body`, COMMIT; ROLLBACK when `body` throws.
    public func transaction<T>(_ body: (PostgresConnection) throws -> T) throws -> T {
        try executeScript("BEGIN")
        do {
            let value = try body(self)
            try executeScript("COMMIT")
            return value
        } catch {
            if isHealthy { try? executeScript("ROLLBACK") }
            throw error
        }
    }
}

/// One connection and the thread that owns it.
private final class ConnectionWorker: @unchecked Sendable {
    // @unchecked: `connection` and `stopped` are only touched on `thread`; the job queue is guarded by `condition`.
    private let configuration: DatabaseConfiguration
    private let options: PostgresClient.Options
    private let logger: Logger
    private let condition = NSCondition()
    private var jobs: [@Sendable () -> Void] = []
    private var stopping = false
    private var connection: PostgresConnection?
    private let reconnections = Counter(label: "candlecast_database_reconnections_total")

    init(index: Int, configuration: DatabaseConfiguration, options: PostgresClient.Options, logger: Logger) {
        self.configuration = configuration
        self.options = options
        self.logger = logger
        let thread = Thread { [self] in self.loop() }
        thread.name = "postgres-\(index)"
        thread.start()
    }

    func run<T: Sendable>(retrying: Bool, _ body: @escaping @Sendable (PostgresConnection) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            let accepted = submit { [self] in
                continuation.resume(with: Result { try self.perform(retrying: retrying, body) })
            }
            if !accepted { continuation.resume(throwing: PostgresError(.client, "the database client is closed")) }
        }
    }

    func stop() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let accepted = submit { [self] in
                self.connection?.close()
                self.connection = nil
                continuation.resume()
            }
            condition.lock()
            stopping = true
            condition.signal()
            condition.unlock()
            if !accepted { continuation.resume() }
        }
    }

    private func submit(_ job: @escaping @Sendable () -> Void) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        guard !stopping else { return false }
        jobs.append(job)
        condition.signal()
        return true
    }

    private func loop() {
        while true {
            condition.lock()
            while jobs.isEmpty && !stopping { condition.wait() }
            if jobs.isEmpty && stopping {
                condition.unlock()
                return
            }
            let job = jobs.removeFirst()
            condition.unlock()
            job()
        }
    }

    /// Runs on the worker thread.
    private func perform<T>(retrying: Bool, _ body: (PostgresConnection) throws -> T) throws -> T {
        var backoff = options.reconnectBackoff.lowerBound
        var attempt = 0
        while true {
            do {
                let connection = try liveConnection()
                return try body(connection)
            } catch let error as PostgresError where error.isConnectionProblem && retrying && attempt < options.reconnectAttempts {
                attempt += 1
                connection?.close()
                connection = nil
                reconnections.increment()
                logger.warning("database connection problem; retrying", metadata: ["error": "\(error)", "attempt": "\(attempt)"])
                Thread.sleep(forTimeInterval: Double(backoff.components.seconds) + Double(backoff.components.attoseconds) * 1e-18)
                backoff = min(backoff * 2, options.reconnectBackoff.upperBound)
            } catch let error as PostgresError where error.isConnectionProblem {
                connection?.close()
                connection = nil
                throw error
            }
        }
    }

    private func liveConnection() throws(PostgresError) -> PostgresConnection {
        if let connection, connection.isHealthy { return connection }
        connection?.close()
        connection = nil
        let fresh = try PostgresConnection(configuration: configuration)
        connection = fresh
        return fresh
    }
}
