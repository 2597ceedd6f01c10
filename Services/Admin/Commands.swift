import ArgumentParser
import CandlecastClient
import Foundation
import Synchronization
import Logging
import Messaging
import ServiceKit

/// The model of a pair and interval, as the registry names it.
struct SeriesOptions: ParsableArguments {
    @Option(help: "Kraken pair.") var pair = "XBTUSD"
    @Option(help: "Candle interval (1d, 4h, 1w...).") var interval = "1d"

    func candleInterval() throws -> CandleInterval {
        guard let value = CandleInterval(interval) else { throw ValidationError("\(interval) is not a Kraken interval") }
        return value
    }
    func model() throws -> String { modelName(pair: pair, interval: try candleInterval()) }
}

struct Backfill: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Load a Kraken OHLCVT history file (e.g. data/kraken_XBTUSD_1440.csv) through the ingestor.",
        discussion: "Runs the ingestor's own backfill (the `ingestor` executable next to this one), with its progress bar. Resumable and idempotent.")

    @Argument(help: "The OHLCVT CSV file.") var file: String
    @OptionGroup var series: SeriesOptions
    @Flag(help: "Read the file again from its start even if it was loaded before.") var restart = false

    func run() async throws {
        try await reporting {
            guard FileManager.default.isReadableFile(atPath: file) else { throw CommandFailure.refused("cannot read \(file)") }
            guard let directory = Bundle.main.executableURL?.resolvingSymlinksInPath().deletingLastPathComponent() else {
                throw CommandFailure.refused("cannot tell where this executable is")
            }
            let ingestor = directory.appendingPathComponent("ingestor").path
            guard FileManager.default.isExecutableFile(atPath: ingestor) else { throw CommandFailure.refused("\(ingestor) is missing: build the ingestor too") }
            var arguments = [ingestor, "backfill", file, "--pair", series.pair, "--interval", series.interval]
            if restart { arguments.append("--restart") }
            // The ingestor takes over this process: its progress bar and exit status are the command's.
            let argv = arguments.map { strdup($0) } + [nil]
            execv(ingestor, argv)
            throw CommandFailure.refused("cannot run \(ingestor): \(String(cString: strerror(errno)))")
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
        try await reporting {
            let endpoints = Endpoints()
            let interval = try series.candleInterval()
            var version = datasetVersion
            if version == nil {
                let datasets = try await ServiceHTTP(base: endpoints.preprocessor).get("/v1/datasets/\(series.pair)/\(interval.name)")
                version = datasets["versions"].array.last?["version"].int
            }
            guard let version else { throw CommandFailure.refused("no dataset version of \(series.pair) \(interval.name) yet: backfill first") }
            var body: [String: Any] = ["pair": series.pair, "interval": interval.name, "dataset_version": version]
            if let grid {
                guard let object = try? JSONSerialization.jsonObject(with: Data(grid.utf8)) as? [String: Any] else { throw ValidationError("--grid is not a JSON object") }
                body["grid"] = object
            }
            let answer = try await ServiceHTTP(base: endpoints.registry, token: try endpoints.registryToken()).post("/v1/sweeps", body)
            print("sweep \(answer["sweep_id"]) started on dataset version \(version): \(answer["jobs"]) jobs")
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
            try await reporting {
                let models = try await ServiceHTTP(base: Endpoints().registry).get("/v1/models").array
                print(Table.render(["model", "versions", "aliases", "created"], models.map { [$0["name"].description, $0["versions"].description, $0["aliases"].description, $0["created_at"].description] }))
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The versions of a model: test metrics next to the naive forecast's, aliases.")
        @Argument(help: "Model name (default: the model of --pair and --interval).") var name: String?
        @OptionGroup var series: SeriesOptions
        func run() async throws {
            try await reporting {
                let model = try name ?? series.model()
                let versions = try await ServiceHTTP(base: Endpoints().registry).get("/v1/models/\(model)/versions").array
                print(Table.render(
                    ["version", "run", "dataset", "test RMSE", "naive RMSE", "MASE", "aliases", "created"],
                    versions.map { [$0["version"].description, $0["run_id"].description, $0["dataset_version"].description, $0["test_metrics"]["rmse"].description,
                                     $0["naive_metrics"]["rmse"].description, $0["test_metrics"]["mase"].description, $0["aliases"].description, $0["created_at"].description] }))
            }
        }
    }

    struct Promote: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Point the champion alias at a version (needs CANDLECAST_REGISTRY_TOKEN).")
        @Argument(help: "Model version.") var version: Int
        @Argument(help: "Model name (default: the model of --pair and --interval).") var name: String?
        @OptionGroup var series: SeriesOptions
        @Option(help: "Why, kept in the alias history.") var reason = "promoted with the candlecast CLI"
        func run() async throws {
            try await reporting {
                let endpoints = Endpoints()
                let model = try name ?? series.model()
                let answer = try await ServiceHTTP(base: endpoints.registry, token: try endpoints.registryToken())
                    .post("/v1/models/\(model)/promote", ["version": version, "reason": reason])
                print("\(model): champion is now v\(answer["champion"])")
            }
        }
    }

    struct Rollback: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Move the champion back to the previous champion, or to --to (needs CANDLECAST_REGISTRY_TOKEN).")
        @Argument(help: "Model name (default: the model of --pair and --interval).") var name: String?
        @OptionGroup var series: SeriesOptions
        @Option(help: "Version to roll back to (default: the previous champion).") var to: Int?
        @Option(help: "Why, kept in the alias history.") var reason = "rolled back with the candlecast CLI"
        func run() async throws {
            try await reporting {
                let endpoints = Endpoints()
                let model = try name ?? series.model()
                var body: [String: Any] = ["reason": reason]
                if let to { body["version"] = to }
                let answer = try await ServiceHTTP(base: endpoints.registry, token: try endpoints.registryToken()).post("/v1/models/\(model)/rollback", body)
                print("\(model): champion is now v\(answer["champion"])")
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
            try await reporting {
                let runs = try await ServiceHTTP(base: Endpoints().registry).get("/v1/runs?limit=\(limit)").array
                print(Table.render(
                    ["run", "status", "trainer", "batch", "units", "target", "test RMSE", "naive RMSE", "MASE", "seconds"],
                    runs.map { [$0["id"].description, $0["status"].description, $0["trainer"].description, $0["params"]["batch_size"].description,
                                 $0["params"]["units"].description, $0["params"]["target"].description, $0["test_metrics"]["rmse"].description,
                                 $0["naive_metrics"]["rmse"].description, $0["test_metrics"]["mase"].description, $0["train_seconds"].description] }))
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "One run: parameters, metrics, per-epoch history, artifact (JSON).")
        @Argument(help: "Run id.") var id: Int
        func run() async throws {
            try await reporting {
                let run = try await ServiceHTTP(base: Endpoints().registry).request("GET", "/v1/runs/\(id)", body: nil)
                let epochs = run["metric_history"].array.filter { $0["key"].string == "validation_loss" }.count
                print(Table.render(["field", "value"], [
                    ["run", run["id"].description], ["status", run["status"].description], ["trainer", run["trainer"].description],
                    ["parameters", run["params"].description], ["dataset version", run["dataset_version"].description],
                    ["test", run["test_metrics"].description], ["naive", run["naive_metrics"].description],
                    ["epochs", "\(run["epochs_run"]) (\(epochs) with validation loss)"], ["train seconds", run["train_seconds"].description],
                    ["artifact", run["artifact"].description], ["error", run["error"].description],
                ]))
            }
        }
    }
}

struct Forecasts: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Forecast events.", subcommands: [Tail.self])

    struct Tail: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print forecasts as the predictor publishes them (a temporary queue of its own).")
        @Option(help: "Only this pair.") var pair: String?
        @Option(help: "Stop after this many forecasts.") var count: Int?
        @Flag(help: "One JSON object per line.") var json = false

        func run() async throws {
            try await reporting {
                let broker = try Endpoints().broker()
                var logger = Logger(label: "candlecast")
                logger.logLevel = .error
                let subscriber = try ForecastSubscriber(broker: broker, options: .init(pair: pair), logger: logger)
                let received = Received(limit: count)
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys]
                encoder.dateEncodingStrategy = .iso8601
                FileHandle.standardError.write(Data("listening for forecasts on \(subscriber.queue) (Ctrl-C stops)\n".utf8))
                await withTaskGroup(of: Void.self) { group in
                    group.addTask {
                        await subscriber.forecasts { forecast in
                            // Deliveries already on their way when the limit is reached are not printed.
                            guard let position = received.claim() else { return }
                            let line = json
                                ? String(decoding: try encoder.encode(forecast), as: UTF8.self)
                                : "\(forecast.pair) \(forecast.interval.name) close of \(utcDay(forecast.targetOpenTime)): \(String(format: "%.2f", forecast.predictedClose)) USD (last close \(String(format: "%.2f", forecast.lastClose)), \(forecast.modelName) v\(forecast.modelVersion)\(forecast.stale ? ", stale model" : ""))"
                            // Unbuffered, so that a pipe sees each forecast as it comes.
                            FileHandle.standardOutput.write(Data((line + "\n").utf8))
                            if position == count { await subscriber.stop() }
                        }
                    }
                    await group.waitForAll()
                }
            }
        }
    }
}

