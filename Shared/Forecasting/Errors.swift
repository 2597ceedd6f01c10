/// Errors raised while configuring, training or using a forecasting model.
public enum ForecastingError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The model or training configuration cannot be used; the message says which field and why.
    case invalidConfiguration(String)
    /// Input values (closes, windows, ranges) are unusable; the message says which and why.
    case invalidInput(String)
    /// Fewer data points than the operation needs.
    case insufficientData(needed: Int, available: Int)
    /// A data file could not be read or parsed.
    case unreadableData(path: String, reason: String)
    /// Training stopped because the task was cancelled or the cancellation check returned true.
    case cancelled

    public var description: String {
        switch self {
        case .invalidConfiguration(let message): "invalid configuration: \(message)"
        case .invalidInput(let message): "invalid input: \(message)"
        case .insufficientData(let needed, let available):
            "insufficient data: needed \(needed) values, got \(available)"
        case .unreadableData(let path, let reason): "cannot read data file \(path): \(reason)"
        case .cancelled: "training was cancelled"
        }
    }
}

/// Errors raised while decoding a model file. Model files come from outside, so every defect is reported, never trapped.
public enum ModelFileError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The file is shorter than its own header says it must be.
    case truncated(expectedBytes: Int, actualBytes: Int)
    /// The file does not start with the Candlecast model magic.
    case badMagic
    /// The file was written in a format version this build cannot read.
    case unsupportedVersion(found: UInt32, supported: UInt32)
    /// The stored CRC-32 does not match the content: the file is corrupted.
    case checksumMismatch(stored: UInt32, computed: UInt32)
    /// The file is longer than its header says.
    case trailingBytes(count: Int)
    /// The JSON header is malformed or inconsistent with the weights.
    case invalidHeader(String)

    public var description: String {
        switch self {
        case .truncated(let expected, let actual):
            "model file is truncated: expected \(expected) bytes, got \(actual)"
        case .badMagic: "not a Candlecast model file (bad magic)"
        case .unsupportedVersion(let found, let supported):
            "unsupported model file version \(found) (this build reads version \(supported))"
        case .checksumMismatch(let stored, let computed):
            "model file checksum mismatch (stored \(hex(stored)), computed \(hex(computed))): the file is corrupted"
        case .trailingBytes(let count): "model file has \(count) unexpected trailing bytes"
        case .invalidHeader(let message): "invalid model file header: \(message)"
        }
    }
}

private func hex(_ value: UInt32) -> String {
    let digits = String(value, radix: 16)
    return "0x" + String(repeating: "0", count: max(0, 8 - digits.count)) + digits
}
