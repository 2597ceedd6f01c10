import Contracts
import Foundation
import Messaging
import TestSupport

/// Seed inputs from real data: the contract's sample messages, the recorded Kraken REST bodies and the
/// Kraken history files in `data/` (cut to a few rows: libFuzzer mutates small inputs far faster).
public enum FuzzSeeds {
    public static func all(dataDirectory: URL) throws -> [FuzzTarget: [(name: String, bytes: [UInt8])]] {
        var seeds: [FuzzTarget: [(name: String, bytes: [UInt8])]] = [:]

        seeds[.envelope] = try ContractSamples.all.map { sample in
            (name: "sample-" + type(of: sample).messageType, bytes: try EnvelopeFuzzing.seed(sample))
        }

        seeds[.payloadFields] = EnvelopeFuzzing.payloadTypes.indices.map { index in
            (name: "sample-" + EnvelopeFuzzing.payloadTypes[index].messageType, bytes: [UInt8(index)])
        }

        var bodies: [(name: String, bytes: [UInt8])] = [
            ("error-rate-limit", Array(#"{"error":["EAPI:Rate limit exceeded"]}"#.utf8)),
            ("error-unavailable", Array(#"{"error":["EService:Unavailable"],"result":{}}"#.utf8)),
        ]
        let fixtures = dataDirectory.appendingPathComponent("kraken_fixtures")
        for name in try FileManager.default.contentsOfDirectory(atPath: fixtures.path).sorted() where name.hasSuffix(".json") {
            let data = try Data(contentsOf: fixtures.appendingPathComponent(name))
            let stem = String(name.dropLast(".json".count))
            guard name.hasPrefix("OHLC_"),
                let body = try JSONSerialization.jsonObject(with: data) as? [String: Any],
                let result = body["result"] as? [String: Any],
                let key = result.keys.first(where: { $0 != "last" }), let rows = result[key] as? [Any], rows.count >= 4
            else {
                bodies.append((stem, Array(data)))
                continue
            }
            // Three closed rows, `last`, and the open row after it, as Kraken sends them.
            for (suffix, picked) in [("head", Array(rows.prefix(3)) + [rows[rows.count - 1]]), ("one", [rows[0]])] {
                var cut = result
                cut[key] = picked
                let seed = try JSONSerialization.data(withJSONObject: ["error": [String](), "result": cut], options: [.sortedKeys])
                bodies.append((stem + "-" + suffix, Array(seed)))
            }
        }
        seeds[.krakenBody] = bodies

        var rows: [(name: String, bytes: [UInt8])] = []
        for name in ["kraken_XBTUSD_1440.csv", "kraken_XBTUSD_1440_2024.csv"] {
            let text = try String(contentsOf: dataDirectory.appendingPathComponent(name), encoding: .utf8)
            let lines = text.split(separator: "\n").map(String.init)
            let stem = String(name.dropLast(".csv".count))
            rows.append((stem + "-head", CSVRowFuzzing.seed(lines: Array(lines.prefix(8)), interval: .oneDay)))
            rows.append(
                (
                    stem + "-header-crlf",
                    CSVRowFuzzing.seed(
                        lines: ["time,open,high,low,close,volume,trades\r"] + lines.suffix(3).map { $0 + "\r" }, interval: .oneDay)
                ))
        }
        // Kraken's exponent forms (its ETHUSD file has a daily volume of 4E+2), and another exchange's header.
        rows.append(
            (
                "exponents",
                CSVRowFuzzing.seed(
                    lines: [
                        "timestamp,open,high,low,close,volume,trades", "1438905600,2.77,3.0,0.15,2.77,4E+2,12",
                        "1439078400,1.2E+0,1.2,1.2,1.2,1.5e-05,1",
                    ],
                    interval: .oneDay)
            ))
        rows.append(
            ("other-layout", CSVRowFuzzing.seed(lines: ["unix,date,symbol,open,high,low,close,Volume BTC,Volume USD"], interval: .oneDay)))
        seeds[.csvRow] = rows
        seeds[.modelFile] = try ModelFileFuzzing.seeds()
        seeds[.brokerURL] = BrokerURLFuzzing.seeds
        seeds[.numericField] = NumericFieldFuzzing.seeds
        return seeds
    }

    /// Writes the seeds as `<directory>/<target>/<name>`; returns how many.
    @discardableResult
    public static func write(dataDirectory: URL, to directory: URL) throws -> Int {
        var count = 0
        for (target, seeds) in try all(dataDirectory: dataDirectory) {
            let folder = directory.appendingPathComponent(target.rawValue)
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            for seed in seeds {
                try Data(seed.bytes).write(to: folder.appendingPathComponent(seed.name))
                count += 1
            }
        }
        return count
    }
}
