import Contracts
import Forecasting
import Foundation
import ServiceKit

/// Renders the dashboard as one HTML page with inline SVG charts. Every value that came from outside
/// (query, registry, events) goes through `escape`. Money has one format on the page, chosen from the prices
/// shown; accuracy comes from the shared metrics (Forecasting), never computed here.
struct DashboardPage {
    let data: DashboardData
    let money: MoneyFormat
    let accuracy: ForecastAccuracy?

    init(data: DashboardData) {
        self.data = data
        money = MoneyFormat(
            prices: data.prices.map(\.close) + data.forecasts.map(\.predictedClose), currency: QuoteCurrency(pair: data.query.pair))
        accuracy = data.accuracy
    }

    func render() -> String {
        """
        <!doctype html>
        <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
        <title>Candlecast: \(escape(data.query.pair)) \(escape(data.query.interval.name))</title>
        <style>\(Self.style)</style></head>
        <body>
        <header><h1>Candlecast</h1><span class="series">\(escape(data.query.pair)) · \(escape(data.query.interval.name))</span>\
        \(rangeControls())</header>
        <section class="cards">\(championCard())\(latestForecastCard())\(accuracyCard())\(coverageCard())\(freshnessCard())</section>
        <section><h2>Price and forecasts</h2>\(priceChart())</section>
        <section><h2>Error of each forecast next to the naive forecast's</h2>\(errorChart())\(forecastTable())</section>
        <section class="columns"><div><h2>Champion and alias history</h2>\(aliasTable())</div>\
        <div><h2>Recent runs</h2>\(runTable())</div></section>
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
            <form method="get" action="/"><input type="hidden" name="pair" value="\(escape(data.query.pair))">\
            <input type="hidden" name="interval" value="\(escape(data.query.interval.name))">
            <label>from <input type="date" name="from" value="\(data.query.from.map(utcDay) ?? "")"></label>
            <label>to <input type="date" name="to" value="\(data.query.to.map(utcDay) ?? "")"></label>\
            <button type="submit">Show</button></form></nav>
            """
    }

    private func championCard() -> String {
        let value = data.champion.map { "v\($0)" } ?? "none yet"
        let detail = data.champion == nil ? "the gate has not promoted a model" : escape(data.modelName)
        return card(title: "Champion", value: "<span id=\"champion\">\(escape(value))</span>", detail: detail)
    }

    private func latestForecastCard() -> String {
        guard let latest = data.forecasts.last else {
            return card(title: "Latest forecast", value: "none", detail: "no forecast in this range")
        }
        let change = (latest.predictedClose - latest.lastClose) / latest.lastClose * 100
        return card(
            title: "Latest forecast", value: "<span id=\"latest-forecast\">\(money(latest.predictedClose))</span>",
            detail:
                "close of \(utcDay(latest.targetOpenTime)) · \(String(format: "%+.2f", change))% on \(money(latest.lastClose)) · "
                + "v\(latest.modelVersion)\(latest.stale ? " · stale model" : "")"
        )
    }

    /// The figures also go into the page as JSON (`#accuracy`), for scripts/run.sh's end-of-replay summary.
    private func accuracyCard() -> String {
        let json = "<script type=\"application/json\" id=\"accuracy\">\(DashboardData.embeddableJSON(accuracy))</script>"
        guard let accuracy else { return json + card(title: "Accuracy in range", value: "–", detail: "no scored forecast yet") }
        let mase = accuracy.mase.map { String(format: "%.3f", $0) } ?? "–"
        let verdict = accuracy.beatsNaive ? "beats naive" : "does not beat naive"
        return json
            + card(
                title: "Accuracy in range", value: "MASE <span id=\"mase\">\(mase)</span>",
                detail:
                    "MAE \(money(accuracy.mae)) vs naive \(money(accuracy.naiveMAE)) over \(accuracy.count) scored forecasts · \(verdict)")
    }

