import Contracts

/// Batched forward pass and backpropagation through time over a flat parameter vector.
///
/// Data layout is time-major and row-major: a sequence tensor [T, B, F] stores step t of sample b at
/// `(t * B + b) * F`, so all steps stack into one [T * B, F] matrix and each step is a contiguous [B, F] block.
/// That lets the input projection of every step, and the weight gradients of every step, each be one GEMM.
/// Buffers are allocated once for `batchCapacity` samples and reused.
///
/// A pass runs on every member of a `ComputeTeam` at once (model parallelism): each member computes the gates of its
/// own share of every layer's units for the whole batch, and the members meet after every time step. Each member's
/// recurrent GEMM then packs only its share of the recurrent kernel per step, at the full batch. Every value has one
/// writer, so a team size always gives the same bits. Apart from a pass's members, the engine is not thread-safe.
// @unchecked Sendable: a pass's members write disjoint parts of the buffers between barriers (see above).
final class NetworkEngine<Scalar: BLASScalar>: @unchecked Sendable {
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
    /// valid until the next call. Every member of the pass calls it with the same arguments; on return the outputs
    /// are complete for all of them.
    @discardableResult
    func forward(
        parameters: UnsafePointer<Scalar>, inputs: UnsafePointer<Scalar>, batch: Int, member: TeamMember = .alone
    ) -> UnsafePointer<Scalar> {
        var layerInputs = inputs
        for buffers in recurrentBuffers {
            forwardRecurrent(buffers, parameters: parameters, inputs: layerInputs, batch: batch, member: member)
            layerInputs = UnsafePointer(buffers.hidden + batch * buffers.layer.units)
        }
        var denseInputs = lastHiddenState(batch: batch)
        for buffers in denseBuffers {
            forwardDense(buffers, parameters: parameters, inputs: denseInputs, batch: batch, member: member)
            denseInputs = UnsafePointer(buffers.outputs)
        }
        return denseInputs
    }

    /// The outputs [B, outputSize] of the last forward pass.
    var outputs: UnsafePointer<Scalar> { UnsafePointer(denseBuffers[denseBuffers.count - 1].outputs) }

    private func lastHiddenState(batch: Int) -> UnsafePointer<Scalar> {
        let last = recurrentBuffers[recurrentBuffers.count - 1]
        return UnsafePointer(last.hidden + layout.window * batch * last.layer.units)
    }

    private func forwardRecurrent(
        _ buffers: RecurrentBuffers, parameters: UnsafePointer<Scalar>, inputs: UnsafePointer<Scalar>, batch: Int,
        member: TeamMember
    ) {
        let layer = buffers.layer
        let steps = layout.window
        let units = layer.units
        let width = layer.gateWidth
        let stepSize = batch * units
        let bias = parameters + layer.biasOffset
        let gates = buffers.gates
        let owned = member.share(of: units)
        let ownedCount = owned.count
        // This member's gate columns: its units' slice of each of the four gate blocks.
        let gateColumns = (0..<4).map { $0 * units + owned.lowerBound }
        // Every row of the projection starts as the bias; one GEMM per gate block then adds x_t W for all steps at once.
        if ownedCount > 0 {
            for row in 0..<(steps * batch) {
                for column in gateColumns { (gates + row * width + column).update(from: bias + column, count: ownedCount) }
            }
            for column in gateColumns {
                Scalar.gemm(
                    transposeA: false, transposeB: false, m: steps * batch, n: ownedCount, k: layer.inputSize, alpha: 1,
                    a: inputs, lda: layer.inputSize, b: parameters + layer.kernelOffset + column, ldb: width,
                    beta: 1, c: gates + column, ldc: width)
            }
        }
        for sample in 0..<batch {
            (buffers.cells + sample * units + owned.lowerBound).update(repeating: 0, count: ownedCount)
            (buffers.hidden + sample * units + owned.lowerBound).update(repeating: 0, count: ownedCount)
        }
        let recurrentKernel = parameters + layer.recurrentOffset
        let activation = layer.activation
        for step in 0..<steps {
            let stepGates = gates + step * batch * width
            if step > 0 && ownedCount > 0 {
                for column in gateColumns {
                    if batch == 1 {
                        // A single forecast: GEMV streams the kernel without GEMM's packing, which dominates at batch 1.
                        Scalar.vectorTimesMatrix(
                            m: units, n: ownedCount, alpha: 1, a: recurrentKernel + column, lda: width,
                            x: buffers.hidden + step * stepSize, beta: 1, y: stepGates + column)
                    } else {
                        Scalar.gemm(
                            transposeA: false, transposeB: false, m: batch, n: ownedCount, k: units, alpha: 1,
                            a: buffers.hidden + step * stepSize, lda: units, b: recurrentKernel + column, ldb: width,
                            beta: 1, c: stepGates + column, ldc: width)
                    }
                }
            }
            let previousCells = buffers.cells + step * stepSize
            let cells = buffers.cells + (step + 1) * stepSize
            let hidden = buffers.hidden + (step + 1) * stepSize
            let activatedCells = buffers.activatedCells + step * stepSize
            for sample in 0..<batch {
                let state = sample * units
                Scalar.lstmForward(
                    gates: stepGates + sample * width, width: units, run: owned, previousCells: previousCells + state,
                    cells: cells + state, activatedCells: activatedCells + state, hidden: hidden + state, activation: activation)
            }
            // The next step's GEMM reads every member's share of h_t.
            member.synchronize()
        }
    }

