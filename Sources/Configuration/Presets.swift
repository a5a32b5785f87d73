import Datasets
import Layers
import Models

/// Named starting configurations; flags and `--config` files override their fields.
///
/// A preset name is a size, optionally followed by a feedforward variant: `e8`, `e8-moe`,
/// `wt-s-pkm-matched`. The paper sizes (Docs/accounting.md) carry the paper's hyperparameters
/// for each variant; the CPU sizes use the same variants scaled to their width. Presets are
/// experiment settings, not a registry: a new feedforward variant needs none.
public struct Preset: Sendable, Equatable, CustomStringConvertible {
    public let size: Size
    public let variant: Variant?

    public enum Size: String, CaseIterable, Sendable {
        /// CPU-sized: trains on the default corpus (KJV bytes) in a few minutes on 2 cores.
        case quickstart
        /// The shape of `lmtrain bench` (d 256, 4 layers, 4 x 64 heads, d_ff 1024, segment and
        /// memory 256, batch 16, bytes).
        case bench
        /// WikiText-103, 47M (the paper's WT-S).
        case wtS = "wt-s"
        /// WikiText-103, 238M, the large dense baseline against 128 experts (WT-S*).
        case wtSStar = "wt-s-star"
        /// WikiText-103, 262M (WT-B).
        case wtB = "wt-b"
        /// enwik8, 41M (E8).
        case e8
        /// CPU-sized WikiText: WT-S scaled down to the quickstart's shape (d 128, 4 layers),
        /// trained on WikiText-2 through an 8000-piece BPE; WT-S's σ-MoE settings (δ 0, γ 1e-3).
        case wtCPU = "wt-cpu"
        /// CPU-sized bytes: the same shape with E8's σ-MoE settings (δ 0.05, γ 1e-4), trained on
        /// the default corpus (KJV bytes; `--data enwik8` for the paper's corpus).
        case bytesCPU = "bytes-cpu"
    }

    /// The feedforward variants of the paper's comparisons.
    public enum Variant: String, CaseIterable, Sendable {
        case dense, moe, switchMoE = "switch", sBase = "sbase", topK = "topk"
        /// PKM with as many values as the dense block has hidden units (softmax).
        case pkm
        /// PKM with as many parameters as the dense block (ReLU, the paper's "param matched").
        case pkmMatched = "pkm-matched"
        /// Parameter-matched PKM with the dense-like value init: the paper's improved PKM.
        case pkmInit = "pkm-init"
        /// σ-MoE's selection ablations: softmax before or after the top-K (same shape as `moe`).
        case moeSoftmaxBefore = "moe-softmax-before"
        case moeSoftmaxAfter = "moe-softmax-after"
        /// The original PKM (Lample et al.), parameter matched: softmax per head over the top
        /// knn, a query network with batch norm, sparse value reads.
        case pkmOriginal = "pkm-original"
    }

    public init(size: Size, variant: Variant? = nil) {
        self.size = size
        self.variant = variant
    }

    /// Parses `SIZE` or `SIZE-VARIANT`.
    public init?(name: String) {
        if let size = Size(rawValue: name) {
            self.init(size: size)
            return
        }
        // Longest suffix first: "pkm-matched" before "pkm".
        for variant in Variant.allCases.sorted(by: { $0.rawValue.count > $1.rawValue.count }) {
            let suffix = "-" + variant.rawValue
            if name.hasSuffix(suffix), let size = Size(rawValue: String(name.dropLast(suffix.count))) {
                self.init(size: size, variant: variant)
                return
            }
        }
        return nil
    }

    public var description: String { variant.map { "\(size.rawValue)-\($0.rawValue)" } ?? size.rawValue }

    /// Every preset name, sizes first.
    public static var allNames: [String] {
        Size.allCases.map(\.rawValue) + Size.allCases.flatMap { size in
            Variant.allCases.filter { $0 != .dense }.map { "\(size.rawValue)-\($0.rawValue)" }
        }
    }

    /// The sizes alone (for quick listing in help texts).
    public static var sizeNames: String { Size.allCases.map(\.rawValue).joined(separator: ", ") }

    public static let quickstart = Preset(size: .quickstart)
    public static let bench = Preset(size: .bench)
    public static let e8 = Preset(size: .e8)

    public var config: RunConfig {
        var config = size.denseConfig
        if let variant { config.model.feedForward = size.feedForward(variant) }
        return config
    }
}

