import Foundation

/// Runs CPU-bound or blocking work (training, scoring a model on a thousand windows, parsing a history file) on a
/// thread of its own, never on Swift's cooperative pool, and returns its result to the awaiting task.
public func onOwnThread<Value: Sendable>(_ name: String, _ work: @escaping @Sendable () throws -> Value) async throws -> Value {
    try await withCheckedThrowingContinuation { continuation in
        let thread = Thread { continuation.resume(with: Result { try work() }) }
        thread.name = name
        thread.stackSize = 8 << 20
        thread.start()
    }
}
