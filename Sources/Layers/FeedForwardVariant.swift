import Foundation
import Tensor

// A feedforward variant is its layer file plus its config type. The config type conforms to
// `FeedForwardVariant`, which asks for everything lmtrain needs to know about the variant
// (name, options, validation, construction, counts, FLOPs, summary), and is registered once
// in `FeedForwardConfig.variants`. Parameter counts and buffer sizes come from the layer
// itself: the tensors it registers and the buffers it declares.

/// Everything about one feedforward variant, implemented by its config type.
public protocol FeedForwardVariant: Sendable, Codable, Equatable {
    /// The variant's name, as `--ffn` and the config key `feed_forward.kind` take it.
    static var kind: String { get }

    /// The block options (`FeedForwardOptions`) this variant takes; any other is refused.
    static var options: Set<FeedForwardOption> { get }

    /// This variant's block in place of `replaced`: its defaults, with the free size (expert
    /// size, sub-keys) solved so the parameter count is closest to the replaced block's,
    /// unless `options` give it or `replaced.matching` is off. Returns the line describing
    /// the match (with its residual), if one was made. `options` are applied afterwards.
    static func replacing(
        _ replaced: ReplacedBlock, options: FeedForwardOptions
    ) throws -> (block: Self, note: String?)

    /// Sets the fields that `options` give (only options of `Self.options` are given).
    mutating func apply(_ options: FeedForwardOptions)

    /// Throws one line naming the field when the config cannot work at `modelWidth`.
    func validate(modelWidth: Int) throws

    /// Builds the layer; its tensors are registered under `scope`.
    func makeLayer(_ scope: ParameterScope, modelWidth: Int, dropout: Float) -> any FeedForwardLayer

    /// Parameters that take part in computing one token's output.
    func activeParameters(modelWidth: Int) -> Int

    /// The paper's "share of feedforward parameters used at once" (K / N for experts).
    func shareUsed(modelWidth: Int) -> Double

    /// Matrix-product FLOPs per token of a forward pass (2 per multiply-add).
    func forwardFLOPs(modelWidth: Int) -> FeedForwardFLOPs

    /// One line for tables and logs: "σ-MoE 16 x 128, K 4, sigmoid, δ 0.0, γ 0.001".
    var summary: String { get }

    /// The hidden width of a dense-like block (dense, top-K), kept when the kind changes;
    /// nil for the others.
    var denseHiddenSize: Int? { get }
}

extension FeedForwardVariant {
    public var denseHiddenSize: Int? { nil }

    public func shareUsed(modelWidth: Int) -> Double {
        Double(activeParameters(modelWidth: modelWidth)) / Double(parameterCount(modelWidth: modelWidth))
    }

    /// Parameters of one block at width `modelWidth`: the layer built into an empty layout (no
    /// parameter memory), so the count is exactly what a model registers. The config must
    /// pass `validate(modelWidth:)`.
    public func parameterCount(modelWidth: Int) -> Int {
        let scope = ParameterScope()
        _ = makeLayer(scope, modelWidth: modelWidth, dropout: 0)
        return scope.layout.count
    }
}

/// Matrix-product FLOPs of a block per token: all of it, and the part spent on routing
/// (selector product, gates, top-K; sub-key scores and the query network for PKM).
public struct FeedForwardFLOPs: Sendable, Equatable {
    public var total: Double
    public var routing: Double

    public init(total: Double, routing: Double = 0) {
        self.total = total
        self.routing = routing
    }
}

/// The block a new variant replaces when the kind changes: what matching aims for.
public struct ReplacedBlock: Sendable {
    /// Parameters per layer of the replaced block.
    public var parameterCount: Int
    /// Its hidden width if dense-like, else the dense width with the same parameters.
    public var hiddenSize: Int
    public var modelWidth: Int
    /// False (`--match none`): fixed defaults, nothing solved.
    public var matching: Bool

    public init(_ block: FeedForwardConfig, modelWidth d: Int, matching: Bool) {
        parameterCount = block.variant.parameterCount(modelWidth: d)
        hiddenSize = block.variant.denseHiddenSize ?? max(1, (parameterCount - d) / (2 * d + 1))
        modelWidth = d
        self.matching = matching
    }

