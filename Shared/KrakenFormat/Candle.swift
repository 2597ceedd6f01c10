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
        pair: String, interval: CandleInterval, openTime: Int64, open: String, high: String, low: String, close: String, vwap: String?,
        volume: String,
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
        guard let openTime else { return .failure(.init(.invalidValue, "time is not an integer", field: "time")) }
        let times = ContractRules.openTimes
        guard times.contains(openTime) else {
            return .failure(.init(.outOfRange, "time \(openTime) is outside \(times.lowerBound)...\(times.upperBound)", field: "time"))
        }
        guard interval.isAligned(openTime) else {
            return .failure(.init(.misaligned, "time \(openTime) is not aligned to the \(interval) interval", field: "time"))
        }
        // No overflow: openTime is at most 4.1e9 and an interval at most 1.3e6 seconds.
        let closesAt = openTime + interval.seconds
        guard Double(closesAt) <= now.timeIntervalSince1970 else {
            return .failure(.init(.outOfRange, "candle at \(openTime) has not closed yet (closes at \(closesAt))", field: "time"))
        }
        var tradeCount: Int?
        if let trades {
            guard let count = Int(trades), count >= 0 else {
                return .failure(
                    .init(
                        .invalidValue, "trades \(String(trades.prefix(50)).debugDescription) is not a non-negative integer", field: "trades"
                    ))
            }
            tradeCount = count
        }
        do throws(ValidationFailure) {
            try ContractRules.pair(pair)
            try ContractRules.candle(open: open, high: high, low: low, close: close, volume: volume, trades: tradeCount)
            if let vwap {
                guard ContractRules.isDecimal(vwap) else {
                    throw ValidationFailure(
                        .notADecimal, "vwap \(String(vwap.prefix(50)).debugDescription) is not a non-negative decimal", field: "vwap")
                }
                guard let value = Double(vwap), value <= ContractRules.maximumAmount else {
                    throw ValidationFailure(.outOfRange, "vwap must be at most \(ContractRules.maximumAmount)", field: "vwap")
                }
            }
        } catch {
            return .failure(error)
        }
        return .success(
            Candle(
                pair: pair, interval: interval, openTime: openTime, open: open, high: high, low: low, close: close, vwap: vwap,
                volume: volume, trades: tradeCount))
    }

    /// A candle's rule failures are the contract's: one type with one set of codes.
    public typealias ValidationError = ValidationFailure
}

/// Kraken's bulk OHLCVT history files: `timestamp,open,high,low,close,volume,trades`, with or without a header
/// line. Numbers come as Kraken writes them, plain or with an exponent (`4E+2`); each is stored as the exact
/// plain decimal it stands for (`ContractRules.plainDecimal`).
public enum OHLCVTLine {
    public enum Parsed: Equatable {
        case candle(Candle)
        case rejected(RejectedRow)
        case header
        case blank
    }

    /// The columns of the layout, as a header names them (`time` is accepted for the first).
    public static let expectedColumns = ["timestamp", "open", "high", "low", "close", "volume", "trades"]

    /// The comma-separated fields of a line, each without spaces at either end (and the line without a
    /// trailing `\r`); nil for a blank line.
    public static func fields(of line: Substring) -> [String]? {
        split(line)?.fields
    }

