/// The sum of the samples of `name` in a Prometheus text exposition whose labels include all of `labels`
/// (`service="monitor"`), or nil when there is none.
public func sample(_ exposition: String, _ name: String, labels: [String] = []) -> Double? {
    let values = exposition.split(separator: "\n")
        .filter { ($0.hasPrefix(name + "{") || $0.hasPrefix(name + " ")) && labels.allSatisfy($0.contains) }
        .compactMap { $0.split(separator: " ").last.flatMap { Double($0) } }
    return values.isEmpty ? nil : values.reduce(0, +)
}
