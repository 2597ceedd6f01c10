import Foundation

/// Adam with Keras's update rule: the bias corrections are folded into the step size.
final class AdamOptimizer {
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

    func step(parameters: FloatBuffer, gradients: FloatBuffer, learningRate: Double) {
        stepCount += 1
        let power = Double(stepCount)
        let stepSize = Float(
            learningRate * (1 - pow(Double(beta2), power)).squareRoot() / (1 - pow(Double(beta1), power)))
        let weights = parameters.pointer
        let gradient = gradients.pointer
        let first = firstMoment.pointer
        let second = secondMoment.pointer
        let oneMinusBeta1 = 1 - beta1
        let oneMinusBeta2 = 1 - beta2
        for index in 0..<parameters.count {
            let g = gradient[index]
            first[index] += (g - first[index]) * oneMinusBeta1
            second[index] += (g * g - second[index]) * oneMinusBeta2
            weights[index] -= stepSize * first[index] / (second[index].squareRoot() + epsilon)
        }
    }
}

/// Rescales the gradients so their global L2 norm is at most `maximumNorm`.
func clipGlobalNorm(_ gradients: FloatBuffer, maximumNorm: Double) {
    var sumOfSquares = 0.0
    for index in 0..<gradients.count {
        let value = Double(gradients.pointer[index])
        sumOfSquares += value * value
    }
    let norm = sumOfSquares.squareRoot()
    guard norm > maximumNorm else { return }
    let scale = Float(maximumNorm / norm)
    for index in 0..<gradients.count { gradients.pointer[index] *= scale }
}
