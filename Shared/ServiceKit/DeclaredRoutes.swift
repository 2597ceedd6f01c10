import HTTPTypes
import Hummingbird
import Synchronization

/// A router that remembers which methods each of its paths declares, so that a known path asked with another
/// method is answered `405 Method Not Allowed` with `Allow` (RFC 9110 §15.5.6) rather than 404, `OPTIONS` is
/// answered 204 with `Allow`, and every `GET` route also answers `HEAD`. Register routes on it exactly as on
/// a `Router`:
///
///     let routes = DeclaredRoutes(router)
///     routes.get("v1/models/:name") { ... }
public final class DeclaredRoutes<Context: RequestContext>: RouterMethods {
    private let router: Router<Context>
    private let table = RouteTable()

    public init(_ router: Router<Context>) {
        self.router = router
        // On the router itself, so that it also wraps the not-found responder, where a path with no route for
        // the request's method ends.
        router.add(middleware: MethodNotAllowedMiddleware<Context>(table: table))
    }

    @discardableResult public func on<Responder: HTTPResponder>(
        _ path: RouterPath, method: HTTPRequest.Method, responder: Responder
    ) -> Self where Responder.Context == Context {
        table.declare(path, method)
        router.on(path, method: method, responder: responder)
        if method == .get {
            table.declare(path, .head)
            router.on(path, method: .head, responder: HeadResponder(get: responder))
        }
        return self
    }

    @discardableResult public func add(middleware: any MiddlewareProtocol<Request, Response, Context>) -> Self {
        router.add(middleware: middleware)
        return self
    }
}

/// Paths and the methods declared for each.
final class RouteTable: Sendable {
    private let routes = Mutex<[(path: RouterPath, methods: Set<HTTPRequest.Method>)]>([])

    func declare(_ path: RouterPath, _ method: HTTPRequest.Method) {
        routes.withLock { routes in
            if let index = routes.firstIndex(where: { $0.path == path }) {
                routes[index].methods.insert(method)
            } else {
                routes.append((path, [method]))
            }
        }
    }

    /// The methods of every declared path that `path` (a request's path) matches; empty when none matches.
    func methods(matching path: String) -> Set<HTTPRequest.Method> {
        let segments = path.split(separator: "/", omittingEmptySubsequences: true)
        return routes.withLock { routes in
            routes.reduce(into: Set<HTTPRequest.Method>()) { methods, route in
                if Self.matches(route.path, segments) { methods.formUnion(route.methods) }
            }
        }
    }

    private static func matches(_ path: RouterPath, _ segments: [Substring]) -> Bool {
        if path.components.last?.description == "**" {
            return segments.count >= path.components.count - 1 && zip(path.components.dropLast(), segments).allSatisfy { $0 ~= $1 }
        }
        return path.components.count == segments.count && zip(path.components, segments).allSatisfy { $0 ~= $1 }
    }

    /// `Allow`'s value: the methods in a fixed order.
    static func allowHeader(_ methods: Set<HTTPRequest.Method>) -> String {
        let order: [HTTPRequest.Method] = [.get, .head, .post, .put, .patch, .delete, .options]
        let known = order.filter(methods.contains)
        let others = methods.subtracting(order).map(\.rawValue).sorted()
        return (known.map(\.rawValue) + others).joined(separator: ", ")
    }
}

/// Turns the router's 404 for a known path asked with an undeclared method into 405 (or 204 for `OPTIONS`).
/// A 404 a route's handler throws (no such model) is left alone: the router names the route it matched in
/// `endpointPath`, and "NotFound" when it matched none.
struct MethodNotAllowedMiddleware<Context: RequestContext>: RouterMiddleware {
    let table: RouteTable

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as HTTPError where error.status == .notFound && (context.endpointPath ?? "NotFound") == "NotFound" {
            let methods = table.methods(matching: request.uri.path)
            guard !methods.isEmpty, !methods.contains(request.method) else { throw error }
            let allow = RouteTable.allowHeader(methods.union([.options]))
            if request.method == .options {
                return Response(status: .noContent, headers: [.allow: allow])
            }
            throw HTTPError(
                .methodNotAllowed, headers: [.allow: allow], message: "\(request.method.rawValue) is not allowed here; allowed: \(allow)")
        }
    }
}

/// `HEAD` of a `GET` route: the same status and headers, no body.
private struct HeadResponder<Context: RequestContext, Get: HTTPResponder>: HTTPResponder where Get.Context == Context {
    let get: Get

    func respond(to request: Request, context: Context) async throws -> Response {
        var response = try await get.respond(to: request, context: context)
        response.body = ResponseBody()
        return response
    }
}
