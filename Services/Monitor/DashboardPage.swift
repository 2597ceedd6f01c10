import Contracts
import Foundation
import ServiceKit

/// Renders the dashboard as one HTML page with inline SVG charts. Every value that came from outside
/// (query, registry, events) goes through `escape`.
struct DashboardPage {
    let data: DashboardData

    func render() -> String {
        """
        <!doctype html>
        <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
        <title>Candlecast: \(escape(data.query.pair)) \(escape(data.query.interval.name))</title>
        <style>\(Self.style)</style></head>
        <body>
        <header><h1>Candlecast</h1><span class="series">\(escape(data.query.pair)) · \(escape(data.query.interval.name))</span>\(rangeControls())</header>
        <section class="cards">\(championCard())\(latestForecastCard())\(accuracyCard())\(freshnessCard())</section>
        <section><h2>Price and forecasts</h2>\(priceChart())</section>
        <section><h2>Error of each forecast next to the naive forecast's</h2>\(errorChart())\(forecastTable())</section>
        <section class="columns"><div><h2>Champion and alias history</h2>\(aliasTable())</div><div><h2>Recent runs</h2>\(runTable())</div></section>
        <section><h2>Data freshness</h2>\(freshnessTable())</section>
        <footer>Rendered \(escape(Self.timestamp(data.now))) · metrics at <a href="/metrics">/metrics</a></footer>
        </body></html>
        """
    }

    // MARK: Controls and cards

    private func rangeControls() -> String {
        let base = "pair=\(escape(data.query.pair))&amp;interval=\(escape(data.query.interval.name))"
        let links = [(30, "30 days"), (90, "90 days"), (365, "1 year"), (0, "all")].map { days, label in
            let current = data.query.days == days && data.query.from == nil && data.query.to == nil
            return "<a class=\"range\(current ? " current" : "")\" href=\"/?\(base)&amp;days=\(days)\">\(label)</a>"
        }.joined()
        return """
            <nav>\(links)
            <form method="get" action="/"><input type="hidden" name="pair" value="\(escape(data.query.pair))"><input type="hidden" name="interval" value="\(escape(data.query.interval.name))">
            <label>from <input type="date" name="from" value="\(data.query.from.map(utcDay) ?? "")"></label>
            <label>to <input type="date" name="to" value="\(data.query.to.map(utcDay) ?? "")"></label><button type="submit">Show</button></form></nav>
            """
    }

    private func championCard() -> String {
        let value = data.champion.map { "v\($0)" } ?? "none yet"
        let detail = data.champion == nil ? "the gate has not promoted a model" : escape(data.modelName)
        return card(title: "Champion", value: "<span id=\"champion\">\(escape(value))</span>", detail: detail)
    }

    private func latestForecastCard() -> String {
        guard let latest = data.forecasts.last else { return card(title: "Latest forecast", value: "none", detail: "no forecast in this range") }
        let change = (latest.predictedClose - latest.lastClose) / latest.lastClose * 100
        return card(
            title: "Latest forecast", value: "<span id=\"latest-forecast\">\(Self.usd(latest.predictedClose))</span>",
            detail: "close of \(utcDay(latest.targetOpenTime)) · \(String(format: "%+.2f", change))% on \(Self.usd(latest.lastClose)) · v\(latest.modelVersion)\(latest.stale ? " · stale model" : "")")
    }

    private func accuracyCard() -> String {
        let scored = data.forecasts.compactMap { point in point.absoluteError.flatMap { model in point.naiveAbsoluteError.map { (model, $0) } } }
        guard !scored.isEmpty else { return card(title: "Accuracy in range", value: "–", detail: "no scored forecast yet") }
        let mae = scored.map(\.0).reduce(0, +) / Double(scored.count)
        let naive = scored.map(\.1).reduce(0, +) / Double(scored.count)
        let mase = naive > 0 ? String(format: "%.3f", mae / naive) : "–"
        return card(
            title: "Accuracy in range", value: "MASE <span id=\"mase\">\(mase)</span>",
            detail: "MAE \(Self.usd(mae)) vs naive \(Self.usd(naive)) over \(scored.count) scored forecasts\(mae < naive ? " · beats naive" : " · does not beat naive")")
    }

