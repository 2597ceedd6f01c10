import Contracts
import Foundation

/// Model file format, version 3 (all integers little-endian):
///
///     offset 0   8 bytes   magic "CCLSTMv\0" (the format's name since version 1; every model kind uses it)
///     offset 8   UInt32    format version
///     offset 12  UInt32    header byte count H
///     offset 16  UInt64    weight count W
///     offset 24  H bytes   JSON header: "kind" ("lstm" or "naive-empirical"), the spec, and per kind
///                          lstm: configuration, scaler, training summary, calibration (absent when uncalibrated)
///                          naive-empirical: "baseline" {"lookback"} (W = 0)
///                          (version 2, still read: an LSTM without kind or calibration; version 1: no spec either,
///                          the model then has the default split, as trainers before specs always used)
///     24 + H     4W bytes  weights, IEEE-754 float32
///     end - 4    UInt32    CRC-32 (IEEE) of every preceding byte
enum ModelFileContainer {
    static let magic: [UInt8] = Array("CCLSTMv".utf8) + [0]
    static let currentVersion: UInt32 = 3
    /// Versions this build reads.
    static let readableVersions: ClosedRange<UInt32> = 1...currentVersion
    private static let fixedHeaderSize = 24
    private static let checksumSize = 4

    /// Every field any kind or version has; which are set depends on `kind` (absent before version 3: lstm).
    struct Header: Codable {
        var kind: ModelFamily?
        var configuration: ModelConfiguration?
        var scaler: MinMaxScaler?
        var summary: TrainingSummary?
        /// Absent in version 1.
        var spec: ForecastSpec?
        var calibration: ResidualCalibration?
        var baseline: NaiveBaseline?
    }

