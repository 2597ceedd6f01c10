import Foundation
import Hummingbird
import KrakenFormat
import Synchronization

/// A scripted stand-in for Kraken's public REST API (the one thing Candlecast talks to that is outside).
///
/// It serves recorded OHLC responses from a fixtures folder, or replays a history file as a live feed:
/// `tick()` closes one more candle; each response holds at most the 720 most recent closed candles after
/// `since`, then the still-open candle (deliberately different from its final values), and `last` is the
/// newest closed candle's time, as Kraken does. Faults can be queued for the next requests. More pairs can be
/// replayed beside the first (`addReplay`), each answered under its own result key; a pair without a replay is
/// answered from the fixtures folder when there is one.
public final class FakeKraken: Sendable {
    public enum Fault: String, Sendable, CaseIterable {
        case rateLimited = "rate-limited"
        case unavailable
        case serverError = "http-500"
        case timeout
        case truncated
        /// The rows in a shuffled order (the open candle no longer last).
        case outOfOrder = "out-of-order"
    }

    /// One OHLCVT row of the replayed history, prices as text.
    public struct Row: Sendable, Equatable {
        public var time: Int64
        public var open, high, low, close, volume: String
        public var trades: Int

        public init(time: Int64, open: String, high: String, low: String, close: String, volume: String, trades: Int) {
            self.time = time
            self.open = open
            self.high = high
            self.low = low
            self.close = close
            self.volume = volume
            self.trades = trades
        }

        /// Parses `time,open,high,low,close,volume,trades` lines.
        public static func load(csv path: String) throws -> [Row] {
            try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").compactMap { line in
                // The ingestor's own splitting rule (KrakenFormat): one parser of the file format.
                guard let fields = OHLCVTLine.fields(of: line), fields.count == 7, let time = Int64(fields[0]), let trades = Int(fields[6])
                else { return nil }
                return Row(
                    time: time, open: fields[1], high: fields[2], low: fields[3], close: fields[4], volume: fields[5], trades: trades)
            }
        }

