import Foundation
import Messaging

/// A candle interval as Kraken names it in minutes, with Candlecast's routing-key token.
public struct CandleInterval: Sendable, Hashable, Codable, CustomStringConvertible {
    public let minutes: Int

    public static let oneMinute = CandleInterval(supportedMinutes: 1)
    public static let oneHour = CandleInterval(supportedMinutes: 60)
    public static let oneDay = CandleInterval(supportedMinutes: 1440)
    public static let oneWeek = CandleInterval(supportedMinutes: 10080)
    /// The intervals Kraken's OHLC endpoint serves: the only values a `CandleInterval` can hold, so `seconds`
    /// is at most 1,296,000 and time arithmetic with it cannot overflow on a time in `ContractRules.openTimes`.
    public static let supported: [CandleInterval] = [1, 5, 15, 30, 60, 240, 1440, 10080, 21600].map(CandleInterval.init(supportedMinutes:))

    private init(supportedMinutes minutes: Int) { self.minutes = minutes }

    /// One of the `supported` intervals, or nil.
    public init?(minutes: Int) {
        guard let interval = Self.supported.first(where: { $0.minutes == minutes }) else { return nil }
        self = interval
    }

    /// One of the `supported` intervals given in seconds (as the database stores them), or nil.
    public init?(seconds: Int) {
        guard seconds > 0, seconds % 60 == 0 else { return nil }
        self.init(minutes: seconds / 60)
    }

    /// The interval of a stored `interval_seconds` column; throws for a value no supported interval has.
    public init(storedSeconds seconds: Int) throws(ValidationFailure) {
        guard let interval = CandleInterval(seconds: seconds) else {
            throw ValidationFailure("interval_seconds \(seconds) is not a supported interval")
        }
        self = interval
    }

    /// Parses `1m`, `1h`, `1d`, `1w`, `15d`... or Kraken's minutes (`1440`); nil for anything that is not a
    /// supported interval, however large the number in it.
    public init?(_ text: String) {
        guard (1...12).contains(text.utf8.count) else { return nil }
        let lowered = text.lowercased()
        let count: Int
        let unitMinutes: Int
        if lowered.utf8.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }) {
            guard let value = Int(lowered) else { return nil }
            (count, unitMinutes) = (value, 1)
        } else if let unit = lowered.last, let value = Int(lowered.dropLast()),
            lowered.dropLast().utf8.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) })
        {
            switch unit {
            case "m": (count, unitMinutes) = (value, 1)
            case "h": (count, unitMinutes) = (value, 60)
            case "d": (count, unitMinutes) = (value, 1440)
            case "w": (count, unitMinutes) = (value, 10080)
            default: return nil
            }
        } else {
            return nil
        }
        let (minutes, overflow) = count.multipliedReportingOverflow(by: unitMinutes)
        guard !overflow else { return nil }
        self.init(minutes: minutes)
    }

    public var seconds: Int64 { Int64(minutes) * 60 }

    /// `1m`, `1h`, `1d`, `1w`: the token used in routing keys and APIs.
    public var name: String {
        if minutes % 10080 == 0 { return "\(minutes / 10080)w" }
        if minutes % 1440 == 0 { return "\(minutes / 1440)d" }
        if minutes % 60 == 0 { return "\(minutes / 60)h" }
        return "\(minutes)m"
    }

    public var description: String { name }

    /// Kraken's weekly candles open on Mondays (the epoch was a Thursday); the others on multiples of
    /// their length since the epoch.
    public var alignmentOffset: Int64 { minutes == 10080 ? 4 * 86_400 : 0 }

    /// Whether `openTime` is a candle open time of this interval; false outside `ContractRules.openTimes`.
    public func isAligned(_ openTime: Int64) -> Bool {
        ContractRules.openTimes.contains(openTime) && (openTime - alignmentOffset) % seconds == 0
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(name)
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = try container.decode(String.self)
        guard let interval = CandleInterval(text) else {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "unsupported interval \(text)")
        }
        self = interval
    }
}

/// Routing-key token of a pair: `XBTUSD` -> `xbtusd`.
public func pairToken(_ pair: String) -> String { pair.lowercased() }

