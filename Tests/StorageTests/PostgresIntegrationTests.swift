import Foundation
import Storage
import TestSupport
import Testing

/// Against the real PostgreSQL started by scripts/servers.sh.
@Suite("Storage against PostgreSQL", .serialized)
struct PostgresIntegrationTests {
    let logger = TestEnvironment.logger

    func makeClient(connections: Int = 2) throws -> PostgresClient {
        PostgresClient(
            configuration: try TestEnvironment.database(), options: PostgresClient.Options(connections: connections), logger: logger)
    }

    static let hostileStrings = [
        "O'Reilly", "'; DROP TABLE candles; --", "\"quoted\" \\ backslash \\x00", "semi;colon", "$1 $2 placeholder-looking",
        "line\nbreak\ttab\r", "ünïcødé 价格 ₿ 🚀", "", String(repeating: "long ", count: 2000), "E'\\\\x41'", "NULL",
    ]

    @Test("parameterised queries round-trip hostile strings unchanged")
    func hostileStringsRoundTrip() async throws {
        let client = try makeClient()
        let table = "public." + TestEnvironment.uniqueName("hostile").replacingOccurrences(of: ".", with: "_")
        try await client.execute("CREATE TABLE \(identifier: table) (id serial PRIMARY KEY, value text)")
        for value in Self.hostileStrings {
            let echoed = try await client.query("SELECT \(value)::text AS value")
            #expect(try echoed[0].decode("value", as: String.self) == value)
            try await client.execute("INSERT INTO \(identifier: table) (value) VALUES (\(value))")
        }
        let stored = try await client.query("SELECT value FROM \(identifier: table) ORDER BY id").map { try $0.decode(0, as: String.self) }
        #expect(stored == Self.hostileStrings)
        // The same strings through COPY.
        let copied = try await client.withConnection { connection in
            try connection.copy(into: table, columns: ["value"], rows: Self.hostileStrings.map { [$0] })
        }
        #expect(copied == Self.hostileStrings.count)
        let all = try await client.query("SELECT value FROM \(identifier: table) ORDER BY id").map { try $0.decode(0, as: String.self) }
        #expect(all == Self.hostileStrings + Self.hostileStrings)
        try await client.execute("DROP TABLE \(identifier: table)")
        await client.close()
    }

    @Test("array parameters: generated arrays of hostile text, NULLs, numbers and dates arrive element for element through unnest")
    func arrayParametersRoundTrip() async throws {
        let client = try makeClient()
        let seed = UInt64.random(in: 0...UInt64.max)
        var random = SplitMix64(state: seed)
        let alphabet = Array("a,{}\"\\ NUL\n\t'$1é价🚀") + ["\u{7F}", "\u{1}"]
        for _ in 0..<200 {
            let texts: [String?] = (0..<Int.random(in: 0...12, using: &random)).map { _ in
                if Int.random(in: 0..<8, using: &random) == 0 { return nil }
                return String((0..<Int.random(in: 0...10, using: &random)).map { _ in alphabet.randomElement(using: &random)! })
            }
            let numbers = texts.map { _ in Int64.random(in: Int64.min...Int64.max, using: &random) }
            let dates = texts.map { _ in
                Date(timeIntervalSince1970: Double(Int64.random(in: -2_000_000_000...4_000_000_000, using: &random)))
            }
            let rows = try await client.query(
                """
                SELECT text, number, date FROM unnest(\(PostgresArray(texts))::text[], \(PostgresArray(numbers))::bigint[],
                    \(PostgresArray(dates))::timestamptz[]) WITH ORDINALITY AS element (text, number, date, position) ORDER BY position
                """)
            #expect(try rows.map { try $0.decode(0, as: String?.self) } == texts, "seed \(seed)")
            #expect(try rows.map { try $0.decode(1, as: Int64.self) } == numbers, "seed \(seed)")
            #expect(try rows.map { try $0.decode(2, as: Date.self) } == dates, "seed \(seed)")
        }
        await client.close()
    }

