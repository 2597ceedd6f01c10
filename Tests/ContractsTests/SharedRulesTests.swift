import Contracts
import Foundation
import Messaging
import Testing

/// The rules that exist once and are called from everywhere: decimals (with Kraken's exponent forms), pairs and
/// intervals, FNV-1a, and the errors callers switch on.
@Suite("Shared rules: decimals, pairs, intervals, hashing, error codes")
struct SharedRulesTests {
    @Test(
        "Kraken's exponent forms become the exact plain decimal they stand for",
        arguments: [
            ("4E+2", "400"), ("4e2", "400"), ("1.5e-05", "0.000015"), ("1E-8", "0.00000001"), ("2.5E+0", "2.5"), ("1.23E+1", "12.3"),
            (".5E1", "5"), ("5.E-1", "0.5"), ("0.01E+2", "1"), ("0.0001E+2", "0.01"), ("1.000E+3", "1000"), ("42241.1", "42241.1"),
            ("0.1", "0.1"), ("122.0", "122.0"),
            // Beyond a double's 17 digits: only the point moves, no digit is rounded.
            ("1.00000000000000000001E+2", "100.000000000000000001"),
        ])
    func exponentForms(text: String, plain: String) {
        #expect(ContractRules.plainDecimal(text) == plain)
        #expect(ContractRules.isDecimal(plain))
    }

    @Test(
        "anything that is not a non-negative number form is refused",
        arguments: [
            "-1E2", "+1E2", "1E", "E5", "1E+", "1E+2.5", "1E++2", "1EE2", "NaN", "inf", "Infinity", "0x10", "1E+1000", "1E-50", "1,5", "",
            " 1E2", "1E2 ",
        ])
    func notNumberForms(text: String) {
        #expect(ContractRules.plainDecimal(text) == nil)
    }

    @Test("a plain decimal written out longer than the limit is refused, not cut")
    func writtenLengthIsBounded() {
        #expect(ContractRules.plainDecimal("1E+39") == "1" + String(repeating: "0", count: 39))
        #expect(ContractRules.plainDecimal("1E+40") == nil)
        #expect(ContractRules.plainDecimal("1E-38") == "0." + String(repeating: "0", count: 37) + "1")
        #expect(ContractRules.plainDecimal("1E-39") == nil)
    }

    @Test("the pair rule: canonical upper case, one message and code for every refusal")
    func pairRule() throws {
        #expect(try ContractRules.pair("xbtusd") == "XBTUSD")
        #expect(try ContractRules.pair("XBTEUR") == "XBTEUR")
        for bad in ["", "XBT/USD", "XBT USD", "ÄBC", String(repeating: "A", count: 33)] {
            #expect {
                try ContractRules.pair(bad, field: "--pair")
            } throws: { error in
                let failure = error as? ValidationFailure
                return failure?.code == .invalidName && failure?.field == "--pair"
                    && failure?.reason.contains("1 to 32 ASCII letters and digits") == true
            }
        }
    }

    @Test("the interval rule: names everywhere, Kraken minutes except where only names are allowed")
    func intervalRule() throws {
        #expect(try ContractRules.interval("1d") == .oneDay)
        #expect(try ContractRules.interval("1440") == .oneDay)
        #expect(throws: ValidationFailure.self) { try ContractRules.interval("1440", namesOnly: true) }
        #expect(throws: ValidationFailure.self) { try ContractRules.interval("2d") }
        do {
            _ = try ContractRules.interval("1e3")
            Issue.record("1e3 was taken as an interval")
        } catch {
            #expect(error.code == .invalidName)
            #expect(error.reason.contains("1m, 5m, 15m, 30m, 1h, 4h, 1d, 1w, 15d"))
        }
    }

    @Test("candle rule failures carry a code and the field at fault")
    func candleFailureCodes() {
        func failure(open: String = "10", high: String = "12", low: String = "9", close: String = "11", volume: String = "1")
            -> ValidationFailure?
        {
            do throws(ValidationFailure) {
                try ContractRules.candle(open: open, high: high, low: low, close: close, volume: volume, trades: 1)
                return nil
            } catch {
                return error
            }
        }
        #expect(failure() == nil)
        #expect(failure(close: "4E+2")?.code == .notADecimal)  // the bus carries plain decimals only
        #expect(failure(close: "4E+2")?.field == "close")
        #expect(failure(high: "10.5", close: "11")?.code == .inconsistent)
        #expect(failure(volume: "2000000000000000")?.code == .outOfRange)
    }

    @Test("FNV-1a 64 matches the published test vectors")
    func fnv1a() {
        func hash(_ text: String) -> String {
            var hash = FNV1a64()
            hash.combine(text.utf8)
            return hash.hexDigits
        }
        #expect(hash("") == "cbf29ce484222325")
        #expect(hash("a") == "af63dc4c8601ec8c")
        #expect(hash("foobar") == "85944171f73967e8")
        var split = FNV1a64()
        split.combine("foo".utf8)
        split.combine("bar".utf8)
        #expect(split.hexDigits == hash("foobar"))
    }

    @Test("a decoding failure says which check failed, with what was found and expected")
    func decodingFailureCodes() throws {
        let candle = CandleClosed(
            pair: "XBTUSD", interval: .oneDay, openTime: 1_704_067_200, open: "10", high: "12", low: "9", close: "11", volume: "1",
            trades: 1, revision: 0)
        let message = try EnvelopeCodec.encode(Envelope(payload: candle), exchange: "x", routingKey: candle.routingKey)
        do {
            _ = try EnvelopeCodec.decode(ForecastCreated.self, from: message.body, properties: message.properties)
            Issue.record("a candle decoded as a forecast")
        } catch {
            #expect(error.code == .unknownType)
            #expect(error.found == "candle.closed")
            #expect(error.expected == "forecast.created")
        }
        let forged = String(decoding: message.body, as: UTF8.self).replacingOccurrences(of: #""low":"9""#, with: #""low":"13""#)
        do {
            _ = try EnvelopeCodec.decode(CandleClosed.self, from: Array(forged.utf8), properties: message.properties)
            Issue.record("a candle with low above high decoded")
        } catch {
            #expect(error.code == .invalidPayload)
            #expect(error.validation?.code == .inconsistent)
        }
    }
}
