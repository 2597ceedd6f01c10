import Foundation
import Messaging

/// A candle interval as Kraken names it in minutes, with Candlecast's routing-key token.
public struct CandleInterval: Sendable, Hashable, Codable, CustomStringConvertible {
    public let minutes: Int

    public static let oneMinute = CandleInterval(minutes: 1)
    public static let oneHour = CandleInterval(minutes: 60)
    public static let oneDay = CandleInterval(minutes: 1440)
    public static let oneWeek = CandleInterval(minutes: 10080)
    /// The intervals Kraken's OHLC endpoint serves.
    public static let supported: [CandleInterval] = [1, 5, 15, 30, 60, 240, 1440, 10080, 21600].map(CandleInterval.init(minutes:))

    public init(minutes: Int) { self.minutes = minutes }

    /// Parses `1m`, `1h`, `1d`, `1w`, `15d`... or Kraken's minutes (`1440`).
    public init?(_ text: String) {
        let lowered = text.lowercased()
        if let minutes = Int(lowered) {
            self.init(minutes: minutes)
        } else if let unit = lowered.last, let count = Int(lowered.dropLast()) {
            switch unit {
            case "m": self.init(minutes: count)
            case "h": self.init(minutes: count * 60)
            case "d": self.init(minutes: count * 1440)
            case "w": self.init(minutes: count * 10080)
            default: return nil
            }
        } else {
            return nil
        }
        guard Self.supported.contains(self) else { return nil }
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

    public func isAligned(_ openTime: Int64) -> Bool { (openTime - alignmentOffset) % seconds == 0 }

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
    (1...32).contains(pair.count) && pair.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber) }
}

/// A model name of the registry: 1 to 64 letters, digits, `-` and `_`.
public func isValidModelName(_ name: String) -> Bool {
    (1...64).contains(name.count) && name.allSatisfy { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }
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

    public init(pair: String, interval: CandleInterval, openTime: Int64, open: String, high: String, low: String, close: String, volume: String, trades: Int?, revision: Int) {
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
        guard !pair.isEmpty, pair.count <= 32 else { throw ValidationFailure("pair must be 1 to 32 characters") }
        guard interval.isAligned(openTime) else { throw ValidationFailure("open_time \(openTime) is not aligned to \(interval)") }
        let values = [open, high, low, close].map { Double($0) }
        guard values.allSatisfy({ value in value.map { $0.isFinite && $0 > 0 } ?? false }) else {
            throw ValidationFailure("prices must be positive finite decimals")
        }
        guard let volumeValue = Double(volume), volumeValue.isFinite, volumeValue >= 0 else {
            throw ValidationFailure("volume must be a non-negative decimal")
        }
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

    public init(pair: String, interval: CandleInterval, firstOpenTime: Int64, lastOpenTime: Int64, inserted: Int, updated: Int, rejected: Int, source: String) {
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
        guard !pair.isEmpty, pair.count <= 32 else { throw ValidationFailure("pair must be 1 to 32 characters") }
        guard firstOpenTime <= lastOpenTime, inserted >= 0, updated >= 0, rejected >= 0 else {
            throw ValidationFailure("first_open_time must not follow last_open_time and counts must be non-negative")
        }
    }

    public var routingKey: String { RoutingKey.candlesBackfilled(pair: pairToken(pair), interval: interval.name) }
}
