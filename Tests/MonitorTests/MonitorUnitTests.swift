import Contracts
import Foundation
import ServiceKit
import TestSupport
import Testing

@testable import Monitor

@Suite("Monitor: rolling accuracy, metric help, dashboard escaping, alert and dashboard configuration")
struct MonitorUnitTests {
    @Test("rolling MAE, RMSE, MAPE and MASE of a window match a hand computation")
    func rollingAccuracy() throws {
        let errors = [
            ScoredError(absoluteError: 100, percentageError: 1, naiveAbsoluteError: 200),
            ScoredError(absoluteError: 300, percentageError: 3, naiveAbsoluteError: 100),
            ScoredError(absoluteError: 200, percentageError: 2, naiveAbsoluteError: 300),
        ]
        let accuracy = try #require(RollingAccuracy(errors))
        #expect(accuracy.count == 3)
        #expect(accuracy.mae == 200)
        #expect(abs(accuracy.rmse - (140_000.0 / 3).squareRoot()) < 1e-9)
        #expect(accuracy.mape == 2)
        #expect(accuracy.naiveMAE == 200)
        #expect(accuracy.mase == 1)
        #expect(RollingAccuracy([]) == nil)
        #expect(RollingAccuracy([ScoredError(absoluteError: 5, percentageError: 1, naiveAbsoluteError: 0)])?.mase == nil)
    }

    /// Every metric name written in the sources has HELP text, so every service's `/metrics` passes promtool.
    @Test("every metric the services create has HELP text in the catalogue")
    func everyMetricHasHelp() throws {
        let root = TestEnvironment.repositoryRoot
        var names = Set<String>()
        for folder in ["Shared", "Services"] {
            let enumerator = FileManager.default.enumerator(atPath: root.appendingPathComponent(folder).path)
            while let path = enumerator?.nextObject() as? String {
                guard path.hasSuffix(".swift") else { continue }
                let text = try String(contentsOf: root.appendingPathComponent(folder).appendingPathComponent(path), encoding: .utf8)
                for match in text.matches(of: /"(candlecast_[a-z0-9_]+)"/) { names.insert(String(match.1)) }
            }
        }
        #expect(names.count > 20)
        let missing = names.subtracting(MetricHelp.catalogue.keys)
        #expect(missing.isEmpty, "no HELP text for \(missing.sorted())")
        let unused = Set(MetricHelp.catalogue.keys).subtracting(names)
        #expect(unused.isEmpty, "HELP text for metrics nothing creates: \(unused.sorted())")
    }

    @Test("annotate adds HELP before each TYPE line that lacks one, and keeps the rest")
    func annotate() {
        let input =
            """
            # TYPE candlecast_outbox_backlog gauge
            candlecast_outbox_backlog 3
            # HELP x given
            # TYPE x counter
            x 1
            # TYPE unknown_metric gauge
            unknown_metric 0\n
            """
        let output = MetricHelp.annotate(input)
        #expect(output.hasPrefix("# HELP candlecast_outbox_backlog Outbox rows not yet relayed"))
        #expect(output.components(separatedBy: "# HELP x").count == 2)
        #expect(output.hasSuffix("# TYPE unknown_metric gauge\nunknown_metric 0\n"))
    }

    @Test("text from outside is escaped in the page")
    func escaping() {
        #expect(escape("<script>alert('x')</script> & \"q\"") == "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;")
    }

    @Test("Prometheus config and alert rules pass promtool, and each alert fires in its rule test")
    func prometheusConfiguration() async throws {
        let folder = TestEnvironment.repositoryRoot.appendingPathComponent("compose/prometheus").path
        #expect(try await TestEnvironment.run("/usr/bin/promtool", ["check", "config", folder + "/prometheus.yml"]) == 0)
        #expect(try await TestEnvironment.run("/usr/bin/promtool", ["check", "rules", folder + "/alerts.yml"]) == 0)
        #expect(try await TestEnvironment.run("/usr/bin/promtool", ["test", "rules", folder + "/alerts.test.yml"]) == 0)
    }

