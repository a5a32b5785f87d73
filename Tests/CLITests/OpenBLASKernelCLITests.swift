import Foundation
import Tensor
import Testing

/// The OpenBLAS kernel in a real process: the one named in the environment is used as it is,
/// every kernel this CPU can run computes a correct product, and a generic kernel chosen by
/// OpenBLAS makes lmtrain start again with the best one.
@Suite struct OpenBLASKernelCLITests {
    /// The relative product error `lmtrain bench` prints.
    func productError(_ output: String) -> Double? {
        let prefix = "OpenBLAS product check: relative error "
        guard let line = output.split(separator: "\n").first(where: { $0.hasPrefix(prefix) }) else { return nil }
        return Double(line.dropFirst(prefix.count).split(separator: " ").first ?? "")
    }

    func bench(environment: [String: String]) throws -> Invocation {
        let folder = scratch("openblas")
        defer { try? FileManager.default.removeItem(at: folder) }
        return try lmtrain(
            ["bench", "--formal", "--formal-models", "elstm", "--steps", "1", "--output", folder.appendingPathComponent("bench.json").path],
            environment: environment)
    }

    @Test func everyKernelThisCPUSupportsComputesCorrectProducts() throws {
        let features = OpenBLASKernel.CPUFeatures.current
        var kernels = ["Prescott"]
        if features.avx2 && features.fma { kernels.append("Haswell") }
        if features.avx512 && features.avx2 && features.fma { kernels.append("SkylakeX") }
        for kernel in kernels {
            let run = try bench(environment: ["OPENBLAS_CORETYPE": kernel])
            #expect(run.status == 0, "\(kernel): \(run.stderr)")
            #expect(run.stdout.contains("OpenBLAS kernel \(kernel) (OPENBLAS_CORETYPE=\(kernel) was set by the environment)"), "\(run.stdout)")
            let error = try #require(productError(run.stdout), "\(run.stdout)")
            #expect(error < 1e-5, "\(kernel): product error \(error)")
        }
    }

    @Test func aGenericKernelIsReplacedByTheBestTheCPUSupports() throws {
        let inherited = ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"]
        let decision = OpenBLASKernel.decide(core: "Prescott", features: .current, environmentCoreType: inherited)
        let run = try bench(environment: ["LMTRAIN_OPENBLAS_ASSUME_CORE": "Prescott"])
        #expect(run.status == 0, "\(run.stderr)")
        if let coreType = decision.coreType {
            // Started again with the variable set: OpenBLAS now reports that kernel.
            #expect(run.stdout.contains("OpenBLAS kernel \(coreType) (OpenBLAS chose Prescott on a CPU with"), "\(run.stdout)")
            #expect(run.stdout.contains("lmtrain set OPENBLAS_CORETYPE=\(coreType))"), "\(run.stdout)")
        } else {
            #expect(run.stdout.contains("(\(decision.reason))"), "\(run.stdout)")
        }
        #expect((productError(run.stdout) ?? 1) < 1e-5)
    }
}
