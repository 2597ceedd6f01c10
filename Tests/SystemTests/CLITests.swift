import Contracts
import Foundation
import Messaging
import Storage
import TestSupport
import Testing

/// The `candlecast` CLI as a user runs it, against the real registry, predictor and monitor processes (the other
/// services are left down on purpose: `status` must say so in words).
@Suite("candlecast CLI against running services", .serialized)
struct CLITests {
    static let january2024: Int64 = 1_704_067_200
    static let day: Int64 = 86_400

    @Test(
        "tail shows stored forecasts, then new ones; list takes RFC 3339 dates; status in plain words; a 401 says where the token is"
    )
    func tailListStatusUnauthorized() async throws {
        let system = try await SystemHarness(basePort: 18_640)
        try await system.run {
            let roles = ["registry", "predictor", "monitor"]
            for role in roles { try system.start(role) }
            for role in roles { try await system.waitReady(role) }

            // Forty daily forecasts from 2024-01-01, made now (as a replay makes them); the first twenty scored. Each carries
            // its 80 % and 95 % ranges and P(up), but 2024-02-08's (index 38), as an uncalibrated model's would not.
            for index in 0..<40 {
                let target = Self.january2024 + Int64(index) * Self.day
                let predicted = 42_000 + Double(index)
                let last = 41_900 + Double(index)
                let actual: Double? = index < 20 ? 42_050 + Double(index) : nil
                let calibrated = index != 38
                let probability: Double? = calibrated ? 0.5 + Double(index) / 100 : nil
                let intervals =
                    calibrated
                    ? #"[{"level":0.8,"lower":\#(predicted - 500),"upper":\#(predicted + 600)},"#
                        + #"{"level":0.95,"lower":\#(predicted - 1_200),"upper":\#(predicted + 1_500)}]"# : nil
                // Scored: inside both ranges (Winkler = the widths), up from the last close (Brier (p - 1)^2).
                let outcomes =
                    actual != nil && calibrated
                    ? #"[{"level":0.8,"hit":true,"width":1100,"width_percent":2.6,"winkler":1100},"#
                        + #"{"level":0.95,"hit":true,"width":2700,"width_percent":6.4,"winkler":2700}]"# : nil
                let brier = actual != nil ? probability.map { ($0 - 1) * ($0 - 1) } : nil
                let naiveBrier: Double? = actual != nil ? 0.25 : nil
                try await system.client.execute(
                    """
                    INSERT INTO predictions.forecasts (pair, interval_seconds, target_open_time, model_name, model_version, dataset_version,
                        window_end_open_time, predicted_close, last_close, stale, actual_close, absolute_error, naive_absolute_error,
                        intervals, probability_up, interval_outcomes, brier, naive_brier)
                    VALUES ('XBTUSD', 86400, \(target), 'lstm-xbtusd-1d', 1, 1, \(target - Self.day), \(predicted), \(last), false,
                        \(actual), \(actual.map { abs(predicted - $0) }), \(actual.map { abs(last - $0) }), \(intervals)::jsonb,
                        \(probability), \(outcomes)::jsonb, \(brier), \(naiveBrier))
                    """)
            }
            // The predictor serves the latest forecast from memory, filled from the database at start.
            try await system.killAndRestart("predictor")
            let publisher = try Publisher(
                configuration: system.broker, options: Publisher.Options(topology: ServiceName.predictor.topology),
                logger: TestEnvironment.logger)

            // list: a date range, both ends inclusive (a date as --to is its whole day), oldest first.
            let list = try await system.runCLI(["forecasts", "list", "--from", "2024-01-05", "--to", "2024-01-10"])
            #expect(list.code == 0, "\(list.output)")
            let days = list.output.split(separator: "\n").filter { $0.hasPrefix("2024-") }.map { String($0.prefix(10)) }
            #expect(days == (5...10).map { String(format: "2024-01-%02d", $0) }, "\(list.output)")
            #expect(
                list.output.contains("42004.00") && list.output.contains("42054.00"),
                "forecast and actual close of 2024-01-05: \(list.output)")
            // Its ranges, P(up), both ranges hit, and the Brier score beside the naive one: (0.54 - 1)^2 = 0.2116.
            let fifth = try #require(list.output.split(separator: "\n").first { $0.hasPrefix("2024-01-05") }, "\(list.output)")
            for column in ["41504.00-42604.00", "40804.00-43504.00", "54.0%", "yes/yes", "0.2116 (0.25)"] {
                #expect(fifth.contains(column), "\(column): \(fifth)")
            }
            let header = try #require(list.output.split(separator: "\n").first)
            for column in ["80% range", "95% range", "P(up)", "in 80%/95%", "Brier (naive)"] {
                #expect(header.contains(column), "\(column): \(header)")
            }
            let timestamps = try await system.runCLI([
                "forecasts", "list", "--from", "2024-02-08T00:00:00Z", "--to", "2024-02-09T01:00:00+01:00",
            ])
            let februaryLines = timestamps.output.split(separator: "\n").filter { $0.hasPrefix("2024-") }
            #expect(februaryLines.count == 2, "\(timestamps.output)")
            // Not scored yet: ranges and P(up), no hits; the uncalibrated forecast of 2024-02-08 shows none.
            #expect(februaryLines.first.map { !$0.contains(".00-") && !$0.contains("%") } == true, "\(timestamps.output)")
            #expect(februaryLines.last.map { $0.contains("41539.00-42639.00") && $0.contains("89.0%") } == true, "\(timestamps.output)")

            // latest: the newest forecast in one line, with its ranges and P(up); --json gives the fields.
            let latest = try await system.runCLI(["forecasts", "latest"])
            #expect(latest.code == 0, "\(latest.output)")
            #expect(
                latest.output.contains(
                    "XBTUSD 1d close of 2024-02-09: 42039.00 USD, 80% 41539.00-42639.00, 95% 40839.00-43539.00, P(up) 89.0% "
                        + "(last close 41939.00, lstm-xbtusd-1d v1)"),
                "\(latest.output)")
            let latestJSON = try await system.runCLI(["forecasts", "latest", "--json"])
            let latestLine = try #require(latestJSON.output.split(separator: "\n").first { $0.hasPrefix("{") }, "\(latestJSON.output)")
            let latestObject = try #require(try JSONSerialization.jsonObject(with: Data(latestLine.utf8)) as? [String: Any])
            #expect(latestObject["probability_up"] as? Double == 0.89)
            #expect((latestObject["intervals"] as? [[String: Any]])?.compactMap { $0["upper"] as? Double } == [42_639, 43_539])
            let badDate = try await system.runCLI(["forecasts", "list", "--from", "01/05/2024"])
            #expect(badDate.code == 64 && badDate.output.contains("RFC 3339"), "\(badDate.output)")

