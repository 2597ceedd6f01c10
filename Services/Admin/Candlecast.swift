import ArgumentParser
import Foundation
import Messaging
import ServiceKit

/// `candlecast`: the operator's command line. It talks to the services' HTTP APIs (the clients generated from
/// docs/*-openapi.yaml) and to the broker, with the same environment as the services (`.local/env` after
/// scripts/servers.sh; scripts/candlecast runs it from a clone). Exit codes: 0 done, 1 the operation was refused
/// or failed (the message says why), 2 a service or the broker could not be reached, 64 the command line itself
/// is wrong.
@main
struct Candlecast: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "candlecast",
        abstract: "Operate Candlecast: backfill, pairs, sweeps, models, runs, forecasts and status.",
        subcommands: [Backfill.self, Pairs.self, Sweep.self, Models.self, Runs.self, Forecasts.self, Status.self, Queues.self])
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
        environment.string("CANDLECAST_TRAINER_URLS", default: "http://127.0.0.1:8083,http://127.0.0.1:8087").split(separator: ",").map(
            String.init)
    }

    static let tokenVariable = "CANDLECAST_REGISTRY_TOKEN"

    /// The registry's write token: `CANDLECAST_REGISTRY_TOKEN`, or the file `CANDLECAST_REGISTRY_TOKEN_FILE` names.
    func registryToken() throws(CommandFailure) -> String {
        let token: String?
        do {
            token = try environment.secret(Self.tokenVariable)
        } catch {
            throw CommandFailure(.unauthorized, "\(error). \(tokenHelp)")
        }
        guard let token else { throw CommandFailure(.unauthorized, "no registry token. \(tokenHelp)") }
        return token
    }

    /// Where the token comes from, for a person who was refused: the variables, this shell's values, the file.
    var tokenHelp: String {
        let variable = Self.tokenVariable
        let file = environment.string(variable + "_FILE", default: "")
        let source: String
        if environment.string(variable, default: "").isEmpty == false {
            source = "It was read from \(variable), which is set in this shell"
        } else if !file.isEmpty {
            source = "It was read from \(file) (\(variable)_FILE)"
        } else {
            source = "Neither \(variable) nor \(variable)_FILE is set in this shell"
        }
        return
            "\(source). The registry takes the token in \(variable) (or the file \(variable)_FILE names); scripts/servers.sh writes it to "
            + ".local/secrets/registry_token and `source .local/env` (in the clone) sets \(variable)_FILE to that file."
    }

    /// The broker, from the same variables the services read.
    func broker() throws(CommandFailure) -> BrokerConfiguration {
        do {
            return try ServiceConfiguration.broker(service: "candlecast-cli", environment: environment)
        } catch {
            throw CommandFailure(.misconfigured, "\(error) (source .local/env)")
        }
    }
}

/// A failure the user can act on, printed as one line on stderr: `code` for programs (and the exit status),
/// `message` for people.
struct CommandFailure: Error, Sendable, CustomStringConvertible {
    struct Code: Hashable, Sendable, CustomStringConvertible {
        let name: String
        var description: String { name }

        /// The service refused the request (a 4xx other than those below).
        static let refused = Code(name: "refused")
        /// What was asked for does not exist (404).
        static let notFound = Code(name: "notFound")
        /// Conflicts with what the service holds (409).
        static let conflict = Code(name: "conflict")
        /// No token, or the registry does not take it (401), or writes are off (403).
        static let unauthorized = Code(name: "unauthorized")
        /// The service failed (5xx, or a status its document does not list).
        static let serviceFailed = Code(name: "serviceFailed")
        /// The service answered in a form its document does not describe.
        static let undocumentedAnswer = Code(name: "undocumentedAnswer")
        /// No connection to the service or the broker.
        static let unreachable = Code(name: "unreachable")
        /// No answer within the timeout.
        static let timedOut = Code(name: "timedOut")
        /// The environment lacks what the command needs (broker settings, a file).
        static let misconfigured = Code(name: "misconfigured")
    }

    let code: Code
    let message: String
    /// The HTTP status, when a service answered.
    let status: Int?

    init(_ code: Code, status: Int? = nil, _ message: String) {
        self.code = code
        self.status = status
        self.message = message
    }

    var exitCode: ExitCode { [.unreachable, .timedOut].contains(code) ? ExitCode(2) : .failure }
    var description: String { message }
}

extension AsyncParsableCommand {
    /// Runs `body` with the process's one HTTP client (shut down afterwards), turning a `CommandFailure` into its
    /// message and exit code.
    func reporting(_ body: (Services) async throws -> Void) async throws {
        let http = OutgoingHTTP()
        do {
            try await body(Services(http: http))
            await http.shutdown()
        } catch let failure as CommandFailure {
            await http.shutdown()
            FileHandle.standardError.write(Data("candlecast: \(failure.description)\n".utf8))
            throw failure.exitCode
        } catch {
            await http.shutdown()
            throw error
        }
    }
}
