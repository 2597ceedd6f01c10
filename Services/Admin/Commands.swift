import ArgumentParser
import CandlecastClient
import Contracts
import Foundation
import Logging
import Messaging
import PredictorAPI
import PreprocessorAPI
import RegistryAPI
import ServiceKit
import Synchronization

/// The contract's pair and interval rules (`ContractRules`), as every service applies them, for a command line:
/// the pair as the contract writes it.
func validatedSeries(pair: String, field: String, interval: String) throws -> String {
    do throws(ValidationFailure) {
        let pair = try ContractRules.pair(pair, field: field)
        _ = try ContractRules.interval(interval, field: "--interval")
        return pair
    } catch {
        throw ValidationError(error.reason)
    }
}

/// The model of a pair and interval, as the registry names it.
struct SeriesOptions: ParsableArguments {
    @Option(help: "Kraken pair.") var pair = "XBTUSD"
    @Option(help: "Candle interval (1d, 4h, 1w...).") var interval = "1d"

    mutating func validate() throws { pair = try validatedSeries(pair: pair, field: "--pair", interval: interval) }

    func candleInterval() throws -> CandleInterval {
        guard let value = CandleInterval(interval) else { throw ValidationError("\(interval) is not a Kraken interval") }
        return value
    }
    func model() throws -> String { modelName(pair: pair, interval: try candleInterval()) }

    /// The interval as the documents spell it.
    func registryInterval() throws -> RegistryAPI.Components.Schemas.Interval {
        guard let value = RegistryAPI.Components.Schemas.Interval(rawValue: try candleInterval().name) else {
            throw ValidationError("\(interval) is not an interval the registry takes")
        }
        return value
    }
    func predictorInterval() throws -> PredictorAPI.Components.Schemas.Interval {
        guard let value = PredictorAPI.Components.Schemas.Interval(rawValue: try candleInterval().name) else {
            throw ValidationError("\(interval) is not an interval the predictor takes")
        }
        return value
    }
}

struct Backfill: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Load a Kraken OHLCVT history file (e.g. data/kraken_XBTUSD_1440.csv) through the ingestor.",
        discussion:
            "Runs the ingestor's own backfill (the `ingestor` executable next to this one), with its progress bar. "
            + "Resumable and idempotent."
    )

    @Argument(help: "The OHLCVT CSV file.") var file: String
    @OptionGroup var series: SeriesOptions
    @Flag(help: "Read the file again from its start even if it was loaded before.") var restart = false

    func run() async throws {
        try await reporting { _ in
            guard FileManager.default.isReadableFile(atPath: file) else { throw CommandFailure(.misconfigured, "cannot read \(file)") }
            var arguments = ["backfill", file, "--pair", series.pair, "--interval", series.interval]
            if restart { arguments.append("--restart") }
            try execIngestor(arguments)
        }
    }
}

/// Replaces this process with the `ingestor` executable next to this one, so that its output (a progress bar)
/// and its exit status are the command's. Returns only by throwing.
func execIngestor(_ arguments: [String]) throws(CommandFailure) -> Never {
    guard let directory = Bundle.main.executableURL?.resolvingSymlinksInPath().deletingLastPathComponent() else {
        throw CommandFailure(.misconfigured, "cannot tell where this executable is")
    }
    let ingestor = directory.appendingPathComponent("ingestor").path
    guard FileManager.default.isExecutableFile(atPath: ingestor) else {
        throw CommandFailure(.misconfigured, "\(ingestor) is missing: build the ingestor too")
    }
    let argv = ([ingestor] + arguments).map { strdup($0) } + [nil]
    execv(ingestor, argv)
    throw CommandFailure(.misconfigured, "cannot run \(ingestor): \(String(cString: strerror(errno)))")
}

/// A pair named on the command line (`candlecast pairs add XBTEUR`), by the contract's rules.
struct PairArgument: ParsableArguments {
    @Argument(help: "Kraken pair, e.g. XBTEUR.") var pair: String
    @Option(help: "Candle interval (1d, 4h, 1w...).") var interval = "1d"

    mutating func validate() throws { pair = try validatedSeries(pair: pair, field: "pair", interval: interval) }
}

