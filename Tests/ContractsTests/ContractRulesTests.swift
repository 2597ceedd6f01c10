import Contracts
import Foundation
import Messaging
import Testing

/// The inputs that once trapped a service ("arithmetic overflow") or were trusted from the bus, as regression
/// cases of the contract's own rules.
@Suite("Contract rules: range checks before arithmetic")
struct ContractRulesTests {
    @Test(
        "interval texts that overflow or are not Kraken's are refused, not trapped",
        arguments: [
            "99999999999999999d", "99999999999999999w", "9223372036854775807m", "-9223372036854775808", "9223372036854775808",
            "153722867280912931h", "0", "0d", "-1d", "+1d", "1 d", " 1d", "1e3", "1.5d", "d", "", "１d", "2d", "1440000000000000",
        ])
    func hostileIntervalTexts(text: String) {
        #expect(CandleInterval(text) == nil)
    }

    @Test("every supported interval parses from its name and its minutes")
    func supportedIntervals() {
        for interval in CandleInterval.supported {
            #expect(CandleInterval(interval.name) == interval)
            #expect(CandleInterval("\(interval.minutes)") == interval)
            #expect(CandleInterval(seconds: Int(interval.seconds)) == interval)
        }
        #expect(CandleInterval(minutes: 7) == nil)
        #expect(CandleInterval(seconds: Int.max) == nil)
        #expect(CandleInterval(seconds: Int.min) == nil)
    }

    @Test("alignment of extreme open times is false, not a trap")
    func extremeOpenTimes() {
        for interval in CandleInterval.supported {
            for time in [Int64.max, Int64.min, Int64.max - 1, Int64.min + 1, -86_400, 4_102_444_801] {
                #expect(!interval.isAligned(time))
            }
        }
        #expect(CandleInterval.oneDay.isAligned(1_704_067_200))
        #expect(CandleInterval.oneWeek.isAligned(345_600))
    }

    static let validCandle = CandleClosed(
        pair: "XBTUSD", interval: .oneDay, openTime: 1_704_067_200, open: "42283.5", high: "44190.0", low: "42183.3", close: "44179.1",
        volume: "1845.61", trades: 31_000, revision: 0)

