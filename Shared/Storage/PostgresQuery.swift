import Foundation

/// A SQL statement whose interpolated values become `$1...$n` parameters, never text in the SQL:
/// `"SELECT * FROM t WHERE name = \(name)"` sends `name` as a bound parameter.
public struct PostgresQuery: Sendable, ExpressibleByStringInterpolation, CustomStringConvertible {
    public private(set) var sql: String
    /// Parameters in text format; nil is SQL NULL.
    public private(set) var binds: [String?]

    public init(stringLiteral value: String) {
        sql = value
        binds = []
    }

    public init(stringInterpolation: StringInterpolation) {
        sql = stringInterpolation.sql
        binds = stringInterpolation.binds
    }

    /// Static SQL with parameters already numbered (for statements built in code, not from input).
    public init(unsafeSQL sql: String, binds: [String?] = []) {
        self.sql = sql
        self.binds = binds
    }

    public var description: String { sql }

    public struct StringInterpolation: StringInterpolationProtocol {
        var sql = ""
        var binds: [String?] = []

        public init(literalCapacity: Int, interpolationCount: Int) {
            sql.reserveCapacity(literalCapacity + interpolationCount * 3)
        }

        public mutating func appendLiteral(_ literal: String) { sql += literal }

        public mutating func appendInterpolation(_ value: some PostgresEncodable) {
            binds.append(value.postgresText)
            sql += "$\(binds.count)"
        }

        public mutating func appendInterpolation(_ value: (some PostgresEncodable)?) {
            binds.append(value?.postgresText)
            sql += "$\(binds.count)"
        }

        /// A schema, table or column name chosen by code. Only `[a-z_][a-z0-9_]*` (optionally dotted) is
        /// accepted; anything else becomes an identifier that cannot exist, so the statement fails.
        public mutating func appendInterpolation(identifier: String) {
            sql += SQLIdentifier.quoted(identifier)
        }
    }
}

enum SQLIdentifier {
    static func isValid(_ name: String) -> Bool {
        let parts = name.split(separator: ".", omittingEmptySubsequences: false)
        return !parts.isEmpty && parts.count <= 2
            && parts.allSatisfy { part in
                guard let first = part.first, first == "_" || ("a"..."z").contains(first) else { return false }
                return part.allSatisfy { $0 == "_" || ("a"..."z").contains($0) || ("0"..."9").contains($0) } && part.count <= 63
            }
    }

    static func quoted(_ name: String) -> String {
        guard isValid(name) else { return "\"invalid identifier\"" }
        return name.split(separator: ".").map { "\"\($0)\"" }.joined(separator: ".")
    }
}

/// A Swift value that can be sent as a query parameter in PostgreSQL's text format.
public protocol PostgresEncodable: Sendable {
    var postgresText: String? { get }
}

/// A Swift value that can be read from a column in PostgreSQL's text format.
public protocol PostgresDecodable: Sendable {
    init(postgresText: String) throws(PostgresError)
}

private func decodingError<T>(_ text: String, _ type: T.Type) -> PostgresError {
    PostgresError(.decoding, "cannot read \(String(text.prefix(80)).debugDescription) as \(T.self)")
}

extension String: PostgresEncodable, PostgresDecodable {
    public var postgresText: String? { self }
    public init(postgresText: String) { self = postgresText }
}

extension Int: PostgresEncodable, PostgresDecodable {
    public var postgresText: String? { String(self) }
    public init(postgresText: String) throws(PostgresError) {
        guard let value = Int(postgresText) else { throw decodingError(postgresText, Int.self) }
        self = value
    }
}

extension Int64: PostgresEncodable, PostgresDecodable {
    public var postgresText: String? { String(self) }
    public init(postgresText: String) throws(PostgresError) {
        guard let value = Int64(postgresText) else { throw decodingError(postgresText, Int64.self) }
        self = value
    }
}

extension Int32: PostgresEncodable, PostgresDecodable {
    public var postgresText: String? { String(self) }
    public init(postgresText: String) throws(PostgresError) {
        guard let value = Int32(postgresText) else { throw decodingError(postgresText, Int32.self) }
        self = value
    }
}

