import CandlecastClient
import Foundation
import KrakenFake
import Messaging
import Storage
import TestSupport
import Testing

/// Candlecast as users run it, for system tests: every service a separate process, a database and a RabbitMQ
/// virtual host of its own, Kraken replaced by the fake server replaying 2024 on command.
final class SystemHarness: @unchecked Sendable {
    // @unchecked: `processes` is only touched by the test that owns the harness, one step at a time.
    static let data = TestEnvironment.sharedDataDirectory
    static let modelName = "lstm-xbtusd-1d"

    struct Ports: Sendable {
        var base: Int
        var ingestor: Int { base + 1 }
        var preprocessor: Int { base + 2 }
        var trainerA: Int { base + 3 }
        var registry: Int { base + 4 }
        var predictor: Int { base + 5 }
        var monitor: Int { base + 6 }
        var trainerB: Int { base + 7 }
        var kraken: Int { base + 9 }
        /// Extra replicas, in order, from base + 10.
        var replicas: [String] = []
        func port(of role: String) -> Int {
            if let index = replicas.firstIndex(of: role) { return base + 10 + index }
            return [
                "ingestor": ingestor, "preprocessor": preprocessor, "trainer-a": trainerA, "trainer-b": trainerB, "registry": registry,
                "predictor": predictor, "monitor": monitor, "fake-kraken": kraken,
            ][role] ?? 0
        }
    }

    static let roles = ["ingestor", "preprocessor", "trainer-a", "trainer-b", "registry", "predictor", "monitor"]
    /// Every process of this system: the roles above and the extra replicas (`predictor-2`, `trainer-c`, ...).
    var roles: [String] { Self.roles + ports.replicas }

    /// The executable a role runs, and the role whose settings a replica shares.
    static func baseRole(of role: String) -> String {
        if role.hasPrefix("trainer") { return "trainer-a" }
        return Self.roles.first { role == $0 || role.hasPrefix($0 + "-") } ?? role
    }

    let ports: Ports
    let database: TestDatabase
    let client: PostgresClient
    let vhost: TestVirtualHost
    let broker: BrokerConfiguration
    let token = "system-\(UUID().uuidString)"
    let rows2024: [FakeKraken.Row]
    private let environment: [String: [String: String]]
    private(set) var processes: [String: ServiceProcess] = [:]

    var registryURL: String { "http://127.0.0.1:\(ports.registry)" }
    var predictorURL: String { "http://127.0.0.1:\(ports.predictor)" }
    var monitorURL: String { "http://127.0.0.1:\(ports.monitor)" }
    /// Every target a forecast is expected for: the day after the history, then the day after each 2024 candle.
    var expectedTargets: Set<Int64> { Set([rows2024[0].time] + rows2024.map { $0.time + 86_400 }) }

    /// With a prefix, each service connects as a role of its own (`<prefix><service>`) that owns only its schema.
    let rolePrefix: String?

    init(
        basePort: Int, sweepGrid: String = #"{"units":[8],"epochs":[4],"batch_size":[32,64]}"#, rolePrefix: String? = nil,
        datasetEvery: Int = 1000, baselines: String = "", brokerCluster: Bool = false, databasePair: Bool = false, replicas: [String] = []
    ) async throws {
        ports = Ports(base: basePort, replicas: replicas)
        self.rolePrefix = rolePrefix
        database = try await TestDatabase.create(onPair: databasePair)
        if let rolePrefix { try await TestEnvironment.servers("database-roles", database.name, rolePrefix) }
        client = database.client()
        vhost = try await TestVirtualHost.create(onCluster: brokerCluster)
        broker = try vhost.broker()
        rows2024 = try FakeKraken.Row.load(csv: Self.data + "/kraken_XBTUSD_1440_2024.csv")
        let registryURL = "http://127.0.0.1:\(ports.registry)"
        environment = [
            "ingestor": ["CANDLECAST_KRAKEN_URL": "http://127.0.0.1:\(ports.kraken)", "CANDLECAST_KRAKEN_POLL_SECONDS": "1"],
            // One dataset version (so one automatic sweep): none of the monthly versions a replay would otherwise cut.
            "preprocessor": ["CANDLECAST_DATASET_EVERY": "\(datasetEvery)"],
            // Trainers store model files through the registry's API before they report a job.
            "trainer-a": ["CANDLECAST_BLAS_THREADS": "1", "CANDLECAST_REGISTRY_URL": registryURL],
            "trainer-b": ["CANDLECAST_BLAS_THREADS": "1", "CANDLECAST_REGISTRY_URL": registryURL],
            // No baselines unless asked: the delivery and recovery tests count a sweep's runs as its grid points (the end-to-end
            // test runs the default, CANDLECAST_SWEEP_BASELINES=naive-empirical).
            "registry": ["CANDLECAST_SWEEP_GRID": sweepGrid, "CANDLECAST_SWEEP_BASELINES": baselines],
            "predictor": ["CANDLECAST_REGISTRY_URL": registryURL],
            "monitor": ["CANDLECAST_REGISTRY_URL": registryURL, "CANDLECAST_MONITOR_REFRESH_SECONDS": "1"],
        ]
    }

