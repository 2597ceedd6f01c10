import Foundation

/// Why a Kraken request failed: `code` for programs (every code is retried with backoff by the poller),
/// `message` for people, `httpStatus` when Kraken answered with one.
public struct KrakenError: Error, CustomStringConvertible, Sendable, Equatable {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String
        public var description: String { rawValue }
        init(_ rawValue: String) { self.rawValue = rawValue }

        /// Kraken said "Rate limit exceeded" or answered HTTP 429.
        public static let rateLimited = Code("rate_limited")
        /// `EService:Unavailable` or `EService:Busy`.
        public static let unavailable = Code("unavailable")
        /// Any other error in Kraken's `error` array.
        public static let api = Code("api")
        /// An HTTP status other than 200.
        public static let http = Code("http")
        public static let timeout = Code("timeout")
        /// No connection, DNS, TLS.
        public static let transport = Code("transport")
        /// The body is not the OHLC response Kraken documents.
        public static let malformed = Code("malformed")
    }

    public let code: Code
    public let message: String
    public let httpStatus: Int?
    public var description: String { "Kraken \(code): \(message)" }

    public init(_ code: Code, _ message: String, httpStatus: Int? = nil) {
        self.code = code
        self.message = message
        self.httpStatus = httpStatus
    }
}

/// One OHLC response of Kraken's public REST API (`GET /0/public/OHLC`): rows in Kraken's order (the last one
/// is the still-open candle) and `last`, the `since` of the next request.
///
/// Parsing never traps and never guesses: a number that is not an exact integer in range stays unreadable
/// (nil time, or trades text that validation rejects), so every bad row is rejected with its reason.
public struct KrakenOHLC: Sendable {
    public struct Row: Sendable {
        /// The row as JSON text (at most `RejectedRow.maximumRawLength` characters), kept for the rejected table.
        public var raw: String
        /// The open time, when it is an integer JSON number that fits in Int64 (range rules are validation's).
        public var openTime: Int64?
        /// open, high, low, close, vwap, volume as Kraken's decimal strings; "" for a value that is not a string.
        public var fields: [String]
        /// JSONSerialization gives JSON `true` and `false` as NSNumbers of C type `char`.
        static func isBoolean(_ number: NSNumber) -> Bool {
            ["c", "B"].contains(String(cString: number.objCType))
        }

        /// The trade count as text: the integer, or what was there instead, for validation to reject.
        public var trades: String?

        public init(raw: String, openTime: Int64?, fields: [String], trades: String?) {
            self.raw = raw
            self.openTime = openTime
            self.fields = fields
            self.trades = trades
        }
    }

    public var resultKey: String
    public var rows: [Row]
    public var last: Int64

    public init(resultKey: String, rows: [Row], last: Int64) {
        self.resultKey = resultKey
        self.rows = rows
        self.last = last
    }

    /// Kraken's `last` must be a time Candlecast can do arithmetic with.
    public static let lastRange: ClosedRange<Int64> = 0...4_102_444_800

    /// Parses a response body; Kraken's `error` array wins over any result.
    public static func parse(_ data: Data) throws(KrakenError) -> KrakenOHLC {
        guard let object = try? JSONSerialization.jsonObject(with: data), let body = object as? [String: Any] else {
            throw KrakenError(.malformed, "the body is not a JSON object (\(data.count) bytes)")
        }
        if let errors = body["error"] as? [Any], !errors.isEmpty {
            let text = String(errors.map { ($0 as? String) ?? "\($0)" }.joined(separator: "; ").prefix(1000))
            if text.contains("Rate limit") { throw KrakenError(.rateLimited, text) }
            if text.hasPrefix("EService:Unavailable") || text.hasPrefix("EService:Busy") { throw KrakenError(.unavailable, text) }
            throw KrakenError(.api, text)
        }
        guard let result = body["result"] as? [String: Any] else { throw KrakenError(.malformed, "no result object") }
        guard let lastValue = result["last"] else { throw KrakenError(.malformed, "no `last` in the result") }
        guard let last = integer(lastValue), lastRange.contains(last) else {
            throw KrakenError(
                .malformed,
                "`last` \(String(describing: lastValue).prefix(50)) is not an integer in \(lastRange.lowerBound)...\(lastRange.upperBound)")
        }
        let keys = result.keys.filter { $0 != "last" }
        guard keys.count == 1, let key = keys.first, let rows = result[key] as? [Any] else {
            throw KrakenError(
                .malformed, "expected one pair in the result, found \(keys.sorted().prefix(10).map { String($0.prefix(50)) })")
        }
        return KrakenOHLC(resultKey: key, rows: rows.map(Self.row), last: last)
    }

    private static func row(_ value: Any) -> Row {
        let json = (try? JSONSerialization.data(withJSONObject: value, options: [.fragmentsAllowed])).map {
            String(decoding: $0, as: UTF8.self)
        }
        let raw = RejectedRow.boundedRaw(json ?? "\(value)")
        guard let array = value as? [Any], array.count == 8 else { return Row(raw: raw, openTime: nil, fields: [], trades: nil) }
        // Prices, vwap and volume come as strings; anything else is left empty so validation rejects it.
        let fields = array[1...6].map { $0 as? String ?? "" }
        return Row(raw: raw, openTime: integer(array[0]), fields: fields, trades: integerText(array[7]))
    }

    /// The exact Int64 value of a JSON number, or nil (booleans, fractions, non-finite or out-of-range numbers,
    /// strings). `NSNumber.int64Value` is not used on its own: it wraps huge values silently.
    public static func integer(_ value: Any) -> Int64? {
        guard let number = value as? NSNumber, !(number is NSDecimalNumber) else { return nil }
        if isBoolean(number) { return nil }
        switch String(cString: number.objCType) {
        case "d", "f":
            let double = number.doubleValue
            return double.isFinite ? Int64(exactly: double) : nil
        case "Q", "L", "I", "S", "C": return Int64(exactly: number.uint64Value)
        default: return number.int64Value
        }
    }

    /// JSONSerialization gives JSON `true` and `false` as NSNumbers of C type `char`.
    static func isBoolean(_ number: NSNumber) -> Bool {
        ["c", "B"].contains(String(cString: number.objCType))
    }

    /// The trade count as text: the integer if it is one, else a short description that `Int(_:)` refuses.
    static func integerText(_ value: Any) -> String {
        if let integer = integer(value) { return String(integer) }
        if let text = value as? String { return String(text.prefix(50)).debugDescription }  // a string is not a count
        if let number = value as? NSNumber {
            // A JSON boolean's description is "0" or "1": name it, so that it is not read as a count.
            return isBoolean(number) ? "<boolean>" : String("\(number)".prefix(50))
        }
        return "<not a number>"
    }
}