    /// A seedable generator, so that a failing case can be replayed from the seed in its message.
    struct SplitMix64: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var mixed = state
            mixed = (mixed ^ (mixed >> 30)) &* 0xBF58_476D_1CE4_E5B9
            mixed = (mixed ^ (mixed >> 27)) &* 0x94D0_49BB_1331_11EB
            return mixed ^ (mixed >> 31)
        }
    }

    @Test("values decode to exact Swift types")
    func typedRoundTrip() async throws {
        let client = try makeClient()
        let price = Decimal(string: "93429.123456789012")!
        let date = Date(timeIntervalSince1970: 1_735_689_600.123456)
        let id = UUID()
        let bytes: [UInt8] = [0, 1, 2, 0xFE, 0xFF]
        let rows = try await client.query(
            """
            SELECT \(price)::numeric AS price, \(date)::timestamptz AS at, \(id)::uuid AS id, \(bytes)::bytea AS bytes,
                   \(Int64.max)::bigint AS big, \(true)::boolean AS flag, \(0.1)::float8 AS fraction,
                   \(Optional<String>.none)::text AS missing
            """)
        let row = try #require(rows.first)
        #expect(try row.decode("price", as: Decimal.self) == price)
        #expect(try row.decode("price", as: String.self) == "93429.123456789012")
        #expect(abs(try row.decode("at", as: Date.self).timeIntervalSince(date)) < 0.000_001)
        #expect(try row.decode("id", as: UUID.self) == id)
        #expect(try row.decode("bytes", as: [UInt8].self) == bytes)
        #expect(try row.decode("big", as: Int64.self) == Int64.max)
        #expect(try row.decode("flag", as: Bool.self))
        #expect(try row.decode("fraction", as: Double.self) == 0.1)
        #expect(try row.decode("missing", as: String?.self) == nil)
        #expect(throws: PostgresError.self) { try row.decode("missing", as: String.self) }
        #expect(throws: PostgresError.self) { try row.decode("flag", as: Int.self) }
        let arrays = try await client.query("SELECT ARRAY[1.5, 2, 0.00003, 93429.2]::float8[], '{}'::float8[]")[0]
        #expect(try arrays.decode(0, as: PostgresDoubleArray.self).values == [1.5, 2, 0.00003, 93429.2])
        #expect(try arrays.decode(1, as: PostgresDoubleArray.self).values == [])
        await client.close()
    }

    @Test("a failed transaction leaves nothing behind and reports its SQLSTATE")
    func failedTransactionRollsBack() async throws {
        let client = try makeClient()
        let table = "public." + TestEnvironment.uniqueName("tx").replacingOccurrences(of: ".", with: "_")
        try await client.execute("CREATE TABLE \(identifier: table) (key text PRIMARY KEY)")
        let error = await #expect(throws: PostgresError.self) {
            try await client.transaction { connection in
                try connection.query("INSERT INTO \(identifier: table) (key) VALUES (\("a"))")
                try connection.query("INSERT INTO \(identifier: table) (key) VALUES (\("b"))")
                try connection.query("INSERT INTO \(identifier: table) (key) VALUES (\("a"))")  // unique violation
            }
        }
        #expect(error?.sqlState == PostgresError.uniqueViolation)
        #expect(error?.code == .server)

        struct Abort: Error {}
        await #expect(throws: Abort.self) {
            try await client.transaction { connection in
                try connection.query("INSERT INTO \(identifier: table) (key) VALUES (\("c"))")
                throw Abort()
            }
        }
        let count = try await client.query("SELECT count(*) FROM \(identifier: table)")[0].decode(0, as: Int.self)
        #expect(count == 0)
        // The connection is usable after the rollbacks.
        _ = try await client.transaction { try $0.query("INSERT INTO \(identifier: table) (key) VALUES (\("d"))") }
        #expect(try await client.query("SELECT key FROM \(identifier: table)").map { try $0.decode(0, as: String.self) } == ["d"])
        try await client.execute("DROP TABLE \(identifier: table)")
        await client.close()
    }

    @Test("a syntax error is a clear error, not a crash")
    func serverErrors() async throws {
        let client = try makeClient()
        let error = await #expect(throws: PostgresError.self) { try await client.query("SELEC 1") }
        #expect(error?.sqlState == "42601")
        #expect(error?.message.contains("syntax error") == true)
        #expect(try await client.query("SELECT 1")[0].decode(0, as: Int.self) == 1)
        await client.close()
    }

    @Test("statements are prepared once per connection and rerun with new values; texts past the cache's limit run unprepared")
    func preparedStatements() async throws {
        let client = try makeClient(connections: 1)
        let limit = PostgresConnection.preparedStatementLimit
        let (sums, distinct, prepared) = try await client.withConnection { connection in
            let sums = try (0..<20).map { try connection.query("SELECT \($0)::int + 1")[0].decode(0, as: Int.self) }
            // A statement that fails to prepare is not kept, and the connection goes on.
            #expect(throws: PostgresError.self) { try connection.query("SELECT no_such_column FROM pg_class") }
            let distinct = try (0..<(limit + 20)).map {
                try connection.query("SELECT \($0)::int AS \(identifier: "c\($0)")")[0].decode(0, as: Int.self)
            }
            let prepared = try connection.query("SELECT count(*) FROM pg_prepared_statements")[0].decode(0, as: Int.self)
            return (sums, distinct, prepared)
        }
        #expect(sums == Array(1...20))
        #expect(distinct == Array(0..<(limit + 20)))
        #expect(prepared == limit)
        await client.close()
    }

    @Test("migrations run twice are a no-op, also when two replicas start at once")
    func migrationsAreIdempotent() async throws {
        let schema = TestEnvironment.uniqueName("mig").replacingOccurrences(of: ".", with: "_")
        let plan = SchemaMigrations(
            schema: schema,
            migrations: [
                Migration(version: 1, name: "candles", sql: "CREATE TABLE candles (open_time bigint PRIMARY KEY, close numeric NOT NULL);"),
                Migration(
                    version: 2, name: "rejected",
                    sql:
                        """
                        CREATE TABLE rejected (id bigserial PRIMARY KEY, reason text NOT NULL); INSERT INTO rejected (reason) VALUES \
                        ('seed');
                        """
                ),
            ])
        let first = try makeClient()
        let second = try makeClient()
        async let a = first.migrate(plan, logger: logger)
        async let b = second.migrate(plan, logger: logger)
        let applied = try await [a, b]
        #expect(applied.sorted { $0.count < $1.count } == [[], [1, 2]])
        #expect(try await first.migrate(plan, logger: logger) == [])
        let seeded = try await first.query("SELECT count(*) FROM \(identifier: schema + ".rejected")")[0].decode(0, as: Int.self)
        #expect(seeded == 1)
        let versions = try await first.query("SELECT version FROM \(identifier: schema + ".schema_migrations") ORDER BY version")
        #expect(try versions.map { try $0.decode(0, as: Int.self) } == [1, 2])
        try await first.execute("DROP SCHEMA \(identifier: schema) CASCADE")
        await first.close()
        await second.close()
    }

    @Test("bulk COPY loads many rows")
    func bulkCopy() async throws {
        let client = try makeClient()
        let table = "public." + TestEnvironment.uniqueName("copy").replacingOccurrences(of: ".", with: "_")
        try await client.execute("CREATE TABLE \(identifier: table) (open_time bigint PRIMARY KEY, close numeric NOT NULL, note text)")
        let rows = (0..<50_000).map { [String($0 * 60), "\(42_000 + $0).5", $0 % 7 == 0 ? nil : "n\t\($0)"] }
        let loaded = try await client.withConnection { try $0.copy(into: table, columns: ["open_time", "close", "note"], rows: rows) }
        #expect(loaded == 50_000)
        let summary = try await client.query("SELECT count(*), sum(close), count(note) FROM \(identifier: table)")[0]
        #expect(try summary.decode(0, as: Int.self) == 50_000)
        // 50,000 x 42,000.5 + (0 + 1 + ... + 49,999), exact in numeric.
        #expect(try summary.decode(1, as: Decimal.self) == Decimal(string: "3350000000")!)
        #expect(try summary.decode(2, as: Int.self) == 50_000 - 7143)
        let error = await #expect(throws: PostgresError.self) {
            try await client.withConnection {
                try $0.copy(into: table, columns: ["open_time", "close", "note"], rows: [["1", "oops", nil]])
            }
        }
        #expect(error?.sqlState == "22P02")
        #expect(try await client.query("SELECT count(*) FROM \(identifier: table)")[0].decode(0, as: Int.self) == 50_000)
        try await client.execute("DROP TABLE \(identifier: table)")
        await client.close()
    }

    @Test("binary COPY: generated decimals are stored as their text would be (value and scale), every type and NULL round-trips")
    func binaryCopyMatchesText() async throws {
        let client = try makeClient()
        let seed = UInt64.random(in: 0...UInt64.max)
        var random = SplitMix64(state: seed)
        func digits(_ count: Int) -> String { String((0..<count).map { _ in Character(String(random.next() % 10)) }) }
        var decimals = [
            "0", "-0", "+0", "0.000", ".5", "5.", "+7", "-7", "00012.3400", "100000001", "0.00005", "10000", "9999.9999",
            "0.0001", "100000", String(repeating: "9", count: 200) + "." + String(repeating: "9", count: 200),
        ]
        for _ in 0..<2_000 {
            let sign = ["", "", "-", "+"][Int(random.next() % 4)]
            let leadingZeros = String(repeating: "0", count: Int(random.next() % 3))
            let integer = digits(Int(random.next() % 24))
            let fraction = random.next() % 3 == 0 ? "" : "." + digits(Int(random.next() % 24))
            let text = sign + leadingZeros + integer + fraction
            if text.contains(where: \.isNumber) { decimals.append(text) }
        }
        let table = "public." + TestEnvironment.uniqueName("binary_copy").replacingOccurrences(of: ".", with: "_")
        try await client.execute(
            "CREATE TABLE \(identifier: table) (id integer PRIMARY KEY, big bigint, value numeric, label text, expected text)")
        let rows = decimals.enumerated().map { index, text -> [BinaryCopyValue] in
            [
                .int32(Int32(index)), index % 5 == 0 ? .null : .int64(Int64(index) * -3_000_000_007), .numeric(text),
                index % 7 == 0 ? .null : .text(Self.hostileStrings[index % Self.hostileStrings.count]),
                .text(text),
            ]
        }
        let loaded = try await client.withConnection {
            try $0.copy(into: table, columns: ["id", "big", "value", "label", "expected"], binaryRows: rows)
        }
        #expect(loaded == decimals.count)
        // The binary value against the same text parsed by numeric_in: equal, and the same text back (the same scale).
        let mismatches = try await client.query(
            """
            SELECT expected, value::text, expected::numeric::text FROM \(identifier: table)
            WHERE value IS DISTINCT FROM expected::numeric OR value::text IS DISTINCT FROM expected::numeric::text
            LIMIT 5
            """
        ).map { try "\($0.decode(0, as: String.self)) -> \($0.decode(1, as: String?.self) ?? "NULL")" }
        #expect(mismatches.isEmpty, "seed \(seed)")
        let others = try await client.query("SELECT id, big, label FROM \(identifier: table) ORDER BY id")
        for (index, row) in others.enumerated() {
            #expect(try row.decode(0, as: Int.self) == index)
            #expect(try row.decode(1, as: Int64?.self) == (index % 5 == 0 ? nil : Int64(index) * -3_000_000_007))
            #expect(try row.decode(2, as: String?.self) == (index % 7 == 0 ? nil : Self.hostileStrings[index % Self.hostileStrings.count]))
        }
        // Not a plain decimal: the COPY is refused before the server sees it, and nothing of it is stored.
        for refused in ["1e5", "", "-", ".", "1.2.3", " 1", "NaN", "1_0", "Infinity", "0x10", String(repeating: "1", count: 1001)] {
            let error = await #expect(throws: PostgresError.self, "\(refused.prefix(20))") {
                try await client.withConnection {
                    try $0.copy(
                        into: table, columns: ["id", "big", "value", "label", "expected"],
                        binaryRows: [
                            [.int32(-1), .null, .numeric("1"), .null, .null], [.int32(-2), .null, .numeric(refused), .null, .null],
                        ])
                }
            }
            #expect(error?.message.contains("COPY row 2") == true)
        }
        #expect(try await client.query("SELECT count(*) FROM \(identifier: table)")[0].decode(0, as: Int.self) == decimals.count)
        try await client.execute("DROP TABLE \(identifier: table)")
        await client.close()
    }

    @Test("the client recovers after PostgreSQL restarts")
    func recoversAfterRestart() async throws {
        let client = try makeClient(connections: 1)
        let before = try await client.query("SELECT pg_backend_pid()")[0].decode(0, as: Int.self)
        try await TestEnvironment.servers("postgres-restart")
        // The old connection is dead; the client reconnects and runs the statement on a new one.
        let after = try await client.query("SELECT pg_backend_pid()")[0].decode(0, as: Int.self)
        #expect(after != before)
        #expect(await client.ping())
        await client.close()
    }

    @Test("a libpq multi-host URI: a host that is down is skipped for the next, the one that takes writes")
    func multiHostURI() async throws {
        var configuration = try TestEnvironment.database()
        let components = try #require(URLComponents(string: configuration.url))
        let user = components.user.map { "\($0)@" } ?? ""
        let live = "\(components.host ?? "127.0.0.1"):\(components.port ?? 5432)"
        let query = ((components.query.map { [$0] } ?? []) + ["target_session_attrs=read-write"]).joined(separator: "&")
        // Port 9 on loopback refuses at once: the first host of the list is "down", as a failed primary would be.
        configuration.url = "postgresql://\(user)127.0.0.1:9,\(live)\(components.path)?\(query)"
        #expect(DatabaseConfiguration.problem(with: configuration.url) == nil, "\(configuration.url)")
        let client = PostgresClient(
            configuration: configuration, options: PostgresClient.Options(connections: 1, reconnectAttempts: 0), logger: logger)
        let readOnly = try await client.query("SELECT current_setting('transaction_read_only')").first?.decode(0, as: String.self)
        #expect(readOnly == "off", "connected to the host that takes writes")
        await client.close()
        #expect(DatabaseConfiguration.problem(with: "postgresql://u@h1:5432,h2:5432/db?target_session_attrs=read-write") == nil)
        #expect(DatabaseConfiguration.problem(with: "postgresql://u@h1:5432/db?no_such_option=1")?.contains("no_such_option") == true)
        #expect(DatabaseConfiguration.problem(with: "mysql://u@h1/db") == "not a postgresql:// URI")
    }

    @Test("a bad password or unreachable server is a connection error")
    func connectionErrors() async throws {
        var configuration = try TestEnvironment.database()
        configuration.password = "wrong"
        let client = PostgresClient(
            configuration: configuration, options: PostgresClient.Options(connections: 1, reconnectAttempts: 0), logger: logger)
        let error = await #expect(throws: PostgresError.self) { try await client.query("SELECT 1") }
        #expect(error?.code == .connectionFailed)
        #expect(error?.message.contains("password authentication failed") == true)
        #expect(await client.ping() == false)
        await client.close()
    }
}

