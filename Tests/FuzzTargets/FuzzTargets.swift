import Contracts
import Foundation
import KrakenFormat
import Messaging

/// The fuzz targets of Candlecast: every parser of bytes from outside that has no server around it.
///
/// Each target takes any bytes and must return normally: a trap (overflow, index out of range, force
/// unwrap, non-finite conversion) is a crash, and so is a broken invariant, checked with `fatalError`:
/// - `envelope`: a message of any contract type, with its AMQP properties and headers taken from the input,
///   through `EnvelopeCodec.decode` (decoding and validation). What decodes must encode again (the producer's
///   rules accept it) and decode to the same payload.
/// - `payload-fields`: the same decoding, starting from each type's sample message with fields replaced by
///   edge-case values (so that inputs get past JSON syntax into validation).
/// - `kraken-body`: an OHLC response body through `KrakenOHLC.parse`, every row through `CandleValidator`
///   for every interval. A candle the ingestor accepts must be a `candle.closed` every consumer accepts.
/// - `csv-row`: lines of an OHLCVT history file through `OHLCVTLine.parse`, same invariant.
/// - `model-file`: a model file of any kind through `ForecastModel(decoding:)`, then a forecast (`ModelFileFuzzing`).
/// - `broker-url`: `CANDLECAST_AMQP_URL` through `BrokerConfiguration(url:)`, one or several nodes, TLS or not
///   (`BrokerURLFuzzing`).
/// - `numeric-field`: decimal text through the binary COPY encoding of `numeric`, decoded back independently
///   (`NumericFieldFuzzing`).
///
/// Used by `Tests/Fuzz` (libFuzzer's entry point, or a replayer of saved inputs) and by `FuzzTests`, which
/// replays `Tests/FuzzCorpus`.
public enum FuzzTarget: String, CaseIterable, Sendable {
    case envelope
    case payloadFields = "payload-fields"
    case krakenBody = "kraken-body"
    case csvRow = "csv-row"
    case modelFile = "model-file"
    case brokerURL = "broker-url"
    case numericField = "numeric-field"

    /// Runs one input; true when it got all the way in (a message decoded and valid, a candle accepted).
    @discardableResult
    public func run(_ bytes: [UInt8]) -> Bool {
        switch self {
        case .envelope: EnvelopeFuzzing.run(bytes)
        case .payloadFields: PayloadFieldFuzzing.run(bytes)
        case .krakenBody: KrakenBodyFuzzing.run(bytes)
        case .csvRow: CSVRowFuzzing.run(bytes)
        case .modelFile: ModelFileFuzzing.run(bytes)
        case .brokerURL: BrokerURLFuzzing.run(bytes)
        case .numericField: NumericFieldFuzzing.run(bytes)
        }
    }
}

/// Reads the leading bytes of a fuzz input as choices; past the end every choice is 0.
struct ByteReader {
    private(set) var bytes: ArraySlice<UInt8>

    init(_ bytes: [UInt8]) { self.bytes = bytes[...] }

    mutating func byte() -> UInt8 { bytes.popFirst() ?? 0 }

    mutating func uint64() -> UInt64 {
        var value: UInt64 = 0
        for _ in 0..<8 { value = value << 8 | UInt64(byte()) }
        return value
    }

    /// Up to `limit` bytes, as (possibly invalid) UTF-8 text, the length in the first byte.
    mutating func text(limit: Int = 64) -> String {
        let count = min(Int(byte()), limit, bytes.count)
        let taken = bytes.prefix(count)
        bytes = bytes.dropFirst(count)
        return String(decoding: taken, as: UTF8.self)
    }

    var rest: [UInt8] { Array(bytes) }
}

/// The clock of the fuzz targets: fixed, so that a saved input replays the same way (2030-01-01).
let fuzzNow = Date(timeIntervalSince1970: 1_893_456_000)

/// A candle the ingestor accepted must be one every consumer of `candle.closed` accepts, on the wire too.
func checkAcceptedCandle(_ candle: Candle) {
    let event = candle.event(revision: 0)
    do {
        try event.validate()
    } catch {
        fatalError("the ingestor accepted a candle that consumers reject (\(error.reason)): \(candle)")
    }
    EnvelopeFuzzing.checkRoundTrip(Envelope(payload: event, messageID: UUID(), timestamp: fuzzNow))
}