extension Preset.Size {
    /// σ-MoE shape and hyperparameters: experts, expert size, K, expert dropout δ and
    /// regularisation γ. Paper sizes: the paper's (K = 4). CPU sizes: chosen so the block's
    /// parameters match the dense one within 0.5% with K / N = 25% like the paper's WT-S
    /// (quickstart: 8 x 64, K 2 is 0.17% larger than d_ff 512; 16 x 32 would be 1.1% larger).
    var expertShape: (experts: Int, size: Int, k: Int, dropout: Float, gamma: Double) {
        switch self {
        case .quickstart, .wtCPU: (8, 64, 2, 0, 1e-3)
        case .bytesCPU: (8, 64, 2, 0.05, 1e-4)
        case .bench: (16, 64, 4, 0, 1e-3)
        case .wtS: (16, 128, 4, 0, 1e-3)
        case .wtSStar: (128, 128, 4, 0.05, 1e-3)
        case .wtB: (32, 128, 4, 0.1, 1e-3)
        case .e8: (16, 128, 4, 0.05, 1e-4)
        }
    }

    /// PKM sub-keys per half: value-count matched and parameter matched (the paper's for the
    /// paper sizes), and the heads. The CPU sizes use 2 heads so that an integer n_keys
    /// matches the dense block's parameters within 0.5% (4 heads would miss by more).
    /// `original`: n_keys and heads of the original PKM with its query network, the closest
    /// count (`lmtrain count --ffn pkm --pkm-query mlp-bn --pkm-heads H`). WT-S uses 3 heads:
    /// with 4 the nearest n_keys misses the dense model's total by 0.61%. At the byte CPU
    /// sizes no integer n_keys comes within 0.5% (2 heads: +0.89%; 3 heads: +0.67%).
    var productKeyShape: (valueMatched: Int, parameterMatched: Int, heads: Int, knn: Int, original: (keys: Int, heads: Int)) {
        switch self {
        case .quickstart, .wtCPU, .bytesCPU: (23, 31, 2, 32, (27, 2))
        case .bench: (32, 44, 2, 64, (38, 2))
        case .wtS: (46, 62, 4, 128, (52, 3))
        case .e8: (46, 62, 4, 128, (43, 4))
        case .wtSStar: (46, 62, 4, 128, (175, 4))
        case .wtB: (64, 89, 4, 128, (62, 4))
        }
    }

    /// The CPU sizes (scaled-down shapes; see `denseConfig`).
    var isCPUSized: Bool { self == .quickstart || self == .bench || self == .wtCPU || self == .bytesCPU }

    /// The paper size a CPU size scales down (nil for the paper sizes and the bench shape).
    public var paperCounterpart: Preset.Size? {
        switch self {
        case .wtCPU: .wtS
        case .quickstart, .bytesCPU: .e8
        default: nil
        }
    }

    /// The feedforward block of `variant` at this size.
    public func feedForward(_ variant: Preset.Variant) -> FeedForwardConfig {
        let e = expertShape
        let denseWidth = dense.feedForward.as(DenseFeedForward.Config.self)!.hiddenSize
        switch variant {
        case .dense:
            return dense.feedForward
        case .moe, .moeSoftmaxBefore, .moeSoftmaxAfter:
            let selection: MixtureOfExperts.Selection = switch variant {
            case .moeSoftmaxBefore: .softmaxBeforeTopK
            case .moeSoftmaxAfter: .softmaxAfterTopK
            default: .sigmoid
            }
            return FeedForwardConfig(MixtureOfExperts.SigmaConfig(
                experts: e.experts, expertSize: e.size, k: e.k, expertDropout: e.dropout, regularization: e.gamma,
                selection: selection))
        case .sBase:
            return FeedForwardConfig(MixtureOfExperts.SBaseConfig(
                experts: e.experts, expertSize: e.size, k: e.k, expertDropout: e.dropout, regularization: e.gamma))
        case .topK:
            // The paper's K = 128 (about d_ff / 16); the CPU sizes keep that share.
            let k = isCPUSized ? denseWidth / 16 : 128
            return FeedForwardConfig(TopKFeedForward.Config(hiddenSize: denseWidth, k: k))
        case .pkm:
            let p = productKeyShape
            return FeedForwardConfig(ProductKeyMemory.Config(keysPerHalf: p.valueMatched, heads: p.heads, knn: p.knn))
        case .pkmMatched:
            let p = productKeyShape
            return FeedForwardConfig(ProductKeyMemory.Config(
                keysPerHalf: p.parameterMatched, heads: p.heads, knn: p.knn, activation: .relu))
        case .pkmInit:
            let p = productKeyShape
            return FeedForwardConfig(ProductKeyMemory.Config(
                keysPerHalf: p.parameterMatched, heads: p.heads, knn: p.knn, activation: .relu, valueInit: .dense))
        case .pkmOriginal:
            let p = productKeyShape
            return FeedForwardConfig(ProductKeyMemory.Config(
                keysPerHalf: p.original.keys, heads: p.original.heads, knn: p.knn, activation: .softmaxPerHead,
                query: .mlpBatchNorm, path: .sparse))
        case .switchMoE:
            // The paper's Switch experts have G = 512 (their count follows d_ff); the CPU sizes
            // keep the σ-MoE expert count with one expert per token.
            switch self {
            case _ where isCPUSized:
                return FeedForwardConfig(MixtureOfExperts.SwitchConfig(experts: 4, expertSize: denseWidth / 4))
            default:
                return FeedForwardConfig(MixtureOfExperts.SwitchConfig(
                    experts: max(1, (denseWidth + 256) / 512), expertSize: 512))
            }
        }
    }