    /// The line without a trailing `\r` and spaces at either end, and its fields; nil for a blank line.
    private static func split(_ line: Substring) -> (text: Substring, fields: [String])? {
        // On the line's contiguous bytes: this runs once per row of files with millions of rows.
        var line = line
        let cut: (text: Range<Int>, fields: [String])? = line.withUTF8 { bytes in
            let space = UInt8(ascii: " ")
            var low = 0
            var high = bytes.count
            while high > low, bytes[high - 1] == UInt8(ascii: "\r") || bytes[high - 1] == space { high -= 1 }
            while low < high, bytes[low] == space { low += 1 }
            guard low < high else { return nil }
            func field(_ start: Int, _ end: Int) -> String {
                var start = start
                var end = end
                while start < end, bytes[start] == space { start += 1 }
                while end > start, bytes[end - 1] == space { end -= 1 }
                return String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<end]), as: UTF8.self)
            }
            var fields: [String] = []
            fields.reserveCapacity(7)
            var start = low
            for index in low..<high where bytes[index] == UInt8(ascii: ",") {
                fields.append(field(start, index))
                start = index + 1
            }
            fields.append(field(start, high))
            return (low..<high, fields)
        }
        guard let cut else { return nil }
        let utf8 = line.utf8
        let text = utf8.index(utf8.startIndex, offsetBy: cut.text.lowerBound)..<utf8.index(utf8.startIndex, offsetBy: cut.text.upperBound)
        return (line[text], cut.fields)
    }

    /// True for the layout's own header line, in any letter case.
    static func isHeader(_ fields: [String]) -> Bool {
        guard fields.count == expectedColumns.count, fields.allSatisfy({ $0.utf8.count <= 9 }) else { return false }
        let lowered = fields.map { $0.lowercased() }
        return (lowered[0] == "time" || lowered[0] == "timestamp") && Array(lowered.dropFirst()) == Array(expectedColumns.dropFirst())
    }

    /// Nil when the file's first non-blank line fits the layout (the header, or a row of seven numbers);
    /// otherwise why the file is not one of Kraken's OHLCVT files. A file in another exchange's layout is then
    /// refused as a whole instead of having every row rejected.
    public static func layoutProblem(firstLine line: Substring) -> String? {
        guard let (text, fields) = split(line) else { return nil }
        let expected = "expected the columns \(expectedColumns.joined(separator: ", ")) (a header line is optional)"
        let shown = String(text.prefix(200)).debugDescription
        if isHeader(fields) { return nil }
        guard fields.count == expectedColumns.count else {
            return "not a Kraken OHLCVT file: \(expected); its first line has \(fields.count) columns: \(shown)"
        }
        guard fields.allSatisfy({ ContractRules.plainDecimal($0) != nil }) else {
            return "not a Kraken OHLCVT file: \(expected); its first line is neither that header nor a row of numbers: \(shown)"
        }
        return nil
    }

    /// The exact integer a field stands for, in any form Kraken writes (`1381017600`, `4E+2`, `12.0`), as text
    /// `Int64(_:)` and `Int(_:)` read; the field itself when it is not one, for validation to reject by name.
    static func integerText(_ field: String) -> String {
        // The usual form: digits without a leading zero, as they are.
        if let first = field.utf8.first, first != UInt8(ascii: "0"),
            field.utf8.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) })
        {
            return field
        }
        guard let plain = ContractRules.plainDecimal(field) else { return field }
        let parts = plain.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 1 || parts[1].allSatisfy({ $0 == "0" }) else { return field }
        let digits = parts[0].drop(while: { $0 == "0" })
        return digits.isEmpty ? "0" : String(digits)
    }

    public static func parse(_ line: Substring, pair: String, interval: CandleInterval, now: Date) -> Parsed {
        guard let (text, fields) = split(line) else { return .blank }
        if isHeader(fields) { return .header }
        guard fields.count == 7 else {
            return .rejected(
                RejectedRow(
                    raw: String(text), reason: "expected 7 fields (\(expectedColumns.joined(separator: ","))), found \(fields.count)"))
        }
        // Prices and volume as exact plain decimals; a field that is no number form stays as it was, so its
        // rejection names it.
        let values = fields[1...5].map { ContractRules.plainDecimal($0) ?? $0 }
        switch CandleValidator.validate(
            pair: pair, interval: interval, openTime: Int64(integerText(fields[0])), open: values[0], high: values[1], low: values[2],
            close: values[3], vwap: nil, volume: values[4], trades: integerText(fields[6]), now: now)
        {
        case .success(let candle): return .candle(candle)
        case .failure(let error): return .rejected(RejectedRow(raw: String(text), reason: error.reason))
        }
    }
}

/// Reads Kraken OHLCVT history files whole, for the tools that need only their closes (the benchmark, the
/// protocol's data checks): the same line rule and number forms as the ingestor's backfill.
public enum OHLCVTFile {
    /// The closes of `path` in file order; throws on a row without a positive close.
    public static func closes(atPath path: String) throws(HistoryFileError) -> [Double] {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw HistoryFileError(.unreadable, "cannot read it: \(error.localizedDescription)", path: path)
        }
        var closes: [Double] = []
        var checkedLayout = false
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            guard let fields = OHLCVTLine.fields(of: line) else { continue }
            if !checkedLayout {
                checkedLayout = true
                if let problem = OHLCVTLine.layoutProblem(firstLine: line) {
                    throw HistoryFileError(.unrecognisedLayout, problem, path: path)
                }
                if OHLCVTLine.isHeader(fields) { continue }
            }
            guard fields.count == 7, let plain = ContractRules.plainDecimal(fields[4]), let close = Double(plain), close > 0, close.isFinite
            else {
                throw HistoryFileError(.unreadableRow, "line \(index + 1): no positive close in column 5", path: path, line: index + 1)
            }
            closes.append(close)
        }
        return closes
    }
}

/// Why a history file as a whole cannot be read: `code` for programs, `message` for people.
public struct HistoryFileError: Error, Sendable, Equatable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        let name: String
        public var description: String { name }

        /// The file cannot be opened or read.
        public static let unreadable = Code(name: "unreadable")
        /// The file is not in Kraken's OHLCVT layout (another exchange's export, say); nothing was stored.
        public static let unrecognisedLayout = Code(name: "unrecognisedLayout")
        /// A row a whole-file reader needs is unusable (the backfill rejects such rows one by one instead).
        public static let unreadableRow = Code(name: "unreadableRow")
    }

    public let code: Code
    public let message: String
    public let path: String?
    /// 1-based line number, when one line is to blame.
    public let line: Int?

    public init(_ code: Code, _ message: String, path: String? = nil, line: Int? = nil) {
        self.code = code
        self.message = message
        self.path = path
        self.line = line
    }

    public var description: String { path.map { "\($0): \(message)" } ?? message }
}
