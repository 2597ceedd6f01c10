import ArgumentParser
import Contracts
import Foundation
import Logging
import Messaging
import ServiceKit
import Storage

/// Ingestor settings beyond the common ones (see README):
/// `CANDLECAST_KRAKEN_URL` (https://api.kraken.com), `CANDLECAST_INGEST_PAIRS` (XBTUSD),
/// `CANDLECAST_INGEST_INTERVALS` (1d), `CANDLECAST_KRAKEN_POLL_SECONDS` (unset: poll when candles close),
/// `CANDLECAST_KRAKEN_TIMEOUT_SECONDS` (10), `CANDLECAST_KRAKEN_CLOSE_DELAY_SECONDS` (5),
/// `CANDLECAST_INGEST_PAIRS_REFRESH_SECONDS` (5: how soon a pair added with `ingestor pairs add` is polled).
struct IngestorSettings: Sendable {
    var krakenURL: URL
    var pairs: [String]
    var intervals: [CandleInterval]
    var pollPeriod: Duration?
    var timeout: Duration
    var closeDelay: Duration
    var trackedRefresh: Duration

    /// Every configured pair at every configured interval.
    var configuredSeries: [TrackedSeries] {
        pairs.flatMap { pair in intervals.map { TrackedSeries(pair: pair, interval: $0) } }
    }

    init(_ environment: EnvironmentReader) throws {
        let url = environment.string("CANDLECAST_KRAKEN_URL", default: "https://api.kraken.com")
        guard let krakenURL = URL(string: url), krakenURL.scheme?.hasPrefix("http") == true else {
            throw ConfigurationError(key: "CANDLECAST_KRAKEN_URL", reason: "\(url) is not an http(s) URL")
        }
        self.krakenURL = krakenURL
        pairs = try environment.string("CANDLECAST_INGEST_PAIRS", default: "XBTUSD").split(separator: ",").map { token in
            do throws(ValidationFailure) {
                return try ContractRules.pair(token.trimmingCharacters(in: .whitespaces), field: "pair")
            } catch {
                throw ConfigurationError(.invalidValue, key: "CANDLECAST_INGEST_PAIRS", reason: error.reason)
            }
        }
        guard !pairs.isEmpty else { throw ConfigurationError(.missing, key: "CANDLECAST_INGEST_PAIRS", reason: "names no pair") }
        intervals = try environment.string("CANDLECAST_INGEST_INTERVALS", default: "1d").split(separator: ",").map { token in
            do throws(ValidationFailure) {
                return try ContractRules.interval(token.trimmingCharacters(in: .whitespaces), field: "interval \(token)")
            } catch {
                throw ConfigurationError(.invalidValue, key: "CANDLECAST_INGEST_INTERVALS", reason: error.reason)
            }
        }
        let poll = try environment.int("CANDLECAST_KRAKEN_POLL_SECONDS", default: 0, in: 0...86_400)
        pollPeriod = poll > 0 ? .seconds(poll) : nil
        timeout = .seconds(try environment.int("CANDLECAST_KRAKEN_TIMEOUT_SECONDS", default: 10, in: 1...600))
        closeDelay = .seconds(try environment.int("CANDLECAST_KRAKEN_CLOSE_DELAY_SECONDS", default: 5, in: 0...3600))
        trackedRefresh = .seconds(try environment.int("CANDLECAST_INGEST_PAIRS_REFRESH_SECONDS", default: 5, in: 1...3600))
    }
}

enum IngestorService {
    static let definition = ServiceDefinition(
        name: .ingestor, defaultHTTPPort: 8081, migrations: IngestSchema.migrations,
        settings: {
            _ = try IngestorSettings($0)
            _ = try OutboxOptions($0)
        },
        work: { context in
            let settings = try IngestorSettings(context.configuration.environment)
            let client = KrakenClient(baseURL: settings.krakenURL, timeout: settings.timeout)
            let relay = OutboxRelay(
                schema: IngestSchema.name, database: context.database, publisher: context.publisher, logger: context.logger,
                options: try OutboxOptions(context.configuration.environment))
            let tracker = SeriesTracker(
                configured: settings.configuredSeries, database: context.database, logger: context.logger, refresh: settings.trackedRefresh
            ) { series in
                LivePoller(
                    pair: series.pair, interval: series.interval, client: client, database: context.database, logger: context.logger,
                    pollPeriod: settings.pollPeriod, closeDelay: settings.closeDelay, now: { Date() })
            }
            await withTaskGroup(of: Void.self) { group in
                group.addTask { try? await relay.run() }
                group.addTask { await tracker.run() }
                context.logger.info(
                    "ingesting",
                    metadata: ["url": "\(settings.krakenURL)", "pairs": "\(settings.pairs)", "intervals": "\(settings.intervals)"])
                await context.waitForShutdown()
                group.cancelAll()
            }
        })
}