extension Double: PostgresEncodable, PostgresDecodable {
    public var postgresText: String? {
        if isNaN { return "NaN" }
        if isInfinite { return self > 0 ? "Infinity" : "-Infinity" }
        return "\(self)"
    }
    public init(postgresText: String) throws(PostgresError) {
        switch postgresText {
        case "NaN": self = .nan
        case "Infinity": self = .infinity
        case "-Infinity": self = -.infinity
        default:
            guard let value = Double(postgresText) else { throw decodingError(postgresText, Double.self) }
            self = value
        }
    }
}

extension Bool: PostgresEncodable, PostgresDecodable {
    public var postgresText: String? { self ? "true" : "false" }
    public init(postgresText: String) throws(PostgresError) {
        switch postgresText {
        case "t", "true": self = true
        case "f", "false": self = false
        default: throw decodingError(postgresText, Bool.self)
        }
    }
}

/// Exact decimals for prices: PostgreSQL `numeric` round-trips through text without a float in between.
extension Decimal: PostgresEncodable, PostgresDecodable {
    public var postgresText: String? { isNaN ? "NaN" : description }
    public init(postgresText: String) throws(PostgresError) {
        guard let value = Decimal(string: postgresText, locale: Locale(identifier: "en_US_POSIX")) else {
            throw decodingError(postgresText, Decimal.self)
        }
        self = value
    }
}

extension UUID: PostgresEncodable, PostgresDecodable {
    public var postgresText: String? { uuidString.lowercased() }
    public init(postgresText: String) throws(PostgresError) {
        guard let value = UUID(uuidString: postgresText) else { throw decodingError(postgresText, UUID.self) }
        self = value
    }
}

/// Dates travel as `timestamptz` text in UTC with microseconds (connections run with TimeZone=UTC, DateStyle=ISO).
extension Date: PostgresEncodable, PostgresDecodable {
    public var postgresText: String? { PostgresDate.format(self) }
    public init(postgresText: String) throws(PostgresError) {
        guard let date = PostgresDate.parse(postgresText) else { throw decodingError(postgresText, Date.self) }
        self = date
    }
}

enum PostgresDate {
    static func format(_ date: Date) -> String {
        let totalMicroseconds = Int64((date.timeIntervalSince1970 * 1_000_000).rounded(.down))
        var seconds = time_t(totalMicroseconds >= 0 ? totalMicroseconds / 1_000_000 : (totalMicroseconds - 999_999) / 1_000_000)
        let microseconds = totalMicroseconds - Int64(seconds) * 1_000_000
        var parts = tm()
        gmtime_r(&seconds, &parts)
        return String(
            format: "%04d-%02d-%02d %02d:%02d:%02d.%06lld+00", parts.tm_year + 1900, parts.tm_mon + 1, parts.tm_mday,
            parts.tm_hour, parts.tm_min, parts.tm_sec, microseconds)
    }

    /// Parses ISO output in UTC, e.g. `2024-01-01 00:00:00+00` or `2024-01-01 00:00:00.123456+00`.
    static func parse(_ text: String) -> Date? {
        let utf8 = Array(text.utf8)
        func number(_ range: Range<Int>) -> Int? {
            guard range.upperBound <= utf8.count else { return nil }
            return Int(String(decoding: utf8[range], as: UTF8.self))
        }
        guard utf8.count >= 19, let year = number(0..<4), let month = number(5..<7), let day = number(8..<10),
            let hour = number(11..<13), let minute = number(14..<16), let second = number(17..<19)
        else { return nil }
        var fraction = 0.0
        var index = 19
        if index < utf8.count, utf8[index] == UInt8(ascii: ".") {
            let start = index
            index += 1
            while index < utf8.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(utf8[index]) { index += 1 }
            fraction = Double(String(decoding: utf8[start..<index], as: UTF8.self)) ?? 0
        }
        var offsetSeconds = 0
        if index < utf8.count, utf8[index] == UInt8(ascii: "+") || utf8[index] == UInt8(ascii: "-") {
            let sign = utf8[index] == UInt8(ascii: "-") ? -1 : 1
            let hours = number(index + 1..<index + 3) ?? 0
            let minutes = utf8.count >= index + 6 ? (number(index + 4..<index + 6) ?? 0) : 0
            offsetSeconds = sign * (hours * 3600 + minutes * 60)
        }
        var parts = tm()
        parts.tm_year = Int32(year - 1900)
        parts.tm_mon = Int32(month - 1)
        parts.tm_mday = Int32(day)
        parts.tm_hour = Int32(hour)
        parts.tm_min = Int32(minute)
        parts.tm_sec = Int32(second)
        let epoch = timegm(&parts)
        return Date(timeIntervalSince1970: TimeInterval(epoch - offsetSeconds) + fraction)
    }
}

