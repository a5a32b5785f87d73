import Layers
import Tensor

extension TransformerXL {
    /// Shape of a Transformer-XL language model (`model.kind` `transformer-xl`, Docs/model.md).
    public struct Config: SequenceModelConfig {
        public static let kind = "transformer-xl"

        /// Number of token ids (bytes: distinct byte values of the corpus).
        public var vocabularySize: Int

        /// A language model reads the ids it predicts.
        public var inputVocabularySize: Int {
            get { vocabularySize }
            set { vocabularySize = newValue }
        }
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

        public var feedForwardBlock: FeedForwardConfig? {
            get { feedForward }
            set { if let newValue { feedForward = newValue } }
        }

        /// The head size actually used.
        public var resolvedHeadSize: Int { headSize ?? modelWidth / max(1, heads) }

        public var summary: String {
            "\(layers) layers, d_model \(modelWidth), \(heads) x \(resolvedHeadSize) heads, \(feedForward.summary)"
        }

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
                try fail("model.heads \(heads) does not divide d_model \(modelWidth): choose heads that divide it, or set head_size explicitly")
            }
            if !(dropout >= 0 && dropout < 1) { try fail("model.dropout must be in [0, 1) (got \(dropout))") }
            try feedForward.validate(modelWidth: modelWidth)
        }

        public func makeModel() throws -> any SequenceModel { try TransformerXL(config: self) }
    }
}
