import CLSTMCell
import Foundation

/// Adam with Keras's update rule: the bias corrections are folded into the step size.
/// `@unchecked Sendable`: `update` runs on a team's members at once, each on its own range of the parameters.
final class AdamOptimizer: @unchecked Sendable {
    private let firstMoment: FloatBuffer
    private let secondMoment: FloatBuffer
    private let beta1: Float
    private let beta2: Float
    private let epsilon: Float
    private var stepCount = 0

    init(parameterCount: Int, beta1: Double, beta2: Double, epsilon: Double) {
        firstMoment = FloatBuffer(count: parameterCount)
        secondMoment = FloatBuffer(count: parameterCount)
        self.beta1 = Float(beta1)
        self.beta2 = Float(beta2)
        self.epsilon = Float(epsilon)
    }

    /// Counts a step and returns its bias-corrected step size, for `update`.
    func nextStepSize(learningRate: Double) -> Float {
        stepCount += 1
        let power = Double(stepCount)
        return Float(learningRate * (1 - pow(Double(beta2), power)).squareRoot() / (1 - pow(Double(beta1), power)))
    }

    /// Applies one step to the parameters in `range` (the step counted by `nextStepSize`), vectorised in CLSTMCell.
    func update(parameters: FloatBuffer, gradients: FloatBuffer, stepSize: Float, range: Range<Int>) {
        candlecast_adam_update(
            parameters.pointer, gradients.pointer, firstMoment.pointer, secondMoment.pointer, Int32(range.lowerBound),
            Int32(range.upperBound), stepSize, beta1, beta2, epsilon)
    }
}

/// The sum of the squares of the gradients in `range`, in Double.
func sumOfSquares(_ gradients: FloatBuffer, range: Range<Int>) -> Double {
    var sum = 0.0
    for index in range {
        let value = Double(gradients.pointer[index])
        sum += value * value
    }
    return sum
}

/// Rescales the gradients in `range` so that the global L2 norm, `norm` (over all of them), is at most `maximumNorm`.
func clip(_ gradients: FloatBuffer, range: Range<Int>, norm: Double, maximumNorm: Double) {
    guard norm > maximumNorm else { return }
    let scale = Float(maximumNorm / norm)
    for index in range { gradients.pointer[index] *= scale }
}
