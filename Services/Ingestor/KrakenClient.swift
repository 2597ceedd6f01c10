import AsyncHTTPClient
import Contracts
import Foundation
import KrakenFormat
import ServiceKit

/// Kraken's public REST API: `GET /0/public/OHLC?pair=&interval=&since=`, through AsyncHTTPClient's shared client.
/// (It was URLSession: swift-corelibs-foundation's grew the ingestor by about 200 bytes per request, 2.3 MB a
/// minute with 200 pairs polled every second; scripts/bench-pairs.sh.)
struct KrakenClient: Sendable {
    let baseURL: URL
    let timeout: Duration
    /// A larger answer is refused: 720 rows of OHLC are about 60 KB.
    static let bodyLimit = 8 << 20

    func ohlc(pair: String, interval: CandleInterval, since: Int64?) async throws(KrakenError) -> KrakenOHLC {
        var components = URLComponents(url: baseURL.appendingPathComponent("0/public/OHLC"), resolvingAgainstBaseURL: false)
        components?.queryItems =
            [URLQueryItem(name: "pair", value: pair), URLQueryItem(name: "interval", value: String(interval.minutes))]
            + (since.map { [URLQueryItem(name: "since", value: String($0))] } ?? [])
        guard let url = components?.url else { throw KrakenError(.transport, "cannot build a URL from \(baseURL)") }
        var request = HTTPClientRequest(url: url.absoluteString)
        request.headers.add(name: "User-Agent", value: "candlecast-ingestor")
        let status: UInt
        let body: Data
        do {
            let response = try await HTTPClient.shared.execute(
                request, timeout: .nanoseconds(timeout.nanoseconds))
            status = response.status.code
            body = Data(try await response.body.collect(upTo: Self.bodyLimit).readableBytesView)
        } catch let error as HTTPClientError where error == .deadlineExceeded || error == .readTimeout || error == .connectTimeout {
            throw KrakenError(.timeout, "no answer within \(timeout)")
        } catch {
            throw KrakenError(.transport, "\(error)")
        }
        guard (200..<300).contains(status) else {
            throw KrakenError(status == 429 ? .rateLimited : .http, "HTTP \(status)", httpStatus: Int(status))
        }
        return try Self.parse(body)
    }

    /// Parses a response body (`KrakenOHLC.parse`, in Shared/KrakenFormat).
    static func parse(_ data: Data) throws(KrakenError) -> KrakenOHLC {
        try KrakenOHLC.parse(data)
    }
}
