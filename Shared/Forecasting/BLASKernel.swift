import CBLAS
import Foundation

/// Which OpenBLAS kernel this process computes with, and the correction when OpenBLAS does not know the CPU.
///
/// Debian 12's OpenBLAS 0.3.21 picks its kernel from the CPU model number at load time; on CPUs newer than
/// itself it falls back to "Prescott" (SSE3), several times slower than the AVX2/AVX-512 kernels the same CPU
/// runs. The choice is made once, when the library loads, from `OPENBLAS_CORETYPE`: so the correction is to set
/// that variable and start the process again (`correctingExecutable`), before any matrix work.
public struct BLASKernel: Sendable, Equatable, CustomStringConvertible {
    /// OpenBLAS's name for the kernel in use ("SkylakeX", "Haswell", "Prescott", ...).
    public let coreName: String
    /// The widest vector extension the CPU and OS enable (see `candlecast_cpu_vector_level`).
    public let cpuLevel: VectorLevel

    public enum VectorLevel: Int, Sendable, Comparable, CustomStringConvertible {
        case notX86 = -1
        case sse = 0
        case avx = 1
        case avx2 = 2
        case avx512 = 3
        public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
        public var description: String {
            switch self {
            case .notX86: "not x86-64"
            case .sse: "SSE"
            case .avx: "AVX"
            case .avx2: "AVX2"
            case .avx512: "AVX-512"
            }
        }
    }

    /// The kernel in use in this process, and this CPU's vector level.
    public static var current: BLASKernel {
        BLASKernel(
            coreName: openblas_get_corename().map { String(cString: $0) } ?? "unknown",
            cpuLevel: VectorLevel(rawValue: Int(candlecast_cpu_vector_level())) ?? .sse)
    }

    public init(coreName: String, cpuLevel: VectorLevel) {
        self.coreName = coreName
        self.cpuLevel = cpuLevel
    }

    /// The vector level OpenBLAS's kernel of that name is written for; nil for names not listed (left alone).
    static func kernelLevel(_ coreName: String) -> VectorLevel? {
        switch coreName.lowercased() {
        case "skylakex", "cooperlake", "sapphirerapids": .avx512
        case "haswell", "zen": .avx2
        case "sandybridge", "bulldozer", "piledriver", "steamroller", "excavator": .avx
        case "prescott", "core2", "penryn", "dunnington", "nehalem", "atom", "katmai", "coppermine", "northwood",
            "banias", "opteron", "barcelona", "bobcat", "nano":
            .sse
        default: nil
        }
    }

    /// True when OpenBLAS runs a kernel below AVX2 on a CPU that has AVX2 or AVX-512.
    public var isFallback: Bool {
        guard cpuLevel >= .avx2, let level = Self.kernelLevel(coreName) else { return false }
        return level < .avx2
    }

    /// The `OPENBLAS_CORETYPE` that gives this CPU its own kernel, when the one in use is a fallback.
    public var correction: String? {
        guard isFallback else { return nil }
        return cpuLevel >= .avx512 ? "SkylakeX" : "Haswell"
    }

    /// For the start-up log line of every process that does matrix work.
    public var logMetadata: [String: String] {
        ["blas.kernel": coreName, "cpu.vector_extension": "\(cpuLevel)", "blas.generic_fallback": "\(isFallback)"]
    }

    public var description: String {
        "OpenBLAS kernel \(coreName) on a CPU with \(cpuLevel)" + (isFallback ? " (generic fallback)" : "")
    }

    /// Starts this executable again with `OPENBLAS_CORETYPE` set when OpenBLAS fell back to a generic kernel on
    /// an AVX2 or AVX-512 CPU. Call it first thing in `main`, before any threads start. A value the user set
    /// is respected (never overridden), and the variable set here stops a second restart even if exec fails.
    public static func correctingExecutable() {
        let environment = ProcessInfo.processInfo.environment
        guard environment["OPENBLAS_CORETYPE"] == nil, let coreType = current.correction else { return }
        setenv("OPENBLAS_CORETYPE", coreType, 1)
        let arguments = CommandLine.arguments
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) }
        argv.append(nil)
        execv("/proc/self/exe", argv)
        // exec failed: carry on with the kernel we have; the start-up log line says which it is.
    }
}

/// Flush-to-zero and denormals-are-zero for the model's arithmetic. Subnormal floats stall x86 cores 10-100x
/// per operation; late in training the LSTM's weights and Adam's moments drift into that range (epochs got
/// 2-3x slower from about epoch 7). Results are unchanged to the precision the model works at.
public enum DenormalFlushing {
    /// Runs `body` with denormals flushed on this thread, then restores the thread's previous mode (threads of a
    /// shared pool carry on as they were).
    @inline(__always)
    public static func run<T>(_ body: () throws -> T) rethrows -> T {
        let saved = candlecast_floating_point_mode()
        candlecast_flush_denormals()
        defer { candlecast_set_floating_point_mode(saved) }
        return try body()
    }

    /// Turns flushing on for this thread and returns the mode to hand to `restore` (for a whole function:
    /// `let mode = DenormalFlushing.enable(); defer { DenormalFlushing.restore(mode) }`).
    @inline(__always)
    public static func enable() -> UInt32 {
        let saved = candlecast_floating_point_mode()
        candlecast_flush_denormals()
        return saved
    }

    @inline(__always)
    public static func restore(_ mode: UInt32) { candlecast_set_floating_point_mode(mode) }

    /// Whether this thread flushes denormals now (x86-64: MXCSR FTZ and DAZ bits).
    public static var isActive: Bool {
        #if arch(x86_64)
            return candlecast_floating_point_mode() & 0x8040 == 0x8040
        #else
            return false
        #endif
    }
}