    /// The rolling interval figures beside the naive baseline's (`/metrics` exports the same), also as JSON
    /// (`#interval-scores`).
    private func coverageCard() -> String {
        let scores = data.intervalScores
        let json = "<script type=\"application/json\" id=\"interval-scores\">\(DashboardData.embeddableJSON(value: scores))</script>"
        guard let scores else {
            return json + card(title: "Interval coverage", value: "–", detail: "no scored forecast with intervals yet")
        }
        let levels = IntervalLevels.all
        let percent = { (value: Double?) in value.map { String(format: "%.1f%%", $0 * 100) } ?? "–" }
        let coverage = levels.map { level in
            "<span id=\"coverage-\(Self.levelName(level))\">\(percent(scores.scores.model(level)?.coverage))</span>"
        }
        let naiveCoverage = levels.map { percent(scores.scores.naive($0)?.coverage) }
        let winkler = levels.map { level in
            "<span id=\"winkler-\(Self.levelName(level))\">\(scores.scores.model(level).map { money($0.winkler) } ?? "–")</span>"
        }
        let naiveWinkler = levels.map { level in scores.scores.naive(level).map { money($0.winkler) } ?? "–" }
        let brier = { (value: Double?) in value.map { String(format: "%.3f", $0) } ?? "–" }
        let names = levels.map { "\(Self.levelName($0))%" }.joined(separator: " / ")
        return json
            + card(
                title: "Interval coverage, \(names)", value: coverage.joined(separator: " / "),
                detail: "last \(scores.scores.count) scored forecasts of v\(scores.modelVersion) · "
                    + "naive \(naiveCoverage.joined(separator: " / ")) · "
                    + "Winkler \(winkler.joined(separator: " / ")) vs naive \(naiveWinkler.joined(separator: " / ")) · "
                    + "Brier <span id=\"brier\">\(brier(scores.scores.brier))</span> vs naive \(brier(scores.scores.naiveBrier))")
    }

