import Foundation
import Testing

@testable import Forecasting

@Suite("BLAS kernel and denormals")
struct BLASKernelTests {
    @Test(
        "a generic kernel on an AVX2 or AVX-512 CPU is corrected to that CPU's kernel",
        arguments: [
            ("Prescott", BLASKernel.VectorLevel.avx512, "SkylakeX"), ("Prescott", .avx2, "Haswell"), ("Nehalem", .avx2, "Haswell"),
            ("Sandybridge", .avx512, "SkylakeX"), ("Core2", .avx512, "SkylakeX"),
        ])
    func fallbackIsCorrected(coreName: String, cpu: BLASKernel.VectorLevel, expected: String) {
        let kernel = BLASKernel(coreName: coreName, cpuLevel: cpu)
        #expect(kernel.isFallback)
        #expect(kernel.correction == expected)
    }

    @Test(
        "a kernel that fits the CPU, or a CPU without AVX2, or a kernel not known here is left alone",
        arguments: [
            ("SkylakeX", BLASKernel.VectorLevel.avx512), ("Cooperlake", .avx512), ("Haswell", .avx2), ("Zen", .avx2),
            ("Prescott", .avx), ("Prescott", .sse), ("Prescott", .notX86), ("ARMV8", .notX86), ("SomeFutureLake", .avx512),
        ])
    func fittingKernelIsKept(coreName: String, cpu: BLASKernel.VectorLevel) {
        let kernel = BLASKernel(coreName: coreName, cpuLevel: cpu)
        #expect(!kernel.isFallback)
        #expect(kernel.correction == nil)
    }

    /// The kernel the test process computes with (scripts/test.sh exports the correction before the tests start).
    @Test("this process does not run OpenBLAS's generic fallback on a CPU with AVX2")
    func processKernelIsNotAFallback() {
        let kernel = BLASKernel.current
        #expect(!kernel.isFallback, "\(kernel): export OPENBLAS_CORETYPE=\(kernel.correction ?? "")")
        if kernel.cpuLevel >= .avx2 {
            #expect(BLASKernel.kernelLevel(kernel.coreName).map { $0 >= .avx2 } ?? true, "\(kernel)")
        }
    }

    @Test("denormals flush to zero inside DenormalFlushing.run and the thread's mode is restored after")
    func denormalsFlush() {
        // Runtime values, so that the compiler cannot fold the division.
        let tiny = Float(ProcessInfo.processInfo.processIdentifier > 0 ? 1 : 2) * Float.leastNormalMagnitude
        let divisor = Float(CommandLine.arguments.count > 0 ? 4 : 8)
        let before = DenormalFlushing.isActive
        #expect((tiny / divisor).isSubnormal)
        let flushed = DenormalFlushing.run { () -> (Float, Bool) in (tiny / divisor, DenormalFlushing.isActive) }
        #if arch(x86_64)
            #expect(flushed.0 == 0)
            #expect(flushed.1)
        #endif
        #expect(DenormalFlushing.isActive == before)
        #expect((tiny / divisor).isSubnormal)
    }
}
