import ArgumentParser
import Contracts
import Foundation
import Logging
import Messaging
import ServiceKit
import Storage

/// `ingestor pairs add|list|remove`: the series a running system ingests, changed without a restart.
struct PairsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ingestor pairs",
        abstract: "Add a pair to a running system, list the pairs it holds, or stop polling one.",
        subcommands: [Add.self, List.self, Remove.self])

    /// Pair and interval, by the contract's rules.
    struct Series: ParsableArguments {
        @Argument(help: "Kraken pair name, e.g. XBTEUR") var pair: String
        @Option(help: "Candle interval: 1m, 5m, 15m, 30m, 1h, 4h, 1d, 1w, 15d or Kraken minutes") var interval = "1d"

        /// Refused before anything runs, with the subcommand's usage.
        func validate() throws { _ = try series() }

        func series() throws -> TrackedSeries { try TrackedSeries(commandLinePair: pair, interval: interval) }
    }

    static func fail(_ message: String, code: Int32) -> ExitCode {
        FileHandle.standardError.write(Data("ingestor pairs: \(message)\n".utf8))
        return ExitCode(code)
    }

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Load a pair's history and have the running ingestor poll it (within CANDLECAST_INGEST_PAIRS_REFRESH_SECONDS).",
            discussion: """
                Kraken's most recent candles (its REST API returns up to 720) are stored as one history batch, after \
                --history's file when one is given, so the preprocessor cuts one dataset version and the registry runs one \
                sweep for the pair. Exit 1 when Kraken does not know the pair, 2 when it cannot be reached and no --history \
                was given; nothing is added then.
                """)

        @OptionGroup var target: Series
        @Option(help: "A Kraken OHLCVT history file of the pair to load first (time,open,high,low,close,volume,trades)")
        var history: String?

        func run() async throws {
            let series = try target.series()
            if let history { try HistoryBackfill.checkLayout(path: history) }
            let (configuration, database, logger) = try await IngestorCommand.connect("ingestor-pairs")
            let settings = try IngestorSettings(configuration.environment)
            if let history {
                let summary = try await HistoryBackfill(database: database, logger: logger).run(
                    path: history, pair: series.pair, interval: series.interval,
                    progress: ProgressReporter(label: "backfill", logger: logger))
                print(summary.text(file: history, interval: series.interval))
            }
            let addition = SeriesAddition(
                client: KrakenClient(baseURL: settings.krakenURL, timeout: settings.timeout), database: database, logger: logger)
            let outcome: SeriesAddition.Outcome
            do {
                outcome = try await addition.add(series, trackWithoutKraken: history != nil)
            } catch let error as KrakenError {
                await database.close()
                if error.code == .api {
                    let kept = history == nil ? "nothing was added" : "the file's candles are stored, but the pair is not polled"
                    throw PairsCommand.fail("Kraken refuses \(series): \(error.message); \(kept)", code: 1)
                }
                throw PairsCommand.fail(
                    "Kraken (\(settings.krakenURL)) did not answer: \(error.message); nothing was added. Try again, or give "
                        + "--history FILE to add the pair from a file", code: 2)
            }
            if let first = outcome.polled.first, let last = outcome.polled.last {
                let store = outcome.polled.store
                print(
                    """
                    \(series): \(store.inserted) new and \(store.revised) revised candles from Kraken's REST API \
                    (\(utcDay(first)) .. \(utcDay(last))), \(store.unchanged) unchanged, \(store.rejected) rejected, \
                    \(outcome.polled.newGaps) gaps
                    """)
            }
            await OutboxRelay.publishNow(
                with: OutboxRelay.commandPublisher(configuration: configuration, logger: logger), database: database, logger: logger)
            await database.close()
            let refresh = settings.trackedRefresh.components.seconds
            print(
                outcome.newlyTracked
                    ? "\(series) is tracked: a running ingestor polls it within \(refresh) s (one that starts later, at its start)"
                    : "\(series) was tracked already")
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Every pair and interval with stored candles or tracked, with its range and how it is polled.")

        func run() async throws {
            let (_, database, _) = try await IngestorCommand.connect("ingestor-pairs")
            let rows = try await database.withConnection { connection in
                try connection.query(
                    """
                    SELECT coalesce(c.pair, t.pair), coalesce(c.interval_seconds, t.interval_seconds), coalesce(c.n, 0)::bigint,
                           c.first_open, c.last_open, t.added_at IS NOT NULL
                    FROM (SELECT pair, interval_seconds, count(*) AS n, min(open_time) AS first_open, max(open_time) AS last_open
                          FROM ingest.candles GROUP BY pair, interval_seconds) c
                    FULL JOIN ingest.tracked_series t ON t.pair = c.pair AND t.interval_seconds = c.interval_seconds
                    ORDER BY 1, 2
                    """
                ).map { row in
                    let seconds = try row.decode(1, as: Int.self)
                    let interval = CandleInterval(seconds: seconds)?.name ?? "\(seconds) s"
                    let count = try row.decode(2, as: Int.self)
                    let range = try row.decode(3, as: Int64?.self).flatMap { first in
                        try row.decode(4, as: Int64?.self).map { "\(utcDay(first)) .. \(utcDay($0))" }
                    }
                    let polled =
                        try row.decode(5, as: Bool.self) ? "tracked (pairs add)" : "polled only if CANDLECAST_INGEST_PAIRS names it"
                    return "\(try row.decode(0, as: String.self)) \(interval)  \(count) candles  \(range ?? "-")  \(polled)"
                }
            }
            await database.close()
            print(rows.isEmpty ? "no candles stored and no pair tracked" : rows.joined(separator: "\n"))
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Stop polling a pair added with `pairs add` (its candles, datasets, models and forecasts stay).")

        @OptionGroup var target: Series

        func run() async throws {
            let series = try target.series()
            let (configuration, database, _) = try await IngestorCommand.connect("ingestor-pairs")
            let removed = try await database.withConnection { try TrackedSeriesStore.remove(series, on: $0) }
            await database.close()
            guard removed else { throw PairsCommand.fail("\(series) is not tracked", code: 1) }
            let refresh = (try? IngestorSettings(configuration.environment).trackedRefresh.components.seconds) ?? 5
            print(
                "\(series) is no longer tracked: a running ingestor stops polling it within \(refresh) s, "
                    + "unless CANDLECAST_INGEST_PAIRS names it"
            )
        }
    }
}
