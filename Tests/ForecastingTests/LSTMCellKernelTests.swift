import CLSTMCell
import Foundation
import Testing

@testable import Forecasting

/// The C kernel that runs the LSTM cell in Float (CLSTMCell), against libm and against the generic reference
/// (`LSTMCell`, which the gradient checks verify in Double).
@Suite("LSTM cell kernel")
struct LSTMCellKernelTests {
    @Test("its e^x is within 2 ulp of libm's expf from -87 to 88, and saturates beyond")
    func exponentialMatchesLibm() {
        var worstUlps: Float = 0
        var worstAt: Float = 0
        var x: Float = -87
        while x <= 88 {
            let exact = exp(x)
            let ulps = abs(candlecast_lstm_exp(x) - exact) / exact.ulp
            if ulps > worstUlps { (worstUlps, worstAt) = (ulps, x) }
            x += 0.001_37
        }
        #expect(worstUlps <= 2, "worst error \(worstUlps) ulp at x = \(worstAt)")
        #expect(candlecast_lstm_exp(-1000) < 1e-37 && candlecast_lstm_exp(-88) < 1e-37)
        #expect(candlecast_lstm_exp(89).isFinite && candlecast_lstm_exp(1000).isFinite && candlecast_lstm_exp(1000) > 1e38)
        #expect(candlecast_lstm_exp(0) == 1)
    }

    @Test(
        "forward and backward give the reference's values, for runs of any length and every activation",
        arguments: [
            Activation.relu, .tanh, .linear,
        ])
    func kernelMatchesReference(activation: Activation) {
        var generator = SeededGenerator(seed: 11)
        for length in [1, 7, 8, 9, 16, 17, 175] {
            let units = length + 3
            let owned = 2..<(2 + length)
            let preActivations = (0..<(4 * units)).map { _ in Float(generator.nextUnitDouble() * 8 - 4) }
            let previous = (0..<units).map { _ in Float(generator.nextUnitDouble() * 2 - 1) }
            let hiddenGradient = (0..<units).map { _ in Float(generator.nextUnitDouble() - 0.5) }
            let carried = (0..<units).map { _ in Float(generator.nextUnitDouble() - 0.5) }

            func pass(kernel: Bool) -> [[Float]] {
                var gates = preActivations
                var cells = [Float](repeating: .nan, count: units)
                var activated = cells
                var hidden = cells
                var gradients = [Float](repeating: .nan, count: 4 * units)
                var cellGradient = carried
                if kernel {
                    Float.lstmForward(
                        gates: &gates, width: units, run: owned, previousCells: previous, cells: &cells, activatedCells: &activated,
                        hidden: &hidden, activation: activation)
                    Float.lstmBackward(
                        gates: gates, gateGradients: &gradients, width: units, run: owned, previousCells: previous, cells: cells,
                        activatedCells: activated, hiddenGradient: hiddenGradient, cellGradient: &cellGradient, activation: activation)
                } else {
                    LSTMCell.forward(
                        gates: &gates, width: units, run: owned, previousCells: previous, cells: &cells, activatedCells: &activated,
                        hidden: &hidden, activation: activation, exponential: { exp($0) }, hyperbolicTangent: { tanh($0) })
                    LSTMCell.backward(
                        gates: gates, gateGradients: &gradients, width: units, run: owned, previousCells: previous, cells: cells,
                        activatedCells: activated, hiddenGradient: hiddenGradient, cellGradient: &cellGradient, activation: activation)
                }
                return [gates, cells, activated, hidden, gradients, cellGradient]
            }
            let kernel = pass(kernel: true)
            let reference = pass(kernel: false)
            let names = ["gates", "cells", "activated cells", "hidden", "gate gradients", "cell gradient"]
            for (name, (ours, theirs)) in zip(names, zip(kernel, reference)) {
                for index in ours.indices {
                    let (a, b) = (ours[index], theirs[index])
                    // Outside the run nothing is written: NaN stays NaN, inputs stay as they were.
                    if b.isNaN {
                        #expect(a.isNaN, "\(name)[\(index)] written outside the run")
                    } else {
                        #expect(abs(a - b) <= 1e-6 + 1e-5 * abs(b), "\(activation) run of \(length): \(name)[\(index)] \(a) vs \(b)")
                    }
                }
            }
        }
    }
}
