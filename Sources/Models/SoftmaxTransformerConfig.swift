import Layers

extension SoftmaxTransformer {
    /// Shape of the softmax Transformer baseline (`model.kind` `transformer`).
    public struct Config: SequenceModelConfig {
        public static let kind = "transformer"

        /// V_out: target classes, the pad class included.
        public var vocabularySize: Int
        /// V_in: input symbols, the pad symbol included.
        public var inputVocabularySize: Int
        /// D.
        public var modelWidth: Int
        public var layers: Int
        /// H; heads have size D / H.
        public var heads: Int
        /// F / D of the feedforward sublayers.
        public var feedForwardFactor: Int
        /// Dropout after the attention and in and after the feedforward sublayer (0 in the paper).
        public var dropout: Float

        public init(
            vocabularySize: Int = 0, inputVocabularySize: Int = 0, modelWidth: Int, layers: Int,
            heads: Int, feedForwardFactor: Int, dropout: Float = 0
        ) {
            self.vocabularySize = vocabularySize
            self.inputVocabularySize = inputVocabularySize
            self.modelWidth = modelWidth
            self.layers = layers
            self.heads = heads
            self.feedForwardFactor = feedForwardFactor
            self.dropout = dropout
        }

        enum CodingKeys: String, CodingKey {
            case layers, heads, dropout
            case vocabularySize = "vocabulary_size", inputVocabularySize = "input_vocabulary_size"
            case modelWidth = "d_model", feedForwardFactor = "ff_factor"
        }

        public var feedForwardBlock: FeedForwardConfig? {
            get { nil }
            set {}
        }

        /// F.
        public var feedForwardWidth: Int { feedForwardFactor * modelWidth }

        public var summary: String {
            "softmax attention, \(layers) layers, d_model \(modelWidth), \(heads) heads, ff \(feedForwardWidth)"
        }

        public func validate() throws {
            try validateSequenceClassifier(
                vocabularySize: vocabularySize, inputVocabularySize: inputVocabularySize, modelWidth: modelWidth,
                layers: layers, dropout: dropout)
            if heads < 1 || modelWidth % heads != 0 {
                throw ConfigError("model.heads \(heads) must divide d_model \(modelWidth)")
            }
            if feedForwardFactor < 1 { throw ConfigError("model.ff_factor must be at least 1 (got \(feedForwardFactor))") }
        }

        public func makeModel() throws -> any SequenceModel { try SoftmaxTransformer(config: self) }
    }
}

/// The checks every per-position classifier config shares, one line each naming the field.
func validateSequenceClassifier(
    vocabularySize: Int, inputVocabularySize: Int, modelWidth: Int, layers: Int, dropout: Float
) throws {
    func fail(_ message: String) throws { throw ConfigError(message) }
    if vocabularySize < 2 { try fail("model.vocabulary_size must be at least 2 (got \(vocabularySize))") }
    if inputVocabularySize < 1 { try fail("model.input_vocabulary_size must be at least 1 (got \(inputVocabularySize))") }
    if modelWidth < 1 { try fail("model.d_model must be at least 1 (got \(modelWidth))") }
    if layers < 1 { try fail("model.layers must be at least 1 (got \(layers))") }
    if !(dropout >= 0 && dropout < 1) { try fail("model.dropout must be in [0, 1) (got \(dropout))") }
}