/// PostgreSQL over TLS with `sslmode=verify-full` and the certificates scripts/servers.sh generated.
@Suite("PostgreSQL over TLS")
struct PostgresTLSTests {
    let logger = TestEnvironment.logger

    /// The test database's URI with another host part and TLS settings.
    func url(host: String, rootCertificate: String, extra: String = "") throws -> DatabaseConfiguration {
        var configuration = try TestEnvironment.database()
        let components = try #require(URLComponents(string: configuration.url))
        let user = components.user.map { "\($0)@" } ?? ""
        let settings = "sslmode=verify-full&sslrootcert=\(rootCertificate)\(extra)"
        configuration.url = "postgresql://\(user)\(host):\(components.port ?? 5432)\(components.path)?\(settings)"
        return configuration
    }

    func attempt(_ configuration: DatabaseConfiguration) async -> Result<Bool, PostgresError> {
        let client = PostgresClient(
            configuration: configuration, options: PostgresClient.Options(connections: 1, reconnectAttempts: 0), logger: logger)
        defer { Task { await client.close() } }
        do {
            let ssl = try await client.query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").first?.decode(0, as: Bool.self)
            return .success(ssl ?? false)
        } catch let error as PostgresError {
            return .failure(error)
        } catch {
            return .failure(PostgresError(.connectionFailed, "\(error)"))
        }
    }

