import Contracts
import Foundation
import ServiceKit
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Why a Kraken request failed. Every kind is retried with backoff by the poller.
struct KrakenError: Error, CustomStringConvertible, Sendable {
    enum Kind: String, Sendable {
        case rateLimited = "rate_limited"
        case unavailable
        case api
        case http
        case timeout
        case transport
        case malformed
    }

    let kind: Kind
    let message: String
    var description: String { "Kraken \(kind.rawValue): \(message)" }
}

/// One OHLC response: rows in Kraken's order (the last one is the still-open candle) and `last`, the
/// `since` of the next request.
struct KrakenOHLC: Sendable {
    struct Row: Sendable {
        /// The row as JSON text, kept for the rejected table.
        var raw: String
        var openTime: Int64?
        var fields: [String]
        var trades: String?
    }

    var resultKey: String
    var rows: [Row]
    var last: Int64
}

/// Kraken's public REST API: `GET /0/public/OHLC?pair=&interval=&since=`.
struct KrakenClient: Sendable {
    let baseURL: URL
    let timeout: Duration

    func ohlc(pair: String, interval: CandleInterval, since: Int64?) async throws(KrakenError) -> KrakenOHLC {
        var components = URLComponents(url: baseURL.appendingPathComponent("0/public/OHLC"), resolvingAgainstBaseURL: false)
        components?.queryItems = [URLQueryItem(name: "pair", value: pair), URLQueryItem(name: "interval", value: String(interval.minutes))]
            + (since.map { [URLQueryItem(name: "since", value: String($0))] } ?? [])
        guard let url = components?.url else { throw KrakenError(kind: .transport, message: "cannot build a URL from \(baseURL)") }
        var request = URLRequest(url: url)
        request.timeoutInterval = Double(timeout.components.seconds) + Double(timeout.components.attoseconds) * 1e-18
        request.setValue("candlecast-ingestor", forHTTPHeaderField: "User-Agent")
        let data: Data
        let response: URLResponse
        do {
            (data, response) = try await URLSession.shared.fetch(request)
        } catch let error as URLError where error.code == .timedOut {
            throw KrakenError(kind: .timeout, message: "no answer within \(timeout)")
        } catch {
            throw KrakenError(kind: .transport, message: "\(error.localizedDescription)")
        }
        if let http = response as? HTTPURLResponse, !(200..<300).contains(http.statusCode) {
            throw KrakenError(kind: http.statusCode == 429 ? .rateLimited : .http, message: "HTTP \(http.statusCode)")
        }
        return try Self.parse(data)
    }

    /// Parses a response body; Kraken's `error` array wins over any result.
    static func parse(_ data: Data) throws(KrakenError) -> KrakenOHLC {
        guard let object = try? JSONSerialization.jsonObject(with: data), let body = object as? [String: Any] else {
            throw KrakenError(kind: .malformed, message: "the body is not a JSON object (\(data.count) bytes)")
        }
        if let errors = body["error"] as? [String], !errors.isEmpty {
            let text = errors.joined(separator: "; ")
            if text.contains("Rate limit") { throw KrakenError(kind: .rateLimited, message: text) }
            if text.hasPrefix("EService:Unavailable") || text.hasPrefix("EService:Busy") { throw KrakenError(kind: .unavailable, message: text) }
            throw KrakenError(kind: .api, message: text)
        }
        guard let result = body["result"] as? [String: Any] else { throw KrakenError(kind: .malformed, message: "no result object") }
        guard let last = (result["last"] as? NSNumber)?.int64Value else { throw KrakenError(kind: .malformed, message: "no `last` in the result") }
        let keys = result.keys.filter { $0 != "last" }
        guard keys.count == 1, let key = keys.first, let rows = result[key] as? [Any] else {
            throw KrakenError(kind: .malformed, message: "expected one pair in the result, found \(keys.sorted())")
        }
        return KrakenOHLC(resultKey: key, rows: rows.map(Self.row), last: last)
    }

    private static func row(_ value: Any) -> KrakenOHLC.Row {
        let raw = (try? JSONSerialization.data(withJSONObject: value, options: [.fragmentsAllowed])).map { String(decoding: $0, as: UTF8.self) } ?? "\(value)"
        guard let array = value as? [Any], array.count == 8 else { return KrakenOHLC.Row(raw: raw, openTime: nil, fields: [], trades: nil) }
        let openTime = (array[0] as? NSNumber).flatMap { number -> Int64? in
            let double = number.doubleValue
            return double == double.rounded() ? Int64(exactly: double) : nil
        }
        // Prices, vwap and volume come as strings; anything else is left empty so validation rejects it.
        let fields = array[1...6].map { $0 as? String ?? "" }
        let trades = (array[7] as? NSNumber).map { "\($0.int64Value)" }
        return KrakenOHLC.Row(raw: raw, openTime: openTime, fields: fields, trades: trades)
    }
}
