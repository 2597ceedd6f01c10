import Forecasting
import Foundation
import Testing

@Suite("Forecast spec in the network and the model file")
struct ForecastSpecTests {
    static let spec = ForecastSpec(
        window: 6, features: .close, target: .logReturn, activation: .tanh, split: SplitFractions(train: 0.6, validation: 0.2))

    static func trainedModel() throws -> TrainedModel {
        let closes = noisySine(count: 200, seed: 31)
        let split = try ChronologicalSplit(count: closes.count, spec: spec)
        return try Trainer(model: ModelConfiguration(spec: spec, units: 3, layers: 1), training: smallTraining(epochs: 2), spec: spec)
            .train(closes: closes, split: split)
    }

    @Test("a trained model carries its spec through the model file (format 3)")
    func specRoundTrip() throws {
        let model = try Self.trainedModel()
        #expect(model.spec == Self.spec)
        #expect(model.summary.trainingEnd == 120)  // floor(200 * 0.6), from the spec's split
        let bytes = try model.encode()
        #expect(bytes[8] == 3)
        let decoded = try TrainedModel(decoding: bytes)
        #expect(decoded.spec == Self.spec)
        #expect(decoded.configuration == model.configuration)
    }

    @Test("a format-1 file (no spec) still loads, with the split every trainer used before specs")
    func formatOneStillLoads() throws {
        let model = try Self.trainedModel()
        let old = try model.encode(formatVersion: 1)
        #expect(old[8] == 1)
        let decoded = try TrainedModel(decoding: old)
        #expect(decoded.spec.window == 6 && decoded.spec.target == .logReturn && decoded.spec.activation == .tanh)
        #expect(decoded.spec.split == SplitFractions(train: 0.7, validation: 0.1))
        let window = Array(noisySine(count: 6, seed: 4))
        #expect(try decoded.predict(window: window) == model.predict(window: window))
    }

    @Test("a spec that disagrees with the architecture is refused")
    func specMustMatchConfiguration() throws {
        let model = try Self.trainedModel()
        var other = Self.spec
        other.window = 7
        #expect(throws: ForecastingError.self) {
            try TrainedModel(
                configuration: model.configuration, scaler: model.scaler, summary: model.summary, weights: model.weights, spec: other)
        }
    }

    @Test("a stored dataset version's training_end is used as stored, not recomputed from the fractions")
    func storedTrainingEnd() throws {
        let split = try ChronologicalSplit(count: 200, window: 6, trainingEnd: 150, fractions: SplitFractions(train: 0.6, validation: 0.2))
        #expect(split.trainingEnd == 150)
        #expect(split.testTargets == 150..<200)
        #expect(split.validationTargets.upperBound == 150)
        #expect(split.fitTargets.count == Int(Double(150 - 6) * 0.8))
    }

    @Test("patience: the contract and the trainer accept and refuse the same values")
    func patienceAgrees() throws {
        for patience in [-1, 0, 1, 8, 1000, 1001] {
            let contract = Result { try TrainingParameters(patience: patience).validate() }
            var training = TrainingConfiguration()
            training.patience = patience
            let trainer = Result { try training.validate() }
            let contractAccepts = (try? contract.get()) != nil
            let trainerAccepts = (try? trainer.get()) != nil
            #expect(contractAccepts == trainerAccepts, "patience \(patience): contract \(contractAccepts), trainer \(trainerAccepts)")
            #expect(contractAccepts == (patience >= 1 && patience <= 1000))
        }
    }

    @Test("a job's spec is the dataset's, with the grid point's window, target and activation")
    func composition() throws {
        let dataset = ForecastSpec(window: 14, features: .closeVolume, split: SplitFractions(train: 0.6, validation: 0.2))
        let spec = TrainingParameters(activation: .tanh, target: .scaledDifference, window: 28).spec(on: dataset)
        #expect(
            spec
                == ForecastSpec(
                    window: 28, features: .closeVolume, target: .scaledDifference, activation: .tanh,
                    split: SplitFractions(train: 0.6, validation: 0.2)))
        #expect(throws: (any Error).self) { try ForecastSpec(window: ForecastSpec.windows.upperBound + 1).validate() }
        #expect(throws: (any Error).self) { try ForecastSpec(activation: .linear).validate() }
        #expect(throws: (any Error).self) { try ForecastSpec(split: SplitFractions(train: 1, validation: 0.1)).validate() }
        try spec.validate()
    }
}
