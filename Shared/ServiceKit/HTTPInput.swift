import Contracts
import Hummingbird

/// Strict parsing of what an HTTP client sends, shared by every service's routes: a value is absent (the
/// route's default applies) or valid; anything else is a 400 naming the field. The rules are the ones the
/// OpenAPI documents in docs/ state, so a request the document allows is never refused and one it forbids is
/// never accepted.
public enum HTTPInput {
    /// A pair name (`isValidPairName`), upper-cased.
    public static func pair(_ text: String, field: String = "pair") throws -> String {
        guard isValidPairName(text) else { throw HTTPError(.badRequest, message: "\(field) must be 1 to 32 ASCII letters and digits") }
        return text.uppercased()
    }

    /// A candle interval spelled as the APIs write it (`CandleInterval.name`: 1m, 5m, 15m, 30m, 1h, 4h, 1d, 1w,
    /// 15d); other spellings the broker contract accepts (`1440`, `24h`) are not part of the HTTP APIs.
    public static func interval(_ text: String, field: String = "interval") throws -> CandleInterval {
        guard let interval = CandleInterval(text), interval.name == text else {
            throw HTTPError(.badRequest, message: "\(field) must be one of \(CandleInterval.supported.map(\.name).joined(separator: ", "))")
        }
        return interval
    }

    /// A model name (`isValidModelName`).
    public static func modelName(_ text: String, field: String = "name") throws -> String {
        guard isValidModelName(text) else { throw HTTPError(.badRequest, message: "\(field) must be 1 to 64 ASCII letters, digits, - and _") }
        return text
    }

    /// An integer in `range`.
    @discardableResult
    public static func integer<Value: FixedWidthInteger>(_ value: Value, _ field: String, in range: ClosedRange<Value>) throws -> Value {
        guard range.contains(value) else { throw HTTPError(.badRequest, message: "\(field) must be an integer from \(range.lowerBound) to \(range.upperBound)") }
        return value
    }

    /// An integer written in decimal, in `range`.
    public static func integer<Value: FixedWidthInteger>(parsing text: String, _ field: String, in range: ClosedRange<Value>) throws -> Value {
        guard let value = Value(text, radix: 10) else {
            throw HTTPError(.badRequest, message: "\(field) must be an integer from \(range.lowerBound) to \(range.upperBound)")
        }
        return try integer(value, field, in: range)
    }

    /// Free text stored as PostgreSQL `text`: at most `limit` Unicode scalars (what JSON Schema's `maxLength`
    /// counts) and no NUL, which `text` cannot hold.
    public static func text(_ value: String, _ field: String, limit: Int) throws -> String {
        guard value.unicodeScalars.count <= limit, !value.unicodeScalars.contains("\u{0}") else {
            throw HTTPError(.badRequest, message: "\(field) must be at most \(limit) characters, none of them NUL")
        }
        return value
    }
}

extension Request {
    /// An optional integer query parameter: absent is nil; present, it must be a decimal integer in `range`,
    /// else 400 (never silently replaced by a default or clamped).
    public func integerQuery<Value: FixedWidthInteger & Sendable>(
        _ name: String, as type: Value.Type, in range: ClosedRange<Value> = Value.min...Value.max
    ) throws -> Value? {
        guard let text = uri.queryParameters.get(name) else { return nil }
        return try HTTPInput.integer(parsing: String(text), "query parameter \(name)", in: range)
    }

    /// `integerQuery(_:as:in:)` of an `Int`.
    public func integerQuery(_ name: String, in range: ClosedRange<Int> = Int.min...Int.max) throws -> Int? {
        try integerQuery(name, as: Int.self, in: range)
    }

    /// The `pair` query parameter, `fallback` when absent.
    public func pairQuery(_ name: String = "pair", default fallback: String = "XBTUSD") throws -> String {
        try HTTPInput.pair(uri.queryParameters.get(name).map { String($0) } ?? fallback, field: "query parameter \(name)")
    }

    /// The `interval` query parameter, `fallback` when absent.
    public func intervalQuery(_ name: String = "interval", default fallback: CandleInterval = .oneDay) throws -> CandleInterval {
        guard let text = uri.queryParameters.get(name) else { return fallback }
        return try HTTPInput.interval(String(text), field: "query parameter \(name)")
    }
}

extension BasicRequestContext {
    /// An integer path parameter in `range`, else 400.
    public func integerParameter<Value: FixedWidthInteger>(_ name: String, as type: Value.Type, in range: ClosedRange<Value>) throws -> Value {
        try HTTPInput.integer(parsing: parameters.get(name).map { String($0) } ?? "", "path parameter \(name)", in: range)
    }

    /// `integerParameter(_:as:in:)` of an `Int`.
    public func integerParameter(_ name: String, in range: ClosedRange<Int>) throws -> Int {
        try integerParameter(name, as: Int.self, in: range)
    }

    /// A model name path parameter (`isValidModelName`), else 400.
    public func modelNameParameter(_ name: String = "name") throws -> String {
        try HTTPInput.modelName(parameters.get(name).map { String($0) } ?? "", field: "path parameter \(name)")
    }
}