        /// The closed rows of a recorded Kraken OHLC body (the still-open last row left out), read with the
        /// ingestor's own parser, and the body's result key.
        public static func load(krakenBody path: String) throws -> (resultKey: String, rows: [Row]) {
            let response = try KrakenOHLC.parse(try Data(contentsOf: URL(fileURLWithPath: path)))
            let rows = response.rows.compactMap { row -> Row? in
                guard let time = row.openTime, time <= response.last, row.fields.count == 6 else { return nil }
                return Row(
                    time: time, open: row.fields[0], high: row.fields[1], low: row.fields[2], close: row.fields[3], volume: row.fields[5],
                    trades: Int(row.trades ?? "") ?? 0)
            }
            return (response.resultKey, rows)
        }
    }

    /// One replayed pair: its rows and how many of them have closed.
    struct Series {
        var rows: [Row]
        var closedCount: Int
    }

    struct State {
        /// By result key; `resultKey`'s is the first replay.
        var series: [String: Series]
        var faults: [Fault] = []
        var requests = 0
    }

    public let resultKey: String
    public let intervalMinutes: Int
    public let fixturesDirectory: String?
    /// How long a `timeout` fault keeps the client waiting.
    public let timeoutDelay: Duration
    private let state: Mutex<State>

    public init(
        replay rows: [Row] = [], closed: Int = 0, resultKey: String = "XXBTZUSD", intervalMinutes: Int = 1440,
        fixturesDirectory: String? = nil, timeoutDelay: Duration = .seconds(3)
    ) {
        self.resultKey = resultKey
        self.intervalMinutes = intervalMinutes
        self.fixturesDirectory = fixturesDirectory
        self.timeoutDelay = timeoutDelay
        state = Mutex(State(series: [resultKey: Series(rows: rows, closedCount: min(closed, rows.count))]))
    }

    /// Replays another pair beside the first, answered under `resultKey` (Kraken's name for it, e.g. XXBTZEUR).
    public func addReplay(_ rows: [Row], closed: Int, resultKey: String) {
        state.withLock { $0.series[resultKey] = Series(rows: rows, closedCount: min(closed, rows.count)) }
    }

    /// Closes `count` more candles of the replay of `resultKey`, or of every replay.
    public func tick(_ count: Int = 1, resultKey: String? = nil) {
        state.withLock { state in
            for key in state.series.keys where resultKey == nil || key == resultKey {
                state.series[key]!.closedCount = min(state.series[key]!.rows.count, state.series[key]!.closedCount + count)
            }
        }
    }

    /// Kraken's result key for a pair as requested (XBTUSD is answered as XXBTZUSD).
    public static func resultKey(forPair pair: String) -> String {
        let aliases = ["XBTUSD": "XXBTZUSD", "XBTEUR": "XXBTZEUR"]
        return aliases[pair.uppercased()] ?? pair.uppercased()
    }

    public var closedCount: Int { closedCount(resultKey: resultKey) }
    public func closedCount(resultKey: String) -> Int { state.withLock { $0.series[resultKey]?.closedCount ?? 0 } }
    public var requestCount: Int { state.withLock { $0.requests } }

    /// The next requests fail with these faults, in order.
    public func inject(_ faults: [Fault]) { state.withLock { $0.faults.append(contentsOf: faults) } }

    /// Kraken revises a closed candle: its close (and high/low to stay consistent) change.
    public func revise(time: Int64, close: String) {
        let key = resultKey
        state.withLock { state in
            guard let index = state.series[key]?.rows.firstIndex(where: { $0.time == time }) else { return }
            var row = state.series[key]!.rows[index]
            row.close = close
            if Double(close)! > Double(row.high)! { row.high = close }
            if Double(close)! < Double(row.low)! { row.low = close }
            state.series[key]!.rows[index] = row
        }
    }

    /// The JSON body Kraken would send now for `since`, for the replay of `resultKey` (the first one by default).
    public func ohlcBody(since: Int64?, shuffled: Bool = false, resultKey: String? = nil) -> String {
        let key = resultKey ?? self.resultKey
        let (closed, open) = state.withLock { state -> ([Row], Row) in
            let series = state.series[key] ?? Series(rows: [], closedCount: 0)
            let closed = Array(series.rows.prefix(series.closedCount))
            let step = Int64(intervalMinutes) * 60
            // The candle being traded: the next row's open, with values that are not final.
            let open: Row
            if series.closedCount < series.rows.count {
                // Its price moves with every request, as a traded candle's does.
                let next = series.rows[series.closedCount]
                let moving = String(format: "%.1f", (Double(next.open) ?? 1) * (1 + 0.0001 * Double(state.requests % 50 + 1)))
                open = Row(time: next.time, open: next.open, high: moving, low: next.open, close: moving, volume: "0.00000001", trades: 1)
            } else {
                let last = closed.last ?? Row(time: 0, open: "1", high: "1", low: "1", close: "1", volume: "0", trades: 0)
                open = Row(
                    time: last.time + step, open: last.close, high: last.close, low: last.close, close: last.close, volume: "0.00000001",
                    trades: 1)
            }
            return (closed, open)
        }
        let recent = Array(closed.filter { since == nil || $0.time > since! }.suffix(720))
        var ordered = recent + [open]
        if shuffled { ordered.reverse() }
        let rows = ordered.map { row in
            #"[\#(row.time),"\#(row.open)","\#(row.high)","\#(row.low)","\#(row.close)","\#(row.close)","\#(row.volume)",\#(row.trades)]"#
        }
        let last = closed.last?.time ?? (open.time - Int64(intervalMinutes) * 60)
        return #"{"error":[],"result":{"\#(key)":[\#(rows.joined(separator: ","))],"last":\#(last)}}"#
    }

    func respond(query: [String: String]) async -> Response {
        let fault = state.withLock { state -> Fault? in
            state.requests += 1
            return state.faults.isEmpty ? nil : state.faults.removeFirst()
        }
        switch fault {
        case .rateLimited: return json(#"{"error":["EAPI:Rate limit exceeded"]}"#)
        case .unavailable: return json(#"{"error":["EService:Unavailable"]}"#)
        case .serverError:
            return Response(
                status: .internalServerError, body: ResponseBody(byteBuffer: ByteBuffer(string: "<html>502 Bad Gateway</html>")))
        case .timeout:
            try? await Task.sleep(for: timeoutDelay)
        case .truncated:
            let body = ohlcBody(since: query["since"].flatMap { Int64($0) })
            return json(String(body.prefix(body.count / 2)))
        case .outOfOrder:
            return json(ohlcBody(since: query["since"].flatMap { Int64($0) }, shuffled: true))
        case nil:
            break
        }
        let key = Self.resultKey(forPair: query["pair"] ?? "")
        let (replayed, firstIsEmpty) = state.withLock { state in
            (state.series[key].map { !$0.rows.isEmpty } ?? false, state.series[resultKey]?.rows.isEmpty ?? true)
        }
        if replayed { return json(ohlcBody(since: query["since"].flatMap { Int64($0) }, resultKey: key)) }
        // Without a replay of the pair: its recording, or (no fixtures) the first replay whatever the pair asked.
        if let fixturesDirectory, key != resultKey || firstIsEmpty {
            return fixture(in: fixturesDirectory, pair: query["pair"] ?? "", interval: query["interval"] ?? "")
        }
        return json(ohlcBody(since: query["since"].flatMap { Int64($0) }))
    }

    private func fixture(in directory: String, pair: String, interval: String) -> Response {
        let key = Self.resultKey(forPair: pair)
        let files = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        guard let file = files.first(where: { $0.hasPrefix("OHLC_\(key)_interval\(interval)_") }),
            let body = try? String(contentsOfFile: directory + "/" + file, encoding: .utf8)
        else {
            return json(#"{"error":["EQuery:Unknown asset pair"]}"#)
        }
        return json(body)
    }

    private func json(_ body: String) -> Response {
        Response(status: .ok, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(string: body)))
    }

    /// An HTTP application serving `GET /0/public/OHLC` and control endpoints (`POST /control/tick?count=&pair=`,
    /// `POST /control/fault?kind=`) on `host:port`.
    public func application(host: String = "127.0.0.1", port: Int) -> some ApplicationProtocol {
        let router = Router()
        router.get("0/public/OHLC") { request, _ in
            await self.respond(query: Dictionary(request.uri.queryParameters.map { (String($0.key), String($0.value)) }) { $1 })
        }
        router.post("control/tick") { request, _ in
            let pair = request.uri.queryParameters.get("pair").map { Self.resultKey(forPair: String($0)) }
            self.tick(request.uri.queryParameters.get("count", as: Int.self) ?? 1, resultKey: pair)
            return self.json(#"{"closed":\#(self.closedCount(resultKey: pair ?? self.resultKey))}"#)
        }
        router.post("control/fault") { request, _ in
            guard let kind = request.uri.queryParameters.get("kind").flatMap(Fault.init(rawValue:)) else {
                return Response(
                    status: .badRequest,
                    body: ResponseBody(byteBuffer: ByteBuffer(string: "kind must be one of \(Fault.allCases.map(\.rawValue))")))
            }
            self.inject([kind])
            return self.json(#"{"queued":"\#(kind.rawValue)"}"#)
        }
        return Application(
            router: router, configuration: ApplicationConfiguration(address: .hostname(host, port: port), serverName: "fake-kraken"))
    }
}
