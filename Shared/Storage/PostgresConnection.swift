import CLibPQ
import Foundation

/// Where and how to reach PostgreSQL.
public struct DatabaseConfiguration: Sendable, Equatable {
    /// A libpq connection URI or keyword string, e.g. `postgresql://candlecast@127.0.0.1:5432/candlecast`.
    public var url: String
    /// Given separately so that it can come from a secret file; overrides a password in `url`.
    public var password: String?
    public var connectTimeoutSeconds: Int
    public var applicationName: String

    public init(url: String, password: String? = nil, connectTimeoutSeconds: Int = 5, applicationName: String = "candlecast") {
        self.url = url
        self.password = password
        self.connectTimeoutSeconds = connectTimeoutSeconds
        self.applicationName = applicationName
    }

    /// Nil when libpq reads `url` as a connection URI (its own parser, so a multi-host URI such as
    /// `postgresql://candlecast@db1:5432,db2:5432/candlecast?target_session_attrs=read-write` is accepted), else why not.
    public static func problem(with url: String) -> String? {
        guard url.hasPrefix("postgresql://") || url.hasPrefix("postgres://") else { return "not a postgresql:// URI" }
        var error: UnsafeMutablePointer<CChar>?
        guard let options = PQconninfoParse(url, &error) else {
            let message = error.map { String(cString: $0).trimmingCharacters(in: .whitespacesAndNewlines) } ?? "out of memory"
            if let error { PQfreemem(error) }
            return "not a libpq connection URI: \(message)"
        }
        PQconninfoFree(options)
        return nil
    }
}

/// One libpq connection used synchronously.
///
/// Not thread-safe by design: a `PostgresConnection` lives on the dedicated thread of a `PostgresClient`
/// worker, which runs every statement on it; it never reaches Swift's cooperative pool.
public final class PostgresConnection {
    private var handle: OpaquePointer?

    init(configuration: DatabaseConfiguration) throws(PostgresError) {
        var keywords = ["dbname", "connect_timeout", "application_name", "options"]
        var values = [
            configuration.url, String(configuration.connectTimeoutSeconds), configuration.applicationName,
            "-c TimeZone=UTC -c DateStyle=ISO",
        ]
        if let password = configuration.password {
            keywords.append("password")
            values.append(password)
        }
        let handle = withCStringArray(keywords) { keywordPointers in
            withCStringArray(values) { valuePointers in
                PQconnectdbParams(keywordPointers, valuePointers, 1)  // 1: dbname may be a URI
            }
        }
        guard let handle, PQstatus(handle) == CONNECTION_OK else {
            let message =
                handle.map { String(cString: PQerrorMessage($0)).trimmingCharacters(in: .whitespacesAndNewlines) } ?? "out of memory"
            PQfinish(handle)
            throw PostgresError(.connectionFailed, message)
        }
        candlecast_pq_silence_notices(handle)
        self.handle = handle
    }

    /// Whether libpq still considers the connection usable.
    public var isHealthy: Bool { handle.map { PQstatus($0) == CONNECTION_OK } ?? false }

    func close() {
        PQfinish(handle)
        handle = nil
    }

    /// Runs one parameterised statement and returns its rows (empty for statements without a result set).
    @discardableResult
    public func query(_ query: PostgresQuery) throws(PostgresError) -> [PostgresRow] {
        try execute(query).rows
    }

    /// Runs one parameterised statement and returns the number of rows it inserted, updated or deleted.
    @discardableResult
    public func execute(_ query: PostgresQuery) throws(PostgresError) -> (rows: [PostgresRow], affectedRows: Int) {
        let handle = try liveHandle()
        let statement = try preparedStatement(for: query, handle: handle)
        let result: OpaquePointer? = withCStringArray(query.binds) { parameters in
            if let statement {
                PQexecPrepared(handle, statement, Int32(query.binds.count), parameters, nil, nil, 0)
            } else {
                PQexecParams(handle, query.sql, Int32(query.binds.count), nil, parameters, nil, nil, 0)
            }
        }
        defer { PQclear(result) }
        try check(result, handle: handle)
        return (Self.rows(of: result), Int(String(cString: PQcmdTuples(result))) ?? 0)
    }

    /// The server-side prepared statement of each query text run so far on this connection. Parsing and planning a
    /// short query costs PostgreSQL several times its execution (0.55 ms against 0.09 ms for the preprocessor's
    /// window query); a prepared statement is parsed once and, after five runs, executed on a generic plan.
    private var preparedStatements: [String: String] = [:]
    /// Query texts past this many run unprepared, so that texts built at run time cannot grow the cache without bound.
    public static let preparedStatementLimit = 256

