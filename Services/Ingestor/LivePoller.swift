import Contracts
import Foundation
import Logging
import Metrics
import Storage

/// Polls Kraken's OHLC endpoint for one pair and interval, stores every newly closed (or revised) candle
/// with its event in the outbox, and never stores the still-open candle (any row after Kraken's `last`).
struct LivePoller: Sendable {
    let pair: String
    let interval: CandleInterval
    let client: KrakenClient
    let database: PostgresClient
    let logger: Logger
    /// Fixed delay between polls; nil polls right after each candle closes (plus `closeDelay`).
    let pollPeriod: Duration?
    let closeDelay: Duration
    let now: @Sendable () -> Date

    /// The source of candles stored from a series' first poll.
    static let firstPollSource = "rest-history"

    struct Outcome: Sendable, Equatable {
        var store = StoreOutcome()
        var skippedOpenCandle = false
        var newGaps = 0
        /// Open times of the first and the last closed candle in the answer.
        var first: Int64?
        var last: Int64?
    }

    /// One request and its storage, in one transaction. The first poll of a series (no cursor yet) stores what
    /// Kraken answers as history, with one `candle.backfilled` event; every later one, each new or revised candle
    /// with its `candle.closed` event.
    func pollOnce() async throws -> Outcome {
        let pair = self.pair
        let interval = self.interval
        let since = try await database.withConnection { try CandleStore.cursor(pair: pair, interval: interval, on: $0) }
        let response = try await client.ohlc(pair: pair, interval: interval, since: since)
        var outcome = Outcome()
        let (candles, rejected, skippedOpenCandle) = Self.closedCandles(in: response, pair: pair, interval: interval, now: now())
        outcome.skippedOpenCandle = skippedOpenCandle
        let nextSince = max(response.last, since ?? response.last)
        let earliest = candles.first?.openTime  // oldest first
        let (store, gaps) = try await database.transaction { connection in
            // A series' first answer is its recent history (up to 720 candles): stored as one batch with one summary
            // event, as a backfill, so that downstream cuts one dataset version from it, not one per candle.
            let firstPoll = since == nil
            var store =
                firstPoll
                ? try CandleStore.storeHistory(candles, source: Self.firstPollSource, on: connection)
                : try CandleStore.storeClosed(candles, source: "rest", on: connection)
            store.rejected = try CandleStore.reject(rejected, pair: pair, interval: interval, source: "rest", on: connection)
            if firstPoll {
                try CandleStore.announceHistory(
                    candles, pair: pair, interval: interval, outcome: store, source: Self.firstPollSource, on: connection)
            }
            // A poll that stored nothing new writes nothing (200 pairs polled every second would otherwise be 200
            // flushed commits a second): the cursor only when it moves, gaps only after an insert (a revision or a
            // repeat cannot open one).
            if nextSince != since {
                try CandleStore.setCursor(nextSince, pair: pair, interval: interval, on: connection)
            }
            guard store.inserted > 0, let earliest else { return (store, 0) }
            let gaps = try CandleStore.recordGaps(pair: pair, interval: interval, from: earliest - interval.seconds, on: connection)
            return (store, gaps.count)
        }
        outcome.store = store
        outcome.newGaps = gaps
        outcome.first = candles.first?.openTime
        outcome.last = candles.last?.openTime
        let labels = [("pair", pair), ("interval", interval.name)]
        Counter(label: "candlecast_candles_stored_total", dimensions: labels + [("outcome", "inserted")]).increment(by: store.inserted)
        Counter(label: "candlecast_candles_stored_total", dimensions: labels + [("outcome", "revised")]).increment(by: store.revised)
        Counter(label: "candlecast_candles_rejected_total", dimensions: labels).increment(by: store.rejected)
        if store.inserted + store.revised + store.rejected + gaps > 0 {
            logger.info(
                "stored candles",
                metadata: [
                    "pair": "\(pair)", "interval": "\(interval)", "inserted": "\(store.inserted)", "revised": "\(store.revised)",
                    "rejected": "\(store.rejected)", "gaps": "\(gaps)", "since": "\(nextSince)",
                ])
        }
        return outcome
    }

    /// The closed candles of a response, validated, oldest first, and the rows refused with their reasons.
    /// `last` is the newest committed (closed) candle: rows after it are still being traded, whatever their
    /// values or their place in the response (Kraken sends the open one last, but order is not relied on).
    /// A row without a readable time goes on to validation, which rejects it with its reason.
    static func closedCandles(in response: KrakenOHLC, pair: String, interval: CandleInterval, now: Date) -> (
        candles: [Candle], rejected: [RejectedRow], skippedOpenCandle: Bool
    ) {
        let closedRows = response.rows.filter { ($0.openTime ?? .min) <= response.last }.sorted {
            ($0.openTime ?? .min) < ($1.openTime ?? .min)
        }
        var candles: [Candle] = []
        var rejected: [RejectedRow] = []
        for row in closedRows {
            guard row.fields.count == 6 else {
                rejected.append(RejectedRow(raw: row.raw, reason: "expected [time, open, high, low, close, vwap, volume, count]"))
                continue
            }
            switch CandleValidator.validate(
                pair: pair, interval: interval, openTime: row.openTime, open: row.fields[0], high: row.fields[1], low: row.fields[2],
                close: row.fields[3], vwap: row.fields[4], volume: row.fields[5], trades: row.trades, now: now)
            {
            case .success(let candle): candles.append(candle)
            case .failure(let error): rejected.append(RejectedRow(raw: row.raw, reason: error.reason))
            }
        }
        return (candles, rejected, response.rows.contains { ($0.openTime ?? .min) > response.last })
    }

    /// Polls on schedule until cancelled; Kraken and database failures back off exponentially.
    func run() async {
        var failures = 0
        if let pollPeriod {
            // Series start together: a random phase (within a second at most, so a long period never delays a new
            // series' first poll) keeps their polls from all falling at once.
            try? await Task.sleep(for: min(pollPeriod, .seconds(1)) * Double.random(in: 0..<1))
        }
        while !Task.isCancelled {
            do {
                let started = ContinuousClock.now
                _ = try await pollOnce()
                failures = 0
                if let pollPeriod {
                    // The period counts from the poll's start: a slow poll (a burst of closes) does not delay the next.
                    try await Task.sleep(until: started + pollPeriod, clock: .continuous)
                } else {
                    try await Task.sleep(for: delayUntilNextPoll())
                }
            } catch is CancellationError {
                return
            } catch {
                failures += 1
                let kind = (error as? KrakenError)?.code.rawValue ?? "storage"
                Counter(label: "candlecast_kraken_errors_total", dimensions: [("kind", kind)]).increment()
                let backoff = Duration.seconds(min(60, 1 << min(failures - 1, 6)))
                logger.warning(
                    "poll failed; backing off",
                    metadata: ["pair": "\(pair)", "interval": "\(interval)", "error": "\(error)", "retry_in": "\(backoff)"])
                try? await Task.sleep(for: min(backoff, pollPeriod ?? backoff))
            }
        }
    }

    /// Until the next candle of `interval` closes (Kraken commits it shortly after), or the fixed period.
    func delayUntilNextPoll() -> Duration {
        if let pollPeriod { return pollPeriod }
        let seconds = now().timeIntervalSince1970
        let length = Double(interval.seconds)
        let offset = Double(interval.alignmentOffset)
        let nextClose = ((seconds - offset) / length).rounded(.down) * length + length + offset
        return .milliseconds(Int64((nextClose - seconds) * 1000)) + closeDelay
    }
}
