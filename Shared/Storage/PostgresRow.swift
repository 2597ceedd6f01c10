/// One result row, in PostgreSQL's text format, decoded on demand into Swift types.
public struct PostgresRow: Sendable {
    public let columns: [String]
    public let values: [String?]

    /// The value of column `index` as `T`; throws on NULL or a value `T` cannot represent.
    public func decode<T: PostgresDecodable>(_ index: Int, as type: T.Type = T.self) throws(PostgresError) -> T {
        guard values.indices.contains(index) else {
            throw PostgresError(.decoding, "no column \(index) (the row has \(values.count))")
        }
        guard let text = values[index] else {
            throw PostgresError(.decoding, "column \(columns[index]) is NULL, expected \(T.self)")
        }
        return try T(postgresText: text)
    }

    /// The value of column `index` as `T`, or nil for NULL.
    public func decode<T: PostgresDecodable>(_ index: Int, as type: T?.Type) throws(PostgresError) -> T? {
        guard values.indices.contains(index) else {
            throw PostgresError(.decoding, "no column \(index) (the row has \(values.count))")
        }
        return try values[index].map { text throws(PostgresError) in try T(postgresText: text) }
    }

    public func decode<T: PostgresDecodable>(_ column: String, as type: T.Type = T.self) throws(PostgresError) -> T {
        try decode(try index(of: column), as: type)
    }

    public func decode<T: PostgresDecodable>(_ column: String, as type: T?.Type) throws(PostgresError) -> T? {
        try decode(try index(of: column), as: type)
    }

    private func index(of column: String) throws(PostgresError) -> Int {
        guard let index = columns.firstIndex(of: column) else {
            throw PostgresError(.decoding, "no column named \(column) (columns: \(columns.joined(separator: ", ")))")
        }
        return index
    }
}
