import Contracts
import Foundation
import HTTPTypes
import OpenAPIRuntime
import PredictorAPI
import PreprocessorAPI
import RegistryAPI
import ServiceKit

/// The services as the CLI calls them: the registry and the predictor through the clients generated from their
/// documents, over the process's one HTTP client. Failures become `CommandFailure`s a person can act on.
struct Services {
    let http: OutgoingHTTP
    let endpoints = Endpoints()
    /// Bounds each call; a service that does not answer in this time is reported as such (exit 2).
    static let timeout = Duration.seconds(30)

    func registry(writing: Bool = false) throws(CommandFailure) -> RegistryAPI.Client {
        let token: [any ClientMiddleware] = writing ? [BearerToken(token: try endpoints.registryToken())] : []
        return RegistryAPI.Client(
            serverURL: try url(endpoints.registry), transport: http.transport(timeout: Self.timeout), middlewares: [errorAnswers] + token)
    }

    func preprocessor() throws(CommandFailure) -> PreprocessorAPI.Client {
        PreprocessorAPI.Client(
            serverURL: try url(endpoints.preprocessor), transport: http.transport(timeout: Self.timeout), middlewares: [errorAnswers])
    }

    func predictor() throws(CommandFailure) -> PredictorAPI.Client {
        PredictorAPI.Client(
            serverURL: try url(endpoints.predictor), transport: http.transport(timeout: Self.timeout), middlewares: [errorAnswers])
    }

    private func url(_ text: String) throws(CommandFailure) -> URL {
        guard let url = URL(string: text), url.scheme?.hasPrefix("http") == true else {
            throw CommandFailure(.misconfigured, "\(text) is not an http(s) URL")
        }
        return url
    }

    /// One call to `service` (`base` for the message) and what `extract` takes from its answer. A failed call, an
    /// error answer (`ErrorAnswers`) or an answer `extract` cannot read is the `CommandFailure` that says why.
    func fetch<Output, T>(
        _ service: String, at base: String, _ request: () async throws -> Output, _ extract: (Output) throws -> T
    ) async throws -> T {
        let output = try await call(service, at: base, request)
        do {
            return try extract(output)
        } catch {
            throw CommandFailure(.undocumentedAnswer, "the \(service) answered what its document does not list: \(error)")
        }
    }

    func call<T>(_ service: String, at base: String, _ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let failure as CommandFailure {
            throw failure
        } catch let error as ClientError where error.underlyingError is CommandFailure {
            throw error.underlyingError
        } catch {
            switch OutgoingHTTP.failure(of: error) {
            case .cancelled: throw CancellationError()
            case .timedOut: throw CommandFailure(.timedOut, "the \(service) at \(base) did not answer within \(Self.timeout)")
            case .unreachable:
                throw CommandFailure(
                    .unreachable, "cannot reach the \(service) at \(base) (\(OutgoingHTTP.cause(of: error))); is the service running?")
            case .undocumentedAnswer:
                throw CommandFailure(
                    .undocumentedAnswer, "the \(service)'s answer is not what its document says: \(OutgoingHTTP.cause(of: error))")
            }
        }
    }

    /// Every document answers errors as `{"error": {"message": ...}}`: one place turns them into failures.
    var errorAnswers: ErrorAnswers { ErrorAnswers(tokenHelp: endpoints.tokenHelp) }

    /// A GET whose client is not generated: `/readyz` and Prometheus text (each document lists them under the `health`
    /// tag, served by ServiceKit's HealthRoutes, and leaves them out of the generated client): status and body.
    func plainGet(_ service: String, at base: String, _ path: String, timeout: Duration = timeout) async throws -> (
        status: Int, body: String
    ) {
        try await call(service, at: base) { try await http.get(base + path, timeout: timeout) }
    }
}

/// Turns an error answer of any Candlecast API into the `CommandFailure` that says what was refused and why.
struct ErrorAnswers: ClientMiddleware {
    let tokenHelp: String

    private struct ErrorBody: Decodable {
        struct Message: Decodable { var message: String }
        var error: Message
    }