    /// Non-finite metadata (a loss that never became finite) is spelled out rather than rejected.
    private static let nonFiniteSpelling = (positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")

    static func encode(_ header: Header, weights: [Float], formatVersion: UInt32) throws -> [UInt8] {
        guard readableVersions.contains(formatVersion) else {
            throw ModelFileError.unsupportedVersion(found: formatVersion, supported: currentVersion)
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(
            positiveInfinity: nonFiniteSpelling.positiveInfinity, negativeInfinity: nonFiniteSpelling.negativeInfinity,
            nan: nonFiniteSpelling.nan)
        let headerBytes: Data
        do {
            headerBytes = try encoder.encode(header)
        } catch {
            throw ModelFileError.invalidHeader("cannot encode: \(error)")
        }
        return container(header: Array(headerBytes), weights: weights, formatVersion: formatVersion)
    }

    /// The file around a header's JSON bytes and the weights: magic, version, sizes, checksum.
    static func container(header: [UInt8], weights: [Float], formatVersion: UInt32) -> [UInt8] {
        var bytes = magic
        bytes.reserveCapacity(fixedHeaderSize + header.count + 4 * weights.count + checksumSize)
        appendLittleEndian(formatVersion, to: &bytes)
        appendLittleEndian(UInt32(header.count), to: &bytes)
        appendLittleEndian(UInt64(weights.count), to: &bytes)
        bytes.append(contentsOf: header)
        for weight in weights { appendLittleEndian(weight.bitPattern, to: &bytes) }
        appendLittleEndian(CRC32.checksum(bytes), to: &bytes)
        return bytes
    }

    /// A file's JSON header bytes and weight count, for tools that rewrite headers (the model-file fuzz target's seeds).
    static func headerAndWeightCount(_ bytes: [UInt8]) throws -> (header: [UInt8], weightCount: Int) {
        let (_, _, weights) = try decode(bytes)
        let headerSize = Int(readLittleEndian(UInt32.self, from: bytes, at: 12))
        return (Array(bytes[fixedHeaderSize..<(fixedHeaderSize + headerSize)]), weights.count)
    }

    /// Splits a model file into its header and weights, rejecting truncated, corrupted, foreign and other-version files.
    static func decode(_ bytes: [UInt8]) throws -> (version: UInt32, header: Header, weights: [Float]) {
        guard bytes.count >= fixedHeaderSize + checksumSize else {
            if !bytes.starts(with: magic.prefix(bytes.count)) { throw ModelFileError.badMagic }
            throw ModelFileError.truncated(expectedBytes: fixedHeaderSize + checksumSize, actualBytes: bytes.count)
        }
        guard bytes.starts(with: magic) else { throw ModelFileError.badMagic }
        let version = readLittleEndian(UInt32.self, from: bytes, at: 8)
        guard readableVersions.contains(version) else {
            throw ModelFileError.unsupportedVersion(found: version, supported: currentVersion)
        }
        let headerSize = Int(readLittleEndian(UInt32.self, from: bytes, at: 12))
        let weightCount = readLittleEndian(UInt64.self, from: bytes, at: 16)
        guard weightCount <= UInt64(Int.max / 8) else {
            throw ModelFileError.invalidHeader("weight count \(weightCount) is impossible")
        }
        let weightsStart = fixedHeaderSize + headerSize
        let expectedSize = weightsStart + 4 * Int(weightCount) + checksumSize
        guard bytes.count >= expectedSize else {
            throw ModelFileError.truncated(expectedBytes: expectedSize, actualBytes: bytes.count)
        }
        guard bytes.count == expectedSize else { throw ModelFileError.trailingBytes(count: bytes.count - expectedSize) }
        let stored = readLittleEndian(UInt32.self, from: bytes, at: expectedSize - checksumSize)
        let computed = CRC32.checksum(bytes[0..<(expectedSize - checksumSize)])
        guard stored == computed else { throw ModelFileError.checksumMismatch(stored: stored, computed: computed) }

        let header: Header
        do {
            let decoder = JSONDecoder()
            decoder.nonConformingFloatDecodingStrategy = .convertFromString(
                positiveInfinity: nonFiniteSpelling.positiveInfinity, negativeInfinity: nonFiniteSpelling.negativeInfinity,
                nan: nonFiniteSpelling.nan)
            header = try decoder.decode(Header.self, from: Data(bytes[fixedHeaderSize..<weightsStart]))
        } catch {
            throw ModelFileError.invalidHeader("JSON: \(error)")
        }
        let weights = (0..<Int(weightCount)).map {
            Float(bitPattern: readLittleEndian(UInt32.self, from: bytes, at: weightsStart + 4 * $0))
        }
        return (version, header, weights)
    }
}

extension TrainedModel {
    public static let fileMagic: [UInt8] = ModelFileContainer.magic
    public static let fileFormatVersion: UInt32 = ModelFileContainer.currentVersion
    /// Versions this build reads.
    public static let readableFileFormatVersions: ClosedRange<UInt32> = ModelFileContainer.readableVersions

    /// The model file bytes, in `formatVersion` (the current one; 1 or 2 only to test that old files stay readable).
    /// - Throws: `ModelFileError.invalidHeader` if the header cannot be written as JSON.
    public func encode(formatVersion: UInt32 = TrainedModel.fileFormatVersion) throws -> [UInt8] {
        let header = ModelFileContainer.Header(
            kind: formatVersion >= 3 ? .lstm : nil, configuration: configuration, scaler: scaler, summary: summary,
            spec: formatVersion >= 2 ? spec : nil, calibration: formatVersion >= 3 ? calibration : nil)
        return try ModelFileContainer.encode(header, weights: weights, formatVersion: formatVersion)
    }

    /// Decodes an LSTM model file, rejecting truncated, corrupted, foreign and other-version files with a `ModelFileError`
    /// (a baseline's file too: `ForecastModel(decoding:)` reads every kind).
    public init(decoding data: Data) throws {
        try self.init(decoding: [UInt8](data))
    }

    /// Decodes an LSTM model file, rejecting truncated, corrupted, foreign and other-version files with a `ModelFileError`.
    public init(decoding bytes: [UInt8]) throws {
        let (_, header, weights) = try ModelFileContainer.decode(bytes)
        try self.init(header: header, weights: weights)
    }

    init(header: ModelFileContainer.Header, weights: [Float]) throws {
        guard (header.kind ?? .lstm) == .lstm else {
            throw ModelFileError.invalidHeader("a \(header.kind?.rawValue ?? "?") model file is not an LSTM")
        }
        guard let configuration = header.configuration, let storedScaler = header.scaler, let summary = header.summary else {
            throw ModelFileError.invalidHeader("an LSTM model file needs its configuration, scaler and training summary")
        }
        do {
            // Re-validates the scaler bounds and that the weights fit the architecture.
            let scaler = try MinMaxScaler(minimum: storedScaler.minimum, maximum: storedScaler.maximum)
            try self.init(
                configuration: configuration, scaler: scaler, summary: summary, weights: weights, spec: header.spec,
                calibration: header.calibration)
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

/// The model file container for tools outside this module (the model-file fuzz target): a file from a header's JSON
/// bytes and weights with a correct checksum, so that a mutated header reaches the JSON and model checks.
public enum ModelFileLayout {
    public static func file(headerJSON: [UInt8], weights: [Float], formatVersion: UInt32 = TrainedModel.fileFormatVersion) -> [UInt8] {
        ModelFileContainer.container(header: headerJSON, weights: weights, formatVersion: formatVersion)
    }

    /// The JSON header bytes and weight count of a valid model file.
    public static func parts(of file: [UInt8]) throws -> (headerJSON: [UInt8], weightCount: Int) {
        let (header, count) = try ModelFileContainer.headerAndWeightCount(file)
        return (header, count)
    }
}