    /// The size in `1...` whose block has the parameter count closest to this block's (the
    /// larger one on a tie), counting each candidate exactly with `count`, which must grow
    /// with the size; nil when even size 1 has more parameters. Also returns the line that
    /// reports the match, e.g. "matched expert size 128 (16 experts) to the 2104837
    /// parameters per layer of the block it replaces: 2105344 (+507, +0.02%)".
    public func closestSize(
        describing what: (Int) -> String, count: (Int) -> Int
    ) -> (size: Int, note: String)? {
        let target = parameterCount
        guard count(1) <= target else { return nil }
        // Smallest size whose count reaches the target: double, then bisect.
        var high = 2
        while count(high) < target { high *= 2 }
        var low = high / 2  // count(low) < target or low == 1
        while high - low > 1 {
            let middle = (low + high) / 2
            if count(middle) < target { low = middle } else { high = middle }
        }
        let size = target - count(low) < count(high) - target ? low : high
        let achieved = count(size)
        let difference = achieved - target
        let percent = String(format: "%+.2f", 100 * Double(difference) / Double(target))
        let note = "matched \(what(size)) to the \(target) parameters per layer of the block it replaces: \(achieved) (\(difference >= 0 ? "+" : "")\(difference), \(percent)%)"
        return (size, note)
    }
}

/// The options of the feedforward blocks, one per meaning: `experts` is the same option for
/// σ-MoE, Switch and S-BASE. The command line gives them as flags; a variant declares which
/// it takes (`FeedForwardVariant.options`) and applies them.
public enum FeedForwardOption: String, CaseIterable, Sendable {
    case hiddenSize = "d_ff"
    case topK = "topk"
    case experts
    case expertSize = "expert_size"
    case k
    case expertDropout = "expert_dropout"
    case regularization
    case selection
    case balance
    case pkmHeads = "pkm_heads"
    case pkmKeys = "pkm_keys"
    case pkmKnn = "pkm_knn"
    case pkmActivation = "pkm_activation"
    case pkmQuery = "pkm_query"
    case pkmPath = "pkm_path"
    case pkmValueInit = "pkm_value_init"
}

/// An option given for a variant that does not take it.
public struct FeedForwardOptionError: Error, CustomStringConvertible, Sendable {
    public let option: FeedForwardOption
    /// The kind the option was given for.
    public let kind: String

    /// The kinds that take the option.
    public var acceptingKinds: [String] {
        FeedForwardConfig.variants.filter { $0.options.contains(option) }.map { $0.kind }
    }

    public var description: String {
        "option \(option.rawValue) applies to feedforward kinds \(acceptingKinds.joined(separator: "|")), not \(kind)"
    }
}

/// Values of the block options a user gave (nil: not given).
public struct FeedForwardOptions: Sendable, Equatable {
    /// d_ff of a dense or top-K block.
    public var hiddenSize: Int?
    /// Hidden units kept per token (top-K).
    public var topK: Int?
    public var experts: Int?
    /// G; left out, it is matched to the replaced block.
    public var expertSize: Int?
    /// Experts per token.
    public var k: Int?
    /// δ.
    public var expertDropout: Float?
    /// γ of the entropy regulariser.
    public var regularization: Double?
    public var selection: MixtureOfExperts.Selection?
    /// γ of Switch's balancing loss.
    public var balance: Double?
    public var pkmHeads: Int?
    /// n_keys; left out, it is matched to the replaced block.
    public var pkmKeys: Int?
    public var pkmKnn: Int?
    public var pkmActivation: ProductKeyMemory.Activation?
    public var pkmQuery: ProductKeyMemory.Query?
    public var pkmPath: ProductKeyMemory.Path?
    public var pkmValueInit: ProductKeyMemory.ValueInit?

    public init() {}

    /// The options that have a value, in declaration order.
    public var given: [FeedForwardOption] {
        FeedForwardOption.allCases.filter { option in
            switch option {
            case .hiddenSize: hiddenSize != nil
            case .topK: topK != nil
            case .experts: experts != nil
            case .expertSize: expertSize != nil
            case .k: k != nil
            case .expertDropout: expertDropout != nil
            case .regularization: regularization != nil
            case .selection: selection != nil
            case .balance: balance != nil
            case .pkmHeads: pkmHeads != nil
            case .pkmKeys: pkmKeys != nil
            case .pkmKnn: pkmKnn != nil
            case .pkmActivation: pkmActivation != nil
            case .pkmQuery: pkmQuery != nil
            case .pkmPath: pkmPath != nil
            case .pkmValueInit: pkmValueInit != nil
            }
        }
    }

