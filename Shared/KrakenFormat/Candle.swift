import Contracts
import Foundation
import Messaging

/// A validated candle, prices kept as the exact decimal text Kraken sent.
public struct Candle: Sendable, Equatable {
    public var pair: String
    public var interval: CandleInterval
    public var openTime: Int64
    public var open: String
    public var high: String
    public var low: String
    public var close: String
    public var vwap: String?
    public var volume: String
    public var trades: Int?

    public init(
        pair: String, interval: CandleInterval, openTime: Int64, open: String, high: String, low: String, close: String, vwap: String?, volume: String,
        trades: Int?
    ) {
        self.pair = pair
        self.interval = interval
        self.openTime = openTime
        self.open = open
        self.high = high
        self.low = low
        self.close = close
        self.vwap = vwap
        self.volume = volume
        self.trades = trades
    }

    public func event(revision: Int) -> CandleClosed {
        CandleClosed(
            pair: pair, interval: interval, openTime: openTime, open: open, high: high, low: low, close: close, volume: volume,
            trades: trades, revision: revision)
    }
}

/// A row that failed validation: stored in `ingest.rejected_candles` with its reason and raw text.
public struct RejectedRow: Sendable, Equatable {
    public var raw: String
    public var reason: String

    /// The raw text is cut to `maximumRawLength` characters and NUL bytes (which PostgreSQL text cannot hold)
    /// become U+FFFD, so any input can be stored.
    public init(raw: String, reason: String) {
        self.raw = Self.boundedRaw(raw)
        self.reason = Self.boundedRaw(reason)
    }

    public static let maximumRawLength = 2000

    public static func boundedRaw(_ text: String) -> String {
        let cut = text.utf8.count > maximumRawLength ? String(text.prefix(maximumRawLength)) : text
        guard cut.utf8.contains(0) else { return cut }
        // By scalar: a NUL followed by a combining mark is one Character, which a Character-level replace misses.
        var scalars = String.UnicodeScalarView()
        scalars.append(contentsOf: cut.unicodeScalars.lazy.map { $0 == "\u{0}" ? "\u{FFFD}" : $0 })
        return String(scalars)
    }
}

/// The rules every candle passes before it is stored, whatever its source (a Kraken body or a history file):
/// the time in `ContractRules.openTimes`, aligned and closed; the prices, volume and trades by
/// `ContractRules.candle`, the same rule every consumer of `candle.closed` applies.
public enum CandleValidator {
    public static func validate(
        pair: String, interval: CandleInterval, openTime: Int64?, open: String, high: String, low: String, close: String,
        vwap: String?, volume: String, trades: String?, now: Date
    ) -> Result<Candle, ValidationError> {
        guard let openTime else { return .failure(.init("time is not an integer")) }
        let times = ContractRules.openTimes
        guard times.contains(openTime) else { return .failure(.init("time \(openTime) is outside \(times.lowerBound)...\(times.upperBound)")) }
        guard interval.isAligned(openTime) else { return .failure(.init("time \(openTime) is not aligned to the \(interval) interval")) }
        // No overflow: openTime is at most 4.1e9 and an interval at most 1.3e6 seconds.
        let closesAt = openTime + interval.seconds
        guard Double(closesAt) <= now.timeIntervalSince1970 else {
            return .failure(.init("candle at \(openTime) has not closed yet (closes at \(closesAt))"))
        }
        var tradeCount: Int?
        if let trades {
            guard let count = Int(trades), count >= 0 else {
                return .failure(.init("trades \(String(trades.prefix(50)).debugDescription) is not a non-negative integer"))
            }
            tradeCount = count
        }
        do throws(ValidationFailure) {
            try ContractRules.pair(pair)
            try ContractRules.candle(open: open, high: high, low: low, close: close, volume: volume, trades: tradeCount)
            if let vwap {
                guard ContractRules.isDecimal(vwap) else {
                    throw ValidationFailure("vwap \(String(vwap.prefix(50)).debugDescription) is not a non-negative decimal")
                }
                guard let value = Double(vwap), value <= ContractRules.maximumAmount else {
                    throw ValidationFailure("vwap must be at most \(ContractRules.maximumAmount)")
                }
            }
        } catch {
            return .failure(.init(error.reason))
        }
        return .success(
            Candle(pair: pair, interval: interval, openTime: openTime, open: open, high: high, low: low, close: close, vwap: vwap, volume: volume, trades: tradeCount))
    }

    public struct ValidationError: Error, Equatable {
        public let reason: String
        public init(_ reason: String) { self.reason = reason }
    }
}

/// Kraken's bulk OHLCVT history files: `time,open,high,low,close,volume,trades`, with or without a header.
public enum OHLCVTLine {
    public enum Parsed: Equatable {
        case candle(Candle)
        case rejected(RejectedRow)
        case header
        case blank
    }

    /// The comma-separated fields of a line, each without spaces at either end (and the line without a
    /// trailing `\r`); nil for a blank line.
    public static func fields(of line: Substring) -> [String]? {
        split(line)?.fields
    }

    /// The line without a trailing `\r` and spaces at either end, and its fields; nil for a blank line.
    private static func split(_ line: Substring) -> (text: Substring, fields: [String])? {
        // Split on bytes: this runs once per row of files with millions of rows.
        var fields: [String] = []
        fields.reserveCapacity(7)
        var utf8 = line.utf8[...]
        while let last = utf8.last, last == UInt8(ascii: "\r") || last == UInt8(ascii: " ") { utf8 = utf8.dropLast() }
        while let first = utf8.first, first == UInt8(ascii: " ") { utf8 = utf8.dropFirst() }
        if utf8.isEmpty { return nil }
        var start = utf8.startIndex
        for index in utf8.indices where utf8[index] == UInt8(ascii: ",") {
            fields.append(String(Substring(utf8[start..<index])).trimmingSpaces)
            start = utf8.index(after: index)
        }
        fields.append(String(Substring(utf8[start...])).trimmingSpaces)
        return (Substring(utf8), fields)
    }

    public static func parse(_ line: Substring, pair: String, interval: CandleInterval, now: Date) -> Parsed {
        guard let (text, fields) = split(line) else { return .blank }
        if let first = fields.first, first.utf8.count <= 9, ["time", "timestamp"].contains(first.lowercased()) { return .header }
        guard fields.count == 7 else {
            return .rejected(RejectedRow(raw: String(text), reason: "expected 7 fields (time,open,high,low,close,volume,trades), found \(fields.count)"))
        }
        switch CandleValidator.validate(
            pair: pair, interval: interval, openTime: Int64(fields[0]), open: fields[1], high: fields[2], low: fields[3], close: fields[4],
            vwap: nil, volume: fields[5], trades: fields[6], now: now)
        {
        case .success(let candle): return .candle(candle)
        case .failure(let error): return .rejected(RejectedRow(raw: String(text), reason: error.reason))
        }
    }
}

extension String {
    /// Without spaces at either end (cheaper than trimmingCharacters(in:) on the hot path).
    fileprivate var trimmingSpaces: String {
        guard first == " " || last == " " else { return self }
        return String(drop(while: { $0 == " " }).reversed().drop(while: { $0 == " " }).reversed())
    }
}