    private func freshnessCard() -> String {
        let key = Freshness.SeriesKey(pair: data.query.pair, interval: data.query.interval)
        let candleAge = data.candleCloseTimes[key].map { Self.age(seconds: data.now.timeIntervalSince1970 - Double($0)) } ?? "never"
        let forecastAge = data.forecastTimes[key].map { Self.age(seconds: data.now.timeIntervalSince(($0))) } ?? "never"
        let deadLetters = data.deadLetters.values.reduce(0, +)
        return card(
            title: "Freshness", value: "<span id=\"candle-age\">\(candleAge)</span>",
            detail: "since the last candle closed · last forecast \(forecastAge) ago · \(deadLetters) dead letters")
    }

    private func card(title: String, value: String, detail: String) -> String {
        "<div class=\"card\"><h3>\(title)</h3><div class=\"value\">\(value)</div><div class=\"detail\">\(detail)</div></div>"
    }

    // MARK: Charts

    private static let width = 960.0
    private static let height = 320.0
    private static let margin = (left: 70.0, right: 16.0, top: 12.0, bottom: 28.0)

    private func priceChart() -> String {
        let forecasts = data.forecasts
        guard !data.prices.isEmpty || !forecasts.isEmpty else { return "<p class=\"empty\">No candles in this range.</p>" }
        let times = data.prices.map(\.openTime) + forecasts.map(\.targetOpenTime)
        let values = data.prices.map(\.close) + forecasts.map(\.predictedClose)
        let scale = ChartScale(times: times, values: values, width: Self.width, height: Self.height, margin: Self.margin)
        let line = data.prices.map { "\(Self.number(scale.x($0.openTime))),\(Self.number(scale.y($0.close)))" }.joined(separator: " ")
        let points = forecasts.map { point in
            """
            <circle class="forecast-point\(point.stale ? " stale" : "")" cx="\(Self.number(scale.x(point.targetOpenTime)))" cy="\(Self.number(scale.y(point.predictedClose)))" r="3" data-target="\(utcDay(point.targetOpenTime))" data-predicted="\(Self.number(point.predictedClose))" data-version="\(point.modelVersion)"><title>\(utcDay(point.targetOpenTime)) v\(point.modelVersion): forecast \(Self.usd(point.predictedClose))\(point.actualClose.map { ", actual \(Self.usd($0))" } ?? "")</title></circle>
            """
        }.joined()
        return """
            <svg id="price-chart" viewBox="0 0 \(Int(Self.width)) \(Int(Self.height))" role="img" aria-label="Close price and forecasts">
            \(scale.axes())
            <polyline class="price-line" points="\(line)"/>
            \(points)
            </svg>
            <p class="legend"><span class="swatch price"></span>actual close (\(data.prices.count) candles) <span class="swatch forecast"></span>forecast (\(forecasts.count))</p>
            """
    }

