import Foundation
import Logging
import Metrics
import Synchronization

/// Publishes messages with publisher confirms over its own connection and I/O thread.
///
/// `publish` returns only once the broker confirmed the message, and throws when it was nacked or not
/// confirmed before `confirmTimeout`. Many callers may publish at once: their messages are pipelined on one
/// channel and confirmed together. After a lost connection the publisher reconnects with backoff and sends
/// every unconfirmed message again (at-least-once: consumers deduplicate by message id).
public final class Publisher: Sendable {
    public struct Options: Sendable {
        /// How long a publish may wait for its confirm, across reconnections, before it throws.
        public var confirmTimeout: Duration
        /// Declared after every (re)connection, before anything is published.
        public var topology: Topology
        /// Most messages in flight (sent, not yet confirmed); more wait their turn.
        public var maxUnconfirmed: Int

        public init(confirmTimeout: Duration = .seconds(30), topology: Topology = Topology(), maxUnconfirmed: Int = 8192) {
            self.confirmTimeout = confirmTimeout
            self.topology = topology
            self.maxUnconfirmed = maxUnconfirmed
        }
    }

    fileprivate struct PendingPublish: Sendable {
        let message: OutgoingMessage
        let deadline: ContinuousClock.Instant
        let completion: @Sendable (Result<Void, BrokerError>) -> Void
    }

    fileprivate struct SharedState {
        var waiting: [PendingPublish] = []
        var stopping = false
        var connected = false
        var connections = 0
        var stopped: CheckedContinuation<Void, Never>?
        var hasStopped = false
    }

    private let shared = Mutex(SharedState())
    private let wake: WakeSignal
    private let options: Options

    public init(configuration: BrokerConfiguration, options: Options = Options(), logger: Logger) throws {
        self.wake = try WakeSignal()
        self.options = options
        let loop = PublisherLoop(configuration: configuration, options: options, logger: logger)
        startIOThread(name: "amqp-publisher") { [self] in loop.run(owner: self) }
    }

    /// Whether the publisher currently holds an open connection to the broker.
    public var isConnected: Bool { shared.withLock { $0.connected } }

    /// Publishes one message and returns when the broker has confirmed it.
    public func publish(_ message: OutgoingMessage) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, Error>) in
            enqueue([message]) { result in continuation.resume(with: result.mapError { $0 as Error }) }
        }
    }

    /// Publishes messages pipelined (without waiting for each confirm) and returns when all are confirmed.
    /// Throws the first failure; the others may still have been delivered.
    public func publish(contentsOf messages: [OutgoingMessage]) async throws {
        guard !messages.isEmpty else { return }
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, Error>) in
            let tracker = BatchTracker(count: messages.count) { continuation.resume(with: $0.mapError { $0 as Error }) }
            enqueue(messages) { tracker.record($0) }
        }
    }

    private func enqueue(_ messages: [OutgoingMessage], completion: @escaping @Sendable (Result<Void, BrokerError>) -> Void) {
        let deadline = ContinuousClock.now + options.confirmTimeout
        let accepted = shared.withLock { state -> Bool in
            guard !state.stopping else { return false }
            state.waiting.append(contentsOf: messages.map { PendingPublish(message: $0, deadline: deadline, completion: completion) })
            return true
        }
        guard accepted else {
            for _ in messages { completion(.failure(BrokerError(.closed, "the publisher is closed"))) }
            return
        }
        wake.signal()
    }

    /// Sends what is already queued (waiting for confirms up to a short grace period), then closes the connection.
    public func close() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let alreadyStopped = shared.withLock { state -> Bool in
                state.stopping = true
                if state.hasStopped { return true }
                state.stopped = continuation
                return false
            }
            if alreadyStopped { continuation.resume() } else { wake.signal() }
        }
    }

    fileprivate func takeWaiting(limit: Int) -> (batch: [PendingPublish], stopping: Bool) {
        shared.withLock { state in
            let count = min(limit, state.waiting.count)
            let batch = Array(state.waiting.prefix(count))
            state.waiting.removeFirst(count)
            return (batch, state.stopping)
        }
    }

    fileprivate func setConnected(_ connected: Bool) {
        shared.withLock { state in
            state.connected = connected
            if connected { state.connections += 1 }
        }
    }

    /// How many connections were opened so far: 1 means no reconnection happened.
    public var connectionCount: Int { shared.withLock { $0.connections } }

    fileprivate func waitForWork(socket: Int32?, timeout: Duration) { wake.wait(socket: socket, timeout: timeout) }

    fileprivate func finish() -> [PendingPublish] {
        let (leftover, continuation) = shared.withLock { state in
            state.hasStopped = true
            state.connected = false
            let leftover = state.waiting
            state.waiting.removeAll()
            let continuation = state.stopped
            state.stopped = nil
            return (leftover, continuation)
        }
        continuation?.resume()
        return leftover
    }
}

