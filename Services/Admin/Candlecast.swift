import ArgumentParser
import Foundation
import Messaging
import ServiceKit

/// `candlecast`: the operator's command line. It talks to the services' HTTP APIs and to the broker, with the
/// same environment as the services (`.local/env` after scripts/servers.sh). Exit codes: 0 done, 1 the
/// operation was refused or failed (the message says why), 2 a service or the broker could not be reached,
/// 64 the command line itself is wrong.
@main
struct Candlecast: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "candlecast",
        abstract: "Operate Candlecast: backfill, sweeps, models, runs, forecasts and status.",
        subcommands: [Backfill.self, Sweep.self, Models.self, Runs.self, Forecasts.self, Status.self])
}

/// Where the services answer: `CANDLECAST_<SERVICE>_URL`, else their default loopback ports.
struct Endpoints {
    let environment = EnvironmentReader()

    func url(_ service: String, defaultPort: Int) -> String {
        environment.string("CANDLECAST_\(service.uppercased())_URL", default: "http://127.0.0.1:\(defaultPort)")
    }
    var registry: String { url("registry", defaultPort: 8084) }
    var preprocessor: String { url("preprocessor", defaultPort: 8082) }
    var predictor: String { url("predictor", defaultPort: 8085) }
    var monitor: String { url("monitor", defaultPort: 8086) }
    var ingestor: String { url("ingestor", defaultPort: 8081) }
    /// Every trainer replica's URL, comma-separated.
    var trainers: [String] {
        environment.string("CANDLECAST_TRAINER_URLS", default: "http://127.0.0.1:8083,http://127.0.0.1:8087").split(separator: ",").map(String.init)
    }
    func registryToken() throws -> String? { try environment.secret("CANDLECAST_REGISTRY_TOKEN") }

    /// The broker, from the same variables the services read.
    func broker() throws -> BrokerConfiguration {
        do {
            return try ServiceConfiguration(service: "candlecast-cli", defaultHTTPPort: 0, environment: environment).broker
        } catch {
            throw CommandFailure.refused("\(error)")
        }
    }
}

/// A failure the user can act on, printed as one line on stderr.
struct CommandFailure: Error, CustomStringConvertible {
    let description: String
    let exitCode: ExitCode
    static func refused(_ message: String) -> CommandFailure { CommandFailure(description: message, exitCode: .failure) }
    static func unreachable(_ message: String) -> CommandFailure { CommandFailure(description: message, exitCode: ExitCode(2)) }
}

extension AsyncParsableCommand {
    /// Runs `body`, turning a `CommandFailure` into its message and exit code.
    func reporting(_ body: () async throws -> Void) async throws {
        do {
            try await body()
        } catch let failure as CommandFailure {
            FileHandle.standardError.write(Data("candlecast: \(failure.description)\n".utf8))
            throw failure.exitCode
        }
    }
}