    public var isEmpty: Bool { given.isEmpty }
}

/// The feedforward block of a model: one registered variant's config. Encoded as the
/// variant's own keys plus `kind`.
public struct FeedForwardConfig: Sendable {
    /// Every feedforward variant. Adding a variant is its layer file, its config type
    /// conforming to `FeedForwardVariant`, and one line here.
    public static let variants: [any FeedForwardVariant.Type] = [
        DenseFeedForward.Config.self,
        TopKFeedForward.Config.self,
        ProductKeyMemory.Config.self,
        MixtureOfExperts.SigmaConfig.self,
        MixtureOfExperts.SwitchConfig.self,
        MixtureOfExperts.SBaseConfig.self,
    ]

    /// The registered kinds, in registration order.
    public static var kinds: [String] { variants.map { $0.kind } }

    /// The variant registered as `kind`.
    public static func variant(kind: String) -> (any FeedForwardVariant.Type)? {
        variants.first { $0.kind == kind }
    }

    public var variant: any FeedForwardVariant

    public init(_ variant: some FeedForwardVariant) { self.variant = variant }

    public var kind: String { type(of: variant).kind }

    /// The variant's config if it is of type `T`.
    public func `as`<T: FeedForwardVariant>(_: T.Type) -> T? { variant as? T }

    public var summary: String { variant.summary }

    /// Parameters of one block at `modelWidth`, from the layer's layout.
    public func parameterCount(modelWidth: Int) -> Int { variant.parameterCount(modelWidth: modelWidth) }

    /// Throws one line naming the field, prefixed `model.feed_forward:`.
    public func validate(modelWidth: Int) throws {
        do { try variant.validate(modelWidth: modelWidth) } catch {
            throw FeedForwardConfigError(description: "model.feed_forward: \(error)")
        }
    }

    public func makeLayer(_ scope: ParameterScope, modelWidth: Int, dropout: Float) -> any FeedForwardLayer {
        variant.makeLayer(scope, modelWidth: modelWidth, dropout: dropout)
    }

    /// Changes this block: to the variant `kind` when given (its free size matched to this
    /// block unless `matching` is off or the options give it), then applies `options`.
    /// Options the resulting variant does not take are refused. Returns the matching line.
    @discardableResult
    public mutating func change(
        to kind: (any FeedForwardVariant.Type)?, options: FeedForwardOptions, modelWidth: Int,
        matching: Bool = true
    ) throws -> String? {
        let target = kind ?? type(of: variant)
        if let refused = options.given.first(where: { !target.options.contains($0) }) {
            throw FeedForwardOptionError(option: refused, kind: target.kind)
        }
        var note: String?
        if let kind, kind.kind != self.kind {
            try validate(modelWidth: modelWidth)  // the replaced block is built to be counted
            let replaced = ReplacedBlock(self, modelWidth: modelWidth, matching: matching)
            (variant, note) = try kind.erasedReplacing(replaced, options: options)
        }
        variant = variant.applying(options)
        return note
    }
}

extension FeedForwardVariant {
    /// `replacing` with the block as an existential.
    fileprivate static func erasedReplacing(
        _ replaced: ReplacedBlock, options: FeedForwardOptions
    ) throws -> (any FeedForwardVariant, String?) {
        let (block, note) = try replacing(replaced, options: options)
        return (block, note)
    }

    /// A copy with `options` applied.
    fileprivate func applying(_ options: FeedForwardOptions) -> any FeedForwardVariant {
        var block = self
        block.apply(options)
        return block
    }
}

extension FeedForwardConfig: Equatable {
    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.variant.isEqual(to: rhs.variant) }
}

extension FeedForwardVariant {
    fileprivate func isEqual(to other: any FeedForwardVariant) -> Bool { (other as? Self) == self }
}

extension FeedForwardConfig: Codable {
    private enum CodingKeys: String, CodingKey { case kind }

    public init(from decoder: any Decoder) throws {
        let kind = try decoder.container(keyedBy: CodingKeys.self).decode(String.self, forKey: .kind)
        guard let type = Self.variant(kind: kind) else {
            throw FeedForwardConfigError(
                description: "model.feed_forward.kind '\(kind)' is unknown: use one of \(Self.kinds.joined(separator: ", "))")
        }
        variant = try type.init(from: decoder)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(kind, forKey: .kind)
        try variant.encode(to: encoder)
    }
}