/// `candlecast pairs add XBTEUR`: the one command that adds a pair to a running system.
struct Pairs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The pairs the system ingests: add one to a running system, list them, stop polling one.",
        discussion: "Runs the ingestor's own `ingestor pairs` (the executable next to this one) with the environment of .local/env.",
        subcommands: [Add.self, List.self, Remove.self])

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Load a pair's history (a file, then Kraken's last 720 candles) and have the running ingestor poll it.",
            discussion: """
                The pair then gets its own dataset version, sweep, champion (the naive baseline when no LSTM beats it), \
                forecasts on forecast.created.<pair>.<interval>, and its dashboard series (/?pair=<PAIR>).
                """)

        @OptionGroup var series: PairArgument
        @Option(help: "A Kraken OHLCVT history file of the pair, loaded first.") var history: String?

        func run() async throws {
            try await reporting { _ in
                var arguments = ["pairs", "add", series.pair, "--interval", series.interval]
                if let history {
                    guard FileManager.default.isReadableFile(atPath: history) else {
                        throw CommandFailure(.misconfigured, "cannot read \(history)")
                    }
                    arguments += ["--history", history]
                }
                try execIngestor(arguments)
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Every pair with stored candles or tracked: its range, how it is polled.")

        func run() async throws {
            try await reporting { _ in try execIngestor(["pairs", "list"]) }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Stop polling a pair added with `pairs add` (its candles, models and forecasts stay).")

        @OptionGroup var series: PairArgument

        func run() async throws {
            try await reporting { _ in try execIngestor(["pairs", "remove", series.pair, "--interval", series.interval]) }
        }
    }
}

struct Sweep: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Start a hyper-parameter sweep: one training job per grid point, spread over the trainers.")

    @OptionGroup var series: SeriesOptions
    @Option(name: .customLong("dataset-version"), help: "Dataset version to train on (default: the newest).") var datasetVersion: Int?
    @Option(help: #"Grid as JSON lists, e.g. {"batch_size":[16,32],"units":[64]} (default: the registry's)."#) var grid: String?

    func run() async throws {
        let sweepGrid: RegistryAPI.Components.Schemas.SweepGrid? = try grid.map { text in
            do {
                return try JSONDecoder().decode(RegistryAPI.Components.Schemas.SweepGrid.self, from: Data(text.utf8))
            } catch {
                throw ValidationError("--grid is not a grid of the registry's document: \(error)")
            }
        }
        let interval = try series.registryInterval()
        try await reporting { services in
            let endpoints = services.endpoints
            var version = datasetVersion
            if version == nil {
                guard let datasetInterval = PreprocessorAPI.Components.Schemas.Interval(rawValue: interval.rawValue) else {
                    throw ValidationError("\(interval.rawValue) is not an interval the preprocessor takes")
                }
                let preprocessor = try services.preprocessor()
                let datasets = try await services.fetch(
                    "preprocessor", at: endpoints.preprocessor,
                    { try await preprocessor.listDatasetVersions(path: .init(pair: series.pair, interval: datasetInterval)) }
                ) { try $0.ok.body.json }
                version = datasets.versions.last?.version
            }
            guard let version else {
                throw CommandFailure(.notFound, "no dataset version of \(series.pair) \(interval.rawValue) yet: backfill first")
            }
            let registry = try services.registry(writing: true)
            let body = RegistryAPI.Operations.PostV1Sweeps.Input.Body.JsonPayload(
                pair: series.pair, interval: interval, datasetVersion: version, grid: sweepGrid)
            let started = try await services.fetch(
                "registry", at: endpoints.registry, { try await registry.postV1Sweeps(body: .json(body)) }
            ) {
                try $0.created.body.json
            }
            print("sweep \(started.sweepId) started on dataset version \(version): \(started.jobs) jobs")
        }
    }
}

struct Models: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Registered models, their versions and the champion alias.",
        subcommands: [List.self, Show.self, Promote.self, Rollback.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Every registered model with its aliases.")
        func run() async throws {
            try await reporting { services in
                let registry = try services.registry()
                let models = try await services.fetch("registry", at: services.endpoints.registry, { try await registry.getV1Models() }) {
                    try $0.ok.body.json
                }
                print(
                    Table.render(
                        ["model", "versions", "aliases", "created"],
                        models.map { model in
                            let aliases = model.aliases.additionalProperties.sorted { $0.key < $1.key }.map { "\($0.key)=v\($0.value)" }
                            return [model.name, "\(model.versions)", aliases.joined(separator: " "), Shown.time(model.createdAt)]
                        }))
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The versions of a model: test metrics next to the naive forecast's, aliases.")
        @Argument(help: "Model name (default: the model of --pair and --interval).") var name: String?
        @OptionGroup var series: SeriesOptions
        func run() async throws {
            let model = try name ?? series.model()
            try await reporting { services in
                let registry = try services.registry()
                let versions = try await services.fetch(
                    "registry", at: services.endpoints.registry, { try await registry.getV1ModelsNameVersions(path: .init(name: model)) }
                ) { try $0.ok.body.json }
                print(
                    Table.render(
                        ["version", "run", "dataset", "test RMSE", "naive RMSE", "MASE", "aliases", "created"],
                        versions.map { version in
                            [
                                "\(version.version)", "\(version.runId)", "\(version.datasetVersion)",
                                Shown.number(version.testMetrics?.rmse),
                                Shown.number(version.naiveMetrics?.rmse), Shown.number(version.testMetrics?.mase),
                                version.aliases.isEmpty ? "-" : version.aliases.joined(separator: ","), Shown.time(version.createdAt),
                            ]
                        }))
            }
        }
    }

    struct Promote: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Point the champion alias at a version (needs CANDLECAST_REGISTRY_TOKEN).")
        @Argument(help: "Model version.") var version: Int
        @Argument(help: "Model name (default: the model of --pair and --interval).") var name: String?
        @OptionGroup var series: SeriesOptions
        @Option(help: "Why, kept in the alias history.") var reason = "promoted with the candlecast CLI"
        func run() async throws {
            let model = try name ?? series.model()
            try await reporting { services in
                let registry = try services.registry(writing: true)
                let moved = try await services.fetch(
                    "registry", at: services.endpoints.registry,
                    {
                        try await registry.postV1ModelsNamePromote(
                            path: .init(name: model), body: .json(.init(version: version, reason: reason)))
                    }
                ) { try $0.ok.body.json }
                print("\(moved.model): champion is now v\(moved.champion)")
            }
        }
    }

    struct Rollback: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Move the champion back to the previous champion, or to --to (needs CANDLECAST_REGISTRY_TOKEN).")
        @Argument(help: "Model name (default: the model of --pair and --interval).") var name: String?
        @OptionGroup var series: SeriesOptions
        @Option(help: "Version to roll back to (default: the previous champion).") var to: Int?
        @Option(help: "Why, kept in the alias history.") var reason = "rolled back with the candlecast CLI"
        func run() async throws {
            let model = try name ?? series.model()
            try await reporting { services in
                let registry = try services.registry(writing: true)
                let moved = try await services.fetch(
                    "registry", at: services.endpoints.registry,
                    {
                        try await registry.postV1ModelsNameRollback(
                            path: .init(name: model), body: .json(.init(version: to, reason: reason)))
                    }
                ) { try $0.ok.body.json }
                print("\(moved.model): champion is now v\(moved.champion)")
            }
        }
    }
}

