import Foundation
import Logging

/// One versioned change to a service's schema. Versions are applied in order, each once.
public struct Migration: Sendable {
    public let version: Int
    public let name: String
    /// Static SQL written in the service's code (never built from input); may hold several statements.
    public let sql: String

    public init(version: Int, name: String, sql: String) {
        self.version = version
        self.name = name
        self.sql = sql
    }
}

/// The migrations of one service's schema.
public struct SchemaMigrations: Sendable {
    public let schema: String
    public let migrations: [Migration]

    public init(schema: String, migrations: [Migration]) {
        self.schema = schema
        self.migrations = migrations.sorted { $0.version < $1.version }
    }
}

extension PostgresClient {
    /// Applies the migrations not yet applied, in one transaction, under an advisory lock on the schema's
    /// name so that replicas starting together apply each version exactly once. Returns the versions applied.
    @discardableResult
    public func migrate(_ plan: SchemaMigrations, logger: Logger) async throws -> [Int] {
        guard SQLIdentifier.isValid(plan.schema), !plan.schema.contains(".") else {
            throw PostgresError(.client, "invalid schema name \(plan.schema)")
        }
        let applied = try await transaction { connection -> [Int] in
            try connection.query("SELECT pg_advisory_xact_lock(hashtext(\("candlecast.migrations." + plan.schema)))")
            // Created only when missing: a service role may own its schema without being allowed to create schemas
            // (least privilege, see SECURITY.md), and CREATE SCHEMA IF NOT EXISTS checks that right first.
            if try connection.query("SELECT 1 FROM pg_namespace WHERE nspname = \(plan.schema)").isEmpty {
                try connection.executeScript("CREATE SCHEMA \(SQLIdentifier.quoted(plan.schema))")
            }
            // Whoever migrates (the service's own role, or an operator's role that is a member of it), the objects
            // belong to the schema's owner, so that the service keeps full use of them.
            if let row = try connection.query(
                """
                SELECT pg_get_userbyid(nspowner),
                       pg_get_userbyid(nspowner) <> current_user AND pg_has_role(current_user, nspowner, 'MEMBER')
                FROM pg_namespace WHERE nspname = \(plan.schema)
                """
            ).first, try row.decode(1, as: Bool.self) {
                try connection.executeScript("SET LOCAL ROLE \(SQLIdentifier.quoted(try row.decode(0, as: String.self)))")
            }
            try connection.executeScript(
                """
                CREATE TABLE IF NOT EXISTS \(SQLIdentifier.quoted(plan.schema + ".schema_migrations")) (
                    version integer PRIMARY KEY,
                    name text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now()
                );
                """)
            let done = Set(
                try connection.query("SELECT version FROM \(identifier: plan.schema + ".schema_migrations")").map {
                    try $0.decode(0, as: Int.self)
                })
            var applied: [Int] = []
            for migration in plan.migrations where !done.contains(migration.version) {
                try connection.executeScript("SET LOCAL search_path TO \(SQLIdentifier.quoted(plan.schema)), public")
                try connection.executeScript(migration.sql)
                try connection.query(
                    """
                    INSERT INTO \(identifier: plan.schema + ".schema_migrations") (version, name)
                    VALUES (\(migration.version), \(migration.name))
                    """
                )
                applied.append(migration.version)
            }
            return applied
        }
        if applied.isEmpty {
            logger.debug("schema up to date", metadata: ["schema": "\(plan.schema)"])
        } else {
            logger.info("applied migrations", metadata: ["schema": "\(plan.schema)", "versions": "\(applied)"])
        }
        return applied
    }
}
