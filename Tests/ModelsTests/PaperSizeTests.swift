import Layers
import Models
import Tensor
import Testing
import TestSupport

/// The paper configurations build for every feedforward variant, and the counts
/// match the table (layouts only: nothing of the up to 263M parameters is allocated).
struct PaperSizeTests {
    struct Shape {
        let name: String, vocabulary: Int, width: Int, layers: Int, heads: Int, headSize: Int
        let denseFF: Int, experts: Int, expertSize: Int, dense: Double, moe: Double
        /// PKM n_keys and counts: value-count matched, parameter matched (nil: not in the table).
        let pkmKeys: (Int, Int), pkm: (Double, Double)?
    }

    static let shapes = [
        Shape(name: "WT-S", vocabulary: 8000, width: 412, layers: 16, heads: 10, headSize: 41, denseFF: 2053, experts: 16, expertSize: 128, dense: 47.26, moe: 47.26, pkmKeys: (46, 62), pkm: (35.32, 47.13)),
        Shape(name: "WT-S*", vocabulary: 8000, width: 412, layers: 16, heads: 10, headSize: 41, denseFF: 16480, experts: 128, expertSize: 128, dense: 237.70, moe: 237.00, pkmKeys: (46, 62), pkm: nil),
        Shape(name: "WT-B", vocabulary: 8000, width: 1024, layers: 18, heads: 16, headSize: 64, denseFF: 4110, experts: 32, expertSize: 128, dense: 262.48, moe: 262.46, pkmKeys: (64, 89), pkm: (191.09, 263.44)),
        Shape(name: "E8", vocabulary: 205, width: 512, layers: 12, heads: 8, headSize: 64, denseFF: 2053, experts: 16, expertSize: 128, dense: 41.23, moe: 41.24, pkmKeys: (46, 62), pkm: (30.11, 41.12)),
    ]

    func config(_ s: Shape, _ ff: some FeedForwardVariant) -> TransformerXL.Config {
        TransformerXL.Config(vocabularySize: s.vocabulary, modelWidth: s.width, layers: s.layers, heads: s.heads, headSize: s.headSize, feedForward: FeedForwardConfig(ff), dropout: 0.1)
    }

    /// The layout of `config` (nothing is allocated: the arena comes on first use).
    func layout(_ config: TransformerXL.Config) throws -> ParameterLayout { try TransformerXL(config: config).layout }

    func millions(_ layout: ParameterLayout) -> Double { (Double(layout.count) / 1e4).rounded() / 100 }

    @Test(arguments: 0..<4) func countsMatchThePaperTable(index: Int) throws {
        let s = Self.shapes[index]
        let dense = try layout(config(s, DenseFeedForward.Config(hiddenSize: s.denseFF)))
        let moe = try layout(config(s, MixtureOfExperts.SigmaConfig(experts: s.experts, expertSize: s.expertSize, k: 4)))
        #expect(millions(dense) == s.dense, "\(s.name) dense \(dense.count)")
        #expect(millions(moe) == s.moe, "\(s.name) σ-MoE \(moe.count)")
        if let pkm = s.pkm {
            let valueMatched = try layout(config(s, ProductKeyMemory.Config(keysPerHalf: s.pkmKeys.0)))
            let parameterMatched = try layout(config(s, ProductKeyMemory.Config(keysPerHalf: s.pkmKeys.1)))
            #expect(millions(valueMatched) == pkm.0, "\(s.name) PKM \(valueMatched.count)")
            #expect(millions(parameterMatched) == pkm.1, "\(s.name) PKM matched \(parameterMatched.count)")
        }
    }

    /// Every variant at every paper size: it builds, and its block count (the one matching
    /// uses) equals its share of the model's layout.
    @Test(arguments: 0..<4) func everyVariantBuildsAndItsCountMatchesTheLayout(index: Int) throws {
        let s = Self.shapes[index]
        let variants: [FeedForwardConfig] = [
            FeedForwardConfig(DenseFeedForward.Config(hiddenSize: s.denseFF)),
            FeedForwardConfig(MixtureOfExperts.SigmaConfig(experts: s.experts, expertSize: s.expertSize, k: 4, selection: .softmaxAfterTopK)),
            FeedForwardConfig(MixtureOfExperts.SwitchConfig(experts: s.experts / 2, expertSize: 2 * s.expertSize)),
            FeedForwardConfig(MixtureOfExperts.SBaseConfig(experts: s.experts, expertSize: s.expertSize, k: 4)),
            FeedForwardConfig(TopKFeedForward.Config(hiddenSize: s.denseFF, k: 128)),
            FeedForwardConfig(ProductKeyMemory.Config(keysPerHalf: s.pkmKeys.0)),
            FeedForwardConfig(ProductKeyMemory.Config.improved(keysPerHalf: s.pkmKeys.1)),
        ]
        // Every registered kind, as `--ffn KIND` makes it from the dense block (matched).
        var converted: [FeedForwardConfig] = []
        for kind in FeedForwardConfig.variants {
            var model = ModelConfig(config(s, DenseFeedForward.Config(hiddenSize: s.denseFF)))
            try model.changeFeedForward(to: kind, options: FeedForwardOptions())
            converted.append(model.feedForward!)
        }
        for variant in variants + converted {
            var model = config(s, DenseFeedForward.Config(hiddenSize: 1))
            model.feedForward = variant
            let layout = try layout(model)
            let block = layout.count { $0.hasPrefix("layers.0.feedforward.") }
            #expect(block == variant.parameterCount(modelWidth: s.width), "\(s.name) \(variant.kind)")
        }
    }

    @Test func matchedExpertSizeReproducesThePaperChoice() throws {
        // E8: 16 experts matched to d_ff 2053 at d 512 gives the paper's 128.
        var e8 = ModelConfig(config(Self.shapes[3], DenseFeedForward.Config(hiddenSize: 2053)))
        var options = FeedForwardOptions()
        options.experts = 16
        let note = try e8.changeFeedForward(to: MixtureOfExperts.SigmaConfig.self, options: options)
        #expect(e8.feedForward == FeedForwardConfig(MixtureOfExperts.SigmaConfig(experts: 16, expertSize: 128, k: 4)))
        #expect(note == "matched expert size 128 (16 experts) to the 2104837 parameters per layer of the block it replaces: 2105344 (+507, +0.02%)")
        // A block too small for 16 experts of size 1 cannot be matched.
        var tiny = ModelConfig(config(Self.shapes[3], DenseFeedForward.Config(hiddenSize: 1)))
        #expect { try tiny.changeFeedForward(to: MixtureOfExperts.SigmaConfig.self, options: options) } throws: {
            "\($0)".contains("cannot match")
        }
    }
}
