import Layers
import Models
import Tensor
import Testing
import TestSupport

/// The paper configurations of DESIGN.md build for every feedforward variant, and the counts
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

    func config(_ s: Shape, _ ff: FeedForwardConfig) -> ModelConfig {
        ModelConfig(vocabularySize: s.vocabulary, modelWidth: s.width, layers: s.layers, heads: s.heads, headSize: s.headSize, feedForward: ff, dropout: 0.1)
    }

    func millions(_ layout: ParameterLayout) -> Double { (Double(layout.count) / 1e4).rounded() / 100 }

    @Test(arguments: 0..<4) func countsMatchThePaperTable(index: Int) throws {
        let s = Self.shapes[index]
        let dense = try TransformerXL.parameterLayout(for: config(s, .dense(.init(hiddenSize: s.denseFF))))
        let moe = try TransformerXL.parameterLayout(for: config(s, .sigmaMoE(.init(experts: s.experts, expertSize: s.expertSize, k: 4))))
        #expect(millions(dense) == s.dense, "\(s.name) dense \(dense.count)")
        #expect(millions(moe) == s.moe, "\(s.name) σ-MoE \(moe.count)")
        if let pkm = s.pkm {
            let valueMatched = try TransformerXL.parameterLayout(for: config(s, .productKeyMemory(.init(keysPerHalf: s.pkmKeys.0))))
            let parameterMatched = try TransformerXL.parameterLayout(for: config(s, .productKeyMemory(.init(keysPerHalf: s.pkmKeys.1))))
            #expect(millions(valueMatched) == pkm.0, "\(s.name) PKM \(valueMatched.count)")
            #expect(millions(parameterMatched) == pkm.1, "\(s.name) PKM matched \(parameterMatched.count)")
        }
    }

    /// Every variant at every paper size: it builds, and the per-block formula that parameter
    /// matching uses equals the allocated layout.
    @Test(arguments: 0..<4) func everyVariantBuildsAndItsFormulaMatchesTheLayout(index: Int) throws {
        let s = Self.shapes[index]
        let variants: [FeedForwardConfig] = [
            .dense(.init(hiddenSize: s.denseFF)),
            .sigmaMoE(.init(experts: s.experts, expertSize: s.expertSize, k: 4, selection: .softmaxAfterTopK)),
            .switchMoE(.init(experts: s.experts / 2, expertSize: 2 * s.expertSize)),
            .sBase(.init(experts: s.experts, expertSize: s.expertSize, k: 4)),
            .topK(.init(hiddenSize: s.denseFF, k: 128)),
            .productKeyMemory(.init(keysPerHalf: s.pkmKeys.0)),
            .productKeyMemory(.improved(keysPerHalf: s.pkmKeys.1)),
        ]
        for variant in variants {
            let layout = try TransformerXL.parameterLayout(for: config(s, variant))
            let block = layout.views.filter { $0.name.hasPrefix("layers.0.feedforward.") }.reduce(0) { $0 + $1.count }
            #expect(block == variant.parameterCount(modelWidth: s.width), "\(s.name) \(variant.kind)")
        }
    }

    @Test func matchedExpertSizeReproducesThePaperChoice() {
        // E8: 16 experts matched to d_ff 2053 at d 512 gives the paper's 128.
        let dense = FeedForwardConfig.dense(.init(hiddenSize: 2053)).parameterCount(modelWidth: 512)
        #expect(FeedForwardConfig.matchedExpertSize(target: dense, experts: 16, modelWidth: 512) == 128)
        #expect(FeedForwardConfig.matchedExpertSize(target: 100, experts: 16, modelWidth: 512) == nil)
    }
}
