import Messaging

/// The value rules of the contract, in one place: producers check them before publishing (through
/// `EnvelopeCodec.encode`) and consumers after decoding, so both sides apply the same rules. Every number
/// from outside is range-checked here before any arithmetic uses it.
public enum ContractRules {
    /// Open times Candlecast accepts, in unix seconds: from the epoch to 2100-01-01. Arithmetic on a time in
    /// this range and an interval of `CandleInterval.supported` cannot overflow.
    public static let openTimes: ClosedRange<Int64> = 0...4_102_444_800

    /// Prices and volumes above this are not data but mistakes (or attacks): 10^15 USD.
    public static let maximumAmount = 1e15

    /// The most closes a window or a dataset row range may carry.
    public static let maximumWindow = 4096
    public static let maximumRows = 10_000_000
    /// A version number, count or epoch from outside must fit comfortably in every integer type it meets.
    public static let maximumCount = 1_000_000_000
    /// The longest free-text reason an event carries (a promotion's, a rollback's).
    public static let maximumReasonLength = 2000

    /// The pair rule every entry point applies (messages, HTTP, settings, the CLI, history files): 1 to 32
    /// ASCII letters and digits (`isValidPairName`). Returns the canonical, upper-cased spelling (`XBTUSD`).
    @discardableResult
    public static func pair(_ pair: String, field: String = "pair") throws(ValidationFailure) -> String {
        guard isValidPairName(pair) else {
            throw ValidationFailure(
                .invalidName, "\(field) \(String(pair.prefix(40)).debugDescription) is not 1 to 32 ASCII letters and digits", field: field)
        }
        return pair.uppercased()
    }

    /// The interval rule every entry point applies: one of `CandleInterval.supported`, written as its name
    /// (`1d`) or, unless `namesOnly` (the HTTP APIs), as Kraken's minutes or another spelling `CandleInterval`
    /// reads (`1440`, `24h`).
    public static func interval(_ text: String, field: String = "interval", namesOnly: Bool = false) throws(ValidationFailure)
        -> CandleInterval
    {
        guard let interval = CandleInterval(text), !namesOnly || interval.name == text else {
            let names = CandleInterval.supported.map(\.name).joined(separator: ", ")
            throw ValidationFailure(
                .invalidName, "\(field) must be one of \(names)\(namesOnly ? "" : " (or Kraken minutes)")", field: field)
        }
        return interval
    }

    /// Throws unless `time` is in `openTimes` and aligned to `interval`.
    public static func openTime(_ time: Int64, _ field: String, interval: CandleInterval) throws(ValidationFailure) {
        guard openTimes.contains(time) else {
            throw ValidationFailure(
                .outOfRange, "\(field) \(time) is outside \(openTimes.lowerBound)...\(openTimes.upperBound)", field: field)
        }
        guard interval.isAligned(time) else {
            throw ValidationFailure(.misaligned, "\(field) \(time) is not aligned to \(interval)", field: field)
        }
    }

    /// Throws unless `value` is finite, positive and at most `maximumAmount`.
    public static func price(_ value: Double, _ field: String) throws(ValidationFailure) {
        guard value.isFinite, value > 0, value <= maximumAmount else {
            throw ValidationFailure(.outOfRange, "\(field) must be a positive finite number up to \(maximumAmount)", field: field)
        }
    }

    /// Throws unless `value` is in `range`.
    public static func count(_ value: Int, _ field: String, in range: ClosedRange<Int> = 0...maximumCount) throws(ValidationFailure) {
        guard range.contains(value) else {
            throw ValidationFailure(.outOfRange, "\(field) \(value) is outside \(range.lowerBound)...\(range.upperBound)", field: field)
        }
    }

    /// Throws unless `value` is a model name (`isValidModelName`).
    public static func modelName(_ value: String, _ field: String = "model_name") throws(ValidationFailure) {
        guard isValidModelName(value) else {
            throw ValidationFailure(.invalidName, "\(field) must be 1 to 64 ASCII letters, digits, - or _", field: field)
        }
    }

    /// Throws unless `value` has at most `limit` characters (free text from outside: reasons, errors, names).
    public static func text(_ value: String, _ field: String, limit: Int, allowEmpty: Bool = true) throws(ValidationFailure) {
        guard value.utf8.count <= limit * 4, value.count <= limit, allowEmpty || !value.isEmpty else {
            throw ValidationFailure(.badLength, "\(field) must be \(allowEmpty ? 0 : 1) to \(limit) characters", field: field)
        }
    }