    private func forwardDense(
        _ buffers: DenseBuffers, parameters: UnsafePointer<Scalar>, inputs: UnsafePointer<Scalar>, batch: Int,
        member: TeamMember
    ) {
        let layer = buffers.layer
        let outputs = buffers.outputs
        let owned = member.share(of: layer.units)
        if !owned.isEmpty {
            for sample in 0..<batch {
                (outputs + sample * layer.units + owned.lowerBound).update(
                    from: parameters + layer.biasOffset + owned.lowerBound, count: owned.count)
            }
            Scalar.gemm(
                transposeA: false, transposeB: false, m: batch, n: owned.count, k: layer.inputSize, alpha: 1,
                a: inputs, lda: layer.inputSize, b: parameters + layer.kernelOffset + owned.lowerBound, ldb: layer.units,
                beta: 1, c: outputs + owned.lowerBound, ldc: layer.units)
            if layer.activation != .linear {
                for sample in 0..<batch {
                    for unit in owned {
                        let index = sample * layer.units + unit
                        outputs[index] = activate(outputs[index], layer.activation)
                    }
                }
            }
        }
        member.synchronize()
    }

    // MARK: Backward

    /// Backpropagates `outputGradient` ([B, outputSize], the loss gradient with respect to the outputs of the forward
    /// pass just run on `inputs`). Writes every parameter's gradient into `parameterGradients` (overwriting it) and, if
    /// given, the gradient with respect to the inputs ([T, B, featureCount]) into `inputGradients`. Every member of the
    /// pass calls it with the same arguments; on return the gradients are complete for all of them.
    func backward(
        parameters: UnsafePointer<Scalar>, inputs: UnsafePointer<Scalar>, batch: Int, outputGradient: UnsafePointer<Scalar>,
        parameterGradients: UnsafeMutablePointer<Scalar>, inputGradients: UnsafeMutablePointer<Scalar>? = nil,
        member: TeamMember = .alone
    ) {
        let steps = layout.window
        let lastRecurrent = recurrentBuffers[recurrentBuffers.count - 1]
        let lastUnits = lastRecurrent.layer.units
        // Only the final hidden state of the last LSTM feeds the dense stack.
        let ownedLast = member.share(of: lastUnits)
        for row in 0..<((steps - 1) * batch) {
            (lastRecurrent.outputGradients + row * lastUnits + ownedLast.lowerBound).update(repeating: 0, count: ownedLast.count)
        }
        let finalStateGradient = lastRecurrent.outputGradients + (steps - 1) * batch * lastUnits

        let lastDense = denseBuffers[denseBuffers.count - 1]
        let ownedOutputs = member.share(of: lastDense.layer.units)
        for sample in 0..<batch {
            let offset = sample * lastDense.layer.units + ownedOutputs.lowerBound
            (lastDense.gradients + offset).update(from: outputGradient + offset, count: ownedOutputs.count)
        }
        for index in stride(from: denseBuffers.count - 1, through: 0, by: -1) {
            let buffers = denseBuffers[index]
            let layerInputs = index == 0 ? lastHiddenState(batch: batch) : UnsafePointer(denseBuffers[index - 1].outputs)
            let inputGradientTarget = index == 0 ? finalStateGradient : denseBuffers[index - 1].gradients
            backwardDense(
                buffers, parameters: parameters, inputs: layerInputs, batch: batch,
                parameterGradients: parameterGradients, inputGradients: inputGradientTarget, member: member)
        }

        for index in stride(from: recurrentBuffers.count - 1, through: 0, by: -1) {
            let buffers = recurrentBuffers[index]
            let layerInputs =
                index == 0 ? inputs : UnsafePointer(recurrentBuffers[index - 1].hidden + batch * recurrentBuffers[index - 1].layer.units)
            let inputGradientTarget = index == 0 ? inputGradients : recurrentBuffers[index - 1].outputGradients
            backwardRecurrent(
                buffers, parameters: parameters, inputs: layerInputs, batch: batch,
                parameterGradients: parameterGradients, inputGradients: inputGradientTarget, member: member)
        }
    }

