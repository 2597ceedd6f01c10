/// A fixed-size heap buffer of Float for the training loop's hot paths: no copy-on-write, no bounds checks.
/// `@unchecked Sendable`: the training loop shares buffers with a pass's team members (`ComputeTeam`), which read
/// them or write disjoint parts between barriers; the loop touches them again after the pass.
final class FloatBuffer: @unchecked Sendable {
    let count: Int
    let pointer: UnsafeMutablePointer<Float>

    init(count: Int) {
        self.count = count
        pointer = .allocate(capacity: count)
        pointer.initialize(repeating: 0, count: count)
    }

    convenience init(_ values: [Float]) {
        self.init(count: values.count)
        values.withUnsafeBufferPointer { pointer.update(from: $0.baseAddress!, count: values.count) }
    }

    deinit { pointer.deallocate() }

    var array: [Float] { Array(UnsafeBufferPointer(start: pointer, count: count)) }

    func copy(from other: FloatBuffer) { pointer.update(from: other.pointer, count: count) }
}
