import Contracts
import Hummingbird
import Messaging

/// Strict parsing of what an HTTP client sends, shared by every service's routes: a value is absent (the
/// route's default applies) or valid; anything else is a 400 naming the field. The rules are the ones the
/// OpenAPI documents in docs/ state, so a request the document allows is never refused and one it forbids is
/// never accepted.
public enum HTTPInput {
    /// A pair name by the contract's rule (`ContractRules.pair`), upper-cased.
    public static func pair(_ text: String, field: String = "pair") throws -> String {
        do throws(ValidationFailure) {
            return try ContractRules.pair(text, field: field)
        } catch {
            throw HTTPError(.badRequest, message: error.reason)
        }
    }

    /// A candle interval spelled as the APIs write it (`CandleInterval.name`: 1m, 5m, 15m, 30m, 1h, 4h, 1d, 1w,
    /// 15d); other spellings the broker contract accepts (`1440`, `24h`) are not part of the HTTP APIs.
    public static func interval(_ text: String, field: String = "interval") throws -> CandleInterval {
        do throws(ValidationFailure) {
            return try ContractRules.interval(text, field: field, namesOnly: true)
        } catch {
            throw HTTPError(.badRequest, message: error.reason)
        }
    }

    /// A model name (`isValidModelName`).
    public static func modelName(_ text: String, field: String = "name") throws -> String {
        guard isValidModelName(text) else {
            throw HTTPError(.badRequest, message: "\(field) must be 1 to 64 ASCII letters, digits, - and _")
        }
        return text
    }

    /// An integer in `range`.
    @discardableResult
    public static func integer<Value: FixedWidthInteger>(_ value: Value, _ field: String, in range: ClosedRange<Value>) throws -> Value {
        guard range.contains(value) else {
            throw HTTPError(.badRequest, message: "\(field) must be an integer from \(range.lowerBound) to \(range.upperBound)")
        }
        return value
    }

    /// An integer written in decimal, in `range`.
    public static func integer<Value: FixedWidthInteger>(parsing text: String, _ field: String, in range: ClosedRange<Value>) throws
        -> Value
    {
        guard let value = Value(text, radix: 10) else {
            throw HTTPError(.badRequest, message: "\(field) must be an integer from \(range.lowerBound) to \(range.upperBound)")
        }
        return try integer(value, field, in: range)
    }

    /// A `from`/`to` bound as every API spells it: an RFC 3339 date (`2026-01-31`: midnight UTC, or with
    /// `endOfDay` the day's last second, so that `to=2026-01-31` takes in the whole day) or timestamp
    /// (`2026-01-31T12:00:00Z`, `2026-01-31T14:00:00.5+02:00`), in unix seconds (fractions dropped), within
    /// `ContractRules.openTimes` (1970 to 2100).
    public static func instant(_ text: String, field: String, endOfDay: Bool = false) throws -> Int64 {
        let isDate = text.utf8.count == 10
        guard let start = rfc3339Seconds(text), case let seconds = isDate && endOfDay ? start + 86_399 : start,
            ContractRules.openTimes.contains(seconds)
        else {
            throw HTTPError(
                .badRequest, message: "\(field) must be an RFC 3339 date (2026-01-31) or timestamp (2026-01-31T12:00:00Z) from 1970 to 2100"
            )
        }
        return seconds
    }

    /// A list's `from`...`to` (`instant`, `to` as the end of its day); an absent bound is the earliest or latest
    /// time `ContractRules.openTimes` allows. `from` after `to` is a 400.
    public static func timeRange(from: String?, to: String?) throws -> ClosedRange<Int64> {
        let start = try from.map { try instant($0, field: "from") } ?? ContractRules.openTimes.lowerBound
        let end = try to.map { try instant($0, field: "to", endOfDay: true) } ?? ContractRules.openTimes.upperBound
        guard start <= end else { throw HTTPError(.badRequest, message: "from must not be after to") }
        return start...end
    }

    /// `YYYY-MM-DD` or `YYYY-MM-DDThh:mm:ss[.fraction](Z|±hh:mm)` (T and Z in either case) as unix seconds; nil for
    /// anything else, including impossible dates and times (2026-02-30, 24:00:00, a leap second).
    static func rfc3339Seconds(_ text: String) -> Int64? {
        let pattern = /^(\d{4})-(\d{2})-(\d{2})(?:[Tt](\d{2}):(\d{2}):(\d{2})(?:\.\d{1,9})?(?:([Zz])|([+-])(\d{2}):(\d{2})))?$/
        guard let match = text.wholeMatch(of: pattern) else { return nil }
        let number = { (digits: Substring?) in digits.flatMap { Int($0) } ?? 0 }
        let (year, month, day) = (number(match.1), number(match.2), number(match.3))
        let (hour, minute, second) = (number(match.4), number(match.5), number(match.6))
        let (offsetHours, offsetMinutes) = (number(match.9), number(match.10))
        guard (1...12).contains(month), hour < 24, minute < 60, second < 60, offsetHours < 24, offsetMinutes < 60 else { return nil }
        let daysInMonth = [31, year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
        guard (1...daysInMonth[month - 1]).contains(day) else { return nil }
        // Days from 1970-01-01 in the proleptic Gregorian calendar (Howard Hinnant's days_from_civil).
        let shiftedYear = month <= 2 ? year - 1 : year
        let era = shiftedYear / 400
        let yearOfEra = shiftedYear - era * 400
        let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let days = era * 146_097 + yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear - 719_468
        let offset = (match.8 == "-" ? -1 : 1) * (offsetHours * 3600 + offsetMinutes * 60)
        return Int64(days * 86_400 + hour * 3600 + minute * 60 + second - offset)
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
    public func integerParameter<Value: FixedWidthInteger>(_ name: String, as type: Value.Type, in range: ClosedRange<Value>) throws
        -> Value
    {
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