    /// The prepared statement's name for `query`, preparing it on first use; nil once the cache is full.
    private func preparedStatement(for query: PostgresQuery, handle: OpaquePointer) throws(PostgresError) -> String? {
        if let name = preparedStatements[query.sql] { return name }
        guard preparedStatements.count < Self.preparedStatementLimit else { return nil }
        let name = "candlecast_\(preparedStatements.count)"
        let result = PQprepare(handle, name, query.sql, Int32(query.binds.count), nil)
        defer { PQclear(result) }
        try check(result, handle: handle)
        preparedStatements[query.sql] = name
        return name
    }

    /// Runs static SQL that may hold several statements (migrations). Never pass input from outside here:
    /// it has no parameters.
    public func executeScript(_ sql: String) throws(PostgresError) {
        let handle = try liveHandle()
        let result = PQexec(handle, sql)
        defer { PQclear(result) }
        try check(result, handle: handle)
    }

    /// Loads rows with `COPY ... FROM STDIN` (text format), the fastest bulk path, into `schema.table` (or `table` on
    /// the search path). Returns the row count.
    @discardableResult
    public func copy(into table: String, schema: String? = nil, columns: [String], rows: some Sequence<[String?]>) throws(PostgresError)
        -> Int
    {
        try copyIn(into: table, schema: schema, columns: columns, format: "", header: [], trailer: [], rows: rows) {
            row, buffer throws(PostgresError) in Self.appendCopyLine(row, to: &buffer)
        }
    }

    /// Loads rows with `COPY ... FROM STDIN (FORMAT binary)`: each value already in its column's type, so PostgreSQL
    /// parses no text. A value of another type than its column makes the server refuse the whole COPY.
    @discardableResult
    public func copy(into table: String, schema: String? = nil, columns: [String], binaryRows rows: some Sequence<[BinaryCopyValue]>)
        throws(PostgresError) -> Int
    {
        // The signature, no flags, no header extension; the trailer is a field count of -1.
        let header: [UInt8] = Array("PGCOPY\n".utf8) + [0xFF, 0x0D, 0x0A, 0x00] + [UInt8](repeating: 0, count: 8)
        return try copyIn(
            into: table, schema: schema, columns: columns, format: " (FORMAT binary)", header: header, trailer: [0xFF, 0xFF], rows: rows
        ) { row, buffer throws(PostgresError) in
            let count = Int16(row.count)
            withUnsafeBytes(of: count.bigEndian) { buffer.append(contentsOf: $0) }
            for value in row { try value.appendField(to: &buffer) }
        }
    }

    private func copyIn<Row>(
        into table: String, schema: String?, columns: [String], format: String, header: [UInt8], trailer: [UInt8],
        rows: some Sequence<Row>, append: (Row, inout [UInt8]) throws(PostgresError) -> Void
    ) throws(PostgresError) -> Int where Row: Collection {
        guard SQLIdentifier.isValid(table), schema.map(SQLIdentifier.isValid) ?? true, columns.allSatisfy(SQLIdentifier.isValid) else {
            throw PostgresError(.client, "invalid table or column name for COPY: \(table)(\(columns.joined(separator: ",")))")
        }
        let handle = try liveHandle()
        let target = (schema.map { SQLIdentifier.quoted($0) + "." } ?? "") + SQLIdentifier.quoted(table)
        let statement = "COPY \(target) (\(columns.map(SQLIdentifier.quoted).joined(separator: ", "))) FROM STDIN\(format)"
        let start = PQexec(handle, statement)
        let startStatus = PQresultStatus(start)
        if startStatus != PGRES_COPY_IN {
            defer { PQclear(start) }
            try check(start, handle: handle)
            throw PostgresError(.client, "COPY did not start")
        }
        PQclear(start)
        var buffer: [UInt8] = header
        buffer.reserveCapacity(1 << 16)
        var count = 0
        var failure: PostgresError?
        for row in rows {
            guard row.count == columns.count else {
                failure = PostgresError(.client, "COPY row \(count + 1) has \(row.count) values for \(columns.count) columns")
                break
            }
            do {
                try append(row, &buffer)
            } catch {
                failure = PostgresError(.client, "COPY row \(count + 1): \(error.message)")
                break
            }
            count += 1
            if buffer.count >= 1 << 16 {
                if !Self.put(buffer, handle: handle) { break }
                buffer.removeAll(keepingCapacity: true)
            }
        }
        if failure == nil {
            buffer.append(contentsOf: trailer)
            if !buffer.isEmpty { _ = Self.put(buffer, handle: handle) }
        }
        PQputCopyEnd(handle, failure.map { $0.message })
        let result = PQgetResult(handle)
        defer {
            PQclear(result)
            // Drain to the end of the command so the connection is ready for the next statement.
            while let extra = PQgetResult(handle) { PQclear(extra) }
        }
        if let failure { throw failure }
        try check(result, handle: handle)
        return count
    }