    /// Plain non-negative decimals as Kraken writes them: digits and at most one point, up to 40 characters;
    /// no sign, exponent, NaN or infinity.
    public static func isDecimal(_ text: String) -> Bool {
        var seenDigit = false
        var seenPoint = false
        var length = 0
        for character in text.utf8 {
            length += 1
            switch character {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): seenDigit = true
            case UInt8(ascii: ".") where !seenPoint: seenPoint = true
            default: return false
            }
        }
        return seenDigit && length <= maximumDecimalLength
    }

    /// The longest decimal text accepted (`isDecimal`).
    public static let maximumDecimalLength = 40

    /// `text` as a plain decimal (`isDecimal`), converted exactly from the forms Kraken's bulk history files
    /// use: plain (`0.1`, `122.0`) or with an exponent (`4E+2`, `1.5e-05`, `1E8`). Only the point moves, so no
    /// digit is ever rounded: `4E+2` is `400`, `1.5e-05` is `0.000015`. Nil for anything else (a sign, NaN,
    /// `inf`, hex, more than `maximumDecimalLength` characters once written out).
    public static func plainDecimal(_ text: String) -> String? {
        if isDecimal(text) { return text }
        let bytes = Array(text.utf8)
        guard bytes.count <= maximumDecimalLength,
            let marker = bytes.firstIndex(where: { $0 == UInt8(ascii: "e") || $0 == UInt8(ascii: "E") })
        else { return nil }
        let mantissa = String(decoding: bytes[..<marker], as: UTF8.self)
        var exponentBytes = bytes[(marker + 1)...]
        var negative = false
        if let sign = exponentBytes.first, sign == UInt8(ascii: "+") || sign == UInt8(ascii: "-") {
            negative = sign == UInt8(ascii: "-")
            exponentBytes = exponentBytes.dropFirst()
        }
        // At most three exponent digits: anything larger cannot be written out within the length limit anyway.
        guard isDecimal(mantissa), (1...3).contains(exponentBytes.count),
            exponentBytes.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }),
            let magnitude = Int(String(decoding: exponentBytes, as: UTF8.self))
        else { return nil }
        let exponent = negative ? -magnitude : magnitude
        let parts = mantissa.split(separator: ".", omittingEmptySubsequences: false)
        let integerDigits = String(parts[0])
        let fractionDigits = parts.count > 1 ? String(parts[1]) : ""
        var digits = integerDigits + fractionDigits
        // The point sits after `point` digits of `digits` (it may fall before the first or after the last).
        var point = integerDigits.count + exponent
        if point <= 0 {
            digits = String(repeating: "0", count: 1 - point) + digits
            point = 1
        } else if point > digits.count {
            digits += String(repeating: "0", count: point - digits.count)
        }
        // Zeros the shift left in front (`0.01E+2` gives `001`) go, down to one before the point.
        let leadingZeros = min(digits.prefix(point - 1).prefix(while: { $0 == "0" }).count, point - 1)
        let head = digits.prefix(point).dropFirst(leadingZeros)
        let tail = digits.dropFirst(point)
        let written = tail.isEmpty ? String(head) : String(head) + "." + String(tail)
        return isDecimal(written) ? written : nil
    }

    /// The rule every candle passes, wherever it comes from (a Kraken body, a history file, the bus): exact
    /// decimal prices, positive and at most `maximumAmount`, low <= open, close <= high, volume and trades
    /// non-negative.
    public static func candle(open: String, high: String, low: String, close: String, volume: String, trades: Int?)
        throws(ValidationFailure)
    {
        // One field at a time, without building arrays: this runs for every candle of a backfill.
        func decimal(_ name: String, _ value: String) throws(ValidationFailure) {
            guard isDecimal(value) else {
                throw ValidationFailure(
                    .notADecimal, "\(name) \(String(value.prefix(50)).debugDescription) is not a non-negative decimal", field: name)
            }
        }
        try decimal("open", open)
        try decimal("high", high)
        try decimal("low", low)
        try decimal("close", close)
        try decimal("volume", volume)
        // Comparisons in Double are exact enough for ordering prices (rounding is monotonic); the stored values
        // stay the exact text.
        guard let o = Double(open), let h = Double(high), let l = Double(low), let c = Double(close), let v = Double(volume) else {
            throw ValidationFailure(.notADecimal, "prices are not numbers")
        }
        func price(_ name: String, _ value: Double) throws(ValidationFailure) {
            guard value > 0, value <= maximumAmount else {
                throw ValidationFailure(.outOfRange, "\(name) must be positive and at most \(maximumAmount)", field: name)
            }
        }
        try price("open", o)
        try price("high", h)
        try price("low", l)
        try price("close", c)
        guard l <= o, l <= c, o <= h, c <= h else {
            throw ValidationFailure(.inconsistent, "prices out of order: need low <= open, close <= high")
        }
        guard v <= maximumAmount else { throw ValidationFailure(.outOfRange, "volume must be at most \(maximumAmount)", field: "volume") }
        if let trades { try count(trades, "trades") }
    }
}