    /// The fake Kraken server (replaying 2024, and whatever `krakenArguments` add) and every service, each waited
    /// for until ready.
    func startAll(krakenArguments: [String] = []) async throws {
        processes["fake-kraken"] = try ServiceProcess(
            "fake-kraken",
            arguments: ["--port", "\(ports.kraken)", "--replay", Self.data + "/kraken_XBTUSD_1440_2024.csv", "--closed", "0"]
                + krakenArguments,
            environment: [:])
        for role in roles { try start(role) }
        for role in roles { try await waitReady(role) }
    }

    func start(_ role: String) throws {
        let base = Self.baseRole(of: role)
        let executable = base.hasPrefix("trainer") ? "trainer" : base
        let variables = [
            "CANDLECAST_AMQP_URL": vhost.url, "CANDLECAST_REGISTRY_TOKEN": token, "CANDLECAST_HTTP_PORT": "\(ports.port(of: role))",
        ].merging(databaseEnvironment(for: executable)) { $1 }.merging(environment[role] ?? environment[base] ?? [:]) { $1 }
        processes[role] = try ServiceProcess(executable, environment: variables)
    }

    /// The database URL and password of a service: its own role when the system has a role per service.
    func databaseEnvironment(for service: String) -> [String: String] {
        guard let rolePrefix, var url = URLComponents(string: database.configuration.url) else {
            return ["CANDLECAST_DATABASE_URL": database.configuration.url]
        }
        url.user = rolePrefix + service
        return [
            "CANDLECAST_DATABASE_URL": url.string ?? database.configuration.url,
            "CANDLECAST_DATABASE_PASSWORD_FILE": TestEnvironment.repositoryRoot.appendingPathComponent(
                ".local/secrets/database_password_\(rolePrefix)\(service)"
            ).path,
        ]
    }

    func waitReady(_ role: String, timeout: Duration = .seconds(30)) async throws {
        let port = ports.port(of: role)
        try await eventually(timeout: timeout, "\(role) ready") { await httpGet("http://127.0.0.1:\(port)/readyz")?.status == 200 }
    }

    /// SIGKILL, then started again; returns how long it took to be ready again.
    @discardableResult
    func killAndRestart(_ role: String, downFor pause: Duration = .zero) async throws -> Duration {
        processes[role]?.kill()
        try await Task.sleep(for: pause)
        let restarted = ContinuousClock.now
        try start(role)
        try await waitReady(role)
        return ContinuousClock.now - restarted
    }

    /// The `candlecast` CLI pointed at this system, started in the background.
    func cli(_ arguments: [String], _ extra: [String: String] = [:]) throws -> ServiceProcess {
        let environment = [
            "CANDLECAST_AMQP_URL": vhost.url, "CANDLECAST_DATABASE_URL": database.configuration.url, "CANDLECAST_REGISTRY_TOKEN": token,
            "CANDLECAST_REGISTRY_URL": registryURL, "CANDLECAST_PREDICTOR_URL": predictorURL, "CANDLECAST_MONITOR_URL": monitorURL,
            "CANDLECAST_PREPROCESSOR_URL": "http://127.0.0.1:\(ports.preprocessor)",
            "CANDLECAST_INGESTOR_URL": "http://127.0.0.1:\(ports.ingestor)",
            "CANDLECAST_TRAINER_URLS": "http://127.0.0.1:\(ports.trainerA),http://127.0.0.1:\(ports.trainerB)",
            // `pairs add` asks Kraken, as the ingestor does.
            "CANDLECAST_KRAKEN_URL": "http://127.0.0.1:\(ports.kraken)",
        ].merging(extra) { $1 }
        return try ServiceProcess("candlecast", arguments: arguments, environment: environment)
    }

    /// Runs the CLI to its end: exit code and everything it printed.
    func runCLI(_ arguments: [String], _ extra: [String: String] = [:]) async throws -> (code: Int32?, output: String) {
        let process = try cli(arguments, extra)
        let code = try await process.waitForExit(timeout: .seconds(60))
        if code == nil { process.kill() }
        return (code, process.log)
    }

    func backfillHistory() async throws {
        let backfill = try ServiceProcess(
            "ingestor", arguments: ["backfill", Self.data + "/kraken_XBTUSD_1440.csv", "--pair", "XBTUSD", "--interval", "1d"],
            environment: ["CANDLECAST_AMQP_URL": vhost.url].merging(databaseEnvironment(for: "ingestor")) { $1 })
        guard try await backfill.waitForExit(timeout: .seconds(180)) == 0 else {
            throw TestSetupError("backfill failed: \(backfill.log.suffix(1000))")
        }
    }

    func runs() async -> [[String: Any]] { await getJSON(registryURL + "/v1/runs?limit=1000") as? [[String: Any]] ?? [] }

