import Foundation
import Storage
import TestSupport
import Testing

/// A role per service (scripts/servers.sh database-roles): the system runs, and no service can touch what is
/// not its own.
@Suite("Least privilege", .serialized)
struct LeastPrivilegeTests {
    @Test("each service as its own role: the pipeline forecasts, and every other schema is out of reach")
    func rolePerService() async throws {
        let prefix = "cc_" + UUID().uuidString.prefix(8).lowercased() + "_"
        let system = try await SystemHarness(basePort: 19_080, rolePrefix: prefix)
        try await system.run {
            try await system.startAll()
            try await system.backfillHistory()
            try await system.waitForRuns(2)
            try await system.ensureChampion(sweepID: try #require(await system.runs().first?["sweep_id"] as? String))
            try await system.tick(30)
            try await eventually(timeout: .seconds(120), "31 forecasts") { try await system.storedForecasts().count == 31 }

            // What each role may and may not do, straight at the database.
            let denied: [(service: String, statement: PostgresQuery)] = [
                ("predictor", "SELECT count(*) FROM registry.runs"),
                ("predictor", "SELECT count(*) FROM ingest.candles"),
                ("preprocessor", "INSERT INTO ingest.gaps SELECT * FROM ingest.gaps LIMIT 0"),
                ("preprocessor", "SELECT count(*) FROM ingest.candles"),
                ("monitor", "SELECT count(*) FROM predictions.forecasts"),
                ("registry", "CREATE SCHEMA intruder"),
                ("registry", "CREATE TABLE public.intruder (id int)"),
                ("ingestor", "DROP TABLE features.dataset_versions"),
                ("trainer", "SELECT count(*) FROM registry.model_versions"),
                ("trainer", "SELECT count(*) FROM ingest.candles_v1 WHERE false AND pair IN (SELECT pair FROM registry.experiments)"),
            ]
            for (service, statement) in denied {
                let client = try Self.client(system, as: service)
                do {
                    _ = try await client.query(statement)
                    Issue.record("\(service) was allowed: \(statement)")
                } catch let error as PostgresError {
                    #expect(error.sqlState == "42501", "\(service): \(error)")
                }
                await client.close()
            }
            // The read contract stays open to every role: the candles view, and nothing behind it.
            for service in ["preprocessor", "monitor", "trainer"] {
                let client = try Self.client(system, as: service)
                #expect(try await client.query("SELECT count(*) FROM ingest.candles_v1")[0].decode(0, as: Int.self) > 3000)
                await client.close()
            }
            for (role, status) in try await system.stopAll() { #expect(status == 0, "\(role) did not stop cleanly") }
            print(
                """
                reliability | a database role per service: the whole pipeline ran (31 forecasts) while \(denied.count) out-of-bounds \
                statements were refused with SQLSTATE 42501
                """
            )
        }
    }

    static func client(_ system: SystemHarness, as service: String) throws -> PostgresClient {
        let environment = system.databaseEnvironment(for: service)
        let password = try String(contentsOfFile: environment["CANDLECAST_DATABASE_PASSWORD_FILE"] ?? "", encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        return PostgresClient(
            configuration: DatabaseConfiguration(url: environment["CANDLECAST_DATABASE_URL"] ?? "", password: password),
            options: PostgresClient.Options(connections: 1, reconnectAttempts: 1), logger: TestEnvironment.logger)
    }
}
