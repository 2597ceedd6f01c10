/// The currency a pair's prices are quoted in: the end of its Kraken name (XBTUSD in USD, XBTEUR in EUR,
/// ETHUSDT in USDT), and how people write amounts of it. Every price in the contract is in this currency.
public struct QuoteCurrency: Sendable, Hashable, CustomStringConvertible {
    /// ISO-style code, e.g. `USD`; `?` when the pair's name does not end in a known one.
    public let code: String
    /// Written before amounts (`$`, `€`), or nil when the code is written after them (`1,234 USDT`).
    public let symbol: String?

    /// Quote currencies Kraken lists, longest first so that USDT is not read as ...USD + T.
    static let known: [(code: String, symbol: String?)] = [
        ("USDT", nil), ("USDC", nil), ("USD", "$"), ("EUR", "€"), ("GBP", "£"), ("JPY", "¥"), ("CAD", "C$"), ("AUD", "A$"),
        ("CHF", nil), ("XBT", nil), ("ETH", nil),
    ]

    public init(pair: String) {
        let upper = pair.uppercased()
        // Kraken's own names carry a Z or X prefix per asset (XXBTZUSD): the suffix rule reads them too.
        let match = Self.known.first { upper.count > $0.code.count && upper.hasSuffix($0.code) }
        code = match?.code ?? "?"
        symbol = match?.symbol ?? nil
    }

    public var description: String { code }
}
