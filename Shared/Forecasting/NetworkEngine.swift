import Contracts

/// Batched forward pass and backpropagation through time over a flat parameter vector.
///
/// Data layout is time-major and row-major: a sequence tensor [T, B, F] stores step t of sample b at
/// `(t * B + b) * F`, so all steps stack into one [T * B, F] matrix and each step is a contiguous [B, F] block.
/// That lets the input projection of every step, and the weight gradients of every step, each be one GEMM.
/// Buffers are allocated once for `batchCapacity` samples and reused; the engine is not thread-safe.
final class NetworkEngine<Scalar: BLASScalar> {
    let layout: NetworkLayout
    let batchCapacity: Int

    private struct RecurrentBuffers {
        let layer: RecurrentLayerLayout
        /// [T, B, 4U]: pre-activations, overwritten in place by the gate activations i, f, g, o.
        let gates: UnsafeMutablePointer<Scalar>
        /// [T + 1, B, U]: cell and hidden states, block 0 being the zero initial state.
        let cells: UnsafeMutablePointer<Scalar>
        let hidden: UnsafeMutablePointer<Scalar>
        /// [T, B, U]: activation(c_t), reused by the backward pass.
        let activatedCells: UnsafeMutablePointer<Scalar>
        /// [T, B, 4U]: loss gradient with respect to the pre-activations.
        let gateGradients: UnsafeMutablePointer<Scalar>
        /// [T, B, U]: loss gradient with respect to h_t arriving from the layer above.
        let outputGradients: UnsafeMutablePointer<Scalar>
        /// [B, U]: running gradients with respect to h_t and c_t through time.
        let hiddenGradient: UnsafeMutablePointer<Scalar>
        let cellGradient: UnsafeMutablePointer<Scalar>
    }

    private struct DenseBuffers {
        let layer: DenseLayerLayout
        /// [B, units] activations, and the gradient with respect to them (turned into the pre-activation gradient in place).
        let outputs: UnsafeMutablePointer<Scalar>
        let gradients: UnsafeMutablePointer<Scalar>
    }

    private var recurrentBuffers: [RecurrentBuffers] = []
    private var denseBuffers: [DenseBuffers] = []
    private var allocations: [UnsafeMutablePointer<Scalar>] = []
    /// Inputs and batch size of the last forward pass, which the backward pass differentiates.
    private var forwardInputs: UnsafePointer<Scalar>?
    private var forwardBatch = 0

    init(layout: NetworkLayout, batchCapacity: Int) {
        self.layout = layout
        self.batchCapacity = batchCapacity
        let steps = layout.window
        func allocate(_ count: Int) -> UnsafeMutablePointer<Scalar> {
            let pointer = UnsafeMutablePointer<Scalar>.allocate(capacity: count)
            pointer.initialize(repeating: 0, count: count)
            allocations.append(pointer)
            return pointer
        }
        for layer in layout.recurrentLayers {
            let stepSize = batchCapacity * layer.units
            recurrentBuffers.append(
                RecurrentBuffers(
                    layer: layer,
                    gates: allocate(steps * 4 * stepSize),
                    cells: allocate((steps + 1) * stepSize),
                    hidden: allocate((steps + 1) * stepSize),
                    activatedCells: allocate(steps * stepSize),
                    gateGradients: allocate(steps * 4 * stepSize),
                    outputGradients: allocate(steps * stepSize),
                    hiddenGradient: allocate(stepSize),
                    cellGradient: allocate(stepSize)))
        }
        for layer in layout.denseLayers {
            denseBuffers.append(
                DenseBuffers(
                    layer: layer, outputs: allocate(batchCapacity * layer.units), gradients: allocate(batchCapacity * layer.units)))
        }
    }

    deinit {
        for pointer in allocations { pointer.deallocate() }
    }

    // MARK: Forward

    /// Runs the network on `batch` sequences laid out [T, B, featureCount] and returns the outputs [B, outputSize],
    /// valid until the next call. `inputs` must stay alive until `backward` has used them.
    func forward(parameters: UnsafePointer<Scalar>, inputs: UnsafePointer<Scalar>, batch: Int) -> UnsafePointer<Scalar> {
        forwardInputs = inputs
        forwardBatch = batch
        var layerInputs = inputs
        for buffers in recurrentBuffers {
            forwardRecurrent(buffers, parameters: parameters, inputs: layerInputs, batch: batch)
            layerInputs = UnsafePointer(buffers.hidden + batch * buffers.layer.units)
        }
        var denseInputs = lastHiddenState(batch: batch)
        for buffers in denseBuffers {
            forwardDense(buffers, parameters: parameters, inputs: denseInputs, batch: batch)
            denseInputs = UnsafePointer(buffers.outputs)
        }
        return denseInputs
    }