struct Runs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Training runs.", subcommands: [List.self, Show.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The newest runs first.")
        @Option(help: "How many.") var limit = 20
        func run() async throws {
            try await reporting { services in
                let registry = try services.registry()
                let runs = try await services.fetch(
                    "registry", at: services.endpoints.registry, { try await registry.getV1Runs(query: .init(limit: limit)) }
                ) {
                    try $0.ok.body.json
                }
                print(
                    Table.render(
                        [
                            "run", "status", "trainer", "batch", "units", "window", "target", "validation loss", "test RMSE", "naive RMSE",
                            "MASE", "seconds",
                        ],
                        runs.map { run in
                            [
                                "\(run.id)", run.status.rawValue, run.trainer ?? "-", "\(run.params.batchSize)", "\(run.params.units)",
                                "\(run.params.window)",
                                run.params.target, Shown.number(run.validationLoss), Shown.number(run.testMetrics?.rmse),
                                Shown.number(run.naiveMetrics?.rmse),
                                Shown.number(run.testMetrics?.mase), run.trainSeconds.map { String(format: "%.1f", $0) } ?? "-",
                            ]
                        }))
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "One run: parameters, metrics, per-epoch history, artifact.")
        @Argument(help: "Run id.") var id: Int64
        func run() async throws {
            try await reporting { services in
                let registry = try services.registry()
                let run = try await services.fetch(
                    "registry", at: services.endpoints.registry, { try await registry.getV1RunsId(path: .init(id: id)) }
                ) {
                    try $0.ok.body.json
                }
                let epochs = (run.metricHistory ?? []).filter { $0.key == "validation_loss" }.count
                let parameters = run.params
                func scores(_ scores: RegistryAPI.Components.Schemas.Scores?) -> String {
                    guard let scores else { return "-" }
                    return "RMSE \(Shown.number(scores.rmse)) MAE \(Shown.number(scores.mae)) MAPE \(Shown.number(scores.mape)) "
                        + "R² \(Shown.number(scores.r2)) MASE \(Shown.number(scores.mase))"
                }
                print(
                    Table.render(
                        ["field", "value"],
                        [
                            ["run", "\(run.id)"], ["status", run.status.rawValue], ["trainer", run.trainer ?? "-"],
                            [
                                "parameters",
                                "units=\(parameters.units) layers=\(parameters.layers) activation=\(parameters.activation) "
                                    + "target=\(parameters.target) window=\(parameters.window) batch_size=\(parameters.batchSize) "
                                    + "learning_rate=\(parameters.learningRate) "
                                    + "epochs=\(parameters.epochs) patience=\(parameters.patience) seed=\(parameters.seed)",
                            ],
                            ["dataset version", "\(run.datasetVersion)"], ["test", scores(run.testMetrics)],
                            ["naive", scores(run.naiveMetrics)],
                            ["epochs", "\(Shown.integer(run.epochsRun)) (\(epochs) with validation loss)"],
                            ["validation loss", Shown.number(run.validationLoss)],
                            ["train seconds", run.trainSeconds.map { String(format: "%.1f", $0) } ?? "-"],
                            ["artifact", run.artifact.map { "\($0.name), \($0.bytes) bytes, SHA-256 \($0.sha256)" } ?? "-"],
                            ["error", run.error ?? "-"],
                        ]))
            }
        }
    }
}