/// Counts the confirms of a pipelined batch and reports once.
private final class BatchTracker: Sendable {
    private let state: Mutex<(remaining: Int, failure: BrokerError?, reported: Bool)>
    private let report: @Sendable (Result<Void, BrokerError>) -> Void

    init(count: Int, report: @escaping @Sendable (Result<Void, BrokerError>) -> Void) {
        self.state = Mutex((count, nil, false))
        self.report = report
    }

    func record(_ result: Result<Void, BrokerError>) {
        let outcome: Result<Void, BrokerError>? = state.withLock { state in
            state.remaining -= 1
            if case .failure(let error) = result, state.failure == nil { state.failure = error }
            guard state.remaining == 0, !state.reported else { return nil }
            state.reported = true
            return state.failure.map { .failure($0) } ?? .success(())
        }
        if let outcome { report(outcome) }
    }
}

/// The state that only the publisher's I/O thread touches.
private final class PublisherLoop: @unchecked Sendable {
    // @unchecked: handed to exactly one thread at start and never touched elsewhere afterwards.
    private let configuration: BrokerConfiguration
    private let options: Options
    private var logger: Logger
    private var session: AMQPSession?
    /// The broker node tried first on the next connect: the one after the node whose connection was lost.
    private var preferredNode = 0
    private var nextDeliveryTag: UInt64 = 0
    /// Sent and awaiting basic.ack, by delivery tag.
    private var unconfirmed: [UInt64: Publisher.PendingPublish] = [:]
    /// Taken from the queue but not yet sent (or sent on a connection that died): sent first, in order.
    private var resend: [Publisher.PendingPublish] = []
    private var refusedSinceLastConfirm = false
    private var backoff: Backoff
    private let published = Counter(label: "candlecast_messages_published_total")
    private let publishFailures = Counter(label: "candlecast_publish_failures_total")
    private let reconnections = Counter(label: "candlecast_broker_reconnections_total", dimensions: [("role", "publisher")])

    typealias Options = Publisher.Options

    init(configuration: BrokerConfiguration, options: Options, logger: Logger) {
        self.configuration = configuration
        self.options = options
        self.logger = logger
        self.backoff = Backoff(configuration.reconnectBackoff)
    }

    func run(owner: Publisher) {
        var stopDeadline: ContinuousClock.Instant?
        while true {
            let room = max(0, options.maxUnconfirmed - unconfirmed.count - resend.count)
            let (batch, stopping) = owner.takeWaiting(limit: room)
            resend.append(contentsOf: batch)
            if stopping {
                let deadline = stopDeadline ?? ContinuousClock.now + .seconds(3)
                stopDeadline = deadline
                if (resend.isEmpty && unconfirmed.isEmpty) || ContinuousClock.now >= deadline { break }
            }
            failExpired()
            guard let session = connectedSession(owner: owner) else {
                owner.waitForWork(socket: nil, timeout: backoff.advance())
                continue
            }
            do {
                try sendResend(on: session)
                let timeout: Duration = unconfirmed.isEmpty ? heartbeatPollInterval : .milliseconds(100)
                if !session.hasBufferedInput && resend.isEmpty {
                    owner.waitForWork(socket: session.socketDescriptor, timeout: timeout)
                }
                while let event = try session.nextEvent(timeout: .microseconds(1)) {
                    handle(event)
                }
            } catch let error as BrokerError where error.code == .brokerRejected {
                // The broker closed the channel over a publish (403 ACCESS_REFUSED, 404 NOT_FOUND): sending the
                // same messages again would be refused again, in a reconnect loop. Fail them, and wait before
                // reconnecting.
                refusedByBroker(owner: owner, error: error)
                owner.waitForWork(socket: nil, timeout: backoff.advance())
            } catch {
                connectionLost(owner: owner, error: error)
            }
        }
        session?.close()
        session = nil
        let closed = BrokerError(.closed, "the publisher closed before the broker confirmed the message")
        for pending in resend + unconfirmed.values + owner.finish() { pending.completion(.failure(closed)) }
        logger.debug("publisher stopped")
    }

    private var heartbeatPollInterval: Duration {
        configuration.heartbeatSeconds > 0 ? min(.seconds(1), .seconds(configuration.heartbeatSeconds) / 2) : .seconds(1)
    }

