import Contracts
import Foundation
import KrakenFormat

/// Input: a whole Kraken OHLC response body.
public enum KrakenBodyFuzzing {
    public static func run(_ bytes: [UInt8]) -> Bool {
        let response: KrakenOHLC
        do {
            response = try KrakenOHLC.parse(Data(bytes))
        } catch {
            _ = error.description
            return false
        }
        var accepted = false
        guard KrakenOHLC.lastRange.contains(response.last) else { fatalError("`last` \(response.last) escaped its range check") }
        for row in response.rows {
            guard row.raw.utf8.count <= RejectedRow.maximumRawLength * 4, !row.raw.utf8.contains(0) else {
                fatalError("a raw row was not bounded: \(row.raw.utf8.count) bytes")
            }
            guard row.fields.count == 6 else { continue }
            // The live poller's call, for every interval a poller can have.
            for interval in CandleInterval.supported {
                let result = CandleValidator.validate(
                    pair: "XBTUSD", interval: interval, openTime: row.openTime, open: row.fields[0], high: row.fields[1],
                    low: row.fields[2],
                    close: row.fields[3], vwap: row.fields[4], volume: row.fields[5], trades: row.trades, now: fuzzNow)
                switch result {
                case .success(let candle):
                    checkAcceptedCandle(candle)
                    accepted = true
                case .failure(let error): guard !error.reason.isEmpty else { fatalError("a row was rejected without a reason") }
                }
            }
        }
        return accepted
    }
}

/// Input: one choice byte (the interval), then lines of a history file.
public enum CSVRowFuzzing {
    public static func run(_ bytes: [UInt8]) -> Bool {
        guard let choice = bytes.first else { return false }
        var accepted = false
        let interval = CandleInterval.supported[Int(choice) % CandleInterval.supported.count]
        let text = String(decoding: bytes.dropFirst(), as: UTF8.self)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        // The backfill's whole-file check of the first line: never traps, and a refusal names the layout.
        if let first = lines.first(where: { OHLCVTLine.fields(of: $0) != nil }), let problem = OHLCVTLine.layoutProblem(firstLine: first) {
            guard problem.contains(OHLCVTLine.expectedColumns.joined(separator: ", ")) else {
                fatalError("a layout refusal without the columns: \(problem)")
            }
        }
        for line in lines {
            for field in OHLCVTLine.fields(of: line) ?? [] { checkPlainDecimal(field) }
            switch OHLCVTLine.parse(line, pair: "XBTUSD", interval: interval, now: fuzzNow) {
            case .candle(let candle):
                checkAcceptedCandle(candle)
                accepted = true
            case .rejected(let row):
                guard !row.reason.isEmpty, row.raw.utf8.count <= RejectedRow.maximumRawLength * 4, !row.raw.utf8.contains(0) else {
                    fatalError("a rejected row without a reason or with unbounded raw text")
                }
            case .header, .blank: break
            }
        }
        return accepted
    }

    /// The seed of a history file's lines, for `interval`.
    public static func seed(lines: [String], interval: CandleInterval) -> [UInt8] {
        let index = CandleInterval.supported.firstIndex(of: interval) ?? 0
        return [UInt8(index)] + Array(lines.joined(separator: "\n").utf8)
    }
}

/// `ContractRules.plainDecimal` only moves the point: its answer is a plain decimal of the same value.
func checkPlainDecimal(_ field: String) {
    guard let plain = ContractRules.plainDecimal(field) else { return }
    guard ContractRules.isDecimal(plain) else {
        fatalError("plainDecimal(\(field.debugDescription)) gave \(plain.debugDescription), not a plain decimal")
    }
    // Both spellings of one number round to the same double (correct rounding), so a difference is a moved digit.
    if let original = Double(field), Double(plain) != original {
        fatalError("plainDecimal(\(field.debugDescription)) gave \(plain.debugDescription), another value")
    }
}