    private func lastHiddenState(batch: Int) -> UnsafePointer<Scalar> {
        let last = recurrentBuffers[recurrentBuffers.count - 1]
        return UnsafePointer(last.hidden + layout.window * batch * last.layer.units)
    }

    private func forwardRecurrent(
        _ buffers: RecurrentBuffers, parameters: UnsafePointer<Scalar>, inputs: UnsafePointer<Scalar>, batch: Int
    ) {
        let layer = buffers.layer
        let steps = layout.window
        let units = layer.units
        let width = layer.gateWidth
        let stepSize = batch * units
        let bias = parameters + layer.biasOffset
        let gates = buffers.gates
        // Every row of the projection starts as the bias; one GEMM then adds x_t W for all steps at once.
        for row in 0..<(steps * batch) { (gates + row * width).update(from: bias, count: width) }
        Scalar.gemm(
            transposeA: false, transposeB: false, m: steps * batch, n: width, k: layer.inputSize, alpha: 1,
            a: inputs, lda: layer.inputSize, b: parameters + layer.kernelOffset, ldb: width,
            beta: 1, c: gates, ldc: width)
        buffers.cells.update(repeating: 0, count: stepSize)
        buffers.hidden.update(repeating: 0, count: stepSize)
        let recurrentKernel = parameters + layer.recurrentOffset
        let activation = layer.activation
        for step in 0..<steps {
            let stepGates = gates + step * batch * width
            if step > 0 && batch == 1 {
                // A single forecast: GEMV streams the kernel without GEMM's packing, which dominates at batch 1.
                Scalar.vectorTimesMatrix(
                    m: units, n: width, alpha: 1, a: recurrentKernel, lda: width, x: buffers.hidden + step * stepSize,
                    beta: 1, y: stepGates)
            } else if step > 0 {
                Scalar.gemm(
                    transposeA: false, transposeB: false, m: batch, n: width, k: units, alpha: 1,
                    a: buffers.hidden + step * stepSize, lda: units, b: recurrentKernel, ldb: width,
                    beta: 1, c: stepGates, ldc: width)
            }
            let previousCells = buffers.cells + step * stepSize
            let cells = buffers.cells + (step + 1) * stepSize
            let hidden = buffers.hidden + (step + 1) * stepSize
            let activatedCells = buffers.activatedCells + step * stepSize
            for sample in 0..<batch {
                let row = stepGates + sample * width
                let state = sample * units
                for unit in 0..<units {
                    let inputGate = sigmoid(row[unit])
                    let forgetGate = sigmoid(row[units + unit])
                    let candidate = activate(row[2 * units + unit], activation)
                    let outputGate = sigmoid(row[3 * units + unit])
                    row[unit] = inputGate
                    row[units + unit] = forgetGate
                    row[2 * units + unit] = candidate
                    row[3 * units + unit] = outputGate
                    let cell = forgetGate * previousCells[state + unit] + inputGate * candidate
                    let activatedCell = activate(cell, activation)
                    cells[state + unit] = cell
                    activatedCells[state + unit] = activatedCell
                    hidden[state + unit] = outputGate * activatedCell
                }
            }
        }
    }

    private func forwardDense(
        _ buffers: DenseBuffers, parameters: UnsafePointer<Scalar>, inputs: UnsafePointer<Scalar>, batch: Int
    ) {
        let layer = buffers.layer
        let outputs = buffers.outputs
        for sample in 0..<batch {
            (outputs + sample * layer.units).update(from: parameters + layer.biasOffset, count: layer.units)
        }
        Scalar.gemm(
            transposeA: false, transposeB: false, m: batch, n: layer.units, k: layer.inputSize, alpha: 1,
            a: inputs, lda: layer.inputSize, b: parameters + layer.kernelOffset, ldb: layer.units,
            beta: 1, c: outputs, ldc: layer.units)
        if layer.activation != .linear {
            for index in 0..<(batch * layer.units) { outputs[index] = activate(outputs[index], layer.activation) }
        }
    }

    // MARK: Backward

