import Contracts

/// Where each layer's parameters live in the single flat parameter vector (one buffer keeps Adam,
/// clipping, checkpoints and the model file simple).
struct RecurrentLayerLayout: Sendable {
    let inputSize: Int
    let units: Int
    let activation: Activation
    /// Input kernel [inputSize, 4 * units], recurrent kernel [units, 4 * units], bias [4 * units];
    /// gate blocks in Keras order: input, forget, candidate, output.
    let kernelOffset: Int
    let recurrentOffset: Int
    let biasOffset: Int
    var gateWidth: Int { 4 * units }
}

struct DenseLayerLayout: Sendable {
    let inputSize: Int
    let units: Int
    let activation: Activation
    /// Kernel [inputSize, units], bias [units].
    let kernelOffset: Int
    let biasOffset: Int
}

struct NetworkLayout: Sendable {
    let window: Int
    let featureCount: Int
    let recurrentLayers: [RecurrentLayerLayout]
    let denseLayers: [DenseLayerLayout]
    let parameterCount: Int

    init(_ configuration: ModelConfiguration) throws {
        try configuration.validate()
        var offset = 0
        var inputSize = configuration.featureCount
        var recurrent: [RecurrentLayerLayout] = []
        var dense: [DenseLayerLayout] = []
        for layer in configuration.layers {
            switch layer {
            case .lstm(let units, let activation):
                let kernel = offset
                let recurrentKernel = kernel + inputSize * 4 * units
                let bias = recurrentKernel + units * 4 * units
                recurrent.append(
                    RecurrentLayerLayout(
                        inputSize: inputSize, units: units, activation: activation,
                        kernelOffset: kernel, recurrentOffset: recurrentKernel, biasOffset: bias))
                offset = bias + 4 * units
                inputSize = units
            case .dense(let units, let activation):
                let kernel = offset
                let bias = kernel + inputSize * units
                dense.append(
                    DenseLayerLayout(
                        inputSize: inputSize, units: units, activation: activation, kernelOffset: kernel, biasOffset: bias))
                offset = bias + units
                inputSize = units
            }
        }
        window = configuration.window
        featureCount = configuration.featureCount
        recurrentLayers = recurrent
        denseLayers = dense
        parameterCount = offset
    }

    /// Keras-equivalent initial weights: glorot-uniform kernels, orthogonal recurrent kernels,
    /// zero biases except the LSTM forget gate's, which starts at 1.
    func initialParameters(using generator: inout SeededGenerator) -> [Float] {
        var parameters = [Float](repeating: 0, count: parameterCount)
        func fillGlorotUniform(offset: Int, fanIn: Int, fanOut: Int) {
            let limit = (6.0 / Double(fanIn + fanOut)).squareRoot()
            for index in offset..<(offset + fanIn * fanOut) {
                parameters[index] = Float((generator.nextUnitDouble() * 2 - 1) * limit)
            }
        }
        for layer in recurrentLayers {
            fillGlorotUniform(offset: layer.kernelOffset, fanIn: layer.inputSize, fanOut: layer.gateWidth)
            let orthogonal = orthogonalRows(rows: layer.units, columns: layer.gateWidth, using: &generator)
            for index in orthogonal.indices { parameters[layer.recurrentOffset + index] = Float(orthogonal[index]) }
            for unit in 0..<layer.units { parameters[layer.biasOffset + layer.units + unit] = 1 }
        }
        for layer in denseLayers {
            fillGlorotUniform(offset: layer.kernelOffset, fanIn: layer.inputSize, fanOut: layer.units)
        }
        return parameters
    }
}

/// A rows x columns matrix (rows <= columns) with orthonormal rows, row-major: Gram-Schmidt of Gaussian rows,
/// which is Keras's Orthogonal initializer (QR of a Gaussian matrix with the sign of R's diagonal made positive).
func orthogonalRows(rows: Int, columns: Int, using generator: inout SeededGenerator) -> [Double] {
    var matrix = (0..<(rows * columns)).map { _ in generator.nextStandardNormal() }
    matrix.withUnsafeMutableBufferPointer { values in
        for row in 0..<rows {
            let current = values.baseAddress! + row * columns
            // Two Gram-Schmidt passes keep the rows orthogonal to float precision.
            for _ in 0..<2 {
                for previousRow in 0..<row {
                    let previous = values.baseAddress! + previousRow * columns
                    var projection = 0.0
                    for column in 0..<columns { projection += current[column] * previous[column] }
                    for column in 0..<columns { current[column] -= projection * previous[column] }
                }
            }
            var norm = 0.0
            for column in 0..<columns { norm += current[column] * current[column] }
            let scale = 1 / norm.squareRoot()
            for column in 0..<columns { current[column] *= scale }
        }
    }
    return matrix
}