/// `ingestor backfill FILE --pair XBTUSD --interval 1d`
struct BackfillCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ingestor backfill",
        abstract: "Load a Kraken OHLCVT history file (time,open,high,low,close,volume,trades) into Postgres.")

    @Argument(help: "The history file, e.g. data/kraken_XBTUSD_1440.csv")
    var file: String
    @Option(help: "Kraken pair name") var pair = "XBTUSD"
    @Option(help: "Candle interval: 1m, 5m, 15m, 30m, 1h, 4h, 1d, 1w, 15d or Kraken minutes") var interval = "1d"
    @Flag(help: "Read the file from its first line even if an earlier run completed it") var restart = false

    func run() async throws {
        let series = try TrackedSeries(commandLinePair: pair, interval: self.interval)
        let (pair, interval) = (series.pair, series.interval)
        // A file in another layout is refused before any configuration is read or any server is touched.
        try HistoryBackfill.checkLayout(path: file)
        let (configuration, database, logger) = try await IngestorCommand.connect("ingestor-backfill")
        defer { Task { await database.close() } }
        let backfill = HistoryBackfill(database: database, logger: logger)
        let publisher = OutboxRelay.commandPublisher(configuration: configuration, logger: logger)
        let summary: HistoryBackfill.Summary
        do {
            summary = try await backfill.run(
                path: file, pair: pair, interval: interval, restart: restart, progress: ProgressReporter(label: "backfill", logger: logger))
        } catch {
            await publisher?.close()
            throw error
        }
        print(summary.text(file: file, interval: interval))
        await OutboxRelay.publishNow(with: publisher, database: database, logger: logger)
        await database.close()
    }
}

/// What the ingestor's commands (`backfill`, `pairs`) share.
enum IngestorCommand {
    /// The configuration, logging and a migrated database, as the service has them.
    static func connect(_ name: String) async throws -> (ServiceConfiguration, PostgresClient, Logger) {
        let configuration = try ServiceConfiguration(service: name, defaultHTTPPort: 0)
        ServiceRunner.bootstrapLogging(configuration)
        let logger = Logger(label: "ingestor")
        let database = PostgresClient(configuration: configuration.database, logger: logger)
        try await database.migrate(IngestSchema.migrations, logger: logger)
        return (configuration, database, logger)
    }
}

extension HistoryBackfill.Summary {
    /// What a person reads after a backfill.
    func text(file: String, interval: CandleInterval) -> String {
        """
        \(file): \(linesRead) lines\(resumedAfterLine > 0 ? " (resumed after line \(resumedAfterLine))" : "")
          stored: \(inserted) new, \(revised) revised, \(unchanged) unchanged; rejected: \(rejected)
          gaps: \(gaps.count) (\(missingIntervals) missing \(interval) candles)
        """
    }
}

extension OutboxRelay {
    /// The publisher of a command's events. It connects on its own thread from now on, so that a command starts it
    /// before its work (a backfill) and finds it connected after; nil when the broker settings are unusable.
    static func commandPublisher(configuration: ServiceConfiguration, logger: Logger) -> Publisher? {
        do {
            return try Publisher(
                configuration: configuration.broker,
                options: Publisher.Options(confirmTimeout: .seconds(10), topology: ServiceName.ingestor.topology), logger: logger)
        } catch {
            logger.warning("events stay in the outbox until the ingestor relays them", metadata: ["error": "\(error)"])
            return nil
        }
    }

    /// Publishes the outbox's events now if the broker is there (a command's, before it exits); otherwise the
    /// running ingestor's relay will. Closes the publisher.
    static func publishNow(with publisher: Publisher?, database: PostgresClient, logger: Logger) async {
        guard let publisher else { return }
        let relay = OutboxRelay(schema: IngestSchema.name, database: database, publisher: publisher, logger: logger)
        do {
            while try await relay.relayOnce() > 0 {}
        } catch {
            logger.warning("events stay in the outbox until the ingestor relays them", metadata: ["error": "\(error)"])
        }
        await publisher.close()
    }
}