    private static func put(_ buffer: [UInt8], handle: OpaquePointer) -> Bool {
        buffer.withUnsafeBufferPointer { pointer in
            pointer.baseAddress!.withMemoryRebound(to: CChar.self, capacity: pointer.count) {
                PQputCopyData(handle, $0, Int32(pointer.count)) == 1
            }
        }
    }

    /// COPY text format: tab-separated, `\N` for NULL, backslash escapes for the separators.
    private static func appendCopyLine(_ row: [String?], to buffer: inout [UInt8]) {
        for (index, value) in row.enumerated() {
            if index > 0 { buffer.append(UInt8(ascii: "\t")) }
            guard let value else {
                buffer.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "N")])
                continue
            }
            // Most values need no escaping: copied in one piece.
            if !value.utf8.contains(where: { $0 == UInt8(ascii: "\\") || $0 < 0x20 }) {
                buffer.append(contentsOf: value.utf8)
                continue
            }
            for byte in value.utf8 {
                switch byte {
                case UInt8(ascii: "\\"): buffer.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
                case UInt8(ascii: "\t"): buffer.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
                case UInt8(ascii: "\n"): buffer.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
                case UInt8(ascii: "\r"): buffer.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
                default: buffer.append(byte)
                }
            }
        }
        buffer.append(UInt8(ascii: "\n"))
    }

    private func liveHandle() throws(PostgresError) -> OpaquePointer {
        guard let handle, PQstatus(handle) == CONNECTION_OK else {
            throw PostgresError(.connectionLost, "the connection is closed or broken")
        }
        return handle
    }

    private func check(_ result: OpaquePointer?, handle: OpaquePointer) throws(PostgresError) {
        let status = result.map(PQresultStatus) ?? PGRES_FATAL_ERROR
        switch status {
        case PGRES_COMMAND_OK, PGRES_TUPLES_OK, PGRES_EMPTY_QUERY, PGRES_COPY_IN:
            return
        default:
            func field(_ code: Int32) -> String? {
                guard let result, let value = PQresultErrorField(result, code) else { return nil }
                return String(cString: value)
            }
            let sqlState = field(CANDLECAST_PG_DIAG_SQLSTATE)
            let message =
                field(CANDLECAST_PG_DIAG_MESSAGE_PRIMARY)
                ?? String(cString: PQerrorMessage(handle)).trimmingCharacters(in: .whitespacesAndNewlines)
            let broken = PQstatus(handle) != CONNECTION_OK
            throw PostgresError(
                broken ? .connectionLost : .server, message, sqlState: sqlState, detail: field(CANDLECAST_PG_DIAG_MESSAGE_DETAIL))
        }
    }

    private static func rows(of result: OpaquePointer?) -> [PostgresRow] {
        guard let result, PQresultStatus(result) == PGRES_TUPLES_OK else { return [] }
        let rowCount = PQntuples(result)
        let columnCount = PQnfields(result)
        let columns = (0..<columnCount).map { String(cString: PQfname(result, $0)) }
        return (0..<rowCount).map { row in
            PostgresRow(
                columns: columns,
                values: (0..<columnCount).map { column in
                    PQgetisnull(result, row, column) == 1 ? nil : String(cString: PQgetvalue(result, row, column))
                })
        }
    }
}

/// Gives C an array of NUL-terminated strings (nil entries stay NULL) valid for the duration of `body`.
private func withCStringArray<R>(_ strings: [String?], _ body: (UnsafePointer<UnsafePointer<CChar>?>) -> R) -> R {
    let pointers: [UnsafeMutablePointer<CChar>?] = strings.map { $0.flatMap { strdup($0) } }
    defer { for pointer in pointers { free(pointer) } }
    var terminated = pointers.map { UnsafePointer($0) }
    terminated.append(nil)
    return terminated.withUnsafeBufferPointer { body($0.baseAddress!) }
}