/// A pair name as Kraken spells it: 1 to 32 ASCII letters and digits (safe in a routing key, a URL and a label).
public func isValidPairName(_ pair: String) -> Bool {
    // On bytes: this runs for every candle of a backfill.
    (1...32).contains(pair.utf8.count) && pair.utf8.allSatisfy(isASCIILetterOrDigit)
}

/// A-Z, a-z or 0-9.
func isASCIILetterOrDigit(_ byte: UInt8) -> Bool {
    (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte | 0x20) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
}

/// A model name of the registry: 1 to 64 letters, digits, `-` and `_`.
public func isValidModelName(_ name: String) -> Bool {
    (1...64).contains(name.utf8.count) && name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }
}

/// `candle.closed.<pair>.<interval>`: a candle closed (or was revised) and is stored. Prices and volume are
/// decimal strings, exactly as Kraken sent them, so no consumer sees a rounded float.
public struct CandleClosed: MessagePayload, Equatable {
    public static let messageType = "candle.closed"
    public static let schemaVersion = 1

    public var pair: String
    public var interval: CandleInterval
    /// Unix seconds, UTC: the candle's OPEN time, as Kraken stamps it.
    public var openTime: Int64
    public var open: String
    public var high: String
    public var low: String
    public var close: String
    public var volume: String
    public var trades: Int?
    /// 0 when first stored; incremented each time Kraken revised the candle.
    public var revision: Int

    public init(
        pair: String, interval: CandleInterval, openTime: Int64, open: String, high: String, low: String, close: String, volume: String,
        trades: Int?, revision: Int
    ) {
        self.pair = pair
        self.interval = interval
        self.openTime = openTime
        self.open = open
        self.high = high
        self.low = low
        self.close = close
        self.volume = volume
        self.trades = trades
        self.revision = revision
    }

    enum CodingKeys: String, CodingKey {
        case pair, interval, open, high, low, close, volume, trades, revision
        case openTime = "open_time"
    }

    public func validate() throws(ValidationFailure) {
        try ContractRules.pair(pair)
        try ContractRules.openTime(openTime, "open_time", interval: interval)
        try ContractRules.candle(open: open, high: high, low: low, close: close, volume: volume, trades: trades)
        try ContractRules.count(revision, "revision")
    }

    public var routingKey: String { RoutingKey.candleClosed(pair: pairToken(pair), interval: interval.name) }
}

/// `candle.backfilled.<pair>.<interval>`: a batch of historical candles was stored (one event per batch,
/// not one per row).
public struct CandlesBackfilled: MessagePayload, Equatable {
    public static let messageType = "candle.backfilled"
    public static let schemaVersion = 1

    public var pair: String
    public var interval: CandleInterval
    public var firstOpenTime: Int64
    public var lastOpenTime: Int64
    public var inserted: Int
    public var updated: Int
    public var rejected: Int
    public var source: String

    public init(
        pair: String, interval: CandleInterval, firstOpenTime: Int64, lastOpenTime: Int64, inserted: Int, updated: Int, rejected: Int,
        source: String
    ) {
        self.pair = pair
        self.interval = interval
        self.firstOpenTime = firstOpenTime
        self.lastOpenTime = lastOpenTime
        self.inserted = inserted
        self.updated = updated
        self.rejected = rejected
        self.source = source
    }

    enum CodingKeys: String, CodingKey {
        case pair, interval, inserted, updated, rejected, source
        case firstOpenTime = "first_open_time"
        case lastOpenTime = "last_open_time"
    }

    public func validate() throws(ValidationFailure) {
        try ContractRules.pair(pair)
        try ContractRules.openTime(firstOpenTime, "first_open_time", interval: interval)
        try ContractRules.openTime(lastOpenTime, "last_open_time", interval: interval)
        guard firstOpenTime <= lastOpenTime else { throw ValidationFailure("first_open_time must not follow last_open_time") }
        try ContractRules.count(inserted, "inserted")
        try ContractRules.count(updated, "updated")
        try ContractRules.count(rejected, "rejected")
        try ContractRules.text(source, "source", limit: 200)
    }

    public var routingKey: String { RoutingKey.candlesBackfilled(pair: pairToken(pair), interval: interval.name) }
}