    @Test(
        "a candle.closed with impossible values is refused by the rule its consumers apply",
        arguments: [
            (
                {
                    $0.open = "10"
                    $0.high = "5"
                    $0.low = "20"
                    $0.close = "1"
                } as @Sendable (inout CandleClosed) -> Void, "prices out of order"
            ),
            ({ $0.openTime = Int64.max } as @Sendable (inout CandleClosed) -> Void, "open_time"),
            ({ $0.openTime = Int64.min } as @Sendable (inout CandleClosed) -> Void, "open_time"),
            ({ $0.openTime = 1_704_067_201 } as @Sendable (inout CandleClosed) -> Void, "not aligned"),
            ({ $0.close = "1e308" } as @Sendable (inout CandleClosed) -> Void, "not a non-negative decimal"),
            ({ $0.close = "NaN" } as @Sendable (inout CandleClosed) -> Void, "not a non-negative decimal"),
            ({ $0.high = "9" + String(repeating: "9", count: 30) } as @Sendable (inout CandleClosed) -> Void, "at most"),
            ({ $0.volume = "-1" } as @Sendable (inout CandleClosed) -> Void, "volume"),
            ({ $0.trades = -1 } as @Sendable (inout CandleClosed) -> Void, "trades"),
            ({ $0.revision = -1 } as @Sendable (inout CandleClosed) -> Void, "revision"),
            ({ $0.pair = "XBT/USD" } as @Sendable (inout CandleClosed) -> Void, "pair"),
            ({ $0.pair = "ÅBC" } as @Sendable (inout CandleClosed) -> Void, "pair"),
        ])
    func forgedCandles(change: @Sendable (inout CandleClosed) -> Void, reason: String) throws {
        var candle = Self.validCandle
        change(&candle)
        #expect(throws: ValidationFailure.self) { try candle.validate() }
        do {
            try candle.validate()
        } catch {
            #expect(error.reason.contains(reason), "\(error.reason)")
        }
        // The producer side applies the same rule: the forged candle cannot be encoded for publishing.
        #expect(throws: ValidationFailure.self) {
            _ = try EnvelopeCodec.encode(Envelope(payload: candle), exchange: "x", routingKey: "candle.closed.xbtusd.1d")
        }
    }

    @Test("the forged candle is dead-lettered on decoding: its reason says why")
    func forgedCandleIsRejectedOnDecode() throws {
        let valid = try EnvelopeCodec.encode(Envelope(payload: Self.validCandle), exchange: "x", routingKey: "candle.closed.xbtusd.1d")
        #expect(try EnvelopeCodec.decode(CandleClosed.self, from: valid.body, properties: valid.properties).payload == Self.validCandle)
        var body = String(decoding: valid.body, as: UTF8.self)
        body = body.replacingOccurrences(of: #""open":"42283.5""#, with: #""open":"10""#)
            .replacingOccurrences(of: #""high":"44190.0""#, with: #""high":"5""#)
            .replacingOccurrences(of: #""low":"42183.3""#, with: #""low":"20""#)
            .replacingOccurrences(of: #""close":"44179.1""#, with: #""close":"1""#)
        #expect(throws: EnvelopeDecodingFailure.self) {
            _ = try EnvelopeCodec.decode(CandleClosed.self, from: Array(body.utf8), properties: valid.properties)
        }
        do {
            _ = try EnvelopeCodec.decode(CandleClosed.self, from: Array(body.utf8), properties: valid.properties)
        } catch {
            #expect(error.description == "invalid payload: prices out of order: need low <= open, close <= high")
        }
        let hugeInterval = String(decoding: valid.body, as: UTF8.self).replacingOccurrences(
            of: #""interval":"1d""#, with: #""interval":"99999999999999999d""#)
        #expect(throws: EnvelopeDecodingFailure.self) {
            _ = try EnvelopeCodec.decode(CandleClosed.self, from: Array(hugeInterval.utf8), properties: valid.properties)
        }
        let hugeTime = String(decoding: valid.body, as: UTF8.self).replacingOccurrences(of: "1704067200", with: "9223372036854775807")
        #expect(throws: EnvelopeDecodingFailure.self) {
            _ = try EnvelopeCodec.decode(CandleClosed.self, from: Array(hugeTime.utf8), properties: valid.properties)
        }
    }

    @Test("windows, forecasts and promotions with out-of-range numbers are refused")
    func otherPayloads() {
        let window = FeatureWindow(
            pair: "XBTUSD", interval: .oneDay, windowEndOpenTime: Int64.max - 86_400, targetOpenTime: Int64.max, datasetVersion: 1,
            closes: [1, 2],
            scaledCloses: [0, 1], scaler: ScalerBounds(minimum: 1, maximum: 2), gapIntervals: 0, revision: 0)
        #expect(throws: ValidationFailure.self) { try window.validate() }
        let forecast = ForecastCreated(
            pair: "XBTUSD", interval: .oneDay, targetOpenTime: 1_704_067_200, predictedClose: 1e300, lastClose: 42_000,
            modelName: "lstm-xbtusd-1d",
            modelVersion: 1, datasetVersion: 1, producedAt: Date(), stale: false)
        #expect(throws: ValidationFailure.self) { try forecast.validate() }
        let promoted = ModelPromoted(
            modelName: "lstm-xbtusd-1d", alias: "champion", version: 9999, previousVersion: nil,
            reason: String(repeating: "x", count: 5000),
            pair: "XBTUSD", interval: .oneDay, datasetVersion: 1, artifactCRC32: 0)
        #expect(throws: ValidationFailure.self) { try promoted.validate() }
    }
}
