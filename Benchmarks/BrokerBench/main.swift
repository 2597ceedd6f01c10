// Broker benchmark, shaped like ../shared/anchors/pika_anchor.py so the two can be compared in one run:
// persistent publishes with publisher confirms (pipelined, and one at a time as pika does), and the
// publish -> consume round trip through a durable queue on a second connection.
// Usage: BrokerBench [messages] [roundtrips]   (reads the broker from .local/env variables, see scripts/bench-broker.sh)
import Foundation
import Logging
import Messaging
import Synchronization

let arguments = CommandLine.arguments.dropFirst().compactMap { Int($0) }
let pipelinedCount = arguments.first ?? 50_000
let roundTripCount = arguments.dropFirst().first ?? 2000
let sequentialCount = 2000

func environment(_ key: String) -> String? { ProcessInfo.processInfo.environment[key] }
let password =
    environment("CANDLECAST_AMQP_PASSWORD")
    ?? environment("CANDLECAST_AMQP_PASSWORD_FILE").flatMap { try? String(contentsOfFile: $0, encoding: .utf8) }?.trimmingCharacters(
        in: .whitespacesAndNewlines)
guard let url = environment("CANDLECAST_AMQP_URL") else {
    FileHandle.standardError.write(
        Data("BrokerBench: CANDLECAST_AMQP_URL is not set (source .local/env after scripts/servers.sh start)\n".utf8))
    exit(2)
}
let broker = try BrokerConfiguration(url: url, password: password)
var logger = Logger(label: "bench")
logger.logLevel = .warning

let queue = "bench.candlecast.q"
let topology = Topology(queues: [Topology.Queue(name: queue)])
let body = Array(#"{"pair": "XBTUSD", "window": [0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]}"#.utf8)
func message(headers: [String: HeaderValue] = [:]) -> OutgoingMessage {
    OutgoingMessage(
        exchange: "", routingKey: queue, body: body,
        properties: MessageProperties(
            contentType: "application/json", deliveryMode: MessageProperties.persistentDeliveryMode, headers: headers))
}

try await BrokerAdmin.declare(topology, configuration: broker)
try await BrokerAdmin.purge(queue: queue, configuration: broker)
let publisher = try Publisher(configuration: broker, options: Publisher.Options(topology: topology), logger: logger)
try await publisher.publish(message())  // connect and warm up

// 1. Pipelined: every message in flight at once (up to the publisher's window), all confirmed.
let clock = ContinuousClock()
let pipelined = try await clock.measure { try await publisher.publish(contentsOf: Array(repeating: message(), count: pipelinedCount)) }
// 2. One at a time, as pika's BlockingConnection does.
let sequential = try await clock.measure { for _ in 0..<sequentialCount { try await publisher.publish(message()) } }
try await BrokerAdmin.purge(queue: queue, configuration: broker)

// 3. Round trip: a consumer on its own connection timestamps arrivals against the publish time.
let consumer = try Consumer(
    configuration: broker, options: Consumer.Options(queue: queue, prefetch: 50, topology: topology), logger: logger)
while !consumer.isConnected { try await Task.sleep(for: .milliseconds(10)) }
let origin = ContinuousClock.now
func nanosecondsSinceOrigin() -> Int64 {
    let (seconds, attoseconds) = (ContinuousClock.now - origin).components
    return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
}
let latencies = Mutex<[Double]>([])
let receiving = Task {
    for await delivery in consumer.deliveries {
        if let sent = delivery.properties.headers["t"]?.intValue {
            let milliseconds = Double(nanosecondsSinceOrigin() - sent) / 1e6
            let count = latencies.withLock {
                $0.append(milliseconds)
                return $0.count
            }
            delivery.ack()
            if count >= roundTripCount { break }
        } else {
            delivery.ack()
        }
    }
}
for _ in 0..<roundTripCount {
    try await publisher.publish(message(headers: ["t": .int(nanosecondsSinceOrigin())]))
    try await Task.sleep(for: .milliseconds(2))
}
await receiving.value
let sorted = latencies.withLock { $0 }.sorted()
await consumer.stop()
await publisher.close()

func perSecond(_ count: Int, _ duration: Duration) -> Int {
    let (seconds, attoseconds) = duration.components
    return Int((Double(count) / (Double(seconds) + Double(attoseconds) * 1e-18)).rounded())
}
func rounded(_ value: Double) -> Double { (value * 1000).rounded() / 1000 }
let result: [String: Any] = [
    "confirmed_publish_per_s": perSecond(pipelinedCount, pipelined),
    "sequential_confirmed_publish_per_s": perSecond(sequentialCount, sequential),
    "roundtrip_ms_p50": rounded(sorted[sorted.count / 2]),
    "roundtrip_ms_p99": rounded(sorted[Int(Double(sorted.count) * 0.99)]),
    "messages": pipelinedCount, "roundtrips": sorted.count,
]
print(String(decoding: try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys]), as: UTF8.self))
