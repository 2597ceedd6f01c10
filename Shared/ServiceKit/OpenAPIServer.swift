import Foundation
import HTTPTypes
import Hummingbird
import OpenAPIHummingbird
import OpenAPIRuntime

/// Serves a swift-openapi-generator `APIProtocol` (the server side of a docs/*-openapi.yaml document) on a
/// service's Hummingbird router, with the conventions every Candlecast HTTP API shares:
///
/// - routes are declared through `DeclaredRoutes`, so an undeclared method is 405 with `Allow`, `OPTIONS` is
///   204 with `Allow` and every `GET` also answers `HEAD`;
/// - a request the generated code cannot decode (a query value outside an enum, a malformed or missing JSON
///   body, a wrong `Content-Type`) is a 4xx `{"error": {"message": ...}}` naming the field, never a 500;
/// - an `HTTPError` a handler throws (404, 409, a 400 from `HTTPInput`) is answered as thrown;
/// - a request body larger than `bodyLimit` bytes is 413 before any handler decodes it.
///
/// Usage, in a service's route set-up:
///
///     try OpenAPIServer.add(to: router) { try PredictorHandlers(predictor).registerHandlers(on: $0) }
public enum OpenAPIServer {
    /// The body limit the documents state unless an operation says otherwise: 256 KiB.
    public static let defaultBodyLimit = 256 * 1024

    /// Registers the operations `register` hands to its transport on `router`. Throws what the generated
    /// `registerHandlers` throws (a path the router cannot take): a configuration error that stops the start.
    public static func add<Context: RequestContext>(
        to router: Router<Context>, bodyLimit: Int = defaultBodyLimit, _ register: (any ServerTransport) throws -> Void
    ) throws {
        try register(DeclaredRoutesTransport(routes: DeclaredRoutes(router), bodyLimit: bodyLimit))
    }

    /// What a client is told when the generated code refuses its request: the status the runtime chose (400 for
    /// undecodable input, 415 for a wrong content type) and a message naming the field. Errors that are not the
    /// client's (a handler's own failure) are handed back as they are, for Hummingbird to log and answer 500.
    static func clientError(_ error: ServerError) -> any Error {
        if let answered = error.underlyingError as? any HTTPResponseError { return answered }
        guard (400..<500).contains(error.httpStatus.code) else { return error.underlyingError }
        let message: String
        if let decoding = error.underlyingError as? DecodingError {
            message = "invalid request: \(describe(decoding))"
        } else {
            message = "invalid request: \(error.causeDescription)"
        }
        return HTTPError(error.httpStatus, message: message)
    }

    /// A `DecodingError` as a sentence naming the field: `closes[3] must be a number`.
    static func describe(_ error: DecodingError) -> String {
        func field(_ path: [any CodingKey]) -> String {
            let names = path.map { key in key.intValue.map { "[\($0)]" } ?? ".\(key.stringValue)" }.joined()
            let trimmed = names.hasPrefix(".") ? String(names.dropFirst()) : names
            return trimmed
        }
        // A query or path value is decoded alone: its path is empty and the runtime's text names the value.
        func at(_ path: [any CodingKey]) -> String { field(path).isEmpty ? "" : "\(field(path)): " }
        switch error {
        case .keyNotFound(let key, let context): return "\(field(context.codingPath + [key])) is required"
        case .valueNotFound(let type, let context): return "\(at(context.codingPath))a \(type) is required, not null"
        case .typeMismatch(let type, let context): return "\(at(context.codingPath))a \(type) is required"
        case .dataCorrupted(let context): return "\(at(context.codingPath))\(context.debugDescription)"
        @unknown default: return "\(error)"
        }
    }
}

/// The generated code's transport: each operation becomes a `DeclaredRoutes` route whose body is bounded and
/// whose decoding errors are the client's (`OpenAPIServer.clientError`).
struct DeclaredRoutesTransport<Context: RequestContext>: ServerTransport {
    let routes: DeclaredRoutes<Context>
    let bodyLimit: Int

    func register(
        _ handler: @escaping @Sendable (HTTPRequest, HTTPBody?, ServerRequestMetadata) async throws -> (HTTPResponse, HTTPBody?),
        method: HTTPRequest.Method, path: String
    ) throws {
        let limit = bodyLimit
        routes.register(
            { request, body, metadata in
                var bounded: HTTPBody?
                if let body { bounded = HTTPBody(try await Self.collect(body, upTo: limit)) }
                do {
                    return try await handler(request, bounded, metadata)
                } catch let error as ServerError {
                    throw OpenAPIServer.clientError(error)
                }
            }, method: method, path: path)
    }

    /// The whole body, or 413 as soon as it passes `limit` bytes.
    static func collect(_ body: HTTPBody, upTo limit: Int) async throws -> [UInt8] {
        var bytes: [UInt8] = []
        for try await chunk in body {
            guard bytes.count + chunk.count <= limit else {
                throw HTTPError(.contentTooLarge, message: "the body is larger than \(limit / 1024) KiB")
            }
            bytes.append(contentsOf: chunk)
        }
        return bytes
    }
}