    private func backwardDense(
        _ buffers: DenseBuffers, parameters: UnsafePointer<Scalar>, inputs: UnsafePointer<Scalar>, batch: Int,
        parameterGradients: UnsafeMutablePointer<Scalar>, inputGradients: UnsafeMutablePointer<Scalar>, member: TeamMember
    ) {
        let layer = buffers.layer
        let gradients = buffers.gradients
        let owned = member.share(of: layer.units)
        if !owned.isEmpty {
            if layer.activation != .linear {
                for sample in 0..<batch {
                    for unit in owned {
                        let index = sample * layer.units + unit
                        gradients[index] *= activationDerivative(output: buffers.outputs[index], layer.activation)
                    }
                }
            }
            Scalar.gemm(
                transposeA: true, transposeB: false, m: layer.inputSize, n: owned.count, k: batch, alpha: 1,
                a: inputs, lda: layer.inputSize, b: gradients + owned.lowerBound, ldb: layer.units,
                beta: 0, c: parameterGradients + layer.kernelOffset + owned.lowerBound, ldc: layer.units)
            sumRows(
                of: gradients, rows: batch, columns: owned, stride: layer.units,
                into: parameterGradients + layer.biasOffset)
        }
        // The input gradient reads every member's output units.
        member.synchronize()
        let ownedInputs = member.share(of: layer.inputSize)
        if !ownedInputs.isEmpty {
            Scalar.gemm(
                transposeA: false, transposeB: true, m: batch, n: ownedInputs.count, k: layer.units, alpha: 1,
                a: gradients, lda: layer.units, b: parameters + layer.kernelOffset + ownedInputs.lowerBound * layer.units,
                ldb: layer.units, beta: 0, c: inputGradients + ownedInputs.lowerBound, ldc: layer.inputSize)
        }
        member.synchronize()
    }

