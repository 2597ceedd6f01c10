import ArgumentParser
import Contracts
import Foundation
import Messaging
import PredictorAPI
import ServiceKit

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Services up, queue depths, data freshness and the latest forecast, in plain words.")
    @OptionGroup var series: SeriesOptions

    /// `/readyz` of every service (served by ServiceKit's HealthRoutes; the documents' `Readiness`).
    private struct Readiness: Decodable {
        var status: String
        var checks: [String: Bool]
    }

    func run() async throws {
        let interval = try series.candleInterval()
        let apiInterval = try series.predictorInterval()
        try await reporting { services in
            let endpoints = services.endpoints
            var targets: [(String, String)] = [
                ("ingestor", endpoints.ingestor), ("preprocessor", endpoints.preprocessor), ("registry", endpoints.registry),
                ("predictor", endpoints.predictor), ("monitor", endpoints.monitor),
            ]
            targets += endpoints.trainers.enumerated().map { ("trainer-\($0.offset + 1)", $0.element) }
            var rows: [[String]] = []
            var down = 0
            for (name, url) in targets {
                let state: String
                do {
                    let answer = try await services.plainGet(name, at: url, "/readyz", timeout: .seconds(3))
                    let readiness = try? JSONDecoder().decode(Readiness.self, from: Data(answer.body.utf8))
                    if answer.status == 200 {
                        state = "ready"
                    } else {
                        let failing = readiness?.checks.filter { !$0.value }.keys.sorted().joined(separator: ", ") ?? ""
                        state = failing.isEmpty ? "not ready (\(answer.status))" : "not ready: \(failing)"
                        down += 1
                    }
                } catch {
                    state = "down (not answering)"
                    down += 1
                }
                rows.append([name, state, url])
            }
            print(Table.render(["service", "state", "address"], rows))

            print("")
            if let broker = try? endpoints.broker() {
                var depths: [[String]] = []
                for service in ServiceName.allCases {
                    for queue in service.subscriptions.filter({ $0.sharing != .perReplica }).map(\.queue) + [service.deadLetterQueue] {
                        let depth = try? await BrokerAdmin.messageCount(queue: queue, configuration: broker)
                        depths.append([queue, depth.map(String.init) ?? "not declared yet"])
                    }
                }
                print(Table.render(["queue", "messages waiting"], depths))
            } else {
                print("queues: no broker settings in this shell (source .local/env)")
            }

            print("")
            let now = Date()
            let predictor = try services.predictor()
            let latest = try? await services.fetch(
                "predictor", at: endpoints.predictor,
                {
                    try await predictor.getLatestForecast(query: .init(pair: series.pair, interval: apiInterval))
                }
            ) { try $0.ok.body.json }
            if let latest {
                print(
                    "latest forecast: \(latest.pair) \(latest.interval.rawValue) close of \(Shown.time(latest.targetOpenTime)): "
                        + "\(Shown.price(latest.predictedClose)) \(QuoteCurrency(pair: latest.pair)) "
                        + "by \(latest.modelName) v\(latest.modelVersion), "
                        + "made \(Shown.time(latest.producedAt))"
                        + (latest.stale ? " (the model is older than CANDLECAST_MODEL_MAX_AGE_DAYS)" : "") + "; "
                        + Shown.uncertainty(
                            intervals: latest.intervals?.map { ForecastInterval(level: $0.level, lower: $0.lower, upper: $0.upper) },
                            probabilityUp: latest.probabilityUp))
            } else {
                print("latest forecast: none yet for \(series.pair) \(interval.name)")
            }
            // The monitor's freshness is a Prometheus gauge (no document serves it as JSON): read from its text.
            if let metrics = try? await services.plainGet("monitor", at: endpoints.monitor, "/metrics", timeout: .seconds(3)),
                metrics.status == 200
            {
                for sample in PrometheusSample.parse(metrics.body, name: "candlecast_candle_age_seconds") {
                    guard let pair = sample.labels["pair"], let name = sample.labels["interval"], let seriesInterval = CandleInterval(name)
                    else { continue }
                    print(Self.freshness(pair: pair, interval: seriesInterval, age: sample.value, now: now, latest: latest))
                }
            }
            if down > 0 { throw CommandFailure(.unreachable, "\(down) service(s) not ready") }
        }
    }

    /// The newest candle of a series in words. Up to date: how long ago it closed. Older: its date, and whether
    /// this is a replay (forecasts are being made now for past candles) or the live feed has stopped.
    static func freshness(
        pair: String, interval: CandleInterval, age: Double, now: Date, latest: PredictorAPI.Components.Schemas.Forecast?
    ) -> String {
        let seconds = Double(interval.seconds)
        let closed = now.addingTimeInterval(-age)
        // The age is measured when the monitor was scraped, not now: round to the candle boundary it stands for.
        let offset = Double(interval.alignmentOffset)
        let opened = Date(timeIntervalSince1970: ((closed.timeIntervalSince1970 - seconds - offset) / seconds).rounded() * seconds + offset)
        let head = "newest candle: \(pair) \(interval.name) of \(Shown.time(opened))"
        if age <= 2 * seconds { return "\(head), closed \(Self.duration(age)) ago: up to date" }
        let replaying =
            latest.map { forecast in
                forecast.pair == pair && forecast.interval.rawValue == interval.name
                    && now.timeIntervalSince(forecast.producedAt) <= 2 * seconds
                    && forecast.producedAt.timeIntervalSince(forecast.targetOpenTime) > 2 * seconds
            } ?? false
        if replaying { return "\(head): a replay (past candles arriving now; forecasts follow them)" }
        return "\(head): no newer candle for \(Self.duration(age - seconds)); a history load or a replay that ended, "
            + "else the ingestor is not getting candles (see its log)"
    }

    /// `3 h`, `2 days`, `45 min`.
    static func duration(_ seconds: Double) -> String {
        switch seconds {
        case ..<3600: return "\(max(0, Int(seconds / 60))) min"
        case ..<(2 * 86_400): return "\(Int(seconds / 3600)) h"
        default: return "\(Int(seconds / 86_400)) days"
        }
    }
}

/// One sample of Prometheus text: `name{key="value",...} number`.
struct PrometheusSample {
    var labels: [String: String]
    var value: Double

    static func parse(_ text: String, name: String) -> [PrometheusSample] {
        text.split(separator: "\n").compactMap { line in
            guard line.hasPrefix(name + "{"), let close = line.lastIndex(of: "}"),
                let value = Double(line[line.index(after: close)...].trimmingCharacters(in: .whitespaces).split(separator: " ").first ?? "")
            else { return nil }
            let inside = line[line.index(line.startIndex, offsetBy: name.count + 1)..<close]
            var labels: [String: String] = [:]
            for match in inside.matches(of: /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/) {
                labels[String(match.output.1)] = String(match.output.2)
            }
            return PrometheusSample(labels: labels, value: value)
        }
    }
}
