import Contracts
import Foundation
import KrakenFormat
import ServiceKit

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// Kraken's public REST API: `GET /0/public/OHLC?pair=&interval=&since=`.
struct KrakenClient: Sendable {
    let baseURL: URL
    let timeout: Duration

    func ohlc(pair: String, interval: CandleInterval, since: Int64?) async throws(KrakenError) -> KrakenOHLC {
        var components = URLComponents(url: baseURL.appendingPathComponent("0/public/OHLC"), resolvingAgainstBaseURL: false)
        components?.queryItems =
            [URLQueryItem(name: "pair", value: pair), URLQueryItem(name: "interval", value: String(interval.minutes))]
            + (since.map { [URLQueryItem(name: "since", value: String($0))] } ?? [])
        guard let url = components?.url else { throw KrakenError(.transport, "cannot build a URL from \(baseURL)") }
        var request = URLRequest(url: url)
        request.timeoutInterval = Double(timeout.components.seconds) + Double(timeout.components.attoseconds) * 1e-18
        request.setValue("candlecast-ingestor", forHTTPHeaderField: "User-Agent")
        let data: Data
        let response: URLResponse
        do {
            (data, response) = try await URLSession.shared.fetch(request)
        } catch let error as URLError where error.code == .timedOut {
            throw KrakenError(.timeout, "no answer within \(timeout)")
        } catch {
            throw KrakenError(.transport, "\(error.localizedDescription)")
        }
        if let http = response as? HTTPURLResponse, !(200..<300).contains(http.statusCode) {
            throw KrakenError(http.statusCode == 429 ? .rateLimited : .http, "HTTP \(http.statusCode)", httpStatus: http.statusCode)
        }
        return try Self.parse(data)
    }

    /// Parses a response body (`KrakenOHLC.parse`, in Shared/KrakenFormat).
    static func parse(_ data: Data) throws(KrakenError) -> KrakenOHLC {
        try KrakenOHLC.parse(data)
    }
}
