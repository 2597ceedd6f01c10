import Synchronization

/// Named readiness checks that `/readyz` evaluates. A service is ready when every check passes.
public final class Readiness: Sendable {
    public typealias Check = @Sendable () async -> Bool
    private let checks = Mutex<[(name: String, check: Check)]>([])

    public init() {}

    public func add(_ name: String, _ check: @escaping Check) {
        checks.withLock { $0.append((name, check)) }
    }

    /// Every check's result, by name.
    public func evaluate() async -> [String: Bool] {
        var results: [String: Bool] = [:]
        for (name, check) in checks.withLock({ $0 }) { results[name] = await check() }
        return results
    }
}
