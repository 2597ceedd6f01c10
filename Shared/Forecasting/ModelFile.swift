import Contracts
import Foundation

/// Model file format, version 2 (all integers little-endian):
///
///     offset 0   8 bytes   magic "CCLSTMv\0"
///     offset 8   UInt32    format version
///     offset 12  UInt32    header byte count H
///     offset 16  UInt64    weight count W
///     offset 24  H bytes   JSON header: configuration, scaler, training summary, spec
///                          (version 1, still read: no spec; the model then has the default split, as trainers
///                          before specs always used)
///     24 + H     4W bytes  weights, IEEE-754 float32
///     end - 4    UInt32    CRC-32 (IEEE) of every preceding byte
extension TrainedModel {
    public static let fileMagic: [UInt8] = Array("CCLSTMv".utf8) + [0]
    public static let fileFormatVersion: UInt32 = 2
    /// Versions this build reads.
    public static let readableFileFormatVersions: ClosedRange<UInt32> = 1...fileFormatVersion
    private static let fixedHeaderSize = 24
    private static let checksumSize = 4

    private struct Header: Codable {
        var configuration: ModelConfiguration
        var scaler: MinMaxScaler
        var summary: TrainingSummary
        /// Absent in version 1.
        var spec: ForecastSpec?
    }

    /// Non-finite metadata (a loss that never became finite) is spelled out rather than rejected.
    private static let nonFiniteSpelling = (positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")

    /// The model file bytes, in `formatVersion` (the current one; 1 only to test that old files stay readable).
    /// - Throws: `ModelFileError.invalidHeader` if the header cannot be written as JSON.
    public func encode(formatVersion: UInt32 = TrainedModel.fileFormatVersion) throws -> [UInt8] {
        guard Self.readableFileFormatVersions.contains(formatVersion) else {
            throw ModelFileError.unsupportedVersion(found: formatVersion, supported: Self.fileFormatVersion)
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(
            positiveInfinity: Self.nonFiniteSpelling.positiveInfinity, negativeInfinity: Self.nonFiniteSpelling.negativeInfinity,
            nan: Self.nonFiniteSpelling.nan)
        let header: Data
        do {
            header = try encoder.encode(
                Header(configuration: configuration, scaler: scaler, summary: summary, spec: formatVersion >= 2 ? spec : nil))
        } catch {
            throw ModelFileError.invalidHeader("cannot encode: \(error)")
        }
        var bytes = Self.fileMagic
        bytes.reserveCapacity(Self.fixedHeaderSize + header.count + 4 * weights.count + Self.checksumSize)
        appendLittleEndian(formatVersion, to: &bytes)
        appendLittleEndian(UInt32(header.count), to: &bytes)
        appendLittleEndian(UInt64(weights.count), to: &bytes)
        bytes.append(contentsOf: header)
        for weight in weights { appendLittleEndian(weight.bitPattern, to: &bytes) }
        appendLittleEndian(CRC32.checksum(bytes), to: &bytes)
        return bytes
    }

    /// Decodes a model file, rejecting truncated, corrupted, foreign and other-version files with a `ModelFileError`.
    public init(decoding data: Data) throws {
        try self.init(decoding: [UInt8](data))
    }

    /// Decodes a model file, rejecting truncated, corrupted, foreign and other-version files with a `ModelFileError`.
    public init(decoding bytes: [UInt8]) throws {
        guard bytes.count >= Self.fixedHeaderSize + Self.checksumSize else {
            if !bytes.starts(with: Self.fileMagic.prefix(bytes.count)) { throw ModelFileError.badMagic }
            throw ModelFileError.truncated(expectedBytes: Self.fixedHeaderSize + Self.checksumSize, actualBytes: bytes.count)
        }
        guard bytes.starts(with: Self.fileMagic) else { throw ModelFileError.badMagic }
        let version = readLittleEndian(UInt32.self, from: bytes, at: 8)
        guard Self.readableFileFormatVersions.contains(version) else {
            throw ModelFileError.unsupportedVersion(found: version, supported: Self.fileFormatVersion)
        }
        let headerSize = Int(readLittleEndian(UInt32.self, from: bytes, at: 12))
        let weightCount = readLittleEndian(UInt64.self, from: bytes, at: 16)
        guard weightCount <= UInt64(Int.max / 8) else {
            throw ModelFileError.invalidHeader("weight count \(weightCount) is impossible")
        }
        let weightsStart = Self.fixedHeaderSize + headerSize
        let expectedSize = weightsStart + 4 * Int(weightCount) + Self.checksumSize
        guard bytes.count >= expectedSize else {
            throw ModelFileError.truncated(expectedBytes: expectedSize, actualBytes: bytes.count)
        }
        guard bytes.count == expectedSize else { throw ModelFileError.trailingBytes(count: bytes.count - expectedSize) }
        let stored = readLittleEndian(UInt32.self, from: bytes, at: expectedSize - Self.checksumSize)
        let computed = CRC32.checksum(bytes[0..<(expectedSize - Self.checksumSize)])
        guard stored == computed else { throw ModelFileError.checksumMismatch(stored: stored, computed: computed) }

        let header: Header
        do {
            let decoder = JSONDecoder()
            decoder.nonConformingFloatDecodingStrategy = .convertFromString(
                positiveInfinity: Self.nonFiniteSpelling.positiveInfinity,
                negativeInfinity: Self.nonFiniteSpelling.negativeInfinity, nan: Self.nonFiniteSpelling.nan)
            header = try decoder.decode(Header.self, from: Data(bytes[Self.fixedHeaderSize..<weightsStart]))
        } catch {
            throw ModelFileError.invalidHeader("JSON: \(error)")
        }
        let weights = (0..<Int(weightCount)).map {
            Float(bitPattern: readLittleEndian(UInt32.self, from: bytes, at: weightsStart + 4 * $0))
        }
        do {
            // Re-validates the scaler bounds and that the weights fit the architecture.
            let scaler = try MinMaxScaler(minimum: header.scaler.minimum, maximum: header.scaler.maximum)
            try self.init(configuration: header.configuration, scaler: scaler, summary: header.summary, weights: weights, spec: header.spec)
        } catch let error as ForecastingError {
            throw ModelFileError.invalidHeader(error.description)
        }
    }
}

private func appendLittleEndian<Value: FixedWidthInteger>(_ value: Value, to bytes: inout [UInt8]) {
    withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
}

private func readLittleEndian<Value: FixedWidthInteger>(_: Value.Type, from bytes: [UInt8], at offset: Int) -> Value {
    var value: Value = 0
    for index in (0..<MemoryLayout<Value>.size).reversed() {
        value = value << 8 | Value(bytes[offset + index])
    }
    return value
}

/// CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320), as used by zip and PNG.
public enum CRC32 {
    private static let table: [UInt32] = (0..<256).map { byte in
        var crc = UInt32(byte)
        for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
        return crc
    }

    public static func checksum<Bytes: Sequence>(_ bytes: Bytes) -> UInt32 where Bytes.Element == UInt8 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes { crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8) }
        return crc ^ 0xFFFF_FFFF
    }
}