    private func errorChart() -> String {
        let scored = data.forecasts.filter { $0.absoluteError != nil && $0.naiveAbsoluteError != nil }
        guard !scored.isEmpty else { return "<p class=\"empty\">No scored forecast in this range yet.</p>" }
        let height = 200.0
        let maxError = max(scored.map { max($0.absoluteError ?? 0, $0.naiveAbsoluteError ?? 0) }.max() ?? 1, 1)
        let plotWidth = Self.width - Self.margin.left - Self.margin.right
        let slot = plotWidth / Double(scored.count)
        let barWidth = max(slot / 2 - 0.5, 0.5)
        let bars = scored.enumerated().map { index, point in
            let x = Self.margin.left + Double(index) * slot
            let model = (point.absoluteError ?? 0) / maxError * (height - 30)
            let naive = (point.naiveAbsoluteError ?? 0) / maxError * (height - 30)
            return """
                <rect class="error-bar model" x="\(Self.number(x))" y="\(Self.number(height - 20 - model))" width="\(Self.number(barWidth))" height="\(Self.number(model))"><title>\(utcDay(point.targetOpenTime)) model error \(Self.usd(point.absoluteError ?? 0))</title></rect><rect class="error-bar naive" x="\(Self.number(x + barWidth))" y="\(Self.number(height - 20 - naive))" width="\(Self.number(barWidth))" height="\(Self.number(naive))"><title>\(utcDay(point.targetOpenTime)) naive error \(Self.usd(point.naiveAbsoluteError ?? 0))</title></rect>
                """
        }.joined()
        return """
            <svg id="error-chart" viewBox="0 0 \(Int(Self.width)) \(Int(height))" role="img" aria-label="Absolute error per forecast, model and naive">
            <text class="axis-label" x="4" y="14">\(Self.usd(maxError))</text><line class="axis" x1="\(Self.margin.left)" y1="\(height - 20)" x2="\(Self.width - Self.margin.right)" y2="\(height - 20)"/>
            \(bars)
            <text class="axis-label" x="\(Self.margin.left)" y="\(height - 4)">\(utcDay(scored.first?.targetOpenTime ?? 0))</text>
            <text class="axis-label" x="\(Self.width - Self.margin.right)" y="\(height - 4)" text-anchor="end">\(utcDay(scored.last?.targetOpenTime ?? 0))</text>
            </svg>
            <p class="legend"><span class="swatch model"></span>model absolute error <span class="swatch naive"></span>naive (tomorrow = today) absolute error</p>
            """
    }

    // MARK: Tables

    private func forecastTable() -> String {
        let recent = data.forecasts.suffix(30).reversed()
        guard !recent.isEmpty else { return "" }
        let rows = recent.map { point in
            let better = point.absoluteError.flatMap { model in point.naiveAbsoluteError.map { model < $0 } }
            return """
                <tr class="forecast-row"><td>\(utcDay(point.targetOpenTime))</td><td>v\(point.modelVersion)</td><td>\(Self.usd(point.predictedClose))</td><td>\(point.actualClose.map(Self.usd) ?? "pending")</td><td>\(point.absoluteError.map(Self.usd) ?? "–")</td><td>\(point.naiveAbsoluteError.map(Self.usd) ?? "–")</td><td>\(better.map { $0 ? "model" : "naive" } ?? "–")</td></tr>
                """
        }.joined()
        return "<table><thead><tr><th>target</th><th>model</th><th>forecast</th><th>actual</th><th>|error|</th><th>naive |error|</th><th>closer</th></tr></thead><tbody>\(rows)</tbody></table>"
    }

    private func aliasTable() -> String {
        if let note = data.registryNote { return "<p class=\"empty\">\(escape(note))</p>" }
        guard !data.aliasHistory.isEmpty else { return "<p class=\"empty\">No alias has moved yet: the gate has not promoted a model of \(escape(data.modelName)).</p>" }
        let rows = data.aliasHistory.prefix(20).map { move in
            "<tr class=\"alias-row\"><td>\(escape(String(move.movedAt.prefix(19))))</td><td>\(escape(move.alias))</td><td>\(move.fromVersion.map { "v\($0)" } ?? "–") → v\(move.toVersion)</td><td>\(escape(move.actor))</td><td>\(escape(move.reason))</td></tr>"
        }.joined()
        return "<table><thead><tr><th>when</th><th>alias</th><th>move</th><th>by</th><th>reason</th></tr></thead><tbody>\(rows)</tbody></table>"
    }

    private func runTable() -> String {
        if data.registryNote != nil { return "<p class=\"empty\">–</p>" }
        guard !data.runs.isEmpty else { return "<p class=\"empty\">No training run yet.</p>" }
        let rows = data.runs.map { run in
            "<tr class=\"run-row\"><td>\(run.id)</td><td>\(escape(run.status))</td><td>\(escape(run.parameters))</td><td>\(run.testRMSE.map(Self.usd) ?? "–")</td><td>\(run.naiveRMSE.map(Self.usd) ?? "–")</td><td>\(run.testMASE.map { String(format: "%.3f", $0) } ?? "–")</td><td>\(run.trainSeconds.map { String(format: "%.0f s", $0) } ?? "–")</td></tr>"
        }.joined()
        return "<table><thead><tr><th>run</th><th>status</th><th>parameters</th><th>test RMSE</th><th>naive RMSE</th><th>MASE</th><th>time</th></tr></thead><tbody>\(rows)</tbody></table>"
    }

