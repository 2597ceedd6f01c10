import Foundation
import Hummingbird
import KrakenFormat
import Synchronization

/// A scripted stand-in for Kraken's public REST API (the one thing Candlecast talks to that is outside).
///
/// It serves recorded OHLC responses from a fixtures folder, or replays a history file as a live feed:
/// `tick()` closes one more candle; each response holds at most the 720 most recent closed candles after
/// `since`, then the still-open candle (deliberately different from its final values), and `last` is the
/// newest closed candle's time, as Kraken does. Faults can be queued for the next requests.
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
    }

    struct State {
        var rows: [Row]
        var closedCount: Int
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
        state = Mutex(State(rows: rows, closedCount: min(closed, rows.count)))
    }

    /// Closes `count` more candles of the replay.
    public func tick(_ count: Int = 1) {
        state.withLock { $0.closedCount = min($0.rows.count, $0.closedCount + count) }
    }

    public var closedCount: Int { state.withLock { $0.closedCount } }
    public var requestCount: Int { state.withLock { $0.requests } }

    /// The next requests fail with these faults, in order.
    public func inject(_ faults: [Fault]) { state.withLock { $0.faults.append(contentsOf: faults) } }

    /// Kraken revises a closed candle: its close (and high/low to stay consistent) change.
    public func revise(time: Int64, close: String) {
        state.withLock { state in
            guard let index = state.rows.firstIndex(where: { $0.time == time }) else { return }
            var row = state.rows[index]
            row.close = close
            if Double(close)! > Double(row.high)! { row.high = close }
            if Double(close)! < Double(row.low)! { row.low = close }
            state.rows[index] = row
        }
    }

    /// The JSON body Kraken would send now for `since`.
    public func ohlcBody(since: Int64?, shuffled: Bool = false) -> String {
        let (closed, open) = state.withLock { state -> ([Row], Row) in
            let closed = Array(state.rows.prefix(state.closedCount))
            let step = Int64(intervalMinutes) * 60
            // The candle being traded: the next row's open, with values that are not final.
            let open: Row
            if state.closedCount < state.rows.count {
                // Its price moves with every request, as a traded candle's does.
                let next = state.rows[state.closedCount]
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
        return #"{"error":[],"result":{"\#(resultKey)":[\#(rows.joined(separator: ","))],"last":\#(last)}}"#
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
        if let fixturesDirectory, state.withLock({ $0.rows.isEmpty }) {
            return fixture(in: fixturesDirectory, pair: query["pair"] ?? "", interval: query["interval"] ?? "")
        }
        return json(ohlcBody(since: query["since"].flatMap { Int64($0) }))
    }

    private func fixture(in directory: String, pair: String, interval: String) -> Response {
        let aliases = ["XBTUSD": "XXBTZUSD", "XBTEUR": "XXBTZEUR"]
        let key = aliases[pair.uppercased()] ?? pair.uppercased()
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

    /// An HTTP application serving `GET /0/public/OHLC` and control endpoints (`POST /control/tick?count=`,
    /// `POST /control/fault?kind=`) on `host:port`.
    public func application(host: String = "127.0.0.1", port: Int) -> some ApplicationProtocol {
        let router = Router()
        router.get("0/public/OHLC") { request, _ in
            await self.respond(query: Dictionary(request.uri.queryParameters.map { (String($0.key), String($0.value)) }) { $1 })
        }
        router.post("control/tick") { request, _ in
            self.tick(request.uri.queryParameters.get("count", as: Int.self) ?? 1)
            return self.json(#"{"closed":\#(self.closedCount)}"#)
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
