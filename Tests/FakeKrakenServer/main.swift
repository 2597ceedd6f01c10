// fake-kraken: serves recorded Kraken responses, or replays a history file as a live feed, for tests and
// the demo's --replay mode.
//   fake-kraken --port 8799 [--fixtures DIR] [--replay FILE --closed N --tick-ms MS --interval-minutes M]
//               [--replay-recording BODY.json --recording-closed N]   another pair replayed from a recorded OHLC body
//               [--replay-dir DIR]   every DIR/PAIR.csv replayed too, under PAIR, from no closed candle (many pairs)
import Foundation
import Hummingbird
import KrakenFake

var options: [String: String] = [:]
var arguments = CommandLine.arguments.dropFirst()
while let key = arguments.popFirst() {
    guard key.hasPrefix("--"), let value = arguments.popFirst() else {
        FileHandle.standardError.write(
            Data(
                ("usage: fake-kraken --port P [--fixtures DIR] [--replay FILE --closed N --tick-ms MS --interval-minutes M] "
                    + "[--replay-recording BODY.json --recording-closed N] [--replay-dir DIR]\n").utf8))
        exit(2)
    }
    options[String(key.dropFirst(2))] = value
}
let rows = try options["replay"].map { try FakeKraken.Row.load(csv: $0) } ?? []
let kraken = FakeKraken(
    replay: rows, closed: Int(options["closed"] ?? "0") ?? 0, intervalMinutes: Int(options["interval-minutes"] ?? "1440") ?? 1440,
    fixturesDirectory: options["fixtures"])
if let recording = options["replay-recording"] {
    let (key, recorded) = try FakeKraken.Row.load(krakenBody: recording)
    kraken.addReplay(recorded, closed: Int(options["recording-closed"] ?? "") ?? recorded.count, resultKey: key)
}
if let directory = options["replay-dir"] {
    for file in try FileManager.default.contentsOfDirectory(atPath: directory).sorted() where file.hasSuffix(".csv") {
        let pair = String(file.dropLast(4))
        kraken.addReplay(try FakeKraken.Row.load(csv: directory + "/" + file), closed: 0, resultKey: FakeKraken.resultKey(forPair: pair))
    }
}
if let tick = options["tick-ms"].flatMap(Int.init), tick > 0 {
    Task {
        while true {
            try await Task.sleep(for: .milliseconds(tick))
            kraken.tick()
        }
    }
}
try await kraken.application(port: Int(options["port"] ?? "8799") ?? 8799).runService()
