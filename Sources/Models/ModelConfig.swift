import Layers
import Tensor

/// Everything about one model architecture, implemented by its config type: the name, the
/// checks, how the model is built, and the feedforward block it swaps, if any.
public protocol SequenceModelConfig: Sendable, Codable, Equatable {
    /// The architecture's name, the config key `model.kind`.
    static var kind: String { get }
    /// Output classes: the data set it.
    var vocabularySize: Int { get set }
    /// Input symbols (the same as the output classes unless the data say otherwise, as for
    /// formal languages): the data set it.
    var inputVocabularySize: Int { get set }
    /// Width of the hidden state, the input width of the feedforward block.
    var modelWidth: Int { get }
    /// The swappable feedforward block of every layer; nil for architectures without one
    /// (setting it is then ignored).
    var feedForwardBlock: FeedForwardConfig? { get set }
    /// One line for logs and tables: "4 layers, d_model 128, 4 x 32 heads, dense d_ff 512".
    var summary: String { get }
    /// Throws one line naming the field when the config cannot work.
    func validate() throws
    /// Builds the model (layers and layout; parameter memory comes on first use).
    func makeModel() throws -> any SequenceModel
}

/// The model of a run: one registered architecture's config. Encoded as the architecture's
/// own keys plus `kind`.
public struct ModelConfig: Sendable {
    /// Every architecture. Adding a model is its files, its config type conforming to
    /// `SequenceModelConfig`, and one line here.
    public static let architectures: [any SequenceModelConfig.Type] = [
        TransformerXL.Config.self,
        FastWeightTransformer.Config.self,
        SoftmaxTransformer.Config.self,
        RecurrentNetwork.Config.self,
    ]

    /// The kind assumed for configs that name none (written before `model.kind` existed).
    public static let defaultKind = TransformerXL.Config.kind

    public static var kinds: [String] { architectures.map { $0.kind } }

    public var architecture: any SequenceModelConfig

    public init(_ architecture: some SequenceModelConfig) { self.architecture = architecture }

    public var kind: String { type(of: architecture).kind }

    /// The architecture's config if it is of type `T`.
    public func `as`<T: SequenceModelConfig>(_: T.Type) -> T? { architecture as? T }

    public var vocabularySize: Int {
        get { architecture.vocabularySize }
        set { architecture.vocabularySize = newValue }
    }

    public var inputVocabularySize: Int {
        get { architecture.inputVocabularySize }
        set { architecture.inputVocabularySize = newValue }
    }

    public var feedForward: FeedForwardConfig? {
        get { architecture.feedForwardBlock }
        set { architecture.feedForwardBlock = newValue }
    }

    public var summary: String { architecture.summary }

    public func validate() throws { try architecture.validate() }

    /// Changes the feedforward block (Docs/feedforward.md): to the variant `kind` when given,
    /// its free size matched to the block it replaces unless `matching` is off or `options`
    /// give it, then `options` applied. Returns the line describing a match, if one was made.
    @discardableResult
    public mutating func changeFeedForward(
        to kind: (any FeedForwardVariant.Type)?, options: FeedForwardOptions, matching: Bool = true
    ) throws -> String? {
        if kind == nil && options.isEmpty { return nil }
        guard var block = feedForward else {
            throw ConfigError("model.kind \(self.kind) has no swappable feedforward block")
        }
        let note = try block.change(to: kind, options: options, modelWidth: architecture.modelWidth, matching: matching)
        feedForward = block
        return note
    }

    public func makeModel() throws -> any SequenceModel { try architecture.makeModel() }
}

extension ModelConfig: Equatable {
    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.architecture.isEqual(to: rhs.architecture) }
}

extension SequenceModelConfig {
    fileprivate func isEqual(to other: any SequenceModelConfig) -> Bool { (other as? Self) == self }
}

extension ModelConfig: Codable {
    private enum CodingKeys: String, CodingKey { case kind }

    public init(from decoder: any Decoder) throws {
        let kind = try decoder.container(keyedBy: CodingKeys.self)
            .decodeIfPresent(String.self, forKey: .kind) ?? Self.defaultKind
        guard let type = Self.architectures.first(where: { $0.kind == kind }) else {
            throw ConfigError("model.kind '\(kind)' is unknown: use one of \(Self.kinds.joined(separator: ", "))")
        }
        architecture = try type.init(from: decoder)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(kind, forKey: .kind)
        try architecture.encode(to: encoder)
    }
}

/// A configuration a user wrote that cannot work; the message is one line naming the field.
public struct ConfigError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
