/// FNV-1a 64, the one non-cryptographic hash Candlecast stores: dataset versions' `content_hash` (the
/// `fnv1a64` of `features.dataset_versions.hash_algorithm`) and history files' fingerprints. Stable across
/// runs and machines, unlike `Hasher`.
public struct FNV1a64: Sendable, Equatable {
    public static let offsetBasis: UInt64 = 0xcbf2_9ce4_8422_2325
    public static let prime: UInt64 = 0x100_0000_01b3

    public private(set) var value = offsetBasis

    public init() {}

    public mutating func combine<Bytes: Sequence>(_ bytes: Bytes) where Bytes.Element == UInt8 {
        for byte in bytes {
            value ^= UInt64(byte)
            value = value &* Self.prime
        }
    }

    /// The hash as 16 lowercase hex digits.
    public var hexDigits: String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
}
