import Forecasting
import Foundation
import Testing

@Suite("Model file")
struct ModelFileTests {
    static func trainedModel() throws -> TrainedModel {
        // 300 closes: 21 validation rows, enough to calibrate (ResidualCalibration.minimumRows).
        let closes = noisySine(count: 300, seed: 21)
        let split = try ChronologicalSplit(count: closes.count, window: 6)
        let model = ModelConfiguration(
            layers: [
                .lstm(units: 5, activation: .relu), .lstm(units: 4, activation: .tanh), .dense(units: 3, activation: .relu),
                .dense(units: 1),
            ],
            window: 6, target: .scaledDifference)
        return try Trainer(model: model, training: smallTraining(epochs: 2)).train(closes: closes, split: split)
    }

    @Test("CRC-32 matches the standard check value")
    func crcCheckValue() {
        #expect(CRC32.checksum(Array("123456789".utf8)) == 0xCBF4_3926)
    }

    @Test("round trip keeps configuration, scaler, metadata, calibration, weights and predictions (version 3)")
    func roundTrip() throws {
        let model = try Self.trainedModel()
        let bytes = try model.encode()
        #expect(bytes[8] == 3 && TrainedModel.fileFormatVersion == 3)
        let decoded = try TrainedModel(decoding: Data(bytes))
        #expect(decoded.configuration == model.configuration)
        #expect(decoded.scaler == model.scaler)
        #expect(decoded.summary == model.summary)
        #expect(model.calibration != nil)
        #expect(decoded.calibration == model.calibration)
        #expect(decoded.weights.map(\.bitPattern) == model.weights.map(\.bitPattern))
        let windows = (0..<20).map { start in Array(noisySine(count: 40, seed: 2)[start..<(start + 6)]) }
        #expect(try decoded.predict(windows: windows) == model.predict(windows: windows))
        #expect(try decoded.forecast(windows: windows) == model.forecast(windows: windows))
        #expect(try decoded.encode() == bytes)
    }

    @Test("a version-2 file (before calibration) is still written on request and reads back uncalibrated")
    func versionTwoStillReads() throws {
        let model = try Self.trainedModel()
        let bytes = try model.encode(formatVersion: 2)
        #expect(bytes[8] == 2)
        let decoded = try TrainedModel(decoding: bytes)
        #expect(decoded.calibration == nil)
        #expect(decoded.configuration == model.configuration && decoded.spec == model.spec)
        let windows = (0..<5).map { start in Array(noisySine(count: 40, seed: 2)[start..<(start + 6)]) }
        #expect(try decoded.predict(windows: windows) == model.predict(windows: windows))
        #expect(throws: ForecastingError.self) { try decoded.forecast(windows: windows) }
        #expect(!ForecastModel.lstm(decoded).isCalibrated)
        #expect(try decoded.encode(formatVersion: 2) == bytes)
    }

    @Test("a truncated file is reported as truncated")
    func truncated() throws {
        let bytes = try Self.trainedModel().encode()
        #expect(throws: ModelFileError.truncated(expectedBytes: bytes.count, actualBytes: bytes.count - 10)) {
            try TrainedModel(decoding: Array(bytes.dropLast(10)))
        }
        #expect(throws: ModelFileError.truncated(expectedBytes: 28, actualBytes: 12)) {
            try TrainedModel(decoding: Array(bytes.prefix(12)))
        }
        #expect(throws: ModelFileError.trailingBytes(count: 1)) { try TrainedModel(decoding: bytes + [0]) }
    }

    @Test("a flipped byte in the header or the weights fails the checksum")
    func corrupted() throws {
        let bytes = try Self.trainedModel().encode()
        for offset in [30, bytes.count / 2, bytes.count - 6] {
            var corrupted = bytes
            corrupted[offset] ^= 0x10
            #expect(
                performing: { try TrainedModel(decoding: corrupted) },
                throws: { error in
                    guard case ModelFileError.checksumMismatch = error else { return false }
                    return "\(error)".contains("corrupted")
                })
        }
    }

    @Test("a foreign file is rejected by its magic, another version by its version")
    func wrongMagicOrVersion() throws {
        let bytes = try Self.trainedModel().encode()
        var foreign = bytes
        foreign[0] = UInt8(ascii: "X")
        #expect(throws: ModelFileError.badMagic) { try TrainedModel(decoding: foreign) }
        #expect(throws: ModelFileError.badMagic) { try TrainedModel(decoding: Array("{\"json\": true}".utf8)) }
        var newer = bytes
        newer[8] = UInt8(TrainedModel.fileFormatVersion + 1)
        #expect(
            throws: ModelFileError.unsupportedVersion(found: TrainedModel.fileFormatVersion + 1, supported: TrainedModel.fileFormatVersion)
        ) {
            try TrainedModel(decoding: newer)
        }
    }
}
