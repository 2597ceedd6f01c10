import Contracts
import Foundation
import Messaging
import Testing

/// The forecast's ranges and up probability (`forecast.created`) and their scores (`metric.predictor.forecast_scored`):
/// what the contract accepts, what it refuses on publish and on consume, and that old messages still decode.
@Suite("Contract: forecast intervals, up probability and their scores")
struct UncertaintyContractTests {
    static let eighty = ForecastInterval(level: 0.8, lower: 41_000, upper: 43_000)
    static let ninetyFive = ForecastInterval(level: 0.95, lower: 40_000, upper: 44_500)

    static func forecast(intervals: [ForecastInterval]? = [eighty, ninetyFive], probabilityUp: Double? = 0.55) -> ForecastCreated {
        ForecastCreated(
            pair: "XBTUSD", interval: .oneDay, targetOpenTime: 1_704_067_200, predictedClose: 42_100, lastClose: 42_000,
            modelName: "lstm-xbtusd-1d", modelVersion: 3, datasetVersion: 1, producedAt: Date(timeIntervalSince1970: 1_704_000_000),
            stale: false, intervals: intervals, probabilityUp: probabilityUp)
    }

    static func scored(intervals: [IntervalResult]?, brier: Double? = 0.2, naiveBrier: Double? = 0.25) -> ForecastScored {
        ForecastScored(
            pair: "XBTUSD", interval: .oneDay, targetOpenTime: 1_704_067_200, modelName: "lstm-xbtusd-1d", modelVersion: 3,
            predictedClose: 42_100, actualClose: 42_500, error: -400, absoluteError: 400, percentageError: 400 / 42_500 * 100,
            naiveAbsoluteError: 500, intervals: intervals, brier: brier, naiveBrier: naiveBrier)
    }

    static let results = [
        IntervalResult(level: 0.8, hit: true, winkler: 2_000, naiveHit: true, naiveWinkler: 2_100),
        IntervalResult(level: 0.95, hit: true, winkler: 4_500, naiveHit: false, naiveWinkler: 9_000),
    ]

    @Test("valid ranges and probabilities pass; the fields are optional (a forecast without calibration has none)")
    func validValues() throws {
        try Self.forecast().validate()
        try Self.forecast(intervals: nil, probabilityUp: nil).validate()
        try Self.forecast(probabilityUp: 0).validate()
        try Self.forecast(probabilityUp: 1).validate()
        // A degenerate range (lower == upper, e.g. a flat history) is a range.
        let flat = [
            ForecastInterval(level: 0.8, lower: 42_000, upper: 42_000), ForecastInterval(level: 0.95, lower: 42_000, upper: 42_000),
        ]
        try Self.forecast(intervals: flat).validate()
        try Self.scored(intervals: Self.results).validate()
        try Self.scored(intervals: nil, brier: nil, naiveBrier: 0.25).validate()
        // Without the naive baseline (a window too short for it).
        try Self.scored(intervals: [IntervalResult(level: 0.8, hit: false, winkler: 1), IntervalResult(level: 0.95, hit: true, winkler: 0)])
            .validate()
    }

    @Test(
        "refused: levels missing, out of order or unknown; lower above upper; non-positive or non-finite bounds; not nested",
        arguments: [
            ("one level only", [eighty]),
            ("levels out of order", [ninetyFive, eighty]),
            ("an unknown level", [eighty, ForecastInterval(level: 0.9, lower: 40_000, upper: 44_500)]),
            ("a level twice", [eighty, eighty]),
            ("lower above upper", [ForecastInterval(level: 0.8, lower: 43_000, upper: 41_000), ninetyFive]),
            ("a negative bound", [ForecastInterval(level: 0.8, lower: -1, upper: 43_000), ninetyFive]),
            ("a zero bound", [ForecastInterval(level: 0.8, lower: 0, upper: 43_000), ninetyFive]),
            ("an infinite bound", [eighty, ForecastInterval(level: 0.95, lower: 40_000, upper: .infinity)]),
            ("a NaN bound", [ForecastInterval(level: 0.8, lower: .nan, upper: 43_000), ninetyFive]),
            ("95 % inside 80 %", [eighty, ForecastInterval(level: 0.95, lower: 41_500, upper: 42_500)]),
            ("95 % not containing 80 % above", [eighty, ForecastInterval(level: 0.95, lower: 40_000, upper: 42_999)]),
            ("no intervals at all", []),
        ] as [(String, [ForecastInterval])])
    func refusedIntervals(_ name: String, _ intervals: [ForecastInterval]) {
        #expect(throws: ValidationFailure.self, "\(name)") { try Self.forecast(intervals: intervals).validate() }
    }

