import AsyncHTTPClient
import Foundation
import OpenAPIAsyncHTTPClient
import OpenAPIRuntime

/// The one HTTP client of a process, for the clients generated from docs/*-openapi.yaml (their transport) and
/// the few plain requests no document describes (`/readyz`, Prometheus text). AsyncHTTPClient ends a request
/// promptly when its task is cancelled. Whoever makes it shuts it down once, before the process exits.
public final class OutgoingHTTP: Sendable {
    public let client: HTTPClient

    /// `connect` bounds opening a connection (AsyncHTTPClient retries a refused one until then: the services are near, so
    /// short); each call's own `timeout` bounds the whole exchange.
    public init(connect: Duration = .seconds(1)) {
        var configuration = HTTPClient.Configuration()
        configuration.timeout = .init(connect: .nanoseconds(connect.nanoseconds), read: nil)
        configuration.redirectConfiguration = .disallow
        client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
    }

    /// The transport of a generated client: every call on it ends (with a `ClientError`) after `timeout`.
    public func transport(timeout: Duration) -> AsyncHTTPClientTransport {
        AsyncHTTPClientTransport(configuration: .init(client: client, timeout: .nanoseconds(timeout.nanoseconds)))
    }

    /// A GET no document describes: status and body (at most `limit` bytes).
    public func get(_ url: String, timeout: Duration, limit: Int = 4 << 20) async throws -> (status: Int, body: String) {
        let response = try await client.execute(HTTPClientRequest(url: url), timeout: .nanoseconds(timeout.nanoseconds))
        let body = try await response.body.collect(upTo: limit)
        return (Int(response.status.code), String(buffer: body))
    }

    public func shutdown() async {
        try? await client.shutdown()
    }

    /// Why a call got no answer it could read, for callers that map it into their own error codes.
    public enum Failure: Sendable, Equatable {
        /// No connection, or the connection broke before an answer.
        case unreachable
        /// The call's timeout passed.
        case timedOut
        /// The calling task was cancelled.
        case cancelled
        /// An answer came that the document does not describe (a body that does not decode).
        case undocumentedAnswer
    }

    /// What went wrong with a call made through a generated client or `get`.
    public static func failure(of error: any Error) -> Failure {
        if error is CancellationError { return .cancelled }
        if let error = error as? ClientError {
            if error.response != nil, !(error.underlyingError is HTTPClientError) { return .undocumentedAnswer }
            return failure(of: error.underlyingError)
        }
        if let error = error as? HTTPClientError {
            if error == .cancelled { return .cancelled }
            if [.deadlineExceeded, .connectTimeout, .readTimeout].contains(error) { return .timedOut }
        }
        if error is DecodingError { return .undocumentedAnswer }
        return .unreachable
    }

    /// The cause of a failed call in a few words: `connection refused`, not the whole request dump.
    public static func cause(of error: any Error) -> String {
        if let error = error as? ClientError { return cause(of: error.underlyingError) }
        if let error = error as? DecodingError { return "\(error)" }
        return String(describing: error)
    }
}

extension Duration {
    /// Whole nanoseconds, for AsyncHTTPClient's `TimeAmount` timeouts.
    public var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}
