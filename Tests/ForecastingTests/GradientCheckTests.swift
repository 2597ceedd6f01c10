import Foundation
import Testing

@testable import Forecasting

/// Backpropagation through time checked against central finite differences, in double precision so a tight
/// tolerance is meaningful (Float32 rounding would swamp the differences). Point heads under the mean squared error,
/// gaussian heads under the mean Gaussian negative log-likelihood with the trainer's output gradients.
@Suite("Gradient check")
struct GradientCheckTests {
    static let architectures: [(name: String, layers: [LayerSpec], head: OutputHead)] = [
        ("LSTM(3, relu) -> Dense(1)", [.lstm(units: 3, activation: .relu), .dense(units: 1)], .point),
        // 19 units: a member's share holds whole vectors of eight and a remainder (`LSTMCell`).
        ("LSTM(19, relu) -> Dense(1)", [.lstm(units: 19, activation: .relu), .dense(units: 1)], .point),
        ("LSTM(3, tanh) -> Dense(1)", [.lstm(units: 3, activation: .tanh), .dense(units: 1)], .point),
        (
            "LSTM(4, tanh) -> LSTM(3, relu) -> Dense(2, tanh) -> Dense(1)",
            [
                .lstm(units: 4, activation: .tanh), .lstm(units: 3, activation: .relu), .dense(units: 2, activation: .tanh),
                .dense(units: 1),
            ],
            .point
        ),
        ("LSTM(3, relu) -> Dense(2) gaussian NLL", [.lstm(units: 3, activation: .relu), .dense(units: 2)], .gaussian),
        (
            "LSTM(4, tanh) -> Dense(3, tanh) -> Dense(2) gaussian NLL",
            [.lstm(units: 4, activation: .tanh), .dense(units: 3, activation: .tanh), .dense(units: 2)], .gaussian
        ),
    ]

    /// The batch's mean loss and its gradient with respect to the outputs ([batch, head.outputCount]).
    static func loss(
        outputs: UnsafePointer<Double>, targets: [Double], head: OutputHead
    ) -> (loss: Double, outputGradient: [Double]) {
        let batch = Double(targets.count)
        var loss = 0.0
        var gradient: [Double] = []
        for (row, target) in targets.enumerated() {
            switch head {
            case .point:
                loss += (outputs[row] - target) * (outputs[row] - target) / batch
                gradient.append(2 * (outputs[row] - target) / batch)
            case .gaussian:
                let nll = GaussianHead.negativeLogLikelihood(actual: target, location: outputs[2 * row], logScale: outputs[2 * row + 1])
                loss += nll.loss / batch
                gradient += [nll.locationGradient / batch, nll.logScaleGradient / batch]
            }
        }
        return (loss, gradient)
    }

    /// Team sizes 2 and 3 split every layer's units between members (3 leaves some members an empty share of a
    /// 1-unit or 2-unit layer); the finite differences always come from the one-member pass.
    @Test("parameter and input gradients match finite differences", arguments: 0..<architectures.count, [1, 2, 3])
    func gradientsMatchFiniteDifferences(architecture: Int, teamSize: Int) throws {
        let (name, layers, head) = Self.architectures[architecture]
        let window = 5
        let batch = 3
        let target: ForecastTarget = head == .gaussian ? .logReturn : .nextScaledClose
        let layout = try NetworkLayout(ModelConfiguration(layers: layers, window: window, target: target, head: head))
        var generator = SeededGenerator(seed: UInt64(architecture) + 7)
        // Start from Keras initialisation, then jitter every parameter so biases and gates are all non-trivial.
        var parameters = layout.initialParameters(using: &generator).map { Double($0) + (generator.nextUnitDouble() - 0.5) * 0.4 }
        let inputs = (0..<(window * batch)).map { _ in generator.nextUnitDouble() * 2 - 0.5 }
        let targets = (0..<batch).map { _ in generator.nextUnitDouble() }
        let engine = NetworkEngine<Double>(layout: layout, batchCapacity: batch)

        func loss(_ parameters: [Double], _ inputs: [Double]) -> Double {
            parameters.withUnsafeBufferPointer { p in
                inputs.withUnsafeBufferPointer { x in
                    Self.loss(
                        outputs: engine.forward(parameters: p.baseAddress!, inputs: x.baseAddress!, batch: batch), targets: targets,
                        head: head
                    ).loss
                }
            }
        }

        var parameterGradients = [Double](repeating: .nan, count: layout.parameterCount)
        var inputGradients = [Double](repeating: .nan, count: inputs.count)
        parameters.withUnsafeBufferPointer { p in
            inputs.withUnsafeBufferPointer { x in
                let outputs = engine.forward(parameters: p.baseAddress!, inputs: x.baseAddress!, batch: batch)
                if head == .gaussian {
                    // Inside the clamp, where the loss depends on s: a check at a clamped s would compare 0 with 0.
                    for row in 0..<batch {
                        #expect(GaussianHead.logScaleRange.contains(outputs[2 * row + 1]), "\(name): s = \(outputs[2 * row + 1])")
                    }
                }
                let outputGradient = Self.loss(outputs: outputs, targets: targets, head: head).outputGradient
                parameterGradients.withUnsafeMutableBufferPointer { g in
                    inputGradients.withUnsafeMutableBufferPointer { dx in
                        outputGradient.withUnsafeBufferPointer { dy in
                            let shared = (
                                SharedPointer(pointer: p.baseAddress!), SharedPointer(pointer: x.baseAddress!),
                                SharedPointer(pointer: dy.baseAddress!), SharedMutablePointer(pointer: g.baseAddress!),
                                SharedMutablePointer(pointer: dx.baseAddress!)
                            )
                            let team = ComputeTeam(size: teamSize)
                            defer { team.shutdown() }
                            team.run { member in
                                // The whole pass on the team, as training runs it.
                                engine.forward(parameters: shared.0.pointer, inputs: shared.1.pointer, batch: batch, member: member)
                                engine.backward(
                                    parameters: shared.0.pointer, inputs: shared.1.pointer, batch: batch,
                                    outputGradient: shared.2.pointer, parameterGradients: shared.3.pointer,
                                    inputGradients: shared.4.pointer, member: member)
                            }
                        }
                    }
                }
            }
        }

        let epsilon = 1e-6
        func expectClose(_ analytic: Double, _ numeric: Double, _ what: String) {
            let tolerance = 1e-8 + 1e-5 * max(abs(analytic), abs(numeric))
            #expect(
                abs(analytic - numeric) <= tolerance, "\(name), team of \(teamSize): \(what) analytic \(analytic) numeric \(numeric)")
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

    @Test("the gaussian negative log-likelihood and its output gradients, by hand")
    func gaussianNegativeLogLikelihood() {
        // r = 0.03, mu = 0.01, sigma = 0.02: z = 1, NLL = 0.5 log(2 pi) + log(0.02) + 0.5.
        let nll = GaussianHead.negativeLogLikelihood(actual: 0.03, location: 0.01, logScale: log(0.02))
        #expect(abs(nll.loss - (0.918_938_533_204_672_7 + log(0.02) + 0.5)) < 1e-12)
        #expect(abs(nll.locationGradient - -50) < 1e-9)  // -(r - mu) / sigma^2
        #expect(abs(nll.logScaleGradient) < 1e-12)  // 1 - z^2
        // A clamped log-scale: sigma is exp(3), the loss no longer depends on s.
        let clamped = GaussianHead.negativeLogLikelihood(actual: 0, location: 0, logScale: 50)
        #expect(clamped.loss == GaussianHead.halfLogTwoPi + 3)
        #expect(clamped.logScaleGradient == 0)
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
