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

    /// Throws unless `pair` is a pair name as Kraken spells it (`isValidPairName`).
    public static func pair(_ pair: String) throws(ValidationFailure) {
        guard isValidPairName(pair) else { throw ValidationFailure("pair must be 1 to 32 ASCII letters and digits") }
    }

    /// Throws unless `time` is in `openTimes` and aligned to `interval`.
    public static func openTime(_ time: Int64, _ field: String, interval: CandleInterval) throws(ValidationFailure) {
        guard openTimes.contains(time) else {
            throw ValidationFailure("\(field) \(time) is outside \(openTimes.lowerBound)...\(openTimes.upperBound)")
        }
        guard interval.isAligned(time) else { throw ValidationFailure("\(field) \(time) is not aligned to \(interval)") }
    }

    /// Throws unless `value` is finite, positive and at most `maximumAmount`.
    public static func price(_ value: Double, _ field: String) throws(ValidationFailure) {
        guard value.isFinite, value > 0, value <= maximumAmount else {
            throw ValidationFailure("\(field) must be a positive finite number up to \(maximumAmount)")
        }
    }

    /// Throws unless `value` is in `range`.
    public static func count(_ value: Int, _ field: String, in range: ClosedRange<Int> = 0...maximumCount) throws(ValidationFailure) {
        guard range.contains(value) else { throw ValidationFailure("\(field) \(value) is outside \(range.lowerBound)...\(range.upperBound)") }
    }

    /// Throws unless `value` is a model name (`isValidModelName`).
    public static func modelName(_ value: String, _ field: String = "model_name") throws(ValidationFailure) {
        guard isValidModelName(value) else { throw ValidationFailure("\(field) must be 1 to 64 ASCII letters, digits, - or _") }
    }

    /// Throws unless `value` has at most `limit` characters (free text from outside: reasons, errors, names).
    public static func text(_ value: String, _ field: String, limit: Int, allowEmpty: Bool = true) throws(ValidationFailure) {
        guard value.utf8.count <= limit * 4, value.count <= limit, allowEmpty || !value.isEmpty else {
            throw ValidationFailure("\(field) must be \(allowEmpty ? 0 : 1) to \(limit) characters")
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
        return seenDigit && length <= 40
    }

    /// The rule every candle passes, wherever it comes from (a Kraken body, a history file, the bus): exact
    /// decimal prices, positive and at most `maximumAmount`, low <= open, close <= high, volume and trades
    /// non-negative.
    public static func candle(open: String, high: String, low: String, close: String, volume: String, trades: Int?) throws(ValidationFailure) {
        for (name, value) in [("open", open), ("high", high), ("low", low), ("close", close), ("volume", volume)] {
            guard isDecimal(value) else { throw ValidationFailure("\(name) \(String(value.prefix(50)).debugDescription) is not a non-negative decimal") }
        }
        // Comparisons in Double are exact enough for ordering prices (rounding is monotonic); the stored values
        // stay the exact text.
        guard let o = Double(open), let h = Double(high), let l = Double(low), let c = Double(close), let v = Double(volume) else {
            throw ValidationFailure("prices are not numbers")
        }
        for (name, value) in [("open", o), ("high", h), ("low", l), ("close", c)] {
            guard value > 0, value <= maximumAmount else { throw ValidationFailure("\(name) must be positive and at most \(maximumAmount)") }
        }
        guard l <= o, l <= c, o <= h, c <= h else { throw ValidationFailure("prices out of order: need low <= open, close <= high") }
        guard v <= maximumAmount else { throw ValidationFailure("volume must be at most \(maximumAmount)") }
        if let trades { try count(trades, "trades") }
    }
}
