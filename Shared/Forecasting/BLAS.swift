import CBLAS
import CLSTMCell
import Foundation

/// Scalars the network runs on: Float for training and serving, Double for gradient checks.
protocol BLASScalar: BinaryFloatingPoint, Sendable {
    /// Row-major C = alpha * op(A) * op(B) + beta * C, with op(A) m x k and op(B) k x n.
    static func gemm(
        transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, alpha: Self,
        a: UnsafePointer<Self>, lda: Int, b: UnsafePointer<Self>, ldb: Int,
        beta: Self, c: UnsafeMutablePointer<Self>, ldc: Int)
    /// y = alpha * x A + beta * y for a row vector x (length m) and row-major A (m x n): A^T x in BLAS terms.
    static func vectorTimesMatrix(
        m: Int, n: Int, alpha: Self, a: UnsafePointer<Self>, lda: Int, x: UnsafePointer<Self>,
        beta: Self, y: UnsafeMutablePointer<Self>)
    static func hyperbolicTangent(_ value: Self) -> Self
    /// The LSTM cell's elementwise arithmetic for a run of one sample's units (`LSTMCell` says what each pointer is).
    static func lstmForward(
        gates: UnsafeMutablePointer<Self>, width: Int, run: Range<Int>, previousCells: UnsafePointer<Self>,
        cells: UnsafeMutablePointer<Self>, activatedCells: UnsafeMutablePointer<Self>, hidden: UnsafeMutablePointer<Self>,
        activation: Activation)
    static func lstmBackward(
        gates: UnsafePointer<Self>, gateGradients: UnsafeMutablePointer<Self>, width: Int, run: Range<Int>,
        previousCells: UnsafePointer<Self>, cells: UnsafePointer<Self>, activatedCells: UnsafePointer<Self>,
        hiddenGradient: UnsafePointer<Self>, cellGradient: UnsafeMutablePointer<Self>, activation: Activation)
}

private func transposition(_ transpose: Bool) -> CBLAS_TRANSPOSE { transpose ? CblasTrans : CblasNoTrans }

extension Float: BLASScalar {
    static func gemm(
        transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, alpha: Float,
        a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
        beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        cblas_sgemm(
            CblasRowMajor, transposition(transposeA), transposition(transposeB), Int32(m), Int32(n), Int32(k),
            alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }
    static func vectorTimesMatrix(
        m: Int, n: Int, alpha: Float, a: UnsafePointer<Float>, lda: Int, x: UnsafePointer<Float>,
        beta: Float, y: UnsafeMutablePointer<Float>
    ) {
        cblas_sgemv(CblasRowMajor, CblasTrans, Int32(m), Int32(n), alpha, a, Int32(lda), x, 1, beta, y, 1)
    }
    static func hyperbolicTangent(_ value: Float) -> Float { tanh(value) }

    static func lstmForward(
        gates: UnsafeMutablePointer<Float>, width: Int, run: Range<Int>, previousCells: UnsafePointer<Float>,
        cells: UnsafeMutablePointer<Float>, activatedCells: UnsafeMutablePointer<Float>, hidden: UnsafeMutablePointer<Float>,
        activation: Activation
    ) {
        candlecast_lstm_forward(
            gates, Int32(width), Int32(run.lowerBound), Int32(run.upperBound), previousCells, cells, activatedCells, hidden,
            activation.cellKernelCode)
    }

    static func lstmBackward(
        gates: UnsafePointer<Float>, gateGradients: UnsafeMutablePointer<Float>, width: Int, run: Range<Int>,
        previousCells: UnsafePointer<Float>, cells: UnsafePointer<Float>, activatedCells: UnsafePointer<Float>,
        hiddenGradient: UnsafePointer<Float>, cellGradient: UnsafeMutablePointer<Float>, activation: Activation
    ) {
        candlecast_lstm_backward(
            gates, gateGradients, Int32(width), Int32(run.lowerBound), Int32(run.upperBound), previousCells, cells,
            activatedCells, hiddenGradient, cellGradient, activation.cellKernelCode)
    }
}

extension Double: BLASScalar {
    static func gemm(
        transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, alpha: Double,
        a: UnsafePointer<Double>, lda: Int, b: UnsafePointer<Double>, ldb: Int,
        beta: Double, c: UnsafeMutablePointer<Double>, ldc: Int
    ) {
        cblas_dgemm(
            CblasRowMajor, transposition(transposeA), transposition(transposeB), Int32(m), Int32(n), Int32(k),
            alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }
    static func vectorTimesMatrix(
        m: Int, n: Int, alpha: Double, a: UnsafePointer<Double>, lda: Int, x: UnsafePointer<Double>,
        beta: Double, y: UnsafeMutablePointer<Double>
    ) {
        cblas_dgemv(CblasRowMajor, CblasTrans, Int32(m), Int32(n), alpha, a, Int32(lda), x, 1, beta, y, 1)
    }
    static func hyperbolicTangent(_ value: Double) -> Double { tanh(value) }

    static func lstmForward(
        gates: UnsafeMutablePointer<Double>, width: Int, run: Range<Int>, previousCells: UnsafePointer<Double>,
        cells: UnsafeMutablePointer<Double>, activatedCells: UnsafeMutablePointer<Double>, hidden: UnsafeMutablePointer<Double>,
        activation: Activation
    ) {
        LSTMCell.forward(
            gates: gates, width: width, run: run, previousCells: previousCells, cells: cells, activatedCells: activatedCells,
            hidden: hidden, activation: activation, exponential: exp, hyperbolicTangent: tanh)
    }

    static func lstmBackward(
        gates: UnsafePointer<Double>, gateGradients: UnsafeMutablePointer<Double>, width: Int, run: Range<Int>,
        previousCells: UnsafePointer<Double>, cells: UnsafePointer<Double>, activatedCells: UnsafePointer<Double>,
        hiddenGradient: UnsafePointer<Double>, cellGradient: UnsafeMutablePointer<Double>, activation: Activation
    ) {
        LSTMCell.backward(
            gates: gates, gateGradients: gateGradients, width: width, run: run, previousCells: previousCells, cells: cells,
            activatedCells: activatedCells, hiddenGradient: hiddenGradient, cellGradient: cellGradient, activation: activation)
    }
}

/// OpenBLAS's thread pool size. It is process-wide: bit-for-bit reproducibility needs the same count.
public enum BLASThreads {
    public static func set(_ count: Int) { openblas_set_num_threads(Int32(max(1, count))) }
    public static var current: Int { Int(openblas_get_num_threads()) }
}
