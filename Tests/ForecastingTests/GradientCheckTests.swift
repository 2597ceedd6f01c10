import Testing

@testable import Forecasting

/// Backpropagation through time checked against central finite differences, in double precision so a tight
/// tolerance is meaningful (Float32 rounding would swamp the differences).
@Suite("Gradient check")
struct GradientCheckTests {
    static let architectures: [(name: String, layers: [LayerSpec])] = [
        ("LSTM(3, relu) -> Dense(1)", [.lstm(units: 3, activation: .relu), .dense(units: 1)]),
        ("LSTM(3, tanh) -> Dense(1)", [.lstm(units: 3, activation: .tanh), .dense(units: 1)]),
        (
            "LSTM(4, tanh) -> LSTM(3, relu) -> Dense(2, tanh) -> Dense(1)",
            [.lstm(units: 4, activation: .tanh), .lstm(units: 3, activation: .relu), .dense(units: 2, activation: .tanh), .dense(units: 1)]
        ),
    ]

    @Test("parameter and input gradients match finite differences", arguments: 0..<architectures.count)
    func gradientsMatchFiniteDifferences(architecture: Int) throws {
        let (name, layers) = Self.architectures[architecture]
        let window = 5
        let batch = 3
        let layout = try NetworkLayout(ModelConfiguration(layers: layers, window: window, target: .nextScaledClose))
        var generator = SeededGenerator(seed: UInt64(architecture) + 7)
        // Start from Keras initialisation, then jitter every parameter so biases and gates are all non-trivial.
        var parameters = layout.initialParameters(using: &generator).map { Double($0) + (generator.nextUnitDouble() - 0.5) * 0.4 }
        let inputs = (0..<(window * batch)).map { _ in generator.nextUnitDouble() * 2 - 0.5 }
        let targets = (0..<batch).map { _ in generator.nextUnitDouble() }
        let engine = NetworkEngine<Double>(layout: layout, batchCapacity: batch)

        func loss(_ parameters: [Double], _ inputs: [Double]) -> Double {
            parameters.withUnsafeBufferPointer { p in
                inputs.withUnsafeBufferPointer { x in
                    let outputs = engine.forward(parameters: p.baseAddress!, inputs: x.baseAddress!, batch: batch)
                    return (0..<batch).reduce(0.0) { $0 + (outputs[$1] - targets[$1]) * (outputs[$1] - targets[$1]) } / Double(batch)
                }
            }
        }

        var parameterGradients = [Double](repeating: .nan, count: layout.parameterCount)
        var inputGradients = [Double](repeating: .nan, count: inputs.count)
        parameters.withUnsafeBufferPointer { p in
            inputs.withUnsafeBufferPointer { x in
                let outputs = engine.forward(parameters: p.baseAddress!, inputs: x.baseAddress!, batch: batch)
                let outputGradient = (0..<batch).map { 2 * (outputs[$0] - targets[$0]) / Double(batch) }
                parameterGradients.withUnsafeMutableBufferPointer { g in
                    inputGradients.withUnsafeMutableBufferPointer { dx in
                        engine.backward(
                            parameters: p.baseAddress!, outputGradient: outputGradient,
                            parameterGradients: g.baseAddress!, inputGradients: dx.baseAddress!)
                    }
                }
            }
        }

        let epsilon = 1e-6
        func expectClose(_ analytic: Double, _ numeric: Double, _ what: String) {
            let tolerance = 1e-8 + 1e-5 * max(abs(analytic), abs(numeric))
            #expect(abs(analytic - numeric) <= tolerance, "\(name): \(what) analytic \(analytic) numeric \(numeric)")
        }
        for index in parameters.indices {
            let original = parameters[index]
            parameters[index] = original + epsilon
            let plus = loss(parameters, inputs)
            parameters[index] = original - epsilon
            let minus = loss(parameters, inputs)
            parameters[index] = original
            expectClose(parameterGradients[index], (plus - minus) / (2 * epsilon), "parameter \(parameterName(index, layout))")
        }
        var perturbed = inputs
        for index in inputs.indices {
            perturbed[index] = inputs[index] + epsilon
            let plus = loss(parameters, perturbed)
            perturbed[index] = inputs[index] - epsilon
            let minus = loss(parameters, perturbed)
            perturbed[index] = inputs[index]
            expectClose(inputGradients[index], (plus - minus) / (2 * epsilon), "input \(index) (step \(index / batch))")
        }
        // The check is only meaningful if gradients reach many parameters (relu zeroes some) and every step.
        #expect(parameterGradients.filter { $0 != 0 }.count > parameterGradients.count / 3)
        #expect((0..<window).allSatisfy { step in (0..<batch).contains { inputGradients[step * batch + $0] != 0 } })
    }

    private func parameterName(_ index: Int, _ layout: NetworkLayout) -> String {
        for (number, layer) in layout.recurrentLayers.enumerated() {
            if index >= layer.biasOffset && index < layer.biasOffset + layer.gateWidth { return "\(index) (LSTM \(number) bias)" }
            if index >= layer.recurrentOffset && index < layer.biasOffset { return "\(index) (LSTM \(number) recurrent kernel)" }
            if index >= layer.kernelOffset && index < layer.recurrentOffset { return "\(index) (LSTM \(number) input kernel)" }
        }
        for (number, layer) in layout.denseLayers.enumerated() {
            if index >= layer.biasOffset && index < layer.biasOffset + layer.units { return "\(index) (dense \(number) bias)" }
            if index >= layer.kernelOffset && index < layer.biasOffset { return "\(index) (dense \(number) kernel)" }
        }
        return "\(index)"
    }
}
