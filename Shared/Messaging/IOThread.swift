import CRabbitMQ
import Foundation

/// A pipe that lets Swift code wake an I/O thread blocked in `poll` on its AMQP socket, so commands
/// (publish, ack) are sent at once instead of after the poll's timeout.
final class WakeSignal: Sendable {
    private let readEnd: Int32
    private let writeEnd: Int32

    init() throws {
        var descriptors: [Int32] = [0, 0]
        guard pipe(&descriptors) == 0 else {
            throw BrokerError(.connectionFailed, "pipe() failed: \(String(cString: strerror(errno)))")
        }
        readEnd = descriptors[0]
        writeEnd = descriptors[1]
        for descriptor in descriptors {
            _ = fcntl(descriptor, F_SETFL, fcntl(descriptor, F_GETFL) | O_NONBLOCK)
        }
    }

    deinit {
        close(readEnd)
        close(writeEnd)
    }

    /// Never blocks: a full pipe already means "wake up".
    func signal() {
        var byte: UInt8 = 1
        _ = write(writeEnd, &byte, 1)
    }

    /// Waits until the socket is readable, the signal fired, or the timeout passed.
    /// Returns whether the signal fired (and drains it).
    @discardableResult
    func wait(socket: Int32?, timeout: Duration) -> Bool {
        var descriptors = [pollfd(fd: readEnd, events: Int16(POLLIN), revents: 0)]
        if let socket, socket >= 0 { descriptors.append(pollfd(fd: socket, events: Int16(POLLIN), revents: 0)) }
        let milliseconds = Int32(
            clamping: max(0, timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000))
        _ = poll(&descriptors, nfds_t(descriptors.count), milliseconds)
        guard descriptors[0].revents != 0 else { return false }
        var sink = [UInt8](repeating: 0, count: 64)
        while read(readEnd, &sink, sink.count) > 0 {}
        return true
    }
}

/// Starts a named OS thread for blocking C work, off Swift's cooperative pool.
func startIOThread(name: String, _ body: @escaping @Sendable () -> Void) {
    let thread = Thread(block: body)
    thread.name = name
    thread.start()
}

/// Exponential backoff between reconnection attempts.
struct Backoff {
    let range: ClosedRange<Duration>
    private(set) var next: Duration

    init(_ range: ClosedRange<Duration>) {
        self.range = range
        self.next = range.lowerBound
    }

    mutating func advance() -> Duration {
        let delay = next
        next = min(next * 2, range.upperBound)
        return delay
    }

    mutating func reset() { next = range.lowerBound }
}