    /// The Transformer-XL of this size with its dense block.
    var dense: TransformerXL.Config { denseConfig.model.as(TransformerXL.Config.self)! }

    /// The dense configuration of this size.
    var denseConfig: RunConfig {
        switch self {
        case .quickstart, .bytesCPU:
            // bytes-cpu differs from the quick start only in its σ-MoE settings (E8's).
            RunConfig(
                model: ModelConfig(TransformerXL.Config(
                    vocabularySize: 256, modelWidth: 128, layers: 4, heads: 4,
                    feedForward: FeedForwardConfig(DenseFeedForward.Config(hiddenSize: 512)), dropout: 0.1)),
                training: TrainingConfig(
                    steps: 1000, batchSize: 16, segmentLength: 64, memoryLength: 64,
                    learningRate: 1e-3, warmupSteps: 50, gradientClip: 0.25, seed: 1,
                    logInterval: 25, validationInterval: 250, validationBatches: 50,
                    checkpointInterval: 250),
                evaluation: EvaluationConfig(batchSize: 4, memorySegments: 4),
                data: DataConfig())
        case .wtCPU:
            // The quick start's shape and schedule (1000 steps: 1M tokens, about 0.36 epochs of
            // WikiText-2) on WikiText-2 through the 8000-piece BPE.
            Self.quickstart.denseConfig.on(DataConfig(source: "wikitext-2", tokenizer: "bpe:8000"), vocabularySize: 8000)
        case .bench:
            RunConfig(
                model: ModelConfig(TransformerXL.Config(
                    vocabularySize: 256, modelWidth: 256, layers: 4, heads: 4, headSize: 64,
                    feedForward: FeedForwardConfig(DenseFeedForward.Config(hiddenSize: 1024)), dropout: 0.1)),
                training: TrainingConfig(
                    steps: 100, batchSize: 16, segmentLength: 256, memoryLength: 256,
                    learningRate: 2.5e-4, gradientClip: 0.25, logInterval: 10),
                evaluation: EvaluationConfig(),
                data: DataConfig())
        case .wtS, .wtSStar:
            RunConfig(
                model: ModelConfig(TransformerXL.Config(
                    vocabularySize: 8000, modelWidth: 412, layers: 16, heads: 10, headSize: 41,
                    feedForward: FeedForwardConfig(DenseFeedForward.Config(hiddenSize: self == .wtS ? 2053 : 16480)), dropout: 0.1)),
                training: TrainingConfig(
                    steps: 100_000, batchSize: 64, segmentLength: 256, memoryLength: 256,
                    learningRate: 2.5e-4, gradientClip: self == .wtS ? 0.1 : 0.25, logInterval: 100,
                    validationInterval: 5000, checkpointInterval: 5000),
                evaluation: EvaluationConfig(batchSize: 4, memorySegments: 4),
                data: DataConfig(source: "wikitext-103", tokenizer: "bpe:8000"))
        case .wtB:
            RunConfig(
                model: ModelConfig(TransformerXL.Config(
                    vocabularySize: 8000, modelWidth: 1024, layers: 18, heads: 16, headSize: 64,
                    feedForward: FeedForwardConfig(DenseFeedForward.Config(hiddenSize: 4110)), dropout: 0.2)),
                training: TrainingConfig(
                    steps: 100_000, batchSize: 64, segmentLength: 512, memoryLength: 512,
                    learningRate: 2.5e-4, warmupSteps: 4000, gradientClip: 0.25, logInterval: 100,
                    validationInterval: 5000, checkpointInterval: 5000),
                evaluation: EvaluationConfig(batchSize: 4, memorySegments: 4),
                data: DataConfig(source: "wikitext-103", tokenizer: "bpe:8000"))
        case .e8:
            RunConfig(
                model: ModelConfig(TransformerXL.Config(
                    vocabularySize: 205, modelWidth: 512, layers: 12, heads: 8, headSize: 64,
                    feedForward: FeedForwardConfig(DenseFeedForward.Config(hiddenSize: 2053)), dropout: 0.1)),
                training: TrainingConfig(
                    steps: 100_000, batchSize: 32, segmentLength: 512, memoryLength: 512,
                    learningRate: 2.5e-4, gradientClip: 0.25, logInterval: 100,
                    validationInterval: 5000, checkpointInterval: 5000),
                evaluation: EvaluationConfig(batchSize: 4, memorySegments: 4),
                data: DataConfig(source: "enwik8"))
        }
    }
}

extension RunConfig {
    /// The same run on other data, with that data's vocabulary.
    fileprivate func on(_ data: DataConfig, vocabularySize: Int) -> RunConfig {
        var config = self
        config.data = data
        config.model.vocabularySize = vocabularySize
        return config
    }
}