    /// Backpropagates `outputGradient` ([B, outputSize], the loss gradient with respect to the last forward
    /// pass's outputs). Writes every parameter's gradient into `parameterGradients` (overwriting it) and, if
    /// given, the gradient with respect to the inputs ([T, B, featureCount]) into `inputGradients`.
    func backward(
        parameters: UnsafePointer<Scalar>, outputGradient: UnsafePointer<Scalar>,
        parameterGradients: UnsafeMutablePointer<Scalar>, inputGradients: UnsafeMutablePointer<Scalar>? = nil
    ) {
        guard let inputs = forwardInputs else { return }
        let batch = forwardBatch
        let steps = layout.window
        let lastRecurrent = recurrentBuffers[recurrentBuffers.count - 1]
        let lastUnits = lastRecurrent.layer.units
        // Only the final hidden state of the last LSTM feeds the dense stack.
        lastRecurrent.outputGradients.update(repeating: 0, count: (steps - 1) * batch * lastUnits)
        let finalStateGradient = lastRecurrent.outputGradients + (steps - 1) * batch * lastUnits

        let lastDense = denseBuffers[denseBuffers.count - 1]
        lastDense.gradients.update(from: outputGradient, count: batch * lastDense.layer.units)
        for index in stride(from: denseBuffers.count - 1, through: 0, by: -1) {
            let buffers = denseBuffers[index]
            let layerInputs = index == 0 ? lastHiddenState(batch: batch) : UnsafePointer(denseBuffers[index - 1].outputs)
            let inputGradientTarget = index == 0 ? finalStateGradient : denseBuffers[index - 1].gradients
            backwardDense(
                buffers, parameters: parameters, inputs: layerInputs, batch: batch,
                parameterGradients: parameterGradients, inputGradients: inputGradientTarget)
        }

        for index in stride(from: recurrentBuffers.count - 1, through: 0, by: -1) {
            let buffers = recurrentBuffers[index]
            let layerInputs =
                index == 0 ? inputs : UnsafePointer(recurrentBuffers[index - 1].hidden + batch * recurrentBuffers[index - 1].layer.units)
            let inputGradientTarget = index == 0 ? inputGradients : recurrentBuffers[index - 1].outputGradients
            backwardRecurrent(
                buffers, parameters: parameters, inputs: layerInputs, batch: batch,
                parameterGradients: parameterGradients, inputGradients: inputGradientTarget)
        }
    }

    private func backwardDense(
        _ buffers: DenseBuffers, parameters: UnsafePointer<Scalar>, inputs: UnsafePointer<Scalar>, batch: Int,
        parameterGradients: UnsafeMutablePointer<Scalar>, inputGradients: UnsafeMutablePointer<Scalar>
    ) {
        let layer = buffers.layer
        let gradients = buffers.gradients
        if layer.activation != .linear {
            for index in 0..<(batch * layer.units) {
                gradients[index] *= activationDerivative(output: buffers.outputs[index], layer.activation)
            }
        }
        Scalar.gemm(
            transposeA: true, transposeB: false, m: layer.inputSize, n: layer.units, k: batch, alpha: 1,
            a: inputs, lda: layer.inputSize, b: gradients, ldb: layer.units,
            beta: 0, c: parameterGradients + layer.kernelOffset, ldc: layer.units)
        sumRows(of: gradients, rows: batch, columns: layer.units, into: parameterGradients + layer.biasOffset)
        Scalar.gemm(
            transposeA: false, transposeB: true, m: batch, n: layer.inputSize, k: layer.units, alpha: 1,
            a: gradients, lda: layer.units, b: parameters + layer.kernelOffset, ldb: layer.units,
            beta: 0, c: inputGradients, ldc: layer.inputSize)
    }