    @Test("refused: a probability outside 0...1 or not finite", arguments: [-0.01, 1.0001, .nan, .infinity, -.infinity])
    func refusedProbability(_ value: Double) {
        #expect(throws: ValidationFailure.self) { try Self.forecast(probabilityUp: value).validate() }
    }

    @Test("refused scores: unknown or missing levels, negative or non-finite Winkler scores, a Brier score outside 0...1")
    func refusedScores() {
        let cases: [(String, ForecastScored)] = [
            ("one level only", Self.scored(intervals: [Self.results[0]])),
            ("levels out of order", Self.scored(intervals: Self.results.reversed())),
            ("an unknown level", Self.scored(intervals: [Self.results[0], IntervalResult(level: 0.99, hit: true, winkler: 1)])),
            ("a negative Winkler score", Self.scored(intervals: [IntervalResult(level: 0.8, hit: true, winkler: -1), Self.results[1]])),
            (
                "a NaN naive Winkler score",
                Self.scored(intervals: [
                    Self.results[0], IntervalResult(level: 0.95, hit: true, winkler: 1, naiveHit: true, naiveWinkler: .nan),
                ])
            ),
            (
                "an infinite Winkler score",
                Self.scored(intervals: [IntervalResult(level: 0.8, hit: false, winkler: .infinity), Self.results[1]])
            ),
            ("a Brier score above 1", Self.scored(intervals: Self.results, brier: 1.5)),
            ("a negative naive Brier score", Self.scored(intervals: Self.results, naiveBrier: -0.1)),
            ("a NaN Brier score", Self.scored(intervals: nil, brier: .nan)),
        ]
        for (name, score) in cases {
            #expect(throws: ValidationFailure.self, "\(name)") { try score.validate() }
        }
    }

