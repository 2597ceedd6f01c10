import Contracts
import Foundation
import FuzzTargets
import KrakenFormat
import TestSupport
import Testing

@testable import Ingestor

@Suite("Fuzz targets: regression corpus and seeds")
struct FuzzRegressionTests {
    /// Tests/FuzzCorpus/<target>/: every input a fuzzer found a crash with (and the issue's hostile inputs).
    static let corpus = TestEnvironment.repositoryRoot.appendingPathComponent("Tests/FuzzCorpus")

    @Test("every payload type of the contract is fuzzed")
    func everyPayloadType() {
        #expect(Set(EnvelopeFuzzing.payloadTypes.map { $0.messageType }) == Set(MessageCatalog.all.map(\.type)))
        #expect(EnvelopeFuzzing.payloadTypes.count == MessageCatalog.all.count)
    }

    @Test("the saved regression inputs run through their targets without a crash", arguments: FuzzTarget.allCases)
    func regressionCorpus(target: FuzzTarget) throws {
        let folder = Self.corpus.appendingPathComponent(target.rawValue)
        let names = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { !$0.hasPrefix(".") }.sorted()
        #expect(!names.isEmpty, "no regression inputs in \(folder.path)")
        for name in names {
            target.run(Array(try Data(contentsOf: folder.appendingPathComponent(name))))
        }
    }

    @Test("the seeds from the real data run through their targets")
    func seeds() throws {
        let seeds = try FuzzSeeds.all(dataDirectory: URL(fileURLWithPath: TestEnvironment.sharedDataDirectory))
        for target in FuzzTarget.allCases {
            let inputs = try #require(seeds[target])
            #expect(inputs.count >= 2, "\(target.rawValue)")
            for input in inputs { target.run(input.bytes) }
        }
        // The seed of every sample message decodes: the fuzzer starts from messages that get all the way in.
        #expect(seeds[.envelope]?.count == MessageCatalog.all.count)
    }
}

@Suite("Kraken formats: out-of-range values are rejected with a reason, never trapped on")
struct KrakenFormatRangeTests {
    static let now = Date(timeIntervalSince1970: 1_893_456_000)

