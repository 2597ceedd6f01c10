import Contracts
import Foundation
import Hummingbird
import ServiceKit
import TestSupport
import Testing

@testable import Preprocessor

/// The preprocessor's HTTP API (docs/preprocessor-openapi.yaml) served by its generated server over a real
/// database: the document's shapes (RFC 3339 times, `"1d"`), its statuses, and the shared 405/HEAD rules.
@Suite("Preprocessor HTTP API", .serialized)
struct DatasetAPITests {
    @Test("lists and cuts dataset versions with RFC 3339 times; bad path values are 400, too few candles 409, other methods 405")
    func datasetVersions() async throws {
        let pipeline = try await PipelineDatabase.make()
        let router = Router()
        try PreprocessorHTTP(database: pipeline.client, policy: DatasetPolicy()).add(to: router)
        let app = Application(router: router, configuration: ApplicationConfiguration(address: .hostname("127.0.0.1", port: 18_473)))
        let serving = Task { try await app.run() }
        let base = "http://127.0.0.1:18473/v1/datasets"
        try await eventually("the preprocessor API") { await httpGet(base + "/XBTUSD/1d") != nil }

        let empty = try #require(await httpGet(base + "/xbtusd/1d"))
        #expect(empty.status == 200)
        #expect(
            try Self.object(empty.body)["versions"] as? [Any] != nil && (try Self.object(empty.body)["versions"] as? [Any])?.isEmpty == true
        )

        let cut = try #require(await httpRequest("POST", base + "/XBTUSD/1d"))
        #expect(cut.status == 201)
        let created = try Self.object(String(decoding: cut.body, as: UTF8.self))
        #expect(created["version"] as? Int == 1 && created["created"] as? Bool == true && created["interval"] as? String == "1d")
        let again = try #require(await httpRequest("POST", base + "/XBTUSD/1d"))
        #expect(again.status == 200)
        #expect(try Self.object(String(decoding: again.body, as: UTF8.self))["created"] as? Bool == false)

        let listed = try #require(await httpGet(base + "/XBTUSD/1d"))
        let versions = try #require(try Self.object(listed.body)["versions"] as? [[String: Any]])
        #expect(versions.count == 1)
        let first = try #require(versions.first)
        // The shared history starts on 2013-10-06; every time is RFC 3339 UTC.
        #expect(first["first_open_time"] as? String == "2013-10-06T00:00:00Z", "\(first)")
        for key in ["last_open_time", "created_at"] {
            #expect(
                (first[key] as? String)?.wholeMatch(of: /\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z/) != nil, "\(key): \(first[key] ?? "nil")")
        }

        #expect(await httpRequest("POST", base + "/ETHUSD/1d")?.status == 409)
        for path in [
            "/XBT%27USD/1d", "/XBTUSD/%2E%2E%2F", "/XBTUSD/99999999999999999d", "/XBTUSD/1440",
            "/" + String(repeating: "A", count: 33) + "/1d",
        ] {
            let refused = try #require(await httpGet(base + path))
            #expect(refused.status == 400, "\(path)")
            #expect((try? Self.object(refused.body))?["error"] as? [String: Any] != nil, "\(path): \(refused.body)")
        }
        let delete = try #require(await httpRequest("DELETE", base + "/XBTUSD/1d"))
        #expect(delete.status == 405 && delete.headers["allow"] == "GET, HEAD, POST, OPTIONS")
        #expect(await httpRequest("HEAD", base + "/XBTUSD/1d")?.status == 200)
        serving.cancel()
        await pipeline.tearDown()
    }

    static func object(_ text: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
    }
}
