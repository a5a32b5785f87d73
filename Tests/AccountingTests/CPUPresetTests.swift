import Accounting
import Configuration
import Layers
import Testing

/// The CPU-sized preset family (wt-cpu, bytes-cpu): every variant the reproduction compares is
/// matched to the dense model's total parameters within the audit's 0.5%, with the paper's
/// settings for each variant.
struct CPUPresetTests {
    static func audit(_ names: [String]) throws -> Audit {
        try Audit(names.map { try Audit.Entry(name: $0, config: Preset(name: $0)!.config) })
    }

    @Test func everyWikiTextVariantMatchesDense() throws {
        let names = ["wt-cpu"] + Preset.Variant.allCases.filter { $0 != .dense && $0 != .pkm }.map { "wt-cpu-\($0.rawValue)" }
        let audit = try Self.audit(names)
        #expect(audit.passes(tolerance: 0.005), "\(audit.table())")
        // The value-count-matched PKM is deliberately smaller (the paper's first PKM row).
        #expect(try !Self.audit(["wt-cpu", "wt-cpu-pkm"]).passes(tolerance: 0.005))
    }

    @Test func bytesVariantsMatchDenseExceptTheOriginalPKM() throws {
        // Each against dense (σ-MoE +0.17% and parameter-matched PKM -0.33% are 0.50% apart).
        for variant in Preset.Variant.allCases where ![.dense, .pkm, .pkmOriginal].contains(variant) {
            #expect(try Self.audit(["bytes-cpu", "bytes-cpu-\(variant.rawValue)"]).passes(tolerance: 0.005), "\(variant)")
        }
        // No integer n_keys brings the original PKM within 0.5% at this size (+0.89%).
        let original = try Self.audit(["bytes-cpu", "bytes-cpu-pkm-original"])
        #expect(abs(original.parameterSpread - 0.0089) < 0.0005)
    }

    @Test func originalPKMMatchesDenseAtThePaperSizes() throws {
        for size in ["wt-s", "wt-s-star", "wt-b", "e8", "bench"] {
            let audit = try Self.audit([size, "\(size)-pkm-original"])
            #expect(audit.passes(tolerance: 0.005), "\(size): \(audit.table())")
        }
    }

    @Test func variantsCarryThePaperSettings() throws {
        func sigma(_ name: String) -> MixtureOfExperts.SigmaConfig {
            Preset(name: name)!.config.model.feedForward!.as(MixtureOfExperts.SigmaConfig.self)!
        }
        let moe = sigma("wt-cpu-moe")
        #expect(moe.selection == .sigmoid && moe.expertDropout == 0 && moe.regularization == 1e-3)
        for (name, selection) in [("wt-cpu-moe-softmax-before", MixtureOfExperts.Selection.softmaxBeforeTopK), ("wt-cpu-moe-softmax-after", .softmaxAfterTopK)] {
            var ablation = sigma(name)
            #expect(ablation.selection == selection)
            ablation.selection = .sigmoid
            #expect(ablation == moe, "\(name) differs from σ-MoE only in its selection")
        }
        // bytes-cpu: E8's expert dropout and regulariser.
        let bytes = sigma("bytes-cpu-moe")
        #expect(bytes.expertDropout == 0.05 && bytes.regularization == 1e-4 && bytes.experts == moe.experts && bytes.k == moe.k)

        let original = Preset(name: "wt-cpu-pkm-original")!.config.model.feedForward!.as(ProductKeyMemory.Config.self)!
        #expect(original.activation == .softmaxPerHead && original.query == .mlpBatchNorm && original.path == .sparse)
        let improved = Preset(name: "wt-cpu-pkm-init")!.config.model.feedForward!.as(ProductKeyMemory.Config.self)!
        #expect(improved.activation == .relu && improved.valueInit == .dense && improved.query == .identity)

        let wikiText = Preset(name: "wt-cpu")!.config
        #expect(wikiText.data.source == "wikitext-2" && wikiText.data.tokenizer == "bpe:8000" && wikiText.model.vocabularySize == 8000)
        #expect(Preset.Size.wtCPU.paperCounterpart == .wtS && Preset.Size.bytesCPU.paperCounterpart == .e8)
        #expect(Preset.Size.wtS.paperCounterpart == nil)
    }
}