    private func connectedSession(owner: Publisher) -> AMQPSession? {
        if let session { return session }
        do {
            let (session, node) = try AMQPSession.connect(configuration, preferring: preferredNode)
            do {
                try session.declare(options.topology)
                try session.enablePublisherConfirms()
            } catch {
                session.close()
                // This node let the client in but refused the rest: the next attempt starts at the next node.
                preferredNode = node + 1
                throw error
            }
            self.session = session
            preferredNode = node
            nextDeliveryTag = 0
            // After a refusal the backoff is reset only by a confirm, so a refused publisher does not reconnect
            // at full speed.
            if !refusedSinceLastConfirm { backoff.reset() }
            owner.setConnected(true)
            logger.info("publisher connected", metadata: ["broker.node": "\(session.endpoint)"])
            return session
        } catch {
            logger.warning("publisher cannot connect", metadata: ["error": "\(error)"])
            return nil
        }
    }

    private func sendResend(on session: AMQPSession) throws {
        while !resend.isEmpty {
            let pending = resend[0]
            try session.publish(pending.message)
            nextDeliveryTag += 1
            unconfirmed[nextDeliveryTag] = pending
            resend.removeFirst()
        }
    }

    private func handle(_ event: AMQPSession.Event) {
        switch event {
        case .confirmed(let tag, let multiple):
            refusedSinceLastConfirm = false
            settle(upTo: tag, multiple: multiple) { pending in
                published.increment()
                pending.completion(.success(()))
            }
        case .rejected(let tag, let multiple):
            settle(upTo: tag, multiple: multiple) { pending in
                publishFailures.increment()
                pending.completion(
                    .failure(
                        BrokerError(
                            .publishNacked, "the broker nacked a message to \(pending.message.exchange)/\(pending.message.routingKey)")))
            }
        case .blocked(let reason):
            logger.warning("broker blocked the publisher", metadata: ["reason": "\(reason)"])
        case .unblocked:
            logger.info("broker unblocked the publisher")
        case .delivery, .consumerCancelled, .ignored:
            break
        }
    }

    private func settle(upTo tag: UInt64, multiple: Bool, _ body: (Publisher.PendingPublish) -> Void) {
        if multiple {
            for key in unconfirmed.keys.filter({ $0 <= tag }).sorted() {
                if let pending = unconfirmed.removeValue(forKey: key) { body(pending) }
            }
        } else if let pending = unconfirmed.removeValue(forKey: tag) {
            body(pending)
        }
    }

    private func failExpired() {
        let now = ContinuousClock.now
        let expired = { (pending: Publisher.PendingPublish) in pending.deadline <= now }
        for key in unconfirmed.keys.sorted() where expired(unconfirmed[key]!) {
            fail(unconfirmed.removeValue(forKey: key)!)
        }
        for pending in resend where expired(pending) { fail(pending) }
        resend.removeAll(where: expired)
    }

    private func fail(_ pending: Publisher.PendingPublish) {
        publishFailures.increment()
        pending.completion(
            .failure(
                BrokerError(
                    .publishTimedOut,
                    "no confirm within \(options.confirmTimeout) for \(pending.message.exchange)/\(pending.message.routingKey)")))
    }

    private func refusedByBroker(owner: Publisher, error: BrokerError) {
        logger.error(
            "the broker refused a publish; failing the unconfirmed messages",
            metadata: ["error": "\(error)", "unconfirmed": "\(unconfirmed.count)"])
        session?.abandon()
        session = nil
        owner.setConnected(false)
        refusedSinceLastConfirm = true
        for key in unconfirmed.keys.sorted() {
            publishFailures.increment()
            unconfirmed[key]?.completion(.failure(error))
        }
        unconfirmed.removeAll()
    }

    private func connectionLost(owner: Publisher, error: any Error) {
        if let session { preferredNode = configuration.endpoints.firstIndex(of: session.endpoint).map { $0 + 1 } ?? 0 }
        logger.warning(
            "publisher lost its connection",
            metadata: [
                "error": "\(error)", "broker.node": "\(session.map { "\($0.endpoint)" } ?? "-")", "unconfirmed": "\(unconfirmed.count)",
            ])
        session?.abandon()
        session = nil
        owner.setConnected(false)
        reconnections.increment()
        // Unconfirmed messages may or may not have reached the queue: send them again, in order.
        resend = unconfirmed.keys.sorted().compactMap { unconfirmed[$0] } + resend
        unconfirmed.removeAll()
    }
}
