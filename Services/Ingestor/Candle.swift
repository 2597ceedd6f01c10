import Contracts
import Foundation

/// A validated candle, prices kept as the exact decimal text Kraken sent.
struct Candle: Sendable, Equatable {
    var pair: String
    var interval: CandleInterval
    var openTime: Int64
    var open: String
    var high: String
    var low: String
    var close: String
    var vwap: String?
    var volume: String
    var trades: Int?

    func event(revision: Int) -> CandleClosed {
        CandleClosed(
            pair: pair, interval: interval, openTime: openTime, open: open, high: high, low: low, close: close, volume: volume,
            trades: trades, revision: revision)
    }
}

/// A row that failed validation: stored in `ingest.rejected_candles` with its reason and raw text.
struct RejectedRow: Sendable, Equatable {
    var raw: String
    var reason: String
}

/// The rules every candle passes before it is stored, whatever its source.
enum CandleValidator {
    /// Plain non-negative decimals only, as Kraken writes them: no sign, exponent, NaN or infinity.
    static func isDecimal(_ text: String) -> Bool {
        var seenDigit = false
        var seenPoint = false
        for character in text.utf8 {
            switch character {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): seenDigit = true
            case UInt8(ascii: ".") where !seenPoint: seenPoint = true
            default: return false
            }
        }
        return seenDigit && text.utf8.count <= 40
    }

    static func validate(
        pair: String, interval: CandleInterval, openTime: Int64?, open: String, high: String, low: String, close: String,
        vwap: String?, volume: String, trades: String?, now: Date
    ) -> Result<Candle, ValidationError> {
        guard let openTime else { return .failure(.init("time is not an integer")) }
        guard interval.isAligned(openTime) else { return .failure(.init("time \(openTime) is not aligned to the \(interval) interval")) }
        guard Double(openTime + interval.seconds) <= now.timeIntervalSince1970 else {
            return .failure(.init("candle at \(openTime) has not closed yet (closes at \(openTime + interval.seconds))"))
        }
        for (name, value) in [("open", open), ("high", high), ("low", low), ("close", close), ("volume", volume)] {
            guard isDecimal(value) else { return .failure(.init("\(name) \(value.debugDescription) is not a non-negative decimal")) }
        }
        if let vwap, !isDecimal(vwap) { return .failure(.init("vwap \(vwap.debugDescription) is not a non-negative decimal")) }
        // Comparisons in Double are exact enough for ordering prices; the stored values stay the exact text.
        guard let o = Double(open), let h = Double(high), let l = Double(low), let c = Double(close) else {
            return .failure(.init("prices are not numbers"))
        }
        guard o > 0, h > 0, l > 0, c > 0 else { return .failure(.init("prices must be positive")) }
        guard l <= o, l <= c, o <= h, c <= h else { return .failure(.init("prices out of order: need low <= open, close <= high")) }
        var tradeCount: Int?
        if let trades {
            guard let count = Int(trades), count >= 0 else { return .failure(.init("trades \(trades.debugDescription) is not a non-negative integer")) }
            tradeCount = count
        }
        return .success(
            Candle(pair: pair, interval: interval, openTime: openTime, open: open, high: high, low: low, close: close, vwap: vwap, volume: volume, trades: tradeCount))
    }

    struct ValidationError: Error, Equatable {
        let reason: String
        init(_ reason: String) { self.reason = reason }
    }
}

/// Kraken's bulk OHLCVT history files: `time,open,high,low,close,volume,trades`, with or without a header.
enum OHLCVTLine {
    enum Parsed: Equatable {
        case candle(Candle)
        case rejected(RejectedRow)
        case header
        case blank
    }

    static func parse(_ line: Substring, pair: String, interval: CandleInterval, now: Date) -> Parsed {
        // Split on bytes: this runs once per row of files with millions of rows.
        var fields: [String] = []
        fields.reserveCapacity(7)
        var utf8 = line.utf8[...]
        while let last = utf8.last, last == UInt8(ascii: "\r") || last == UInt8(ascii: " ") { utf8 = utf8.dropLast() }
        while let first = utf8.first, first == UInt8(ascii: " ") { utf8 = utf8.dropFirst() }
        if utf8.isEmpty { return .blank }
        var start = utf8.startIndex
        for index in utf8.indices where utf8[index] == UInt8(ascii: ",") {
            fields.append(String(Substring(utf8[start..<index])).trimmingSpaces)
            start = utf8.index(after: index)
        }
        fields.append(String(Substring(utf8[start...])).trimmingSpaces)
        let text = String(Substring(utf8))
        if let first = fields.first?.lowercased(), first == "time" || first == "timestamp" { return .header }
        guard fields.count == 7 else {
            return .rejected(RejectedRow(raw: String(text.prefix(2000)), reason: "expected 7 fields (time,open,high,low,close,volume,trades), found \(fields.count)"))
        }
        switch CandleValidator.validate(
            pair: pair, interval: interval, openTime: Int64(fields[0]), open: fields[1], high: fields[2], low: fields[3], close: fields[4],
            vwap: nil, volume: fields[5], trades: fields[6], now: now)
        {
        case .success(let candle): return .candle(candle)
        case .failure(let error): return .rejected(RejectedRow(raw: text, reason: error.reason))
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
