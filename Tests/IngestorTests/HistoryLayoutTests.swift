import Contracts
import Foundation
import KrakenFake
import Storage
import TestSupport
import Testing

@testable import Ingestor

/// The history reader accepts Kraken's OHLCVT layout (with or without its header, numbers in every form
/// Kraken writes) and refuses any other layout as a whole, before storing anything.
@Suite("History files: Kraken's layout only, Kraken's number forms exactly", .serialized)
struct HistoryLayoutTests {
    static func write(_ text: String) throws -> String {
        let path = NSTemporaryDirectory() + "candlecast-layout-\(UUID().uuidString).csv"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    static let expectedColumns = "timestamp, open, high, low, close, volume, trades"

    @Test(
        "another exchange's file is refused with the expected columns named; nothing is stored or registered",
        arguments: [
            // Bitstamp/CryptoDataDownload export, with its header.
            """
            unix,date,symbol,open,high,low,close,Volume BTC,Volume USD
            1704067200,2024-01-01 00:00:00,BTC/USD,42241.1,44187.5,42215.7,44180.8,1,1\n
            """,
            // Binance klines: headerless, 12 columns.
            "1704067200000,42241.1,44187.5,42215.7,44180.8,2457.3,1704153599999,1.0,19869,1.0,1.0,0\n",
            // A header whose first field is Kraken's but the rest is not (the old check looked at the first field only).
            "timestamp,open,high,low,close,volume_usd,volume_btc\n1704067200,42241.1,44187.5,42215.7,44180.8,1,1\n",
            // Seven columns, but dates instead of unix times.
            "2024-01-01,42241.1,44187.5,42215.7,44180.8,2457.3,19869\n",
        ])
    func otherLayoutsAreRefused(text: String) async throws {
        let harness = try await IngestorHarness(kraken: FakeKraken())
        let path = try Self.write("\n" + text)
        defer { try? FileManager.default.removeItem(atPath: path) }
        do {
            _ = try await HistoryBackfill(database: harness.client, logger: harness.logger).run(
                path: path, pair: "XBTUSD", interval: .oneDay)
            Issue.record("a file in another layout was backfilled")
        } catch let error as BackfillError {
            #expect(error.code == .unrecognisedLayout)
            #expect(error.description.contains(Self.expectedColumns))
        }
        #expect(try await harness.count("SELECT count(*)::int FROM ingest.candles") == 0)
        #expect(try await harness.count("SELECT count(*)::int FROM ingest.rejected_candles") == 0)
        #expect(try await harness.count("SELECT count(*)::int FROM ingest.backfill_files") == 0)
        await harness.tearDown()
    }

    @Test("Kraken's exponent forms are stored as the exact decimals they stand for; its header is accepted in either spelling")
    func exponentFormsAreStoredExactly() async throws {
        let harness = try await IngestorHarness(kraken: FakeKraken())
        let path = try Self.write(
            """
            Timestamp,Open,High,Low,Close,Volume,Trades
            1438905600,2.77,3.0,0.15,2.77,4E+2,12
            1438992000,2.77,3.0,1.5E-01,2.8,1.234567890123456789E+3,1.2E+1
            1439078400,2.8,3,2,2.9,0.5,3
            """)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let summary = try await HistoryBackfill(database: harness.client, logger: harness.logger).run(
            path: path, pair: "XBTUSD", interval: .oneDay)
        #expect(summary.inserted == 3)
        #expect(summary.rejected == 0)
        let rows = try await harness.client.query("SELECT low::text, volume::text, trades FROM ingest.candles ORDER BY open_time").map {
            (try $0.decode(0, as: String.self), try $0.decode(1, as: String.self), try $0.decode(2, as: Int.self))
        }
        #expect(rows.count == 3)
        #expect(rows.first?.1 == "400")
        #expect(rows.dropFirst().first?.0 == "0.15")
        // 19 significant digits: more than a double holds, kept to the last digit.
        #expect(rows.dropFirst().first?.1 == "1234.567890123456789")
        #expect(rows.dropFirst().first?.2 == 12)
        await harness.tearDown()
    }

    @Test("the backfill command exits non-zero on another layout and says which columns it expects")
    func commandExitsNonZero() async throws {
        let binDirectory =
            ProcessInfo.processInfo.environment["CANDLECAST_BIN_DIR"]
            ?? TestEnvironment.repositoryRoot.appendingPathComponent(".build/debug").path
        let binary = binDirectory + "/ingestor"
        try #require(FileManager.default.isExecutableFile(atPath: binary), "build the ingestor first (swift build --build-tests)")
        let path = try Self.write("unix,date,symbol,open,high,low,close,Volume BTC,Volume USD\n1704067200,2024-01-01,BTC/USD,1,1,1,1,1,1\n")
        let messages = path + ".stderr"
        defer {
            try? FileManager.default.removeItem(atPath: path)
            try? FileManager.default.removeItem(atPath: messages)
        }
        // The layout is checked before the command reads its configuration or touches a server.
        let status = try await TestEnvironment.run(
            "/bin/sh", ["-c", "exec \"$0\" backfill \"$1\" --pair XBTUSD --interval 1d 2>\"$2\" >/dev/null", binary, path, messages])
        let output = try String(contentsOfFile: messages, encoding: .utf8)
        #expect(status != 0)
        #expect(output.contains(Self.expectedColumns), "\(output)")
    }
}
