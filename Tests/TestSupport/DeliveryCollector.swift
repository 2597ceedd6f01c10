import Messaging
import Synchronization

/// A list that several tasks append to.
public final class SharedList<Element: Sendable>: Sendable {
    private let storage = Mutex<[Element]>([])
    public init() {}
    public func append(_ element: Element) { storage.withLock { $0.append(element) } }
    public var values: [Element] { storage.withLock { $0 } }
}

/// Reads a consumer's deliveries in the background, settles each as told and keeps them for assertions.
public final class DeliveryCollector: Sendable {
    public enum Settlement: Sendable { case ack, rejectWithoutRequeue, none }

    private let received = SharedList<Delivery>()
    private let task: Task<Void, Never>

    public init(_ consumer: Consumer, settle: Settlement = .ack) {
        let received = self.received
        task = Task {
            for await delivery in consumer.deliveries {
                received.append(delivery)
                switch settle {
                case .ack: delivery.ack()
                case .rejectWithoutRequeue: delivery.reject(requeue: false)
                case .none: break
                }
            }
        }
    }

    public var deliveries: [Delivery] { received.values }
    public var bodies: [String] { deliveries.map { String(decoding: $0.body, as: UTF8.self) } }

    /// Waits until at least `count` deliveries arrived.
    @discardableResult
    public func waitFor(_ count: Int, timeout: Duration = .seconds(10)) async throws -> [Delivery] {
        try await eventually(timeout: timeout, "\(count) deliveries (have \(deliveries.count))") { self.deliveries.count >= count }
        return deliveries
    }

    deinit { task.cancel() }
}