    @Test("verify-full: the certificate chains to the CA and names the host; another CA, or a name it does not carry, is refused")
    func verifyFull() async throws {
        let ca = try #require(TestEnvironment.variables["CANDLECAST_TLS_CA_FILE"], "scripts/servers.sh start writes it to .local/env")
        let otherCA = try #require(TestEnvironment.variables["CANDLECAST_TLS_OTHER_CA_FILE"])
        #expect(try await attempt(url(host: "localhost", rootCertificate: ca)).get() == true, "connected over TLS")
        #expect(try await attempt(url(host: "127.0.0.1", rootCertificate: ca)).get() == true)
        guard case .failure(let untrusted) = await attempt(try url(host: "localhost", rootCertificate: otherCA)) else {
            Issue.record("connected with a CA that did not sign the server's certificate")
            return
        }
        #expect(untrusted.message.contains("certificate verify failed"), "\(untrusted.message)")
        // The right server, reached under a name its certificate does not carry (hostaddr keeps it on loopback).
        guard
            case .failure(let misnamed) = await attempt(
                try url(host: "not-this-host.example", rootCertificate: ca, extra: "&hostaddr=127.0.0.1"))
        else {
            Issue.record("connected to a server whose certificate names another host")
            return
        }
        #expect(misnamed.message.contains("does not match host name"), "\(misnamed.message)")
    }
}
