import CBLAS
import Foundation

/// Which OpenBLAS kernel a process computes with, and lmtrain's choice of it.
///
/// Debian's OpenBLAS picks its kernels by CPU model when it loads. A processor newer than the
/// library is not recognised and falls back to the generic SSE3 ("Prescott") kernels, whose
/// sgemm runs at a fifth of the rate of the AVX-512 ones on the same CPU. So before anything
/// else, `lmtrain` asks the CPU (cpuid) what it supports and OpenBLAS which kernel it chose;
/// when OpenBLAS runs a kernel older than AVX2 on a CPU with AVX2 and FMA (or AVX-512), lmtrain
/// runs itself again with `OPENBLAS_CORETYPE` naming the best kernel the CPU supports
/// (OpenBLAS reads that variable when it loads). A value already set in the environment is
/// never changed.
public enum OpenBLASKernel {
    /// The CPU's vector extensions that OpenBLAS's kernels need.
    public struct CPUFeatures: Sendable, Equatable {
        public var avx2: Bool, fma: Bool, avx512: Bool

        public init(avx2: Bool, fma: Bool, avx512: Bool) {
            self.avx2 = avx2
            self.fma = fma
            self.avx512 = avx512
        }

        /// This CPU's (none off x86_64).
        public static var current: CPUFeatures {
            let bits = lmtrain_cpu_features()
            // SkylakeX kernels need F, DQ, BW and VL.
            return CPUFeatures(avx2: bits & 1 != 0, fma: bits & 2 != 0, avx512: bits & 0b11_1100 == 0b11_1100)
        }
    }

    /// The kernel generations that matter here, oldest first.
    public enum Generation: Int, Comparable, Sendable {
        case beforeAVX2, avx2, avx512
        public static func < (a: Generation, b: Generation) -> Bool { a.rawValue < b.rawValue }
    }

    /// The generation of an OpenBLAS core name (`openblas_get_corename`, case-insensitive).
    public static func generation(ofCore name: String) -> Generation {
        switch name.lowercased() {
        case "skylakex", "cooperlake", "sapphirerapids": .avx512
        case "haswell", "zen", "excavator": .avx2
        default: .beforeAVX2
        }
    }

    /// What lmtrain does about the kernel, and why (one line for reports).
    public struct Decision: Sendable, Equatable {
        /// The `OPENBLAS_CORETYPE` to run with, or nil to keep OpenBLAS's own choice.
        public var coreType: String?
        public var reason: String
    }

    /// The decision table: a value in the environment wins; a kernel older than AVX2 on a CPU
    /// with AVX2 and FMA is replaced by the best kernel the CPU supports (SkylakeX with AVX-512
    /// F/DQ/BW/VL, else Haswell); OpenBLAS's own choice stands otherwise.
    public static func decide(core: String, features: CPUFeatures, environmentCoreType: String?) -> Decision {
        if let set = environmentCoreType, !set.isEmpty {
            return Decision(coreType: nil, reason: "OPENBLAS_CORETYPE=\(set) was set by the environment")
        }
        let best: (name: String, generation: Generation)? =
            features.avx512 && features.avx2 && features.fma ? ("SkylakeX", .avx512)
            : features.avx2 && features.fma ? ("Haswell", .avx2) : nil
        guard let best, generation(ofCore: core) == .beforeAVX2 else {
            return Decision(coreType: nil, reason: "OpenBLAS's own choice for this CPU")
        }
        let extensions = best.generation == .avx512 ? "AVX-512" : "AVX2 and FMA"
        return Decision(
            coreType: best.name,
            reason: "OpenBLAS chose \(core) on a CPU with \(extensions); lmtrain set OPENBLAS_CORETYPE=\(best.name)")
    }

    /// The variable through which the first process tells the one it starts why it set the kernel.
    static let reasonVariable = "LMTRAIN_OPENBLAS_REASON"
    /// For tests of the second start on CPUs that OpenBLAS knows: lmtrain decides as if
    /// OpenBLAS had chosen this kernel.
    static let assumedCoreVariable = "LMTRAIN_OPENBLAS_ASSUME_CORE"

    /// The kernel lmtrain decides about: OpenBLAS's, or the assumed one of a test.
    static func decidedCore(_ environment: [String: String]) -> String {
        environment[assumedCoreVariable] ?? coreName
    }

    /// The kernel in use, OpenBLAS's build description and why (for bench output and reports).
    public struct Status: Codable, Sendable, Equatable {
        public var kernel: String
        public var config: String
        public var reason: String
    }

    /// The status of this process.
    public static var status: Status {
        let environment = ProcessInfo.processInfo.environment
        let reason =
            environment[reasonVariable]
            ?? decide(core: decidedCore(environment), features: .current, environmentCoreType: environment["OPENBLAS_CORETYPE"]).reason
        return Status(kernel: coreName, config: String(cString: openblas_get_config()), reason: reason)
    }

    /// The largest error of the kernel's product against a plain loop in Double, relative to the
    /// largest entry: C = A Bᵀ + C with A [97, 131], B [83, 131], sizes that leave every kernel
    /// edge case (partial tiles in each dimension) in play. A correct float32 kernel gives about
    /// 1e-6.
    public static func productError() -> Double {
        let (m, n, k) = (97, 83, 131)
        var rng = RandomGenerator(seed: 5)
        var a = [Float](repeating: 0, count: m * k), b = [Float](repeating: 0, count: n * k)
        var c = [Float](repeating: 0, count: m * n)
        Initializer.normal(&a, count: a.count, std: 1, rng: &rng)
        Initializer.normal(&b, count: b.count, std: 1, rng: &rng)
        Initializer.normal(&c, count: c.count, std: 1, rng: &rng)
        var expected = c.map(Double.init)
        for i in 0..<m {
            for j in 0..<n {
                for l in 0..<k { expected[i * n + j] += Double(a[i * k + l]) * Double(b[j * k + l]) }
            }
        }
        gemm(transposeB: true, m: m, n: n, k: k, a: a, lda: k, b: b, ldb: k, beta: 1, c: &c, ldc: n)
        let scale = expected.map(abs).max() ?? 1
        return zip(c, expected).map { abs(Double($0) - $1) }.max()! / scale
    }

    /// OpenBLAS's kernel name ("Cooperlake", "Prescott", ...).
    public static var coreName: String {
        String(cString: openblas_get_corename()).trimmingCharacters(in: .whitespaces)
    }

    /// Called first thing in `lmtrain`: when the decision is to change the kernel, runs this
    /// executable again with the same arguments and `OPENBLAS_CORETYPE` set (OpenBLAS has
    /// already loaded its kernels in this process). Returns if nothing is to be done or the
    /// new process cannot be started (then OpenBLAS's choice stands).
    public static func selectForThisCPU() {
        let environment = ProcessInfo.processInfo.environment
        guard environment[reasonVariable] == nil else { return }
        let decision = decide(
            core: decidedCore(environment), features: .current, environmentCoreType: environment["OPENBLAS_CORETYPE"])
        guard let coreType = decision.coreType else { return }
        setenv("OPENBLAS_CORETYPE", coreType, 1)
        setenv(reasonVariable, decision.reason, 1)
        let arguments = CommandLine.arguments
        var pointers = arguments.map { strdup($0) } + [nil]
        execv("/proc/self/exe", &pointers)
        // Not reached unless execv failed: carry on with OpenBLAS's own kernel.
        unsetenv("OPENBLAS_CORETYPE")
        unsetenv(reasonVariable)
        for pointer in pointers { free(pointer) }
    }
}