    private func freshnessTable() -> String {
        let candles = data.candleCloseTimes.sorted { ($0.key.pair, $0.key.interval.minutes) < ($1.key.pair, $1.key.interval.minutes) }.map { key, closeTime in
            let forecast = data.forecastTimes[key].map { "\(Self.timestamp($0)) (\(Self.age(seconds: data.now.timeIntervalSince($0))) ago)" } ?? "never"
            return "<tr class=\"freshness-row\"><td>\(escape(key.pair)) \(escape(key.interval.name))</td><td>\(Self.timestamp(Date(timeIntervalSince1970: Double(closeTime)))) (\(Self.age(seconds: data.now.timeIntervalSince1970 - Double(closeTime))) ago)</td><td>\(forecast)</td></tr>"
        }.joined()
        let deadLetters = ServiceName.allCases.map { service in
            "<tr><td>\(service.rawValue)</td><td class=\"\((data.deadLetters[service] ?? 0) > 0 ? "warn" : "")\">\(data.deadLetters[service].map(String.init) ?? "?")</td></tr>"
        }.joined()
        return """
            <div class="columns"><table><thead><tr><th>series</th><th>newest candle closed</th><th>newest forecast</th></tr></thead><tbody>\(candles.isEmpty ? "<tr><td colspan=\"3\">no candle seen yet</td></tr>" : candles)</tbody></table>
            <table><thead><tr><th>service</th><th>dead letters waiting</th></tr></thead><tbody>\(deadLetters)</tbody></table></div>
            """
    }

    // MARK: Formatting

    static func timestamp(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withFullDate, .withTime, .withColonSeparatorInTime, .withDashSeparatorInDate, .withSpaceBetweenDateAndTime]
        return formatter.string(from: date) + " UTC"
    }

    /// Dollars with thousands separators: whole dollars from $1,000, cents below.
    static func usd(_ value: Double) -> String {
        guard value.isFinite else { return "–" }
        guard value.magnitude >= 1000, value.magnitude < 1e15 else { return (value < 0 ? "-$" : "$") + String(format: "%.2f", value.magnitude) }
        var digits = String(Int(value.magnitude.rounded()))
        var groups: [Substring] = []
        while digits.count > 3 {
            groups.insert(Substring(digits.suffix(3)), at: 0)
            digits.removeLast(3)
        }
        groups.insert(Substring(digits), at: 0)
        return (value < 0 ? "-$" : "$") + groups.joined(separator: ",")
    }

    static func age(seconds: Double) -> String {
        let seconds = max(0, seconds)
        switch seconds {
        case ..<120: return "\(Int(seconds)) s"
        case ..<7200: return "\(Int(seconds / 60)) min"
        case ..<172_800: return "\(Int(seconds / 3600)) h"
        default: return "\(Int(seconds / 86_400)) days"
        }
    }

    static func number(_ value: Double) -> String { String(format: "%.1f", value) }

    static let style = """
        body{font:14px/1.4 system-ui,sans-serif;margin:0 24px 24px;color:#1d2430;background:#f7f8fa}
        header{display:flex;flex-wrap:wrap;align-items:baseline;gap:16px;padding:12px 0;border-bottom:1px solid #d8dde5}
        h1{font-size:22px;margin:0}h2{font-size:16px;margin:20px 0 8px}h3{font-size:12px;margin:0;color:#5b6575;text-transform:uppercase}
        .series{font-weight:600}nav{display:flex;gap:8px;align-items:center;flex-wrap:wrap}nav form{display:inline-flex;gap:6px;margin-left:12px}
        a.range{padding:2px 8px;border:1px solid #c5ccd6;border-radius:4px;text-decoration:none;color:#1d2430}a.range.current{background:#1d2430;color:#fff}
        .cards{display:grid;grid-template-columns:repeat(4,1fr);gap:12px;margin-top:16px}.card{background:#fff;border:1px solid #d8dde5;border-radius:6px;padding:10px 12px}
        .value{font-size:22px;font-weight:600;margin:4px 0}.detail{color:#5b6575;font-size:12px}
        svg{width:100%;height:auto;background:#fff;border:1px solid #d8dde5;border-radius:6px}
        .price-line{fill:none;stroke:#2f6fdf;stroke-width:1.5}.forecast-point{fill:#e8772e;stroke:#fff;stroke-width:.5}.forecast-point.stale{fill:#a0a0a0}
        .error-bar.model{fill:#e8772e}.error-bar.naive{fill:#9aa5b5}.axis{stroke:#c5ccd6}.grid{stroke:#eef1f5}.axis-label{font-size:11px;fill:#5b6575}
        .legend{font-size:12px;color:#5b6575}.swatch{display:inline-block;width:10px;height:10px;margin:0 4px 0 12px}.swatch.price{background:#2f6fdf}
        .swatch.forecast,.swatch.model{background:#e8772e}.swatch.naive{background:#9aa5b5}
        table{border-collapse:collapse;background:#fff;width:100%;font-size:12px}th,td{border-bottom:1px solid #e3e7ee;padding:4px 8px;text-align:left}
        .columns{display:grid;grid-template-columns:1fr 1fr;gap:16px}.empty{color:#5b6575}.warn{color:#c0392b;font-weight:600}footer{margin-top:24px;color:#5b6575;font-size:12px}
        """
}

