import Metrics
import Synchronization

extension Consumer {
    /// Like `handle(_:)`, but hands `process` every delivery already waiting, up to `maximumBatch`, so a backlog is
    /// worked off many messages per call (one database transaction, one commit) while a lone message is never held
    /// back waiting for company.
    ///
    /// `decode` turns a delivery into the handler's message; one that throws (`EnvelopeDecodingFailure`,
    /// `PermanentFailure`, anything else) is dead-lettered on its own with the error as the reason. A batch acks all
    /// its messages when `process` returns. A transient failure retries the whole batch with backoff, as `handle`
    /// retries one message. Any other failure sends the batch's messages through `process` one at a time under the
    /// usual `RedeliveryPolicy`, so one bad message costs the others nothing but a retry.
    public func handleBatches<Message: Sendable>(
        upTo maximumBatch: Int, decode: @escaping @Sendable (Delivery) throws -> Message,
        _ process: @escaping @Sendable ([Message]) async throws -> Void
    ) async {
        let waiting = WaitingDeliveries()
        let deliveries = self.deliveries
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                for await delivery in deliveries { waiting.append(delivery) }
                waiting.finish()
            }
            while let batch = await waiting.take(upTo: max(1, maximumBatch)) {
                await handleBatch(batch, decode: decode, process)
            }
            group.cancelAll()
        }
    }

    private func handleBatch<Message: Sendable>(
        _ deliveries: [Delivery], decode: @Sendable (Delivery) throws -> Message, _ process: @Sendable ([Message]) async throws -> Void
    ) async {
        var decoded: [(message: Message, delivery: Delivery)] = []
        decoded.reserveCapacity(deliveries.count)
        for delivery in deliveries {
            do {
                decoded.append((try decode(delivery), delivery))
            } catch {
                // EnvelopeDecodingFailure and PermanentFailure describe themselves by their reason.
                await delivery.deadLetter(reason: "\(error)")
            }
        }
        guard decoded.count > 1 else {
            if let only = decoded.first { await runHandler(for: only.delivery) { try await process([only.message]) } }
            return
        }
        let policy = options.redelivery
        var transientDelay = policy.retryDelay
        retrying: while true {
            do {
                try await process(decoded.map(\.message))
                for item in decoded {
                    item.delivery.ack()
                    attempts.forget(item.delivery.attemptKey)
                }
                batches.increment()
                return
            } catch is CancellationError {
                // Shutting down: the messages go back to the queue when the connection closes.
                return
            } catch  where policy.isTransient(error) {
                guard !Task.isCancelled, decoded.allSatisfy({ isCurrent($0.delivery) }) else {
                    logger.warning("a batch failed on a transient error; its messages return to the queue", metadata: ["error": "\(error)"])
                    return
                }
                logger.warning(
                    "a batch failed on a transient error; retrying",
                    metadata: ["error": "\(error)", "batch.size": "\(decoded.count)", "retry_in": "\(transientDelay)"])
                try? await Task.sleep(for: transientDelay)
                transientDelay = min(transientDelay * 2, policy.maximumTransientDelay)
                if Task.isCancelled || !decoded.allSatisfy({ isCurrent($0.delivery) }) { return }
            } catch {
                logger.info(
                    "a batch failed; handling its messages one at a time",
                    metadata: ["error": "\(error)", "batch.size": "\(decoded.count)"])
                break retrying
            }
        }
        for item in decoded {
            await runHandler(for: item.delivery) { try await process([item.message]) }
        }
    }

    /// Batches of more than one message committed together (with `candlecast_messages_received_total`, the mean size).
    private var batches: Counter { Counter(label: "candlecast_message_batches_total", dimensions: [("queue", options.queue)]) }
}

/// Deliveries received but not yet handed to the batch handler: at most the consumer's prefetch, since the broker
/// sends no more until some are settled.
private final class WaitingDeliveries: Sendable {
    private struct State {
        var deliveries: [Delivery] = []
        var finished = false
        var taker: CheckedContinuation<[Delivery]?, Never>?
    }
    private let state = Mutex(State())

    func append(_ delivery: Delivery) {
        let taker = state.withLock { state -> CheckedContinuation<[Delivery]?, Never>? in
            guard let taker = state.taker else {
                state.deliveries.append(delivery)
                return nil
            }
            state.taker = nil
            return taker
        }
        taker?.resume(returning: [delivery])
    }

    /// No more deliveries: the consumer stopped. Those still waiting go back to the queue with the connection.
    func finish() {
        let taker = state.withLock { state in
            state.finished = true
            defer { state.taker = nil }
            return state.taker
        }
        taker?.resume(returning: nil)
    }

    /// The deliveries waiting now (at most `limit`), or the next one to arrive; nil once finished.
    func take(upTo limit: Int) async -> [Delivery]? {
        await withCheckedContinuation { (taker: CheckedContinuation<[Delivery]?, Never>) in
            let ready = state.withLock { state -> [Delivery]?? in
                if state.finished { return .some(nil) }
                guard !state.deliveries.isEmpty else {
                    state.taker = taker
                    return nil
                }
                let batch = Array(state.deliveries.prefix(limit))
                state.deliveries.removeFirst(batch.count)
                return .some(batch)
            }
            if let ready { taker.resume(returning: ready) }
        }
    }
}