/// Numbers the forecasts printed, up to the limit.
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

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Services up, queue depths, data freshness and the latest forecast.")
    @OptionGroup var series: SeriesOptions

    func run() async throws {
        try await reporting {
            let endpoints = Endpoints()
            var services: [(String, String)] = [
                ("ingestor", endpoints.ingestor), ("preprocessor", endpoints.preprocessor), ("registry", endpoints.registry),
                ("predictor", endpoints.predictor), ("monitor", endpoints.monitor),
            ]
            services += endpoints.trainers.enumerated().map { ("trainer-\($0.offset + 1)", $0.element) }
            var rows: [[String]] = []
            var down = 0
            for (name, url) in services {
                let state: String
                do {
                    _ = try await ServiceHTTP(base: url).get("/readyz")
                    state = "ready"
                } catch let failure as CommandFailure {
                    state = failure.exitCode == ExitCode(2) ? "down" : "not ready"
                    down += 1
                }
                rows.append([name, url, state])
            }
            print(Table.render(["service", "url", "state"], rows))

            print("")
            if let broker = try? endpoints.broker() {
                var depths: [[String]] = []
                for service in ServiceName.allCases {
                    for queue in service.subscriptions.map(\.queue) + [service.deadLetterQueue] {
                        let depth = try? await BrokerAdmin.messageCount(queue: queue, configuration: broker)
                        depths.append([queue, depth.map(String.init) ?? "not declared"])
                    }
                }
                print(Table.render(["queue", "messages"], depths))
            } else {
                print("queues: no broker configuration in the environment (source .local/env)")
            }

            print("")
            let interval = try series.candleInterval()
            if let latest = try? await ServiceHTTP(base: endpoints.predictor).get("/v1/forecasts/latest?pair=\(series.pair)&interval=\(interval.name)") {
                print("latest forecast: \(series.pair) \(interval.name) close of \((latest["target_open_time"].number.flatMap { Int64(exactly: $0) }.map(utcDay) ?? "?")): \(String(format: "%.2f", latest["predicted_close"].number ?? 0)) USD by \(latest["model_name"]) v\(latest["model_version"])")
            } else {
                print("latest forecast: none yet")
            }
            if let metrics = try? await ServiceHTTP(base: endpoints.monitor).text("/metrics") {
                for line in metrics.split(separator: "\n") where line.hasPrefix("candlecast_candle_age_seconds{") {
                    let hours = Double(line.split(separator: " ").last ?? "").flatMap { Int(exactly: ($0 / 3600).rounded(.down)) }
                    let labels = line.split(separator: "{").dropFirst().first?.split(separator: "}").first ?? ""
                    print("freshness: \(labels) newest candle closed \(hours.map(String.init) ?? "?") h ago")
                }
            }
            if down > 0 { throw CommandFailure.unreachable("\(down) service(s) not answering") }
        }
    }
}
