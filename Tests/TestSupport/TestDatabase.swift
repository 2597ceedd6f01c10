import Foundation
import Storage

/// A throwaway database for one test, so that schemas and rows never leak between tests.
public struct TestDatabase: Sendable {
    public let name: String
    public let configuration: DatabaseConfiguration

    init(name: String, configuration: DatabaseConfiguration) {
        self.name = name
        self.configuration = configuration
    }

    /// Whether it lives on the primary/standby pair of `scripts/servers.sh pg-pair-start`.
    public var onPair = false

    /// The server the database is made on: the local one, or the pair (through its multi-host URI).
    static func server(onPair: Bool) throws -> DatabaseConfiguration {
        var main = try TestEnvironment.database()
        if onPair {
            guard let pair = TestEnvironment.variables["CANDLECAST_PAIR_DATABASE_URL"] else {
                throw TestSetupError("no database pair: run scripts/servers.sh pg-pair-start (scripts/test.sh does)")
            }
            main.url = pair
        }
        return main
    }

    public static func create(onPair: Bool = false) async throws -> TestDatabase {
        let main = try server(onPair: onPair)
        let name = "candlecast_test_" + UUID().uuidString.prefix(12).lowercased().replacingOccurrences(of: "-", with: "")
        let admin = PostgresClient(configuration: main, options: PostgresClient.Options(connections: 1), logger: TestEnvironment.logger)
        try await admin.execute("CREATE DATABASE \(identifier: name)")
        await admin.close()
        var configuration = main
        // A multi-host URI, which URLComponents cannot edit: replace the path between the hosts and the query.
        guard let scheme = main.url.range(of: "://"), let slash = main.url.range(of: "/", range: scheme.upperBound..<main.url.endIndex)
        else {
            throw TestSetupError("cannot parse \(main.url)")
        }
        let query = main.url[slash.upperBound...].firstIndex(of: "?").map { String(main.url[$0...]) } ?? ""
        configuration.url = String(main.url[..<slash.lowerBound]) + "/" + name + query
        var database = TestDatabase(name: name, configuration: configuration)
        database.onPair = onPair
        return database
    }

    public func client(connections: Int = 2) -> PostgresClient {
        PostgresClient(
            configuration: configuration, options: PostgresClient.Options(connections: connections), logger: TestEnvironment.logger)
    }

    public func drop() async {
        guard let main = try? Self.server(onPair: onPair) else { return }
        let admin = PostgresClient(configuration: main, options: PostgresClient.Options(connections: 1), logger: TestEnvironment.logger)
        _ = try? await admin.execute("DROP DATABASE IF EXISTS \(identifier: name) WITH (FORCE)")
        await admin.close()
    }
}