/// A forecast as the CLI prints it, whether it came from the predictor's history, its latest forecast or the broker.
extension ForecastCreated {
    init(_ stored: PredictorAPI.Components.Schemas.ScoredForecast) throws {
        try self.init(
            PredictorAPI.Components.Schemas.Forecast(
                pair: stored.pair, interval: stored.interval, targetOpenTime: stored.targetOpenTime, predictedClose: stored.predictedClose,
                lastClose: stored.lastClose, modelName: stored.modelName, modelVersion: stored.modelVersion,
                datasetVersion: stored.datasetVersion, producedAt: stored.producedAt, stale: stored.stale,
                intervals: stored.intervals?.map { .init(level: $0.level, lower: $0.lower, upper: $0.upper) },
                probabilityUp: stored.probabilityUp))
    }

    init(_ latest: PredictorAPI.Components.Schemas.Forecast) throws {
        guard let interval = CandleInterval(latest.interval.rawValue) else {
            throw CommandFailure(.undocumentedAnswer, "interval \(latest.interval.rawValue)")
        }
        self.init(
            pair: latest.pair, interval: interval, targetOpenTime: Int64(latest.targetOpenTime.timeIntervalSince1970),
            predictedClose: latest.predictedClose, lastClose: latest.lastClose, modelName: latest.modelName,
            modelVersion: latest.modelVersion,
            datasetVersion: latest.datasetVersion, producedAt: latest.producedAt, stale: latest.stale,
            intervals: latest.intervals?.map { ForecastInterval(level: $0.level, lower: $0.lower, upper: $0.upper) },
            probabilityUp: latest.probabilityUp)
    }

    /// Which forecast this is: a target forecast again by another model version is another forecast.
    var identity: String { "\(pair)/\(interval.name)/\(targetOpenTime)/\(modelName)/\(modelVersion)" }

    func jsonLine() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }

    var line: String {
        "\(pair) \(interval.name) close of \(utcDay(targetOpenTime)): \(Shown.price(predictedClose)) \(QuoteCurrency(pair: pair)), "
            + "\(Shown.uncertainty(intervals: intervals, probabilityUp: probabilityUp)) "
            + "(last close \(Shown.price(lastClose)), "
            + "\(modelName) v\(modelVersion)\(stale ? ", stale model" : ""))"
    }
}

