import Layers
import Tensor

/// Shape of a Transformer-XL language model (DESIGN.md "Transformer-XL").
public struct ModelConfig: Sendable, Codable, Equatable {
    /// Number of token ids (bytes: distinct byte values of the corpus).
    public var vocabularySize: Int
    /// d_model.
    public var modelWidth: Int
    public var layers: Int
    public var heads: Int
    /// Per-head size; nil means modelWidth / heads (which must divide).
    public var headSize: Int?
    public var feedForward: FeedForwardConfig
    /// Dropout rate at embeddings, attention and FFN outputs, after the final LayerNorm and
    /// in the dense/top-K hidden layer.
    public var dropout: Float

    public init(
        vocabularySize: Int, modelWidth: Int, layers: Int, heads: Int, headSize: Int? = nil,
        feedForward: FeedForwardConfig, dropout: Float
    ) {
        self.vocabularySize = vocabularySize
        self.modelWidth = modelWidth
        self.layers = layers
        self.heads = heads
        self.headSize = headSize
        self.feedForward = feedForward
        self.dropout = dropout
    }

    enum CodingKeys: String, CodingKey {
        case vocabularySize = "vocabulary_size", modelWidth = "d_model", layers, heads
        case headSize = "head_size", feedForward = "feed_forward", dropout
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        vocabularySize = try c.decode(Int.self, forKey: .vocabularySize)
        modelWidth = try c.decode(Int.self, forKey: .modelWidth)
        layers = try c.decode(Int.self, forKey: .layers)
        heads = try c.decode(Int.self, forKey: .heads)
        headSize = try c.decodeIfPresent(Int.self, forKey: .headSize)
        feedForward = try c.decode(FeedForwardConfig.self, forKey: .feedForward)
        dropout = try c.decode(Float.self, forKey: .dropout)
    }

    /// Encodes every key, `head_size` as null when derived, so config files list all fields.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(vocabularySize, forKey: .vocabularySize)
        try c.encode(modelWidth, forKey: .modelWidth)
        try c.encode(layers, forKey: .layers)
        try c.encode(heads, forKey: .heads)
        try c.encode(headSize, forKey: .headSize)
        try c.encode(feedForward, forKey: .feedForward)
        try c.encode(dropout, forKey: .dropout)
    }

    /// The head size actually used.
    public var resolvedHeadSize: Int { headSize ?? modelWidth / max(1, heads) }

    /// Problems a user can cause, as one line each naming the field and the fix.
    public func validate() throws {
        func fail(_ message: String) throws { throw ConfigError(message) }
        if vocabularySize < 2 { try fail("model.vocabulary_size must be at least 2 (got \(vocabularySize))") }
        if modelWidth < 2 || modelWidth % 2 != 0 {
            try fail("model.d_model must be a positive even number: the sinusoidal position table pairs sin and cos columns (got \(modelWidth))")
        }
        if layers < 1 { try fail("model.layers must be at least 1 (got \(layers))") }
        if heads < 1 { try fail("model.heads must be at least 1 (got \(heads))") }
        if let headSize {
            if headSize < 1 { try fail("model.head_size must be at least 1 (got \(headSize))") }
        } else if modelWidth % heads != 0 {
            try fail("model.heads \(heads) does not divide d_model \(modelWidth): choose heads that divide it, or set head_size (--head-size) explicitly")
        }
        if !(dropout >= 0 && dropout < 1) { try fail("model.dropout must be in [0, 1) (got \(dropout))") }
        try feedForward.validate(modelWidth: modelWidth)
    }
}

/// A configuration a user wrote that cannot work; the message is one line naming the field.
public struct ConfigError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The feedforward block of every layer: one typed config per variant (STYLE.md).
public enum FeedForwardConfig: Sendable, Equatable {
    case dense(DenseFeedForward.Config)
    /// σ-MoE and its selection ablations (`--ffn moe`).
    case sigmaMoE(MixtureOfExperts.SigmaConfig)
    /// Switch Transformer FFN (`--ffn switch`).
    case switchMoE(MixtureOfExperts.SwitchConfig)
    /// S-BASE (`--ffn sbase`).
    case sBase(MixtureOfExperts.SBaseConfig)
    /// Top-K activation (`--ffn topk`).
    case topK(TopKFeedForward.Config)
    /// Product-key memory (`--ffn pkm`).
    case productKeyMemory(ProductKeyMemory.Config)

    /// The variant's name, as `--ffn` and the `kind` key take it.
    public var kind: String {
        switch self {
        case .dense: "dense"
        case .sigmaMoE: "moe"
        case .switchMoE: "switch"
        case .sBase: "sbase"
        case .topK: "topk"
        case .productKeyMemory: "pkm"
        }
    }