/// `bytea` in hex format, written through one buffer (a model file is megabytes: no string per byte).
extension Array: PostgresEncodable where Element == UInt8 {
    public var postgresText: String? {
        let digits: StaticString = "0123456789abcdef"
        return String(unsafeUninitializedCapacity: 2 + count * 2) { text in
            text[0] = UInt8(ascii: "\\")
            text[1] = UInt8(ascii: "x")
            digits.withUTF8Buffer { digits in
                for (index, byte) in enumerated() {
                    text[2 + 2 * index] = digits[Int(byte >> 4)]
                    text[3 + 2 * index] = digits[Int(byte & 0x0f)]
                }
            }
            return 2 + count * 2
        }
    }
}

extension Array: PostgresDecodable where Element == UInt8 {
    public init(postgresText: String) throws(PostgresError) {
        guard postgresText.hasPrefix("\\x"), postgresText.count % 2 == 0 else { throw decodingError(postgresText, [UInt8].self) }
        var bytes: [UInt8] = []
        bytes.reserveCapacity((postgresText.utf8.count - 2) / 2)
        var high: UInt8?
        for character in postgresText.utf8.dropFirst(2) {
            guard let nibble = hexValue(character) else { throw decodingError(postgresText, [UInt8].self) }
            if let value = high {
                bytes.append(value << 4 | nibble)
                high = nil
            } else {
                high = nibble
            }
        }
        self = bytes
    }
}

private func hexValue(_ character: UInt8) -> UInt8? {
    switch character {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): return character - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): return character - UInt8(ascii: "a") + 10
    case UInt8(ascii: "A")...UInt8(ascii: "F"): return character - UInt8(ascii: "A") + 10
    default: return nil
    }
}

/// A `float8[]` (or any numeric array cast to it) read from PostgreSQL's text format `{1.5,2,3}`.
public struct PostgresDoubleArray: PostgresDecodable, Equatable {
    public let values: [Double]

    public init(postgresText: String) throws(PostgresError) {
        let body = postgresText.trimmingCharacters(in: CharacterSet(charactersIn: "{}"))
        guard !body.isEmpty else {
            values = []
            return
        }
        var values: [Double] = []
        for element in body.split(separator: ",") {
            guard let value = Double(element) else { throw decodingError(postgresText, PostgresDoubleArray.self) }
            values.append(value)
        }
        self.values = values
    }
}

/// A one-dimensional array parameter in PostgreSQL's array text format, for set-based statements
/// (`unnest(\(PostgresArray(values))::bigint[])`) that send a whole batch in one round trip. Every element is
/// double-quoted with `\` and `"` escaped, so any text (JSON, commas, braces, the word NULL) arrives unchanged;
/// a nil element is SQL NULL.
public struct PostgresArray: PostgresEncodable {
    public let postgresText: String?

    public init(_ elements: [(some PostgresEncodable)?]) {
        // Byte by byte: a batch of outbox bodies is megabytes of JSON.
        var bytes: [UInt8] = [UInt8(ascii: "{")]
        for (index, element) in elements.enumerated() {
            if index > 0 { bytes.append(UInt8(ascii: ",")) }
            guard let value = element?.postgresText else {
                bytes.append(contentsOf: "NULL".utf8)
                continue
            }
            bytes.append(UInt8(ascii: "\""))
            for byte in value.utf8 {
                if byte == UInt8(ascii: "\\") || byte == UInt8(ascii: "\"") { bytes.append(UInt8(ascii: "\\")) }
                bytes.append(byte)
            }
            bytes.append(UInt8(ascii: "\""))
        }
        bytes.append(UInt8(ascii: "}"))
        postgresText = String(decoding: bytes, as: UTF8.self)
    }

    public init(_ elements: [some PostgresEncodable]) {
        self.init(elements.map(Optional.some))
    }
}
