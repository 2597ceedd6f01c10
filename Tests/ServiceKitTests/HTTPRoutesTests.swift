import Contracts
import Foundation
import Hummingbird
import ServiceKit
import TestSupport
import Testing

/// What scripts/attack-http.sh (schemathesis) found, kept as regression cases: undeclared methods answered 404,
/// numbers and names from a request used without range checks.
@Suite("HTTP routes and input", .serialized)
struct HTTPRoutesTests {
    @Test(
        "a known path asked with an undeclared method is 405 with Allow; OPTIONS is 204; GET routes answer HEAD; a handler's 404 stays 404")
    func methodNotAllowed() async throws {
        let router = Router()
        let routes = DeclaredRoutes(router)
        routes.get("v1/things/:id") { _, context in
            guard context.parameters.get("id") == "1" else { throw HTTPError(.notFound, message: "no such thing") }
            return "one"
        }
        routes.post("v1/things/:id/touch") { _, _ in "touched" }
        let app = Application(router: router, configuration: ApplicationConfiguration(address: .hostname("127.0.0.1", port: 18_471)))
        let serving = Task { try await app.run() }
        defer { serving.cancel() }
        let base = "http://127.0.0.1:18471"
        try await eventually("the test server") { await httpGet(base + "/v1/things/1") != nil }

        #expect(await httpGet(base + "/v1/things/1")?.body == "one")
        #expect(await httpGet(base + "/v1/things/2")?.status == 404)
        #expect(await httpGet(base + "/v1/nothing")?.status == 404)
        for method in ["POST", "PUT", "DELETE", "PATCH", "TRACE", "QUERY"] {
            let answer = await httpRequest(method, base + "/v1/things/2")
            #expect(answer?.status == 405, "\(method)")
            #expect(answer?.headers["allow"] == "GET, HEAD, OPTIONS", "\(method)")
        }
        #expect(await httpRequest("GET", base + "/v1/things/1/touch")?.headers["allow"] == "POST, OPTIONS")
        let options = await httpRequest("OPTIONS", base + "/v1/things/1")
        #expect(options?.status == 204 && options?.headers["allow"] == "GET, HEAD, OPTIONS")
        let head = await httpRequest("HEAD", base + "/v1/things/1")
        #expect(head?.status == 200 && head?.body.isEmpty == true)
        #expect(await httpRequest("HEAD", base + "/v1/things/2")?.status == 404)
    }

    @Test("absent takes the default; present must be valid: canonical intervals, pair names, integers in range, text without NUL")
    func strictInput() throws {
        #expect(try HTTPInput.interval("1d") == .oneDay)
        #expect(try HTTPInput.interval("15d").name == "15d")
        for text in ["1440", "24h", "1D", "01d", "", "99999999999999999d", "2d"] {
            #expect(throws: HTTPError.self, "\(text)") { try HTTPInput.interval(text) }
        }
        #expect(try HTTPInput.pair("xbtusd") == "XBTUSD")
        for text in ["", "XBT/USD", String(repeating: "A", count: 33), "É"] {
            #expect(throws: HTTPError.self, "\(text)") { try HTTPInput.pair(text) }
        }
        #expect(try HTTPInput.integer(parsing: "42", "v", in: 1...100) == 42)
        for text in ["0", "101", "-1", "1.0", "0x10", "", "99999999999999999999", " 5"] {
            #expect(throws: HTTPError.self, "\(text)") { try HTTPInput.integer(parsing: text, "v", in: 1...100) }
        }
        #expect(try HTTPInput.text(String(repeating: "é", count: 10), "reason", limit: 10).count == 10)
        #expect(throws: HTTPError.self) { try HTTPInput.text(String(repeating: "e\u{301}", count: 6), "reason", limit: 10) }
        #expect(throws: HTTPError.self) { try HTTPInput.text("a\u{0}b", "reason", limit: 10) }
    }
}