    private func backwardRecurrent(
        _ buffers: RecurrentBuffers, parameters: UnsafePointer<Scalar>, inputs: UnsafePointer<Scalar>, batch: Int,
        parameterGradients: UnsafeMutablePointer<Scalar>, inputGradients: UnsafeMutablePointer<Scalar>?
    ) {
        let layer = buffers.layer
        let steps = layout.window
        let units = layer.units
        let width = layer.gateWidth
        let stepSize = batch * units
        let recurrentKernel = parameters + layer.recurrentOffset
        let activation = layer.activation
        let hiddenGradient = buffers.hiddenGradient
        let cellGradient = buffers.cellGradient
        cellGradient.update(repeating: 0, count: stepSize)
        for step in stride(from: steps - 1, through: 0, by: -1) {
            // dh_t = gradient from above + dz_{t+1} U^T (the recurrent path).
            hiddenGradient.update(from: buffers.outputGradients + step * stepSize, count: stepSize)
            if step < steps - 1 {
                Scalar.gemm(
                    transposeA: false, transposeB: true, m: batch, n: units, k: width, alpha: 1,
                    a: buffers.gateGradients + (step + 1) * batch * width, lda: width, b: recurrentKernel, ldb: width,
                    beta: 1, c: hiddenGradient, ldc: units)
            }
            let stepGates = buffers.gates + step * batch * width
            let stepGateGradients = buffers.gateGradients + step * batch * width
            let previousCells = buffers.cells + step * stepSize
            let cells = buffers.cells + (step + 1) * stepSize
            let activatedCells = buffers.activatedCells + step * stepSize
            for sample in 0..<batch {
                let row = stepGates + sample * width
                let gradientRow = stepGateGradients + sample * width
                let state = sample * units
                for unit in 0..<units {
                    let inputGate = row[unit]
                    let forgetGate = row[units + unit]
                    let candidate = row[2 * units + unit]
                    let outputGate = row[3 * units + unit]
                    let activatedCell = activatedCells[state + unit]
                    let hiddenDelta = hiddenGradient[state + unit]
                    let cellDelta =
                        hiddenDelta * outputGate
                        * cellActivationDerivative(cell: cells[state + unit], activated: activatedCell, activation)
                        + cellGradient[state + unit]
                    gradientRow[unit] = cellDelta * candidate * inputGate * (1 - inputGate)
                    gradientRow[units + unit] = cellDelta * previousCells[state + unit] * forgetGate * (1 - forgetGate)
                    gradientRow[2 * units + unit] = cellDelta * inputGate * activationDerivative(output: candidate, activation)
                    gradientRow[3 * units + unit] = hiddenDelta * activatedCell * outputGate * (1 - outputGate)
                    cellGradient[state + unit] = cellDelta * forgetGate
                }
            }
        }
        let allGateGradients = UnsafePointer(buffers.gateGradients)
        // Weight gradients summed over all steps: one GEMM each over the stacked [T * B] rows.
        Scalar.gemm(
            transposeA: true, transposeB: false, m: units, n: width, k: steps * batch, alpha: 1,
            a: buffers.hidden, lda: units, b: allGateGradients, ldb: width,
            beta: 0, c: parameterGradients + layer.recurrentOffset, ldc: width)
        Scalar.gemm(
            transposeA: true, transposeB: false, m: layer.inputSize, n: width, k: steps * batch, alpha: 1,
            a: inputs, lda: layer.inputSize, b: allGateGradients, ldb: width,
            beta: 0, c: parameterGradients + layer.kernelOffset, ldc: width)
        sumRows(of: allGateGradients, rows: steps * batch, columns: width, into: parameterGradients + layer.biasOffset)
        if let inputGradients {
            Scalar.gemm(
                transposeA: false, transposeB: true, m: steps * batch, n: layer.inputSize, k: width, alpha: 1,
                a: allGateGradients, lda: width, b: parameters + layer.kernelOffset, ldb: width,
                beta: 0, c: inputGradients, ldc: layer.inputSize)
        }
    }

    private func sumRows(
        of matrix: UnsafePointer<Scalar>, rows: Int, columns: Int, into destination: UnsafeMutablePointer<Scalar>
    ) {
        destination.update(repeating: 0, count: columns)
        for row in 0..<rows {
            let values = matrix + row * columns
            for column in 0..<columns { destination[column] += values[column] }
        }
    }
}

// MARK: Activations

@inline(__always)
private func sigmoid<Scalar: BLASScalar>(_ value: Scalar) -> Scalar {
    1 / (1 + Scalar.exponential(-value))
}

@inline(__always)
private func activate<Scalar: BLASScalar>(_ value: Scalar, _ activation: Activation) -> Scalar {
    switch activation {
    case .relu: value > 0 ? value : 0
    case .tanh: Scalar.hyperbolicTangent(value)
    case .linear: value
    }
}

/// Derivative expressed through the activation's output (relu: output > 0 exactly when input > 0).
@inline(__always)
private func activationDerivative<Scalar: BLASScalar>(output: Scalar, _ activation: Activation) -> Scalar {
    switch activation {
    case .relu: output > 0 ? 1 : 0
    case .tanh: 1 - output * output
    case .linear: 1
    }
}

@inline(__always)
private func cellActivationDerivative<Scalar: BLASScalar>(
    cell: Scalar, activated: Scalar, _ activation: Activation
) -> Scalar {
    switch activation {
    case .relu: cell > 0 ? 1 : 0
    case .tanh: 1 - activated * activated
    case .linear: 1
    }
}