    func body(_ rows: String, last: String = "1704067200") -> Data {
        Data(#"{"error":[],"result":{"XXBTZUSD":[\#(rows)],"last":\#(last)}}"#.utf8)
    }

    func reason(_ row: KrakenOHLC.Row, interval: CandleInterval = .oneDay) -> String? {
        guard row.fields.count == 6 else { return "fields" }
        let result = CandleValidator.validate(
            pair: "XBTUSD", interval: interval, openTime: row.openTime, open: row.fields[0], high: row.fields[1], low: row.fields[2],
            close: row.fields[3], vwap: row.fields[4], volume: row.fields[5], trades: row.trades, now: Self.now)
        if case .failure(let error) = result { return error.reason }
        return nil
    }

    @Test("a Kraken `last` that is not an integer time in range is a malformed body")
    func last() {
        for last in ["1e300", "-1", "99999999999999999999999", "true", "1.5", "\"1704067200\"", "4102444801"] {
            #expect(throws: KrakenError.self, "last \(last)") { _ = try KrakenOHLC.parse(body("", last: last)) }
        }
        #expect(throws: Never.self) { _ = try KrakenOHLC.parse(body("", last: "0")) }
    }

    @Test("Kraken rows with times, prices or counts out of range are rejected with their reason")
    func rows() throws {
        let good = #"[1704067200,"42241.1","44187.5","42215.7","44180.8","43000.0","2457.30419634",19869]"#
        let cases: [(row: String, reason: String)] = [
            (#"[true,"1","1","1","1","1","1",1]"#, "time is not an integer"),
            (#"[1e300,"1","1","1","1","1","1",1]"#, "time is not an integer"),
            (#"[1704067200.5,"1","1","1","1","1","1",1]"#, "time is not an integer"),
            (#"[9223372036854775807,"1","1","1","1","1","1",1]"#, "is outside 0...4102444800"),
            (#"[-86400,"1","1","1","1","1","1",1]"#, "is outside 0...4102444800"),
            (#"[1704067200,"1","1","1","1","1","1",1e300]"#, "trades"),
            (#"[1704067200,"1","1","1","1","1","1",99999999999999999999999]"#, "trades"),
            (#"[1704067200,"1","1","1","1","1","1",1.5]"#, "trades"),
            (#"[1704067200,"1","1","1","1","1","1","12"]"#, "trades"),
            (#"[1704067200,"1","1","1","1","1","1",false]"#, "trades"),
            (#"[1704067200,"1","1","1","1","1","1",-1]"#, "trades"),
            (#"[1704067200,"1","1","1","1","1","1",10000000000]"#, "trades"),
            (#"[1704067200,"1","1","1","1","1e400","1",1]"#, "vwap"),
            (#"[1704067200,"1","1","1","1","99999999999999999","1",1]"#, "vwap"),
            (#"[1704067200,"1","1","1","1","1","99999999999999999",1]"#, "volume"),
            (#"[1704067200,"99999999999999999","99999999999999999","1","1","1","1",1]"#, "at most"),
            (#"[1704067200,1,"1","1","1","1","1",1]"#, "open"),
        ]
        let parsed = try KrakenOHLC.parse(body(([good] + cases.map(\.row)).joined(separator: ",")))
        #expect(reason(parsed.rows[0]) == nil)
        for (row, expected) in zip(parsed.rows.dropFirst(), cases) {
            let found = reason(row)
            #expect(found?.contains(expected.reason) == true, "\(expected.row): \(found ?? "accepted")")
        }
    }

    @Test("history rows out of range are rejected with their reason; raw text is bounded and storable")
    func csvRows() {
        func parse(_ line: String) -> OHLCVTLine.Parsed {
            OHLCVTLine.parse(Substring(line), pair: "XBTUSD", interval: .oneDay, now: Self.now)
        }
        func reason(_ line: String) -> String? {
            if case .rejected(let row) = parse(line) { return row.reason }
            return nil
        }
        #expect(reason("99999999999999999999,1,1,1,1,1,1") == "time is not an integer")
        #expect(reason("9223372036854775807,1,1,1,1,1,1")?.contains("is outside") == true)
        #expect(reason("4102531200,1,1,1,1,1,1")?.contains("is outside") == true)
        #expect(reason("1704067200,1,1,1,1,1,99999999999999999999")?.contains("trades") == true)
        #expect(reason("1704067200,1,1,1,1,1,10000000000")?.contains("trades") == true)
        #expect(reason("1704067200,1,1,1,1,1,-5")?.contains("trades") == true)
        #expect(reason("1704067200,1,1,1,1,99999999999999999,5")?.contains("volume") == true)
        #expect(reason("1704067200,0,1,0,1,1,5")?.contains("must be positive") == true)
        if case .rejected(let row) = parse("1704067200,1\u{0},1,1,1,1," + String(repeating: "9", count: 10_000)) {
            #expect(row.raw.count <= RejectedRow.maximumRawLength)
            #expect(!row.raw.utf8.contains(0))
        } else {
            Issue.record("a row with a NUL byte was not rejected")
        }
        if case .candle(let candle) = parse("1704067200,42241.1,44187.5,42215.7,44180.8,2457.30419634,19869") {
            #expect(throws: Never.self) { try candle.event(revision: 0).validate() }
        } else {
            Issue.record("a good row was rejected")
        }
    }
}

@Suite("History file reader: bounded lines")
struct LineReaderBoundTests {
    @Test("a line longer than the limit comes back cut, its rest skipped; the lines after it are intact")
    func longLines() throws {
        let limit = LineReader.maximumLineBytes
        let text =
            "a\n" + String(repeating: "x", count: 3 * limit + 17) + "\nb\r\n" + String(repeating: "y", count: 2_500_000) + "\nc\n"
            + String(repeating: "z", count: limit + 1)
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("candlecast-long-lines-\(UUID().uuidString).csv").path
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let reader = try LineReader(path: path)
        var lines: [String] = []
        while let line = try reader.nextLine() { lines.append(String(line)) }
        #expect(lines.map(\.utf8.count) == [1, limit, 2, limit, 1, limit])
        #expect(lines[0] == "a" && lines[2] == "b\r" && lines[4] == "c")
        #expect(reader.bytesRead == text.utf8.count)
    }
}
