import Foundation
import Hummingbird
import Prometheus

/// `/healthz` (the process is up), `/readyz` (its broker and database connections are up and its schema
/// is migrated: 200, else 503 with the failing checks) and `/metrics` (Prometheus text format, with HELP).
public enum HealthRoutes {
    public static func add(to router: Router<BasicRequestContext>, readiness: Readiness, metrics: PrometheusCollectorRegistry) {
        let router = DeclaredRoutes(router)
        router.get("healthz") { _, _ in
            jsonResponse(.ok, ["status": "ok"])
        }
        router.get("readyz") { _, _ in
            let checks = await readiness.evaluate()
            let ready = !checks.isEmpty && checks.values.allSatisfy { $0 }
            return jsonResponse(ready ? .ok : .serviceUnavailable, ["status": ready ? "ready" : "not ready", "checks": checks])
        }
        router.get("metrics") { _, _ in
            let exposition = MetricHelp.annotate(String(decoding: metrics.emitToBuffer(), as: UTF8.self))
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: ResponseBody(byteBuffer: ByteBuffer(string: exposition)))
        }
    }

    public static func jsonResponse(_ status: HTTPResponse.Status, _ object: [String: any Sendable]) -> Response {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
        return Response(
            status: status, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
    }
}
