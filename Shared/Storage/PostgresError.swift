/// An error from PostgreSQL or libpq, with the SQLSTATE when the server sent one.
public struct PostgresError: Error, CustomStringConvertible, Sendable {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        let name: String
        public var description: String { name }
        /// Connecting or authenticating failed.
        public static let connectionFailed = Code(name: "connectionFailed")
        /// The connection broke while a statement ran (server restart, network); the statement may not have run.
        public static let connectionLost = Code(name: "connectionLost")
        /// The server rejected the statement; `sqlState` says why.
        public static let server = Code(name: "server")
        /// A value could not be decoded into the requested Swift type.
        public static let decoding = Code(name: "decoding")
        /// The client was misused (bad identifier, closed client).
        public static let client = Code(name: "client")
    }

    public let code: Code
    /// Five-character SQLSTATE, e.g. `23505` for a unique violation.
    public let sqlState: String?
    public let message: String
    public let detail: String?

    public init(_ code: Code, _ message: String, sqlState: String? = nil, detail: String? = nil) {
        self.code = code
        self.message = message
        self.sqlState = sqlState
        self.detail = detail
    }

    /// Errors after which the connection is unusable and a new one may succeed.
    public var isConnectionProblem: Bool {
        code == .connectionLost || code == .connectionFailed
            // 08: connection exception; 57P01..57P03: admin shutdown, crash shutdown, cannot connect now.
            || sqlState?.hasPrefix("08") == true || ["57P01", "57P02", "57P03"].contains(sqlState)
    }

    public static let uniqueViolation = "23505"

    public var description: String {
        var text = "PostgresError(\(code)"
        if let sqlState { text += ", SQLSTATE \(sqlState)" }
        text += "): \(message)"
        if let detail { text += " (\(detail))" }
        return text
    }
}
