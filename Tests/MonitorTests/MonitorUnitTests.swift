import Foundation
@testable import Monitor
import ServiceKit
import TestSupport
import Testing

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
        let input = "# TYPE candlecast_outbox_backlog gauge\ncandlecast_outbox_backlog 3\n# HELP x given\n# TYPE x counter\nx 1\n# TYPE unknown_metric gauge\nunknown_metric 0\n"
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
                for name in names { #expect(MetricHelp.catalogue[name] != nil, "\(panel["title"] ?? "?"): \(name) is not a Candlecast metric") }
            }
        }
    }
}

@Test("dollar amounts are formatted for people")
func dollars() {
    #expect(DashboardPage.usd(233.911) == "$233.91")
    #expect(DashboardPage.usd(92_047.4) == "$92,047")
    #expect(DashboardPage.usd(1_234_567) == "$1,234,567")
    #expect(DashboardPage.usd(-1500) == "-$1,500")
}
