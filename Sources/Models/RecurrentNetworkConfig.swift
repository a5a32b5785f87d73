import Layers

extension RecurrentNetwork {
    /// Shape of the recurrent baselines (`model.kind` `recurrent`).
    public struct Config: SequenceModelConfig {
        public static let kind = "recurrent"

        /// The recurrent cell.
        public enum Cell: String, Sendable, Codable, CaseIterable {
            /// An L-layer LSTM (gates i, f, g, o).
            case lstm
            /// The e-LSTM (quasi-LSTM): always one layer.
            case elstm
        }

        public var cell: Cell
        /// V_out: target classes, the pad class included.
        public var vocabularySize: Int
        /// V_in: input symbols, the pad symbol included.
        public var inputVocabularySize: Int
        /// E: the embedding width.
        public var embeddingSize: Int
        /// D: the state width.
        public var modelWidth: Int
        /// LSTM layers (1 for the e-LSTM).
        public var layers: Int
        /// Dropout before the output layer (0 in the paper).
        public var dropout: Float

        public init(
            cell: Cell, vocabularySize: Int = 0, inputVocabularySize: Int = 0, embeddingSize: Int,
            modelWidth: Int, layers: Int = 1, dropout: Float = 0
        ) {
            self.cell = cell
            self.vocabularySize = vocabularySize
            self.inputVocabularySize = inputVocabularySize
            self.embeddingSize = embeddingSize
            self.modelWidth = modelWidth
            self.layers = layers
            self.dropout = dropout
        }

        enum CodingKeys: String, CodingKey {
            case cell, layers, dropout
            case vocabularySize = "vocabulary_size", inputVocabularySize = "input_vocabulary_size"
            case embeddingSize = "embedding_size", modelWidth = "d_model"
        }

        public var feedForwardBlock: FeedForwardConfig? {
            get { nil }
            set {}
        }

        public var summary: String {
            "\(cell.rawValue), \(layers) layer\(layers == 1 ? "" : "s"), embedding \(embeddingSize), state \(modelWidth)"
        }

        public func validate() throws {
            try validateSequenceClassifier(
                vocabularySize: vocabularySize, inputVocabularySize: inputVocabularySize, modelWidth: modelWidth,
                layers: layers, dropout: dropout)
            if embeddingSize < 1 { throw ConfigError("model.embedding_size must be at least 1 (got \(embeddingSize))") }
            if cell == .elstm && layers != 1 {
                throw ConfigError("model.layers must be 1 for the e-LSTM, which has one layer (got \(layers))")
            }
        }

        public func makeModel() throws -> any SequenceModel { try RecurrentNetwork(config: self) }
    }
}
