import Layers

extension FastWeightTransformer {
    /// Shape of a fast-weight model (`model.kind` `fast-weight`, Docs/formal-languages.md).
    public struct Config: SequenceModelConfig {
        public static let kind = "fast-weight"

        /// The sequence mixer of every layer.
        public enum Mixer: String, Sendable, Codable, CaseIterable {
            /// Linear Transformer: W += phi(k) ⊗ v, y = phi(q) W, phi = ELU + 1.
            case linearTransformer = "lt"
            /// DeltaNet: the delta rule with sum-normalised phi(q), phi(k) and a learned rate.
            case deltaNet = "deltanet"
            /// Recurrent DeltaNet: DeltaNet whose q, k, v, beta also see tanh of the last output.
            case recurrentDeltaNet = "rdn"
            /// Self-referential weight matrix: a fast weight that modifies itself.
            case selfReferential = "srwm"
        }

        public var mixer: Mixer
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
        /// Dropout after the mixer and in and after the feedforward sublayer (0 in the paper).
        public var dropout: Float

        public init(
            mixer: Mixer, vocabularySize: Int = 0, inputVocabularySize: Int = 0, modelWidth: Int,
            layers: Int, heads: Int, feedForwardFactor: Int, dropout: Float = 0
        ) {
            self.mixer = mixer
            self.vocabularySize = vocabularySize
            self.inputVocabularySize = inputVocabularySize
            self.modelWidth = modelWidth
            self.layers = layers
            self.heads = heads
            self.feedForwardFactor = feedForwardFactor
            self.dropout = dropout
        }

        enum CodingKeys: String, CodingKey {
            case mixer, layers, heads, dropout
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
            "\(mixer.rawValue), \(layers) layers, d_model \(modelWidth), \(heads) heads, ff \(feedForwardWidth)"
        }

        public func validate() throws {
            try validateSequenceClassifier(
                vocabularySize: vocabularySize, inputVocabularySize: inputVocabularySize, modelWidth: modelWidth,
                layers: layers, dropout: dropout)
            if heads < 1 || modelWidth % heads != 0 {
                throw ConfigError("model.heads \(heads) must divide d_model \(modelWidth): every head reads a d_model / heads slice")
            }
            if feedForwardFactor < 1 { throw ConfigError("model.ff_factor must be at least 1 (got \(feedForwardFactor))") }
        }

        public func makeModel() throws -> any SequenceModel { try FastWeightTransformer(config: self) }

        /// Matrix FLOPs per token of one mixer (2 per multiply-add): the projections and, per
        /// head of size d, the fast-weight reads and writes (Docs/formal-languages.md).
        var mixerFLOPsPerToken: Double {
            let (D, H) = (Double(modelWidth), Double(heads)), d = D / H
            switch mixer {
            case .linearTransformer: return 2 * D * 3 * D + 2 * D * D + H * 2 * 2 * d * d
            case .deltaNet: return 2 * D * (3 * D + H) + 2 * D * D + H * 2 * 3 * d * d
            case .recurrentDeltaNet: return 2 * D * (3 * D + H) + 2 * D * D + H * 2 * (6 * d * d + d)
            case .selfReferential: return 2 * D * D + H * 2 * (12 * d * d + 16 * d)
            }
        }
    }
}