struct Forecasts: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Forecasts: the stored ones and new ones as they come.", subcommands: [Tail.self, List.self, Latest.self])

    struct Latest: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The newest forecast: the close, its 80 % and 95 % ranges and the probability of an up move.")
        @OptionGroup var series: SeriesOptions
        @Flag(help: "One JSON object.") var json = false

        func run() async throws {
            let apiInterval = try series.predictorInterval()
            try await reporting { services in
                let predictor = try services.predictor()
                let latest = try await services.fetch(
                    "predictor", at: services.endpoints.predictor,
                    { try await predictor.getLatestForecast(query: .init(pair: series.pair, interval: apiInterval)) }
                ) { try ForecastCreated($0.ok.body.json) }
                print(json ? try latest.jsonLine() : latest.line)
            }
        }
    }

    struct Tail: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the latest stored forecasts, then new ones as the predictor publishes them (Ctrl-C stops).",
            discussion:
                "New forecasts come from a temporary queue of this command's own, bound before the stored ones are read: "
                + "none is missed or printed twice."
        )
        @OptionGroup var series: SeriesOptions
        @Option(name: [.customShort("n"), .long], help: "How many stored forecasts to print first (0: none).") var count = 10
        @Flag(inversion: .prefixedNo, help: "Go on printing new forecasts.") var follow = true
        @Option(name: .customLong("exit-after"), help: "Stop after this many new forecasts (for scripts).") var exitAfter: Int?
        @Flag(help: "One JSON object per line.") var json = false

        func validate() throws {
            guard (0...10_000).contains(count) else { throw ValidationError("--count must be from 0 to 10000") }
            if let exitAfter, exitAfter < 1 { throw ValidationError("--exit-after must be at least 1") }
        }

        func run() async throws {
            let interval = try series.candleInterval()
            let apiInterval = try series.predictorInterval()
            try await reporting { services in
                let json = self.json
                @Sendable func show(_ forecast: ForecastCreated) throws {
                    let text = json ? try forecast.jsonLine() : forecast.line
                    // Unbuffered, so that a pipe sees each forecast as it comes.
                    FileHandle.standardOutput.write(Data((text + "\n").utf8))
                }
                // Subscribed first, so that a forecast made while the stored ones are read is not missed.
                var subscriber: ForecastSubscriber?
                if follow {
                    var logger = Logger(label: "candlecast")
                    logger.logLevel = .error
                    do {
                        subscriber = try ForecastSubscriber(
                            broker: try services.endpoints.broker(), options: .init(pair: series.pair, interval: interval), logger: logger)
                    } catch let failure as CommandFailure {
                        throw failure
                    } catch {
                        throw CommandFailure(.unreachable, "cannot subscribe to forecasts on the broker: \(error)")
                    }
                    // The queue is bound once the consumer is connected: only then is no new forecast missed.
                    let deadline = ContinuousClock.now + .seconds(10)
                    while subscriber?.isConnected == false {
                        guard ContinuousClock.now < deadline else {
                            await subscriber?.stop()
                            throw CommandFailure(.unreachable, "cannot reach the broker to follow forecasts (source .local/env?)")
                        }
                        try await Task.sleep(for: .milliseconds(50))
                    }
                }
                let printed = Printed()
                if count > 0 {
                    let predictor = try services.predictor()
                    let stored = try await services.fetch(
                        "predictor", at: services.endpoints.predictor,
                        {
                            try await predictor.listForecasts(query: .init(pair: series.pair, interval: apiInterval, limit: count))
                        }
                    ) { try $0.ok.body.json.map(ForecastCreated.init) }
                    for forecast in stored where printed.first(forecast.identity) { try show(forecast) }
                    if stored.isEmpty {
                        FileHandle.standardError.write(Data("no forecast of \(series.pair) \(interval.name) stored yet\n".utf8))
                    }
                }
                guard let subscriber else { return }
                FileHandle.standardError.write(Data("following new forecasts on \(subscriber.queue) (Ctrl-C stops)\n".utf8))
                let received = Received(limit: exitAfter)
                await subscriber.forecasts { forecast in
                    guard forecast.interval == interval, printed.first(forecast.identity) else { return }
                    // Deliveries already on their way when the limit is reached are not printed.
                    guard let position = received.claim() else { return }
                    try show(forecast)
                    if position == exitAfter { await subscriber.stop() }
                }
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Stored forecasts by target time, oldest first, with how far off each was once its candle closed.",
            discussion: "Example: candlecast forecasts list --from 2024-01-01 --to 2024-02-01 (a date as --to is its whole day).")
        @OptionGroup var series: SeriesOptions
        @Option(help: "From this RFC 3339 date or timestamp (2024-01-01, 2024-01-01T12:00:00Z).") var from: String?
        @Option(help: "To this RFC 3339 date (the whole day) or timestamp.") var to: String?
        @Option(help: "At most this many (the newest of the range).") var limit = 1000
        @Flag(help: "One JSON object per line.") var json = false

        /// The documents' `Instant`: an RFC 3339 date or timestamp.
        static var instant: Regex<(Substring, Substring?, Substring?, Substring?)> {
            /^[0-9]{4}-[0-9]{2}-[0-9]{2}([Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2}))?$/
        }

        func validate() throws {
            for (option, value) in [("--from", from), ("--to", to)] {
                if let value, value.wholeMatch(of: Self.instant) == nil {
                    throw ValidationError("\(option) \(value) is not an RFC 3339 date or timestamp (2024-01-01, 2024-01-01T00:00:00Z)")
                }
            }
            guard (1...10_000).contains(limit) else { throw ValidationError("--limit must be from 1 to 10000") }
        }

        func run() async throws {
            let apiInterval = try series.predictorInterval()
            try await reporting { services in
                let predictor = try services.predictor()
                let stored = try await services.fetch(
                    "predictor", at: services.endpoints.predictor,
                    {
                        try await predictor.listForecasts(
                            query: .init(pair: series.pair, interval: apiInterval, from: from, to: to, limit: limit))
                    }
                ) { try $0.ok.body.json }
                if json {
                    let encoder = JSONEncoder()
                    encoder.outputFormatting = [.sortedKeys]
                    encoder.dateEncodingStrategy = .iso8601
                    for forecast in stored { print(String(decoding: try encoder.encode(forecast), as: UTF8.self)) }
                    return
                }
                guard !stored.isEmpty else {
                    print("no forecast of \(series.pair) \(apiInterval.rawValue) in that range")
                    return
                }
                print(
                    Table.render(
                        [
                            "target", "forecast", "80% range", "95% range", "P(up)", "last close", "actual", "error", "naive error",
                            "in 80%/95%", "Brier (naive)", "model",
                        ],
                        stored.map { forecast in
                            let ranges = IntervalLevels.all.map { level in
                                forecast.intervals?.first { $0.level == level }.map { Shown.range($0.lower, $0.upper) } ?? "-"
                            }
                            let hits = IntervalLevels.all.map { level in
                                forecast.intervals?.first { $0.level == level }?.hit.map { $0 ? "yes" : "no" } ?? "-"
                            }
                            let brier = forecast.brier.map { Shown.number($0) + " (\(Shown.number(forecast.naiveBrier)))" } ?? "-"
                            return [
                                Shown.time(forecast.targetOpenTime), Shown.price(forecast.predictedClose), ranges[0], ranges[1],
                                Shown.probability(forecast.probabilityUp), Shown.price(forecast.lastClose),
                                forecast.actualClose.map(Shown.price) ?? "-", forecast.absoluteError.map(Shown.price) ?? "-",
                                forecast.naiveAbsoluteError.map(Shown.price) ?? "-", hits.contains("-") ? "-" : hits.joined(separator: "/"),
                                brier, "\(forecast.modelName) v\(forecast.modelVersion)\(forecast.stale ? " (stale)" : "")",
                            ]
                        }))
            }
        }
    }
}

/// The forecasts already printed, so that one read from the history and then delivered is printed once.
final class Printed: Sendable {
    private let identities = Mutex<Set<String>>([])
    /// Whether `identity` is new (and now remembered).
    func first(_ identity: String) -> Bool { identities.withLock { $0.insert(identity).inserted } }
}

/// Numbers the new forecasts printed, up to the limit.
final class Received: Sendable {
    private let state: Synchronization.Mutex<Int> = .init(0)
    let limit: Int?
    init(limit: Int?) { self.limit = limit }
    /// The position of the next forecast to print (1, 2, ...), or nil once the limit is reached.
    func claim() -> Int? {
        state.withLock { count in
            if let limit, count >= limit { return nil }
            count += 1
            return count
        }
    }
}
