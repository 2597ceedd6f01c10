import Foundation
import Hummingbird
import Messaging
import ServiceKit
import TestSupport
import Testing

@testable import Predictor

/// The predictor's registry client (generated from docs/registry-openapi.yaml, over AsyncHTTPClient) when the
/// registry hangs, is slow or is not there. The hung registry is a Hummingbird server whose routes never answer:
/// the shape of a stuck peer, which the real registry cannot be made into.
@Suite("Predictor: the registry client's timeouts and cancellation", .serialized)
struct ModelSourceTests {
    static let port = 18_471

    /// Routes that take the request and never answer; `entered` records each request that reached them.
    static func stalledRegistry(entered: SharedList<String>) -> Task<Void, Never> {
        let router = Router()
        router.get("ping") { _, _ in "ok" }
        @Sendable func stall(_ request: Request, _ context: BasicRequestContext) async throws -> String {
            entered.append(request.uri.path)
            try await Task.sleep(for: .seconds(120))
            return ""
        }
        router.get("v1/models/:name/versions", use: stall)
        router.get("v1/models/:name/versions/:version/artifact", use: stall)
        let app = Application(router: router, configuration: ApplicationConfiguration(address: .hostname("127.0.0.1", port: port)))
        return Task { try? await app.run() }
    }

    static var registryURL: URL { URL(string: "http://127.0.0.1:\(port)")! }

    @Test("a task cancelled mid-download ends within a second with CancellationError, and the client goes on working")
    func cancelledMidRequest() async throws {
        let entered = SharedList<String>()
        let server = Self.stalledRegistry(entered: entered)
        let http = OutgoingHTTP()
        try await eventually(timeout: .seconds(10), "the stalled registry listening") {
            await httpGet(Self.registryURL.absoluteString + "/ping")?.status == 200
        }

        let source = RegistryModelSource(baseURL: Self.registryURL, http: http, timeout: .seconds(60))
        let download = Task { try await source.load(name: "lstm-xbtusd-1d", version: 1) }
        try await eventually(timeout: .seconds(10), "the request at the registry") { entered.values.count == 1 }
        let cancelledAt = ContinuousClock.now
        download.cancel()
        let result = await download.result
        let took = ContinuousClock.now - cancelledAt
        #expect(took < .seconds(1), "ended \(took) after the cancellation")
        #expect(throws: CancellationError.self) { try result.get() }

        // The same process-wide client still answers: cancelling ended that request, not the client.
        let answer = try await http.get(Self.registryURL.absoluteString + "/ping", timeout: .seconds(5))
        #expect(answer.status == 200 && answer.body == "ok")
        await http.shutdown()
        server.cancel()
    }

    @Test("a registry that does not answer within the timeout: registryTimedOut, which the consumers retry")
    func timeout() async throws {
        let entered = SharedList<String>()
        let server = Self.stalledRegistry(entered: entered)
        let http = OutgoingHTTP()
        try await eventually(timeout: .seconds(10), "the stalled registry listening") {
            await httpGet(Self.registryURL.absoluteString + "/ping")?.status == 200
        }

        let source = RegistryModelSource(baseURL: Self.registryURL, http: http, timeout: .milliseconds(500))
        let started = ContinuousClock.now
        let error = await #expect(throws: ModelSourceError.self) { try await source.lookUpChampion(of: "lstm-xbtusd-1d") }
        #expect(error?.code == .registryTimedOut)
        #expect(error?.isTransient == true)
        let took = ContinuousClock.now - started
        #expect(took >= .milliseconds(500) && took < .seconds(3), "gave up after \(took)")
        // As the promotion handler sees it: retried without using the message's attempts.
        await #expect(throws: TransientFailure.self) { try await source.load(name: "lstm-xbtusd-1d", version: 1) }
        await http.shutdown()
        server.cancel()
    }

    @Test("no registry listening: registryUnreachable within the connect timeout (1 s), transient")
    func unreachable() async throws {
        let http = OutgoingHTTP()
        // Port 9 (discard) has no listener here: the connection is refused.
        let source = RegistryModelSource(baseURL: URL(string: "http://127.0.0.1:9")!, http: http, timeout: .seconds(30))
        let started = ContinuousClock.now
        let error = await #expect(throws: ModelSourceError.self) { try await source.download(name: "lstm-xbtusd-1d", version: 1) }
        #expect(error?.code == .registryUnreachable)
        #expect(error?.description.contains("lstm-xbtusd-1d v1") == true)
        #expect(ContinuousClock.now - started < .seconds(3), "AsyncHTTPClient retries a refused connection until the connect timeout")
        await #expect(throws: TransientFailure.self) { try await source.champion(of: "lstm-xbtusd-1d") }
        await http.shutdown()
    }
}
