import Foundation
import Storage

/// A throwaway database for one test, so that schemas and rows never leak between tests.
public struct TestDatabase: Sendable {
    public let name: String
    public let configuration: DatabaseConfiguration

    public static func create() async throws -> TestDatabase {
        let main = try TestEnvironment.database()
        let name = "candlecast_test_" + UUID().uuidString.prefix(12).lowercased().replacingOccurrences(of: "-", with: "")
        let admin = PostgresClient(configuration: main, options: PostgresClient.Options(connections: 1), logger: TestEnvironment.logger)
        try await admin.execute("CREATE DATABASE \(identifier: name)")
        await admin.close()
        var configuration = main
        guard var components = URLComponents(string: main.url) else { throw TestSetupError("cannot parse \(main.url)") }
        components.path = "/" + name
        configuration.url = components.string ?? main.url
        return TestDatabase(name: name, configuration: configuration)
    }

    public func client(connections: Int = 2) -> PostgresClient {
        PostgresClient(
            configuration: configuration, options: PostgresClient.Options(connections: connections), logger: TestEnvironment.logger)
    }

    public func drop() async {
        guard let main = try? TestEnvironment.database() else { return }
        let admin = PostgresClient(configuration: main, options: PostgresClient.Options(connections: 1), logger: TestEnvironment.logger)
        _ = try? await admin.execute("DROP DATABASE IF EXISTS \(identifier: name) WITH (FORCE)")
        await admin.close()
    }
}
