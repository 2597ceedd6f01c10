import ArgumentParser
import Contracts
import Foundation
import Logging
import Messaging
import Metrics
import ServiceKit
import Storage

/// A pair and interval the ingestor polls.
struct TrackedSeries: Hashable, Sendable, CustomStringConvertible {
    let pair: String
    let interval: CandleInterval

    var description: String { "\(pair) \(interval.name)" }
}

extension TrackedSeries {
    /// A pair and interval from a command line, by the contract's rules (`ContractRules`).
    init(commandLinePair pair: String, interval: String) throws {
        do throws(ValidationFailure) {
            self.init(pair: try ContractRules.pair(pair), interval: try ContractRules.interval(interval))
        } catch {
            throw ValidationError(error.reason)
        }
    }
}

/// `ingest.tracked_series`: the series added to a running system (`ingestor pairs add`), polled besides the ones
/// `CANDLECAST_INGEST_PAIRS` names. Every function runs on a connection inside the caller's transaction.
enum TrackedSeriesStore {
    static func list(on connection: PostgresConnection) throws -> [TrackedSeries] {
        try connection.query("SELECT pair, interval_seconds FROM ingest.tracked_series ORDER BY pair, interval_seconds").compactMap { row in
            // A row written by hand with an interval Kraken does not have is skipped, not polled.
            guard let interval = CandleInterval(seconds: try row.decode(1, as: Int.self)) else { return nil }
            return TrackedSeries(pair: try row.decode(0, as: String.self), interval: interval)
        }
    }

    /// True when the series was not tracked before.
    @discardableResult
    static func add(_ series: TrackedSeries, on connection: PostgresConnection) throws -> Bool {
        try connection.execute(
            """
            INSERT INTO ingest.tracked_series (pair, interval_seconds) VALUES (\(series.pair), \(Int(series.interval.seconds)))
            ON CONFLICT (pair, interval_seconds) DO NOTHING
            """
        ).affectedRows == 1
    }

    /// True when the series was tracked.
    static func remove(_ series: TrackedSeries, on connection: PostgresConnection) throws -> Bool {
        try connection.execute(
            "DELETE FROM ingest.tracked_series WHERE pair = \(series.pair) AND interval_seconds = \(Int(series.interval.seconds))"
        ).affectedRows == 1
    }
}

/// Keeps one `LivePoller` running per tracked series: the configured ones and those in `ingest.tracked_series`,
/// which it re-reads every `refresh`, so a pair added to a running system is polled within that time and a
/// removed one stops being polled. A database outage keeps the current pollers.
struct SeriesTracker: Sendable {
    let configured: [TrackedSeries]
    let database: PostgresClient
    let logger: Logger
    let refresh: Duration
    let makePoller: @Sendable (TrackedSeries) -> LivePoller

    func run() async {
        var pollers: [TrackedSeries: Task<Void, Never>] = [:]
        while !Task.isCancelled {
            do {
                let wanted = Set(configured).union(try await database.withConnection { try TrackedSeriesStore.list(on: $0) })
                for series in wanted.subtracting(pollers.keys).sorted(by: { $0.description < $1.description }) {
                    let poller = makePoller(series)
                    pollers[series] = Task { await poller.run() }
                    logger.info("polling Kraken", metadata: ["pair": "\(series.pair)", "interval": "\(series.interval)"])
                }
                for series in Set(pollers.keys).subtracting(wanted) {
                    pollers.removeValue(forKey: series)?.cancel()
                    logger.info("no longer polling Kraken", metadata: ["pair": "\(series.pair)", "interval": "\(series.interval)"])
                }
                Gauge(label: "candlecast_ingest_series_polled").record(pollers.count)
            } catch {
                logger.warning("cannot read the tracked series; polling the current ones", metadata: ["error": "\(error)"])
            }
            try? await Task.sleep(for: refresh)
        }
        for task in pollers.values { task.cancel() }
        for task in pollers.values { await task.value }
    }
}

/// Adds a series to a running system: its first poll (`LivePoller`) stores Kraken's most recent candles (up to 720)
/// as one history batch with one `candle.backfilled` event, so the preprocessor cuts one dataset version from them
/// (not one per candle), and sets the cursor past them; then the series is tracked, so the running ingestor polls
/// it from there on.
struct SeriesAddition: Sendable {
    let client: KrakenClient
    let database: PostgresClient
    let logger: Logger

    struct Outcome: Sendable, Equatable {
        var newlyTracked = false
        var polled = LivePoller.Outcome()
    }

    /// Throws `KrakenError` (nothing stored, nothing tracked) when Kraken refuses the pair or cannot be reached,
    /// unless `trackWithoutKraken` (a history file was loaded first): then the series is tracked anyway and the
    /// poller fetches its candles when Kraken answers. A series polled before is only marked tracked.
    func add(_ series: TrackedSeries, trackWithoutKraken: Bool = false) async throws -> Outcome {
        var outcome = Outcome()
        let since = try await database.withConnection { try CandleStore.cursor(pair: series.pair, interval: series.interval, on: $0) }
        if since == nil {
            // Its first poll, here: Kraken's refusal reaches the person who asked.
            let poller = LivePoller(
                pair: series.pair, interval: series.interval, client: client, database: database, logger: logger, pollPeriod: nil,
                closeDelay: .zero, now: { Date() })
            do {
                outcome.polled = try await poller.pollOnce()
            } catch let error as KrakenError {
                guard trackWithoutKraken, error.code != .api else { throw error }
                logger.warning(
                    "Kraken did not answer; the ingestor polls it later", metadata: ["pair": "\(series.pair)", "error": "\(error)"])
            }
        }
        outcome.newlyTracked = try await database.withConnection { try TrackedSeriesStore.add(series, on: $0) }
        return outcome
    }
}