    /// A level as the page names it: 0.8 is "80".
    static func levelName(_ level: Double) -> String { String(Int((level * 100).rounded())) }

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
        let bounds = forecasts.flatMap { $0.intervals.flatMap { [$0.lower, $0.upper] } }
        let values = data.prices.map(\.close) + forecasts.map(\.predictedClose) + bounds
        let scale = ChartScale(times: times, values: values, width: Self.width, height: Self.height, margin: Self.margin)
        let line = data.prices.map { "\(Self.number(scale.x($0.openTime))),\(Self.number(scale.y($0.close)))" }.joined(separator: " ")
        let points = forecasts.map { point in
            """
            <circle class="forecast-point\(point.stale ? " stale" : "")" \
            cx="\(Self.number(scale.x(point.targetOpenTime)))" cy="\(Self.number(scale.y(point.predictedClose)))" r="3" \
            data-target="\(utcDay(point.targetOpenTime))" data-predicted="\(Self.number(point.predictedClose))" \
            data-version="\(point.modelVersion)"><title>\(utcDay(point.targetOpenTime)) v\(point.modelVersion): \
            forecast \(money(point.predictedClose))\(point.actualClose.map { ", actual \(money($0))" } ?? "")</title></circle>
            """
        }.joined()
        return """
            <svg id="price-chart" viewBox="0 0 \(Int(Self.width)) \(Int(Self.height))" role="img" aria-label="Close price and forecasts">
            \(scale.axes(money: money))
            \(intervalBands(scale))
            <polyline class="price-line" points="\(line)"/>
            \(points)
            </svg>
            <p class="legend"><span class="swatch price"></span>actual close (\(data.prices.count) candles) \
            <span class="swatch forecast"></span>forecast (\(forecasts.count))\
            \(bounds.isEmpty ? "" : IntervalLevels.all.map { level in
                " <span class=\"swatch band-\(Self.levelName(level))\"></span>\(Self.levelName(level))% interval"
            }.joined())</p>
            """
    }

    /// One shaded band per level and model version around its forecasts: the upper bounds left to right, then the lower
    /// bounds back, one polygon per run of consecutive forecasts that have an interval at that level. The wider level is
    /// drawn first, so the narrower one shows on top of it.
    private func intervalBands(_ scale: ChartScale) -> String {
        let versions = Dictionary(grouping: data.forecasts, by: \.modelVersion).sorted { $0.key < $1.key }
        return IntervalLevels.all.sorted(by: >).flatMap { level in
            versions.flatMap { version, points in
                points.split { $0.interval(level) == nil }.map { run in
                    let ranges = run.compactMap { point in point.interval(level).map { (x: scale.x(point.targetOpenTime), interval: $0) } }
                    // A lone forecast gets a band a few pixels wide, so that it shows.
                    let corners =
                        ranges.count == 1 ? [(ranges[0].x - 3, ranges[0].interval), (ranges[0].x + 3, ranges[0].interval)] : ranges
                    let upper = corners.map { "\(Self.number($0.x)),\(Self.number(scale.y($0.interval.upper)))" }
                    let lower = corners.reversed().map { "\(Self.number($0.x)),\(Self.number(scale.y($0.interval.lower)))" }
                    let name = Self.levelName(level)
                    return """
                        <polygon class="interval-band band-\(name)" data-level="\(level)" data-version="\(version)" \
                        data-forecasts="\(ranges.count)" points="\((upper + lower).joined(separator: " "))">\
                        <title>v\(version) \(name)% interval, \(ranges.count) forecasts</title></polygon>
                        """
                }
            }
        }.joined()
    }

    /// Bars on the price chart's time axis, so that a day's error sits under its forecast.
    private func errorChart() -> String {
        let scored = data.forecasts.filter { $0.absoluteError != nil && $0.naiveAbsoluteError != nil }
        guard !scored.isEmpty else { return "<p class=\"empty\">No scored forecast in this range yet.</p>" }
        let height = 200.0
        let times = data.prices.map(\.openTime) + data.forecasts.map(\.targetOpenTime)
        let errors: [Double] = scored.flatMap { point -> [Double] in [point.absoluteError ?? 0, point.naiveAbsoluteError ?? 0] }
        let scale = ChartScale(times: times, values: [0] + errors, width: Self.width, height: height, margin: Self.margin)
        let plotWidth = Self.width - Self.margin.left - Self.margin.right
        let days = max(Double(scale.maxTime - scale.minTime) / 86_400, 1)
        let barWidth = max(plotWidth / days / 2 - 0.25, 0.5)
        let bars = scored.map { point in
            let x = scale.x(point.targetOpenTime) - barWidth
            let model = scale.y(0) - scale.y(point.absoluteError ?? 0)
            let naive = scale.y(0) - scale.y(point.naiveAbsoluteError ?? 0)
            return """
                <rect class="error-bar model" x="\(Self.number(x))" y="\(Self.number(scale.y(0) - model))" \
                width="\(Self.number(barWidth))" height="\(Self.number(model))"><title>\(utcDay(point.targetOpenTime)) model error \
                \(money(point.absoluteError ?? 0))</title></rect>\
                <rect class="error-bar naive" x="\(Self.number(x + barWidth))" y="\(Self.number(scale.y(0) - naive))" \
                width="\(Self.number(barWidth))" height="\(Self.number(naive))"><title>\(utcDay(point.targetOpenTime)) naive error \
                \(money(point.naiveAbsoluteError ?? 0))</title></rect>
                """
        }.joined()
        return """
            <svg id="error-chart" viewBox="0 0 \(Int(Self.width)) \(Int(height))" role="img" \
            aria-label="Absolute error per forecast, model and naive">
            \(scale.axes(money: money))
            \(bars)
            </svg>
            <p class="legend"><span class="swatch model"></span>model absolute error \
            <span class="swatch naive"></span>naive (tomorrow = today) absolute error</p>
            """
    }

    // MARK: Tables

    private func forecastTable() -> String {
        let recent = data.forecasts.suffix(30).reversed()
        guard !recent.isEmpty else { return "" }
        let rows = recent.map { point in
            let better = point.absoluteError.flatMap { model in point.naiveAbsoluteError.map { model < $0 } }
            return """
                <tr class="forecast-row"><td>\(utcDay(point.targetOpenTime))</td><td>v\(point.modelVersion)</td>\
                <td>\(money(point.predictedClose))</td>\
                <td>\(point.interval(IntervalLevels.gated).map { "\(money($0.lower))–\(money($0.upper))" } ?? "–")</td>\
                <td>\(point.actualClose.map(money.callAsFunction) ?? "pending")</td>\
                <td>\(point.absoluteError.map(money.callAsFunction) ?? "–")</td>\
                <td>\(point.naiveAbsoluteError.map(money.callAsFunction) ?? "–")</td>\
                <td>\(better.map { $0 ? "model" : "naive" } ?? "–")</td></tr>
                """
        }.joined()
        return """
            <table><thead><tr><th>target</th><th>model</th><th>forecast</th>\
            <th>\(Self.levelName(IntervalLevels.gated))% interval</th><th>actual</th><th>|error|</th><th>naive |error|</th>\
            <th>closer</th></tr></thead><tbody>\(rows)</tbody></table>
            """
    }

    private func aliasTable() -> String {
        if let note = data.registryNote { return "<p class=\"empty\">\(escape(note))</p>" }
        guard !data.aliasHistory.isEmpty else {
            return "<p class=\"empty\">No alias has moved yet: the gate has not promoted a model of \(escape(data.modelName)).</p>"
        }
        let rows = data.aliasHistory.prefix(20).map { move in
            """
            <tr class="alias-row"><td>\(escape(String(move.movedAt.prefix(19))))</td><td>\(escape(move.alias))</td>\
            <td>\(move.fromVersion.map { "v\($0)" } ?? "–") → v\(move.toVersion)</td><td>\(escape(move.actor))</td>\
            <td>\(escape(move.reason))</td></tr>
            """
        }.joined()
        return """
            <table><thead><tr><th>when</th><th>alias</th><th>move</th><th>by</th><th>reason</th></tr></thead>\
            <tbody>\(rows)</tbody></table>
            """
    }

    private func runTable() -> String {
        if data.registryNote != nil { return "<p class=\"empty\">–</p>" }
        guard !data.runs.isEmpty else { return "<p class=\"empty\">No training run yet.</p>" }
        let rows = data.runs.map { run in
            """
            <tr class="run-row"><td>\(run.id)</td><td>\(escape(run.status))</td><td>\(escape(run.parameters))</td>\
            <td>\(run.testRMSE.map(money.callAsFunction) ?? "–")</td><td>\(run.naiveRMSE.map(money.callAsFunction) ?? "–")</td>\
            <td>\(run.testMASE.map { String(format: "%.3f", $0) } ?? "–")</td>\
            <td>\(run.trainSeconds.map { String(format: "%.0f s", $0) } ?? "–")</td></tr>
            """
        }.joined()
        return """
            <table><thead><tr><th>run</th><th>status</th><th>parameters</th><th>test RMSE</th><th>naive RMSE</th><th>MASE</th>\
            <th>time</th></tr></thead><tbody>\(rows)</tbody></table>
            """
    }

    private func freshnessTable() -> String {
        let candles = data.candleCloseTimes.sorted { ($0.key.pair, $0.key.interval.minutes) < ($1.key.pair, $1.key.interval.minutes) }.map {
            key, closeTime in
            let forecast =
                data.forecastTimes[key].map { "\(Self.timestamp($0)) (\(Self.age(seconds: data.now.timeIntervalSince($0))) ago)" }
                ?? "never"
            return """
                <tr class="freshness-row"><td>\(escape(key.pair)) \(escape(key.interval.name))</td>\
                <td>\(Self.timestamp(Date(timeIntervalSince1970: Double(closeTime)))) \
                (\(Self.age(seconds: data.now.timeIntervalSince1970 - Double(closeTime))) ago)</td><td>\(forecast)</td></tr>
                """
        }.joined()
        let deadLetters = ServiceName.allCases.map { service in
            """
            <tr><td>\(service.rawValue)</td><td class="\((data.deadLetters[service] ?? 0) > 0 ? "warn" : "")">\
            \(data.deadLetters[service].map(String.init) ?? "?")</td></tr>
            """
        }.joined()
        return """
            <div class="columns"><table><thead><tr><th>series</th><th>newest candle closed</th><th>newest forecast</th></tr></thead>\
            <tbody>\(candles.isEmpty ? "<tr><td colspan=\"3\">no candle seen yet</td></tr>" : candles)</tbody></table>
            <table><thead><tr><th>service</th><th>dead letters waiting</th></tr></thead><tbody>\(deadLetters)</tbody></table></div>
            """
    }

    // MARK: Formatting

    static func timestamp(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [
            .withFullDate, .withTime, .withColonSeparatorInTime, .withDashSeparatorInDate, .withSpaceBetweenDateAndTime,
        ]
        return formatter.string(from: date) + " UTC"
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
        .series{font-weight:600}nav{display:flex;gap:8px;align-items:center;flex-wrap:wrap}\
        nav form{display:inline-flex;gap:6px;margin-left:12px}
        a.range{padding:2px 8px;border:1px solid #c5ccd6;border-radius:4px;text-decoration:none;color:#1d2430}\
        a.range.current{background:#1d2430;color:#fff}
        .cards{display:grid;grid-template-columns:repeat(5,1fr);gap:12px;margin-top:16px}\
        .card{background:#fff;border:1px solid #d8dde5;border-radius:6px;padding:10px 12px}
        .value{font-size:22px;font-weight:600;margin:4px 0}.detail{color:#5b6575;font-size:12px}
        svg{width:100%;height:auto;background:#fff;border:1px solid #d8dde5;border-radius:6px}
        .price-line{fill:none;stroke:#2f6fdf;stroke-width:1.5}.forecast-point{fill:#e8772e;stroke:#fff;stroke-width:.5}\
        .forecast-point.stale{fill:#a0a0a0}.interval-band{fill:#e8772e;stroke:none}.band-95{fill-opacity:.13}.band-80{fill-opacity:.22}
        .swatch.band-95{background:rgba(232,119,46,.13)}.swatch.band-80{background:rgba(232,119,46,.35)}
        .error-bar.model{fill:#e8772e}.error-bar.naive{fill:#9aa5b5}.axis{stroke:#c5ccd6}.grid{stroke:#eef1f5}\
        .axis-label{font-size:11px;fill:#5b6575}
        .legend{font-size:12px;color:#5b6575}.swatch{display:inline-block;width:10px;height:10px;margin:0 4px 0 12px}\
        .swatch.price{background:#2f6fdf}
        .swatch.forecast,.swatch.model{background:#e8772e}.swatch.naive{background:#9aa5b5}
        table{border-collapse:collapse;background:#fff;width:100%;font-size:12px}\
        th,td{border-bottom:1px solid #e3e7ee;padding:4px 8px;text-align:left}
        .columns{display:grid;grid-template-columns:1fr 1fr;gap:16px}.empty{color:#5b6575}.warn{color:#c0392b;font-weight:600}\
        footer{margin-top:24px;color:#5b6575;font-size:12px}
        """
}

/// Maps open times and values to SVG coordinates, with gridlines at round values (`RoundTicks`) and date
/// labels at calendar boundaries (`DateTicks`).
struct ChartScale {
    let minTime: Int64, maxTime: Int64
    let ticks: [Double]
    let width: Double, height: Double
    let margin: (left: Double, right: Double, top: Double, bottom: Double)
    var minValue: Double { ticks.first ?? 0 }
    var maxValue: Double { ticks.last ?? 1 }

    init(
        times: [Int64], values: [Double], width: Double, height: Double, margin: (left: Double, right: Double, top: Double, bottom: Double)
    ) {
        minTime = times.min() ?? 0
        maxTime = max(times.max() ?? 1, minTime + 1)
        let finite = values.filter(\.isFinite)
        ticks = RoundTicks.covering(low: finite.min() ?? 0, high: finite.max() ?? 1)
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

    func axes(money: MoneyFormat) -> String {
        let labels = money.distinguishing(step: ticks.count > 1 ? ticks[1] - ticks[0] : 1)
        let bottom = height - margin.bottom
        let values = ticks.map { value -> String in
            let y = DashboardPage.number(self.y(value))
            return "<line class=\"grid\" x1=\"\(margin.left)\" y1=\"\(y)\" x2=\"\(width - margin.right)\" y2=\"\(y)\"/>"
                + "<text class=\"axis-label value-tick\" x=\"\(margin.left - 6)\" y=\"\(y)\" dy=\"4\" text-anchor=\"end\" "
                + "data-value=\"\(value)\">\(labels(value))</text>"
        }.joined()
        let dates = DateTicks.between(minTime, maxTime).map { tick -> String in
            let x = DashboardPage.number(self.x(tick.time))
            return "<line class=\"grid\" x1=\"\(x)\" y1=\"\(margin.top)\" x2=\"\(x)\" y2=\"\(bottom)\"/>"
                + "<text class=\"axis-label date-tick\" x=\"\(x)\" y=\"\(height - 8)\" text-anchor=\"middle\" "
                + "data-date=\"\(utcDay(tick.time))\">\(tick.label)</text>"
        }.joined()
        let axis = "<line class=\"axis\" x1=\"\(margin.left)\" y1=\"\(bottom)\" x2=\"\(width - margin.right)\" y2=\"\(bottom)\"/>"
        return values + axis + dates
    }
}

/// Gridline values at a round step (1, 2, 2.5 or 5 times a power of ten), the densest that needs at most
/// seven lines to cover the data; never below zero when the data is not.
enum RoundTicks {
    static let maximumCount = 7

    static func covering(low: Double, high: Double) -> [Double] {
        let nonNegative = low >= 0
        var low = low
        var high = high
        if !(high > low) {
            let pad = max(low.magnitude * 0.01, 1)
            low -= pad
            high += pad
        }
        if nonNegative { low = max(low, 0) }
        let magnitude = pow(10, log10((high - low) / Double(maximumCount)).rounded(.down))
        for factor in [1, 2, 2.5, 5, 10, 20, 25, 50, 100] {
            let step = factor * magnitude
            let first = (low / step).rounded(.down)
            let last = (high / step).rounded(.up)
            if last - first + 1 <= Double(maximumCount) { return stride(from: first, through: last, by: 1).map { $0 * step } }
        }
        return [low, high]
    }
}

/// Date labels at calendar boundaries, the finest kind that needs at most eight: every day, the 1st, 8th,
/// 15th and 22nd of each month, month starts every 1, 2, 3 or 6 months, then January firsts every 1, 2, 5 or 10 years.
enum DateTicks {
    struct Tick: Equatable {
        let time: Int64
        let label: String
    }

    static let maximumCount = 8
    private static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    static func between(_ start: Int64, _ end: Int64) -> [Tick] {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let first = calendar.dateComponents([.year, .month], from: Date(timeIntervalSince1970: Double(start)))
        // Month starts from the one containing `start` to the one after `end`: (year, month, time).
        var monthStarts: [(year: Int, month: Int, time: Int64)] = []
        var year = first.year ?? 1970
        var month = first.month ?? 1
        while true {
            guard let date = calendar.date(from: DateComponents(year: year, month: month, day: 1)) else { break }
            let time = Int64(date.timeIntervalSince1970)
            if time > end { break }
            monthStarts.append((year, month, time))
            (year, month) = month == 12 ? (year + 1, 1) : (year, month + 1)
        }
        let inRange = { (tick: Tick) in tick.time >= start && tick.time <= end }
        var candidates: [() -> [Tick]] = []
        if end - start <= Int64(maximumCount) * 86_400 {
            candidates.append {
                stride(from: (start + 86_399) / 86_400 * 86_400, through: end, by: 86_400).map { time in
                    let parts = calendar.dateComponents([.month, .day], from: Date(timeIntervalSince1970: Double(time)))
                    return Tick(time: time, label: "\(months[(parts.month ?? 1) - 1]) \(parts.day ?? 1)")
                }
            }
        }
        candidates.append {
            monthStarts.flatMap { monthStart in
                [1, 8, 15, 22].map { day in
                    Tick(time: monthStart.time + Int64(day - 1) * 86_400, label: "\(months[monthStart.month - 1]) \(day)")
                }
            }.filter(inRange)
        }
        for step in [1, 2, 3, 6] {
            candidates.append {
                monthStarts.filter { ($0.month - 1) % step == 0 }
                    .map { Tick(time: $0.time, label: "\(months[$0.month - 1]) \($0.year)") }.filter(inRange)
            }
        }
        for step in [1, 2, 5, 10, 20, 50] {
            candidates.append {
                monthStarts.filter { $0.month == 1 && $0.year % step == 0 }.map { Tick(time: $0.time, label: "\($0.year)") }.filter(inRange)
            }
        }
        for candidate in candidates {
            let ticks = candidate()
            if ticks.count <= maximumCount { return ticks }
        }
        return []
    }
}

/// Money on the dashboard, one format for the page: thousands separators, whole dollars once the prices shown
/// reach $100 (Bitcoin), cents below that, four decimals below $1.
struct MoneyFormat: Sendable {
    let decimals: Int
    /// The pair's quote currency: `$1,234` for XBTUSD, `€1,234` for XBTEUR, `1,234 USDT` for ETHUSDT.
    let currency: QuoteCurrency

    init(decimals: Int, currency: QuoteCurrency = QuoteCurrency(pair: "XBTUSD")) {
        self.decimals = decimals
        self.currency = currency
    }

    init(prices: [Double], currency: QuoteCurrency = QuoteCurrency(pair: "XBTUSD")) {
        let top = prices.filter(\.isFinite).map(\.magnitude).max() ?? 0
        decimals = top >= 100 ? 0 : top >= 1 ? 2 : 4
        self.currency = currency
    }

    /// This format, with more decimals if ticks `step` apart would otherwise print alike.
    func distinguishing(step: Double) -> MoneyFormat {
        guard step > 0, step.isFinite else { return self }
        let needed =
            (0...8).first { digits in
                let scaled = step * pow(10, Double(digits))
                return (scaled - scaled.rounded()).magnitude < 1e-6 * scaled
            } ?? 8
        return MoneyFormat(decimals: max(decimals, needed), currency: currency)
    }

    func callAsFunction(_ value: Double) -> String {
        guard value.isFinite, value.magnitude < 1e15 else { return "–" }
        let text = String(format: "%.\(decimals)f", value.magnitude)
        let parts = text.split(separator: ".", maxSplits: 1)
        var digits = String(parts[0])
        var groups: [Substring] = []
        while digits.count > 3 {
            groups.insert(Substring(digits.suffix(3)), at: 0)
            digits.removeLast(3)
        }
        groups.insert(Substring(digits), at: 0)
        let negative = value < 0 && (Double(text) ?? 0) != 0
        let amount = groups.joined(separator: ",") + (parts.count > 1 ? "." + parts[1] : "")
        guard let symbol = currency.symbol else { return (negative ? "-" : "") + amount + " " + currency.code }
        return (negative ? "-" : "") + symbol + amount
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
