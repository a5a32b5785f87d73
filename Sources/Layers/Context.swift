import Tensor

/// What a forward pass needs besides its inputs: whether it trains (dropout, expert dropout,
/// regularisers, Sinkhorn routing) and the generator that draws the random masks.
public struct ForwardContext: Sendable {
    public var training: Bool
    /// False turns every dropout (and expert dropout) off while keeping training behaviour
    /// otherwise: `lmtrain step` uses it so its gradients are deterministic.
    public var dropout: Bool
    public var rng: RandomGenerator

    public init(training: Bool, dropout: Bool? = nil, rng: RandomGenerator) {
        self.training = training
        self.dropout = dropout ?? training
        self.rng = rng
    }

    /// Whether random masks are drawn in this pass.
    public var dropoutActive: Bool { training && dropout }
}

/// The token grid a sequence layer sees: `batch` streams of `length` positions, stored
/// row-major as `[batch, length, width]`.
public struct TokenShape: Sendable, Equatable {
    public var batch: Int
    public var length: Int
    public var rows: Int { batch * length }

    public init(batch: Int, length: Int) {
        self.batch = batch
        self.length = length
    }
}

/// Everything that sizes the buffers of one pass: the token grid, the memory rows the
/// attention may see besides the current segment (its capacity, so a memory that fills up
/// over the first steps needs no new buffers), and whether the pass trains (backward buffers)
/// and draws dropout masks. Layers declare their buffers for a `PassShape` (`BufferPlan`).
public struct PassShape: Sendable, Equatable {
    public var tokens: TokenShape
    /// Memory rows per stream the pass can attend to at most (0 without memory).
    public var memoryCapacity: Int
    /// A training pass keeps what its backward pass needs and reserves the backward buffers.
    public var training: Bool
    /// Dropout masks are drawn (training with dropout on).
    public var dropout: Bool

    public init(tokens: TokenShape, memoryCapacity: Int = 0, training: Bool, dropout: Bool) {
        self.tokens = tokens
        self.memoryCapacity = memoryCapacity
        self.training = training
        self.dropout = training && dropout
    }

    public init(tokens: TokenShape, memoryCapacity: Int = 0, context: ForwardContext) {
        self.init(
            tokens: tokens, memoryCapacity: memoryCapacity, training: context.training,
            dropout: context.dropoutActive)
    }

    public var batch: Int { tokens.batch }
    public var length: Int { tokens.length }
    /// B * T.
    public var rows: Int { tokens.rows }
    /// Key rows per stream at most: memory capacity plus the segment.
    public var keyLength: Int { memoryCapacity + tokens.length }
}

/// What parameter initialisation needs besides the arena: the generator, and the depth of
/// the model, by which the official initialisations scale their variances (2 / L).
public struct InitializationContext {
    public var rng: RandomGenerator
    /// L: layers of the model.
    public let layerCount: Int

    public init(seed: UInt64, layerCount: Int) {
        rng = RandomGenerator(seed: seed)
        self.layerCount = layerCount
    }

    /// sqrt((2 / L) * scale / fanIn): the standard deviation of the σ-MoE and PKM tensors.
    public func depthScaledStd(fanIn: Int, scale: Double = 1) -> Double {
        (2.0 / Double(layerCount) * scale / Double(fanIn)).squareRoot()
    }

    /// The official `reset_prenorm_params`: a normal truncated at +-2, rescaled so the tensor's
    /// sample std is exactly sqrt(2 / (L * fan_in)); `fan_in` is the weight's second dimension.
    public mutating func prenormInitialize(_ weight: ParameterView, in arena: ParameterArena) {
        precondition(weight.shape.count == 2)
        Initializer.truncatedNormalExactStd(
            arena.value(weight), count: weight.count,
            std: (2.0 / Double(layerCount * weight.shape[1])).squareRoot(), rng: &rng)
    }
}
