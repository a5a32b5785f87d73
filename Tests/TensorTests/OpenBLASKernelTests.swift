import Tensor
import Testing

/// lmtrain's decision table for the OpenBLAS kernel.
@Suite struct OpenBLASKernelTests {
    typealias Features = OpenBLASKernel.CPUFeatures
    static let avx512 = Features(avx2: true, fma: true, avx512: true)
    static let avx2 = Features(avx2: true, fma: true, avx512: false)
    static let old = Features(avx2: false, fma: false, avx512: false)

    @Test func genericKernelsAreReplacedByTheBestTheCPUSupports() {
        #expect(OpenBLASKernel.decide(core: "Prescott", features: Self.avx512, environmentCoreType: nil).coreType == "SkylakeX")
        #expect(OpenBLASKernel.decide(core: "Prescott", features: Self.avx2, environmentCoreType: nil).coreType == "Haswell")
        #expect(OpenBLASKernel.decide(core: "Sandybridge", features: Self.avx2, environmentCoreType: nil).coreType == "Haswell")
        #expect(OpenBLASKernel.decide(core: "NEHALEM", features: Self.avx512, environmentCoreType: nil).coreType == "SkylakeX")
        let reason = OpenBLASKernel.decide(core: "Prescott", features: Self.avx512, environmentCoreType: nil).reason
        #expect(reason == "OpenBLAS chose Prescott on a CPU with AVX-512; lmtrain set OPENBLAS_CORETYPE=SkylakeX")
    }

    @Test func otherChoicesStand() {
        // OpenBLAS's own AVX2 or AVX-512 kernel, a CPU without AVX2 and FMA, AVX2 without FMA.
        for (core, features) in [("Haswell", Self.avx512), ("Zen", Self.avx2), ("Cooperlake", Self.avx512), ("SkylakeX", Self.avx512), ("Prescott", Self.old), ("Prescott", Features(avx2: true, fma: false, avx512: false))] {
            let decision = OpenBLASKernel.decide(core: core, features: features, environmentCoreType: nil)
            #expect(decision.coreType == nil, "\(core)")
            #expect(decision.reason == "OpenBLAS's own choice for this CPU")
        }
    }

    @Test func theEnvironmentAlwaysWins() {
        let decision = OpenBLASKernel.decide(core: "Prescott", features: Self.avx512, environmentCoreType: "Haswell")
        #expect(decision.coreType == nil)
        #expect(decision.reason == "OPENBLAS_CORETYPE=Haswell was set by the environment")
        // An empty value is no choice.
        #expect(OpenBLASKernel.decide(core: "Prescott", features: Self.avx512, environmentCoreType: "").coreType == "SkylakeX")
    }

    @Test func generations() {
        #expect(OpenBLASKernel.generation(ofCore: "COOPERLAKE") == .avx512)
        #expect(OpenBLASKernel.generation(ofCore: "zen") == .avx2)
        #expect(OpenBLASKernel.generation(ofCore: "Prescott") == .beforeAVX2)
    }

    @Test func thisProcessComputesCorrectProducts() {
        #expect(OpenBLASKernel.productError() < 1e-5)
        #expect(!OpenBLASKernel.status.kernel.isEmpty)
    }
}