    /// Waits until `count` runs have ended.
    func waitForRuns(_ count: Int, timeout: Duration = .seconds(900)) async throws {
        try await eventually(timeout: timeout, "\(count) finished training runs") {
            let runs = await self.runs()
            return runs.count == count && runs.allSatisfy { ["finished", "failed"].contains($0["status"] as? String) }
        }
    }

    /// The sweep's decision; when the gate refused, the best challenger is promoted by hand. Returns the decision.
    @discardableResult
    func ensureChampion(sweepID: String) async throws -> [String: Any] {
        try await eventually(timeout: .seconds(30), "the gate's decision") {
            (await getJSON(self.registryURL + "/v1/sweeps/\(sweepID)") as? [String: Any])?["decision"] is [String: Any]
        }
        let decision = (await getJSON(registryURL + "/v1/sweeps/\(sweepID)") as? [String: Any])?["decision"] as? [String: Any] ?? [:]
        if decision["promoted"] as? Bool != true {
            let versions = await getJSON(registryURL + "/v1/models/\(Self.modelName)/versions") as? [[String: Any]] ?? []
            func mase(_ version: [String: Any]) -> Double { (version["test_metrics"] as? [String: Any])?["mase"] as? Double ?? .infinity }
            guard let best = versions.min(by: { mase($0) < mase($1) }) else { throw TestSetupError("no model version to promote") }
            let answer = await httpRequest(
                "POST", registryURL + "/v1/models/\(Self.modelName)/promote",
                headers: ["Authorization": "Bearer \(token)", "Content-Type": "application/json"],
                body: try JSONSerialization.data(withJSONObject: [
                    "version": best["version"] ?? 0, "reason": "system test: gate refused (\(decision["reason"] ?? "-"))",
                ]))
            guard answer?.status == 200 else { throw TestSetupError("promotion answered \(answer?.status ?? 0)") }
        }
        return decision
    }

    /// Closes `count` more candles of the 2024 replay (of every replay, unless `pair` names one), `pause` apart.
    func tick(_ count: Int, pause: Duration = .milliseconds(25), pair: String? = nil) async throws {
        for _ in 0..<count {
            _ = await httpRequest("POST", "http://127.0.0.1:\(ports.kraken)/control/tick?count=1" + (pair.map { "&pair=\($0)" } ?? ""))
            try await Task.sleep(for: pause)
        }
    }

    /// Rows of the predictor's forecasts of `pair` from 2024 on (of XBTUSD by default): (target, model version,
    /// actual close or nil).
    func storedForecasts(pair: String = "XBTUSD", from: Int64? = nil) async throws -> [(target: Int64, version: Int, actual: Double?)] {
        try await client.query(
            """
            SELECT target_open_time, model_version, actual_close FROM predictions.forecasts
            WHERE pair = \(pair) AND target_open_time >= \(from ?? rows2024[0].time)
            """
        ).map { (try $0.decode(0, as: Int64.self), try $0.decode(1, as: Int.self), try $0.decode(2, as: Double?.self)) }
    }

    /// (candles of 2024 stored, of them with a revision other than 0).
    func storedCandles2024() async throws -> (count: Int, revised: Int) {
        let row = try await client.query(
            """
            SELECT count(*), count(*) FILTER (WHERE revision <> 0) FROM ingest.candles
            WHERE open_time >= \(rows2024[0].time) AND pair = 'XBTUSD'
            """
        )
        return (try row[0].decode(0, as: Int.self), try row[0].decode(1, as: Int.self))
    }

    /// SIGTERM to every process; the exit status of each.
    func stopAll() async throws -> [String: Int32?] {
        var statuses: [String: Int32?] = [:]
        for process in processes.values { process.signal(SIGTERM) }
        for (role, process) in processes { statuses[role] = try await process.waitForExit(timeout: .seconds(15)) }
        return statuses
    }

    func logs() -> String {
        processes.map { "\($0.key) log:\n\($0.value.log.suffix(1500))" }.joined(separator: "\n")
    }

    /// Runs a test's steps; when one fails, every process's log is recorded with the failure. The system is
    /// torn down either way.
    func run(_ steps: () async throws -> Void) async throws {
        try await tearingDownOnFailure(steps)
        await tearDown()
    }

    /// Runs steps that leave the system up for the caller; on failure records every log and tears it down.
    func tearingDownOnFailure<T>(_ steps: () async throws -> T) async throws -> T {
        do {
            return try await steps()
        } catch {
            Issue.record("\(logs())")
            await tearDown()
            throw error
        }
    }

    func tearDown() async {
        for process in processes.values { process.kill() }
        await client.close()
        await vhost.delete()
        await database.drop()
        if let rolePrefix { try? await TestEnvironment.servers("database-roles-drop", rolePrefix) }
    }
}

/// The JSON a GET answers, or nil.
func getJSON(_ url: String) async -> Any? {
    guard let body = await httpGet(url)?.body else { return nil }
    return try? JSONSerialization.jsonObject(with: Data(body.utf8))
}