/// Maps open times and prices to SVG coordinates, with a few gridlines and labels.
struct ChartScale {
    let minTime: Int64, maxTime: Int64, minValue: Double, maxValue: Double
    let width: Double, height: Double
    let margin: (left: Double, right: Double, top: Double, bottom: Double)

    init(times: [Int64], values: [Double], width: Double, height: Double, margin: (left: Double, right: Double, top: Double, bottom: Double)) {
        minTime = times.min() ?? 0
        maxTime = max(times.max() ?? 1, minTime + 1)
        let low = values.min() ?? 0, high = values.max() ?? 1
        let pad = max((high - low) * 0.05, 1)
        minValue = low - pad
        maxValue = high + pad
        self.width = width
        self.height = height
        self.margin = margin
    }

    func x(_ time: Int64) -> Double {
        margin.left + Double(time - minTime) / Double(maxTime - minTime) * (width - margin.left - margin.right)
    }

    func y(_ value: Double) -> Double {
        margin.top + (1 - (value - minValue) / (maxValue - minValue)) * (height - margin.top - margin.bottom)
    }

    func axes() -> String {
        let gridlines = (0...4).map { step -> String in
            let value = minValue + (maxValue - minValue) * Double(step) / 4
            let y = DashboardPage.number(self.y(value))
            return "<line class=\"grid\" x1=\"\(margin.left)\" y1=\"\(y)\" x2=\"\(width - margin.right)\" y2=\"\(y)\"/><text class=\"axis-label\" x=\"4\" y=\"\(y)\">\(DashboardPage.usd(value))</text>"
        }.joined()
        return """
            \(gridlines)<text class="axis-label" x="\(margin.left)" y="\(height - 8)">\(utcDay(minTime))</text>\
            <text class="axis-label" x="\(width - margin.right)" y="\(height - 8)" text-anchor="end">\(utcDay(maxTime))</text>
            """
    }
}

/// HTML-escapes text for element content and double-quoted attributes.
func escape(_ text: String) -> String {
    var escaped = ""
    escaped.reserveCapacity(text.count)
    for character in text {
        switch character {
        case "&": escaped += "&amp;"
        case "<": escaped += "&lt;"
        case ">": escaped += "&gt;"
        case "\"": escaped += "&quot;"
        case "'": escaped += "&#39;"
        default: escaped.append(character)
        }
    }
    return escaped
}