    @Test("the wire names are snake_case and round-trip exactly; absent fields are left out, not null")
    func wireFormat() throws {
        let forecast = Self.forecast()
        let message = try EnvelopeCodec.encode(Envelope(payload: forecast), exchange: Exchange.events, routingKey: forecast.routingKey)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(message.body)) as? [String: Any])
        #expect(object["probability_up"] as? Double == 0.55)
        let intervals = try #require(object["intervals"] as? [[String: Any]])
        #expect(intervals.map { $0["level"] as? Double } == [0.8, 0.95])
        #expect(intervals.map { $0["lower"] as? Double } == [41_000, 40_000])
        #expect(Set(intervals[0].keys) == ["level", "lower", "upper"])
        let decoded = try EnvelopeCodec.decode(ForecastCreated.self, from: message.body, properties: message.properties).payload
        #expect(decoded == forecast)
        #expect(decoded.interval(0.95) == Self.ninetyFive && decoded.interval(0.9) == nil)

        let bare = Self.forecast(intervals: nil, probabilityUp: nil)
        let bareMessage = try EnvelopeCodec.encode(Envelope(payload: bare), exchange: Exchange.events, routingKey: bare.routingKey)
        let bareObject = try #require(try JSONSerialization.jsonObject(with: Data(bareMessage.body)) as? [String: Any])
        #expect(bareObject["intervals"] == nil && bareObject["probability_up"] == nil)

        let score = Self.scored(intervals: Self.results)
        let scoreMessage = try EnvelopeCodec.encode(Envelope(payload: score), exchange: Exchange.events, routingKey: score.routingKey)
        let scoreObject = try #require(try JSONSerialization.jsonObject(with: Data(scoreMessage.body)) as? [String: Any])
        #expect(scoreObject["naive_brier"] as? Double == 0.25 && scoreObject["brier"] as? Double == 0.2)
        let results = try #require(scoreObject["intervals"] as? [[String: Any]])
        #expect(Set(results[1].keys) == ["level", "hit", "winkler", "naive_hit", "naive_winkler"])
        #expect(results[1]["naive_hit"] as? Bool == false)
        #expect(
            try EnvelopeCodec.decode(ForecastScored.self, from: scoreMessage.body, properties: scoreMessage.properties).payload == score)
    }

    @Test("a message from before the fields (schema version 1 as it was) decodes with them nil; an invalid range is refused on consume")
    func oldMessagesAndConsumeRefusals() throws {
        let old = """
            {"pair":"XBTUSD","interval":"1d","target_open_time":1704067200,"predicted_close":42100,"last_close":42000,
            "model_name":"lstm-xbtusd-1d","model_version":3,"dataset_version":1,"produced_at":"2024-01-01T00:00:00Z","stale":false}
            """
        let properties = MessageProperties(
            contentType: EnvelopeCodec.contentType, type: ForecastCreated.messageType, headers: [schemaVersionHeader: .int(1)])
        let decoded = try EnvelopeCodec.decode(ForecastCreated.self, from: Array(old.utf8), properties: properties).payload
        #expect(decoded.intervals == nil && decoded.probabilityUp == nil && decoded.predictedClose == 42_100)

        let oldScore = """
            {"pair":"XBTUSD","interval":"1d","target_open_time":1704067200,"model_name":"lstm-xbtusd-1d","model_version":3,
            "predicted_close":42100,"actual_close":42500,"error":-400,"absolute_error":400,"percentage_error":0.94,
            "naive_absolute_error":500}
            """
        let scoreProperties = MessageProperties(
            contentType: EnvelopeCodec.contentType, type: ForecastScored.messageType, headers: [schemaVersionHeader: .int(1)])
        let score = try EnvelopeCodec.decode(ForecastScored.self, from: Array(oldScore.utf8), properties: scoreProperties).payload
        #expect(score.intervals == nil && score.brier == nil && score.naiveBrier == nil)

        // Publishing refuses what consumers would refuse; a consumer refuses it too if it arrives anyway.
        let inverted = Self.forecast(intervals: [Self.eighty, ForecastInterval(level: 0.95, lower: 41_500, upper: 42_500)])
        #expect(throws: ValidationFailure.self) {
            try EnvelopeCodec.encode(Envelope(payload: inverted), exchange: Exchange.events, routingKey: inverted.routingKey)
        }
        let tooLikely = old.replacingOccurrences(of: #""stale":false}"#, with: #""stale":false,"probability_up":1.5}"#)
        #expect(throws: EnvelopeDecodingFailure.self) {
            _ = try EnvelopeCodec.decode(ForecastCreated.self, from: Array(tooLikely.utf8), properties: properties)
        }
        let oneLevel = old.replacingOccurrences(
            of: #""stale":false}"#, with: #""stale":false,"intervals":[{"level":0.8,"lower":41000,"upper":43000}]}"#)
        #expect(throws: EnvelopeDecodingFailure.self) {
            _ = try EnvelopeCodec.decode(ForecastCreated.self, from: Array(oneLevel.utf8), properties: properties)
        }
        let missingBound = old.replacingOccurrences(
            of: #""stale":false}"#, with: #""stale":false,"intervals":[{"level":0.8,"lower":41000},{"level":0.95,"lower":1,"upper":2}]}"#)
        #expect(throws: EnvelopeDecodingFailure.self) {
            _ = try EnvelopeCodec.decode(ForecastCreated.self, from: Array(missingBound.utf8), properties: properties)
        }
    }
}
