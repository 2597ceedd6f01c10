/// Errors raised while configuring, training or using a forecasting model: `code` for programs, `message`
/// for people, `needed`/`available` for `insufficientData`.
public struct ForecastingError: Error, Equatable, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        let name: String
        public var description: String { name }

        /// The model or training configuration cannot be used; the message says which field and why.
        public static let invalidConfiguration = Code(name: "invalidConfiguration")
        /// Input values (closes, windows, ranges) are unusable; the message says which and why.
        public static let invalidInput = Code(name: "invalidInput")
        /// Fewer data points than the operation needs.
        public static let insufficientData = Code(name: "insufficientData")
        /// A data file could not be read or parsed.
        public static let unreadableData = Code(name: "unreadableData")
        /// Training stopped because the task was cancelled or the cancellation check returned true.
        public static let cancelled = Code(name: "cancelled")
    }

    public let code: Code
    public let message: String
    public let needed: Int?
    public let available: Int?
    public let path: String?

    public init(_ code: Code, _ message: String, needed: Int? = nil, available: Int? = nil, path: String? = nil) {
        self.code = code
        self.message = message
        self.needed = needed
        self.available = available
        self.path = path
    }

    public static func invalidConfiguration(_ message: String) -> Self { Self(.invalidConfiguration, message) }
    public static func invalidInput(_ message: String) -> Self { Self(.invalidInput, message) }
    public static func insufficientData(needed: Int, available: Int) -> Self {
        Self(.insufficientData, "needed \(needed) values, got \(available)", needed: needed, available: available)
    }
    public static func unreadableData(path: String, reason: String) -> Self { Self(.unreadableData, reason, path: path) }
    public static let cancelled = Self(.cancelled, "training was cancelled")

    /// Lets `catch ForecastingError.cancelled` (or any value) match by code and content.
    public static func ~= (pattern: Self, error: any Error) -> Bool { (error as? Self) == pattern }

    public var description: String {
        switch code {
        case .invalidConfiguration: "invalid configuration: \(message)"
        case .invalidInput: "invalid input: \(message)"
        case .insufficientData: "insufficient data: \(message)"
        case .unreadableData: "cannot read data file \(path ?? "?"): \(message)"
        default: message
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