    @Test("the Grafana dashboard is valid JSON and every query names metrics that exist")
    func grafanaDashboard() throws {
        let file = TestEnvironment.repositoryRoot.appendingPathComponent("compose/grafana/dashboards/candlecast.json")
        let dashboard = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: file)) as? [String: Any])
        let panels = try #require(dashboard["panels"] as? [[String: Any]])
        #expect(panels.count >= 10)
        for panel in panels {
            let targets = try #require(panel["targets"] as? [[String: Any]])
            for target in targets {
                let expression = try #require(target["expr"] as? String)
                let names = expression.matches(of: /candlecast_[a-z0-9_]+/).map { String($0.0).replacing(/_(bucket|sum|count)$/, with: "") }
                #expect(!names.isEmpty, "\(expression)")
                for name in names {
                    #expect(MetricHelp.catalogue[name] != nil, "\(panel["title"] ?? "?"): \(name) is not a Candlecast metric")
                }
            }
        }
    }
}

@Test("dollar amounts have one format per page, chosen from the prices shown")
func dollars() {
    let bitcoin = MoneyFormat(prices: [233.9, 92_047.4])
    #expect(bitcoin(233.911) == "$234")
    #expect(bitcoin(92_047.4) == "$92,047")
    #expect(bitcoin(1_234_567) == "$1,234,567")
    #expect(bitcoin(-1500) == "-$1,500")
    #expect(bitcoin(-0.2) == "$0")
    let cheap = MoneyFormat(prices: [2.5, 7.25])
    #expect(cheap(1234.5) == "$1,234.50")
    #expect(cheap(0.456) == "$0.46")
    #expect(bitcoin.distinguishing(step: 2.5)(7.5) == "$7.5")
}

@Test("money is written in the pair's quote currency: $ for XBTUSD, € for XBTEUR, the code after the amount otherwise")
func quoteCurrencies() {
    #expect(MoneyFormat(prices: [8_000], currency: QuoteCurrency(pair: "XBTEUR"))(8_123.4) == "€8,123")
    #expect(MoneyFormat(prices: [8_000], currency: QuoteCurrency(pair: "XBTEUR"))(-12) == "-€12")
    #expect(MoneyFormat(prices: [3_000], currency: QuoteCurrency(pair: "ETHUSDT"))(3_210) == "3,210 USDT")
    #expect(QuoteCurrency(pair: "XXBTZUSD").code == "USD")
    #expect(QuoteCurrency(pair: "XBTGBP").symbol == "£")
    #expect(QuoteCurrency(pair: "USD").code == "?", "a name that is only a currency quotes nothing")
    #expect(QuoteCurrency(pair: "FOO").code == "?")
}

@Test("price gridlines sit at round values that cover the data, never below zero for prices")
func roundTicks() {
    #expect(RoundTicks.covering(low: 65.2, high: 106_140) == [0, 20_000, 40_000, 60_000, 80_000, 100_000, 120_000])
    #expect(RoundTicks.covering(low: 91_000, high: 107_900) == [90_000, 95_000, 100_000, 105_000, 110_000])
    #expect(RoundTicks.covering(low: 5, high: 5) == [4, 4.5, 5, 5.5, 6])
    #expect(RoundTicks.covering(low: -30, high: 70) == [-40, -20, 0, 20, 40, 60, 80])
}

@Test("date labels fall on month or year boundaries, at most eight")
func dateTicks() {
    let day: Int64 = 86_400
    let january2024: Int64 = 1_704_067_200
    let quarter = DateTicks.between(january2024 + 200 * day, january2024 + 290 * day)
    #expect(quarter.map(\.label) == ["Aug 2024", "Sep 2024", "Oct 2024"])
    let all = DateTicks.between(1_381_017_600, january2024 + 366 * day)
    #expect(all.map(\.label) == ["2014", "2016", "2018", "2020", "2022", "2024"])
    let month = DateTicks.between(january2024 + 335 * day, january2024 + 365 * day)
    #expect(month.map(\.label) == ["Dec 1", "Dec 8", "Dec 15", "Dec 22"])
    #expect(DateTicks.between(january2024, january2024 + 365 * day).count == 6)
}