            // tail: the newest three stored, then a new one from the broker; a redelivered stored one is not printed again.
            let tail = try system.cli(["forecasts", "tail", "--count", "3", "--exit-after", "1", "--json"])
            defer { tail.kill() }
            @Sendable func printedTargets() -> [Int64] {
                tail.log.split(separator: "\n").filter { $0.hasPrefix("{") }.compactMap { line in
                    line.firstMatch(of: /"target_open_time":([0-9]+)/).flatMap { Int64($0.output.1) }
                }
            }
            let stored = (37..<40).map { Self.january2024 + Int64($0) * Self.day }
            do {
                try await eventually(timeout: .seconds(20), "the three stored forecasts printed") { printedTargets() == stored }
                try await eventually(timeout: .seconds(20), "the tail following") { tail.log.contains("following new forecasts") }
            } catch {
                Issue.record("candlecast forecasts tail log:\n\(tail.log)")
                throw error
            }
            let newTarget = Self.january2024 + 40 * Self.day
            for target in [stored[2], newTarget] {
                let forecast = ForecastCreated(
                    pair: "XBTUSD", interval: .oneDay, targetOpenTime: target, predictedClose: 43_000, lastClose: 42_900,
                    modelName: "lstm-xbtusd-1d",
                    modelVersion: 1, datasetVersion: 1, producedAt: Date(), stale: false,
                    intervals: [
                        ForecastInterval(level: 0.8, lower: 42_100, upper: 43_900),
                        ForecastInterval(level: 0.95, lower: 41_000, upper: 45_000),
                    ], probabilityUp: 0.6)
                try await publisher.publish(
                    try EnvelopeCodec.encode(Envelope(payload: forecast), exchange: Exchange.events, routingKey: forecast.routingKey))
            }
            #expect(try await tail.waitForExit(timeout: .seconds(20)) == 0, "\(tail.log)")
            #expect(printedTargets() == stored + [newTarget], "\(tail.log)")
            // Stored and new forecasts both print their ranges and P(up) as JSON fields (2024-02-08's has none).
            let printed = tail.log.split(separator: "\n").filter { $0.hasPrefix("{") }
            let withRanges = printed.filter { $0.contains(#""intervals":[{"#) && $0.contains(#""probability_up":"#) }
            #expect(printed.count == 4 && withRanges.count == 3, "\(tail.log)")
            #expect(printed.last?.contains(#""probability_up":0.6"#) == true, "\(tail.log)")
            let tailText = try await system.runCLI(["forecasts", "tail", "--count", "1", "--no-follow"])
            #expect(
                tailText.output.contains("42039.00 USD, 80% 41539.00-42639.00, 95% 40839.00-43539.00, P(up) 89.0%"), "\(tailText.output)")

            // status: plain words; the replayed candle is "a replay", not an alarming age; the services not started are down.
            let candle = CandleClosed(
                pair: "XBTUSD", interval: .oneDay, openTime: stored[2], open: "42000", high: "42100", low: "41900", close: "42050",
                volume: "10",
                trades: 100, revision: 0)
            try await publisher.publish(
                try EnvelopeCodec.encode(Envelope(payload: candle), exchange: Exchange.events, routingKey: candle.routingKey))
            try await eventually(timeout: .seconds(20), "the monitor's candle age") {
                (await httpGet(system.monitorURL + "/metrics")?.body ?? "").contains("candlecast_candle_age_seconds{")
            }
            let status = try await system.runCLI(["status"])
            #expect(status.code == 2, "four services are not running: \(status.output)")
            let lines = status.output.split(separator: "\n").map(String.init)
            for role in roles {
                #expect(
                    lines.contains { $0.hasPrefix(role + " ") && $0.contains(" ready") && !$0.contains("not ready") },
                    "\(role): \(status.output)")
            }
            for role in ["ingestor", "preprocessor", "trainer-1", "trainer-2"] {
                #expect(lines.contains { $0.hasPrefix(role + " ") && $0.contains("down") }, "\(role): \(status.output)")
            }
            #expect(
                status.output.contains("latest forecast: XBTUSD 1d close of 2024-02-09: 42039.00 USD by lstm-xbtusd-1d v1"),
                "\(status.output)")
            #expect(status.output.contains("; 80% 41539.00-42639.00, 95% 40839.00-43539.00, P(up) 89.0%"), "\(status.output)")
            #expect(status.output.contains("newest candle: XBTUSD 1d of 2024-02-09: a replay"), "\(status.output)")
            #expect(!status.output.contains("=\""), "no Prometheus label syntax: \(status.output)")
            #expect(
                !status.output.contains(" h ago") && !status.output.contains(" days ago"), "no age for a replayed candle: \(status.output)")

            // 401: the message names the variable, the file it was read from, and where the clone keeps it.
            let wrong = try await system.runCLI(["models", "promote", "1"], ["CANDLECAST_REGISTRY_TOKEN": "wrong"])
            #expect(wrong.code == 1 && wrong.output.contains("401"), "\(wrong.output)")
            for words in ["CANDLECAST_REGISTRY_TOKEN", "set in this shell", "source .local/env", ".local/secrets/registry_token"] {
                #expect(wrong.output.contains(words), "\(words): \(wrong.output)")
            }
            let file = FileManager.default.temporaryDirectory.appendingPathComponent("candlecast-token-\(UUID().uuidString)")
            try Data("also-wrong\n".utf8).write(to: file)
            defer { try? FileManager.default.removeItem(at: file) }
            let fromFile = try await system.runCLI(
                ["models", "rollback"], ["CANDLECAST_REGISTRY_TOKEN": "", "CANDLECAST_REGISTRY_TOKEN_FILE": file.path])
            #expect(fromFile.code == 1 && fromFile.output.contains("401") && fromFile.output.contains(file.path), "\(fromFile.output)")
            let none = try await system.runCLI(
                ["models", "promote", "1"], ["CANDLECAST_REGISTRY_TOKEN": "", "CANDLECAST_REGISTRY_TOKEN_FILE": ""])
            #expect(
                none.code == 1 && none.output.contains("no registry token") && none.output.contains("CANDLECAST_REGISTRY_TOKEN_FILE"),
                "\(none.output)")
            // The right token still works through the same client: the error was the token, not the call.
            let missing = try await system.runCLI(["models", "promote", "99"])
            #expect(missing.code == 1 && missing.output.contains("POST /v1/models/lstm-xbtusd-1d/promote: 404"), "\(missing.output)")
            await publisher.close()
        }
    }
}