    public static let kinds = ["dense", "topk", "pkm", "moe", "switch", "sbase"]

    func validate(modelWidth: Int) throws {
        func fail(_ message: String) throws { throw ConfigError("model.feed_forward: \(message)") }
        func checkExperts(_ experts: Int, _ size: Int, _ k: Int, _ dropout: Float) throws {
            if experts < 1 { try fail("experts must be at least 1 (got \(experts))") }
            if size < 1 { try fail("expert_size must be at least 1 (got \(size))") }
            if k < 1 || k > experts { try fail("k = \(k) must be between 1 and the number of experts \(experts) (--k)") }
            if !(dropout >= 0 && dropout < 1) { try fail("expert_dropout must be in [0, 1) (got \(dropout))") }
        }
        switch self {
        case .dense(let c):
            if c.hiddenSize < 1 { try fail("d_ff must be at least 1 (got \(c.hiddenSize))") }
        case .sigmaMoE(let c):
            try checkExperts(c.experts, c.expertSize, c.k, c.expertDropout)
            if c.regularization < 0 { try fail("regularization must be >= 0 (got \(c.regularization))") }
        case .switchMoE(let c):
            try checkExperts(c.experts, c.expertSize, 1, 0)
            if c.balance < 0 { try fail("balance must be >= 0 (got \(c.balance))") }
            if !(c.initScale > 0) { try fail("init_scale must be positive (got \(c.initScale))") }
        case .sBase(let c):
            try checkExperts(c.experts, c.expertSize, c.k, c.expertDropout)
            if c.sinkhornIterations < 1 { try fail("sinkhorn_iterations must be at least 1") }
        case .topK(let c):
            do { try c.validate(modelWidth: modelWidth) } catch { try fail("\(error)") }
        case .productKeyMemory(let c):
            do { try c.validate(modelWidth: modelWidth) } catch { try fail("\(error)") }
        }
    }

    /// Builds the block's layer, registering its parameters in `layout`.
    public func makeLayer(
        name: String, modelWidth: Int, layerCount: Int, dropout: Float,
        layout: inout ParameterLayout
    ) -> FeedForwardLayer {
        switch self {
        case .dense(let c):
            DenseFeedForward(
                name: name, config: c, width: modelWidth, layerCount: layerCount,
                dropout: dropout, layout: &layout)
        case .sigmaMoE(let c):
            MixtureOfExperts(name: name, config: c, width: modelWidth, layerCount: layerCount, layout: &layout)
        case .switchMoE(let c):
            MixtureOfExperts(name: name, config: c, width: modelWidth, layerCount: layerCount, layout: &layout)
        case .sBase(let c):
            MixtureOfExperts(name: name, config: c, width: modelWidth, layerCount: layerCount, layout: &layout)
        case .topK(let c):
            TopKFeedForward(
                name: name, config: c, width: modelWidth, layerCount: layerCount, dropout: dropout,
                layout: &layout)
        case .productKeyMemory(let c):
            // The official PKM block has no dropout inside (kvmem.dropout = none).
            ProductKeyMemory(name: name, config: c, width: modelWidth, layerCount: layerCount, layout: &layout)
        }
    }
}

extension FeedForwardConfig: Codable {
    private enum CodingKeys: String, CodingKey { case kind }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let kind = try container.decode(String.self, forKey: .kind)
        switch kind {
        case "dense": self = .dense(try DenseFeedForward.Config(from: decoder))
        case "moe": self = .sigmaMoE(try MixtureOfExperts.SigmaConfig(from: decoder))
        case "switch": self = .switchMoE(try MixtureOfExperts.SwitchConfig(from: decoder))
        case "sbase": self = .sBase(try MixtureOfExperts.SBaseConfig(from: decoder))
        case "topk": self = .topK(try TopKFeedForward.Config(from: decoder))
        case "pkm": self = .productKeyMemory(try ProductKeyMemory.Config(from: decoder))
        default:
            throw ConfigError("model.feed_forward.kind '\(kind)' is unknown: use one of \(Self.kinds.joined(separator: ", "))")
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(kind, forKey: .kind)
        switch self {
        case .dense(let c): try c.encode(to: encoder)
        case .sigmaMoE(let c): try c.encode(to: encoder)
        case .switchMoE(let c): try c.encode(to: encoder)
        case .sBase(let c): try c.encode(to: encoder)
        case .topK(let c): try c.encode(to: encoder)
        case .productKeyMemory(let c): try c.encode(to: encoder)
        }
    }
}
