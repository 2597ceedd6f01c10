/// The LSTM cell's elementwise arithmetic for a run of units of one sample: the gates' activations and the new cell
/// and hidden states forward, the gate gradients backward. This generic form is the reference and runs Double (the
/// gradient checks); Float runs the C kernel `candlecast_lstm_forward`/`_backward` (CLSTMCell), the same formulas
/// vectorised, through `BLASScalar.lstmForward`/`lstmBackward`.
///
/// `gates` and `gateGradients` point at a sample's row of [4U] values (gate blocks i, f, g, o, `width` apart);
/// every other pointer at that sample's [U] block; `run` is a range of unit indices.
enum LSTMCell {
    static func forward<Scalar: BinaryFloatingPoint>(
        gates row: UnsafeMutablePointer<Scalar>, width units: Int, run: Range<Int>, previousCells: UnsafePointer<Scalar>,
        cells: UnsafeMutablePointer<Scalar>, activatedCells: UnsafeMutablePointer<Scalar>, hidden: UnsafeMutablePointer<Scalar>,
        activation: Activation, exponential: (Scalar) -> Scalar, hyperbolicTangent: (Scalar) -> Scalar
    ) {
        func sigmoid(_ value: Scalar) -> Scalar { 1 / (1 + exponential(-value)) }
        func activate(_ value: Scalar) -> Scalar {
            switch activation {
            case .relu: value > 0 ? value : 0
            case .tanh: hyperbolicTangent(value)
            case .linear: value
            }
        }
        for unit in run {
            let inputGate = sigmoid(row[unit])
            let forgetGate = sigmoid(row[units + unit])
            let candidate = activate(row[2 * units + unit])
            let outputGate = sigmoid(row[3 * units + unit])
            row[unit] = inputGate
            row[units + unit] = forgetGate
            row[2 * units + unit] = candidate
            row[3 * units + unit] = outputGate
            let cell = forgetGate * previousCells[unit] + inputGate * candidate
            let activatedCell = activate(cell)
            cells[unit] = cell
            activatedCells[unit] = activatedCell
            hidden[unit] = outputGate * activatedCell
        }
    }

    /// Reads the gate activations `forward` left in `gates` and the hidden-state gradient; writes the pre-activation
    /// gradients and carries the cell-state gradient one step back (in place).
    static func backward<Scalar: BinaryFloatingPoint>(
        gates row: UnsafePointer<Scalar>, gateGradients gradientRow: UnsafeMutablePointer<Scalar>, width units: Int, run: Range<Int>,
        previousCells: UnsafePointer<Scalar>, cells: UnsafePointer<Scalar>, activatedCells: UnsafePointer<Scalar>,
        hiddenGradient: UnsafePointer<Scalar>, cellGradient: UnsafeMutablePointer<Scalar>, activation: Activation
    ) {
        // Derivatives through the activations' outputs (relu: output > 0 exactly when input > 0).
        func derivative(output: Scalar) -> Scalar {
            switch activation {
            case .relu: output > 0 ? 1 : 0
            case .tanh: 1 - output * output
            case .linear: 1
            }
        }
        for unit in run {
            let inputGate = row[unit]
            let forgetGate = row[units + unit]
            let candidate = row[2 * units + unit]
            let outputGate = row[3 * units + unit]
            let activatedCell = activatedCells[unit]
            let hiddenDelta = hiddenGradient[unit]
            let cellDerivative = activation == .relu ? (cells[unit] > 0 ? 1 : 0) : derivative(output: activatedCell)
            let cellDelta = hiddenDelta * outputGate * cellDerivative + cellGradient[unit]
            gradientRow[unit] = cellDelta * candidate * inputGate * (1 - inputGate)
            gradientRow[units + unit] = cellDelta * previousCells[unit] * forgetGate * (1 - forgetGate)
            gradientRow[2 * units + unit] = cellDelta * inputGate * derivative(output: candidate)
            gradientRow[3 * units + unit] = hiddenDelta * activatedCell * outputGate * (1 - outputGate)
            cellGradient[unit] = cellDelta * forgetGate
        }
    }
}

extension Activation {
    /// The code the C kernel takes (candlecast_lstm_cell.h).
    var cellKernelCode: Int32 {
        switch self {
        case .relu: 0
        case .tanh: 1
        case .linear: 2
        }
    }
}
