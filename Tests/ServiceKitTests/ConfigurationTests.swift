import Foundation
import Messaging
import ServiceKit
import Testing

@Suite("Service configuration")
struct ConfigurationTests {
    @Test("defaults, overrides and secrets from *_FILE")
    func readsEnvironment() throws {
        let secretFile = NSTemporaryDirectory() + "candlecast-secret-\(UUID().uuidString)"
        try "s3cret-from-file\n".write(toFile: secretFile, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: secretFile) }
        let configuration = try ServiceConfiguration(
            service: "registry", defaultHTTPPort: 8084,
            environment: EnvironmentReader([
                "CANDLECAST_AMQP_PASSWORD_FILE": secretFile,
                "CANDLECAST_DATABASE_PASSWORD": "db-pass",
                "CANDLECAST_DATABASE_URL": "postgresql://registry@db:5432/candlecast",
                "CANDLECAST_LOG_FORMAT": "text",
            ]))
        #expect(configuration.broker.host == "127.0.0.1")
        #expect(configuration.broker.user == "candlecast")
        #expect(configuration.broker.password == "s3cret-from-file")
        #expect(configuration.broker.connectionName == "registry")
        #expect(configuration.database.password == "db-pass")
        #expect(configuration.database.url == "postgresql://registry@db:5432/candlecast")
        #expect(configuration.httpPort == 8084)
        #expect(configuration.httpHost == "127.0.0.1")
        #expect(configuration.logLevel == .info)
        #expect(configuration.logFormat == .text)
    }

    @Test("missing secrets and bad values are reported by name")
    func reportsProblems() {
        func problem(_ values: [String: String]) -> String? {
            do {
                _ = try ServiceConfiguration(service: "x", defaultHTTPPort: 1, environment: EnvironmentReader(values))
                return nil
            } catch {
                return "\(error)"
            }
        }
        let secrets = ["CANDLECAST_AMQP_PASSWORD": "a", "CANDLECAST_DATABASE_PASSWORD": "b"]
        #expect(problem([:])?.contains("CANDLECAST_AMQP_PASSWORD") == true)
        #expect(problem(["CANDLECAST_AMQP_PASSWORD": "a"])?.contains("CANDLECAST_DATABASE_PASSWORD") == true)
        #expect(problem(secrets.merging(["CANDLECAST_HTTP_PORT": "eighty"]) { $1 })?.contains("CANDLECAST_HTTP_PORT") == true)
        #expect(problem(secrets.merging(["CANDLECAST_LOG_LEVEL": "loud"]) { $1 })?.contains("CANDLECAST_LOG_LEVEL") == true)
        #expect(
            problem(["CANDLECAST_AMQP_PASSWORD_FILE": "/nonexistent/secret", "CANDLECAST_DATABASE_PASSWORD": "b"])?.contains(
                "cannot read /nonexistent/secret") == true)
        #expect(problem(secrets) == nil)
    }
}
