// Window-to-forecast latency: publishes `features.window` events (one every 10 ms, targets far in the future so
// they never collide with real ones) and times each until its `forecast.created` is delivered to a queue of its
// own, through a running predictor. Usage: ForecastLatencyBench [windows]   (broker from .local/env variables)
import Contracts
import Foundation
import Logging
import Messaging
import Synchronization

let count = CommandLine.arguments.dropFirst().first.flatMap(Int.init) ?? 500
func environment(_ key: String) -> String? { ProcessInfo.processInfo.environment[key] }
let password = environment("CANDLECAST_AMQP_PASSWORD_FILE").flatMap { try? String(contentsOfFile: $0, encoding: .utf8) }?
    .trimmingCharacters(in: .whitespacesAndNewlines)
let broker = try BrokerConfiguration(url: environment("CANDLECAST_AMQP_URL") ?? "amqp://candlecast@127.0.0.1:5672/", password: password)
var logger = Logger(label: "bench")
logger.logLevel = .warning

let queue = "bench.forecast-latency.\(UUID().uuidString.prefix(8).lowercased())"
let topology = ServiceName.predictor.topology.merged(
    with: Topology(
        queues: [Topology.Queue(name: queue)],
        bindings: [Topology.Binding(queue: queue, exchange: Exchange.events, routingKey: "forecast.created.xbtusd.1d")]))
let publisher = try Publisher(configuration: broker, options: Publisher.Options(topology: topology), logger: logger)
let consumer = try Consumer(
    configuration: broker, options: Consumer.Options(queue: queue, prefetch: 100, topology: topology), logger: logger)
while !consumer.isConnected { try await Task.sleep(for: .milliseconds(10)) }

let closes = [93429.2, 94000.1, 94500.3, 95000.0, 94200.7, 93800.4, 94100.9, 94900.2, 95500.5, 96000.0, 95400.1, 94800.8, 94300.6, 93900.3]
let base: Int64 = 4_102_444_800  // 2100-01-01: no real candle will ever have these targets
let sentAt = Mutex<[Int64: ContinuousClock.Instant]>([:])
let latencies = Mutex<[Double]>([])
let receiving = Task {
    for await delivery in consumer.deliveries {
        delivery.ack()
        guard let forecast = try? EnvelopeCodec.decode(ForecastCreated.self, from: delivery).payload,
            let sent = sentAt.withLock({ $0[forecast.targetOpenTime] })
        else { continue }
        let elapsed = ContinuousClock.now - sent
        let done = latencies.withLock { values in
            values.append(Double(elapsed.components.attoseconds) / 1e15 + Double(elapsed.components.seconds) * 1000)
            return values.count >= count
        }
        if done { break }
    }
}
let runID = Int64(Date().timeIntervalSince1970) % 10_000 * 1_000_000
for index in 0..<count {
    let end = base + (runID + Int64(index)) * 86_400
    let window = FeatureWindow(
        pair: "XBTUSD", interval: .oneDay, windowEndOpenTime: end, targetOpenTime: end + 86_400, datasetVersion: 1, closes: closes,
        scaledCloses: closes.map { $0 / 100_000 }, scaler: ScalerBounds(minimum: 0, maximum: 100_000), gapIntervals: 0, revision: 0)
    let message = try EnvelopeCodec.encode(Envelope(payload: window), exchange: Exchange.events, routingKey: window.routingKey)
    sentAt.withLock { $0[window.targetOpenTime] = .now }
    try await publisher.publish(message)
    try await Task.sleep(for: .milliseconds(10))
}
let waited = Task {
    try await Task.sleep(for: .seconds(30))
    receiving.cancel()
}
await receiving.value
waited.cancel()
let sorted = latencies.withLock { $0 }.sorted()
await consumer.stop()
await publisher.close()
try? await BrokerAdmin.delete(queue: queue, configuration: broker)
guard !sorted.isEmpty else {
    print(#"{"error":"no forecast arrived: is the predictor running with a champion?"}"#)
    exit(1)
}
func percentile(_ p: Double) -> Double { (sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))] * 1000).rounded() / 1000 }
print(
    #"{"windows":\#(count),"forecasts":\#(sorted.count),"#
        + #""latency_ms_p50":\#(percentile(0.5)),"latency_ms_p99":\#(percentile(0.99)),"latency_ms_max":\#(percentile(1))}"#
)