    private func backwardRecurrent(
        _ buffers: RecurrentBuffers, parameters: UnsafePointer<Scalar>, inputs: UnsafePointer<Scalar>, batch: Int,
        parameterGradients: UnsafeMutablePointer<Scalar>, inputGradients: UnsafeMutablePointer<Scalar>?, member: TeamMember
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
        let owned = member.share(of: units)
        let ownedCount = owned.count
        for sample in 0..<batch { (cellGradient + sample * units + owned.lowerBound).update(repeating: 0, count: ownedCount) }
        for step in stride(from: steps - 1, through: 0, by: -1) {
            // dh_t = gradient from above + dz_{t+1} U^T (the recurrent path): this member's units, all gate columns.
            for sample in 0..<batch {
                let offset = sample * units + owned.lowerBound
                (hiddenGradient + offset).update(from: buffers.outputGradients + step * stepSize + offset, count: ownedCount)
            }
            if step < steps - 1 && ownedCount > 0 {
                Scalar.gemm(
                    transposeA: false, transposeB: true, m: batch, n: ownedCount, k: width, alpha: 1,
                    a: buffers.gateGradients + (step + 1) * batch * width, lda: width,
                    b: recurrentKernel + owned.lowerBound * width, ldb: width,
                    beta: 1, c: hiddenGradient + owned.lowerBound, ldc: units)
            }
            let stepGates = buffers.gates + step * batch * width
            let stepGateGradients = buffers.gateGradients + step * batch * width
            let previousCells = buffers.cells + step * stepSize
            let cells = buffers.cells + (step + 1) * stepSize
            let activatedCells = buffers.activatedCells + step * stepSize
            for sample in 0..<batch {
                let state = sample * units
                Scalar.lstmBackward(
                    gates: stepGates + sample * width, gateGradients: stepGateGradients + sample * width, width: units, run: owned,
                    previousCells: previousCells + state, cells: cells + state, activatedCells: activatedCells + state,
                    hiddenGradient: hiddenGradient + state, cellGradient: cellGradient + state, activation: activation)
            }
            // The previous step's hidden gradient reads every member's gate gradients.
            member.synchronize()
        }
        let allGateGradients = UnsafePointer(buffers.gateGradients)
        // Weight gradients summed over all steps, one GEMM each over the stacked [T * B] rows: this member's rows of
        // the recurrent and input kernels (the units and inputs it owns) and its columns of the bias.
        // The recurrent kernel's sum starts at step 1: h_0 is zero, so step 0 adds nothing.
        if ownedCount > 0 {
            Scalar.gemm(
                transposeA: true, transposeB: false, m: ownedCount, n: width, k: (steps - 1) * batch, alpha: 1,
                a: buffers.hidden + stepSize + owned.lowerBound, lda: units, b: allGateGradients + batch * width, ldb: width,
                beta: 0, c: parameterGradients + layer.recurrentOffset + owned.lowerBound * width, ldc: width)
        }
        let ownedInputs = member.share(of: layer.inputSize)
        if !ownedInputs.isEmpty {
            Scalar.gemm(
                transposeA: true, transposeB: false, m: ownedInputs.count, n: width, k: steps * batch, alpha: 1,
                a: inputs + ownedInputs.lowerBound, lda: layer.inputSize, b: allGateGradients, ldb: width,
                beta: 0, c: parameterGradients + layer.kernelOffset + ownedInputs.lowerBound * width, ldc: width)
        }
        sumRows(
            of: allGateGradients, rows: steps * batch, columns: member.share(of: width), stride: width,
            into: parameterGradients + layer.biasOffset)
        if let inputGradients, !ownedInputs.isEmpty {
            Scalar.gemm(
                transposeA: false, transposeB: true, m: steps * batch, n: ownedInputs.count, k: width, alpha: 1,
                a: allGateGradients, lda: width, b: parameters + layer.kernelOffset + ownedInputs.lowerBound * width,
                ldb: width, beta: 0, c: inputGradients + ownedInputs.lowerBound, ldc: layer.inputSize)
        }
        // The layer below reads its output gradients whole, and the caller reads every gradient.
        member.synchronize()
    }

    /// destination[c] = the sum over rows of matrix[row, c], for the columns given (rows `stride` apart).
    private func sumRows(
        of matrix: UnsafePointer<Scalar>, rows: Int, columns: Range<Int>, stride: Int, into destination: UnsafeMutablePointer<Scalar>
    ) {
        guard !columns.isEmpty else { return }
        (destination + columns.lowerBound).update(repeating: 0, count: columns.count)
        for row in 0..<rows {
            let values = matrix + row * stride
            for column in columns { destination[column] += values[column] }
        }
    }
}

// MARK: Activations

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