    func intercept(
        _ request: HTTPRequest, body: HTTPBody?, baseURL: URL, operationID: String,
        next: @Sendable (HTTPRequest, HTTPBody?, URL) async throws -> (HTTPResponse, HTTPBody?)
    ) async throws -> (HTTPResponse, HTTPBody?) {
        let (response, answer) = try await next(request, body, baseURL)
        guard response.status.code >= 400 else { return (response, answer) }
        var bytes = Data()
        if let answer { bytes = try await Data(collecting: answer, upTo: 64 << 10) }
        let message =
            (try? JSONDecoder().decode(ErrorBody.self, from: bytes))?.error.message
            ?? (bytes.isEmpty ? nil : String(decoding: bytes.prefix(300), as: UTF8.self))
        throw refusal("\(request.method) \(request.path ?? "")", status: response.status.code, message)
    }

    /// A documented error answer of `request` (`POST /v1/...`): status, the service's own message, and for a 401
    /// where the token comes from.
    func refusal(_ request: String, status: Int, _ message: String?) -> CommandFailure {
        let said = message.map { " \($0)" } ?? ""
        switch status {
        case 401: return CommandFailure(.unauthorized, status: 401, "\(request): 401\(said). \(tokenHelp)")
        case 403: return CommandFailure(.unauthorized, status: 403, "\(request): 403\(said) (the registry has no token configured)")
        case 404: return CommandFailure(.notFound, status: 404, "\(request): 404\(said)")
        case 409: return CommandFailure(.conflict, status: 409, "\(request): 409\(said)")
        case 400..<500: return CommandFailure(.refused, status: status, "\(request): \(status)\(said)")
        default: return CommandFailure(.serviceFailed, status: status, "\(request): \(status)\(said)")
        }
    }

}

/// Plain-text tables for the terminal.
enum Table {
    static func render(_ header: [String], _ rows: [[String]]) -> String {
        let widths = header.indices.map { column in
            ([header[column]] + rows.map { column < $0.count ? $0[column] : "" }).map(\.count).max() ?? 0
        }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { index, cell in cell.padding(toLength: widths[index], withPad: " ", startingAt: 0) }.joined(
                separator: "  "
            )
            .trimmingCharacters(in: .whitespaces)
        }
        return ([line(header)] + rows.map(line)).joined(separator: "\n")
    }
}

/// How the CLI writes values in its tables and lines.
enum Shown {
    static func number(_ value: Double?) -> String {
        guard let value else { return "-" }
        return value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(format: "%.4g", value)
    }
    static func integer(_ value: (some BinaryInteger)?) -> String { value.map { "\($0)" } ?? "-" }
    static func price(_ value: Double) -> String { String(format: "%.2f", value) }
    /// `41234.50-43210.00` (USD).
    static func range(_ lower: Double, _ upper: Double) -> String { "\(price(lower))-\(price(upper))" }
    /// `P(up)` as a percentage: `55.2%`.
    static func probability(_ value: Double?) -> String { value.map { String(format: "%.1f%%", $0 * 100) } ?? "-" }
    /// `80% 41234.50-43210.00, 95% 40100.00-44500.00, P(up) 55.2%`: a forecast's ranges and up probability, or
    /// `no ranges (uncalibrated model)`.
    static func uncertainty(intervals: [ForecastInterval]?, probabilityUp: Double?) -> String {
        guard let intervals, !intervals.isEmpty else { return "no ranges (uncalibrated model)" }
        let ranges = intervals.map { "\(Int(($0.level * 100).rounded()))% \(range($0.lower, $0.upper))" }
        return (ranges + ["P(up) \(probability(probabilityUp))"]).joined(separator: ", ")
    }
    /// `2024-01-31` at midnight UTC, else `2024-01-31 12:00 UTC`.
    static func time(_ date: Date?) -> String {
        guard let date else { return "-" }
        let seconds = Int64(date.timeIntervalSince1970)
        if seconds % 86_400 == 0 { return utcDay(seconds) }
        let text = date.formatted(Date.ISO8601FormatStyle(timeZone: .gmt))
        return text.prefix(16).replacingOccurrences(of: "T", with: " ") + " UTC"
    }
}
