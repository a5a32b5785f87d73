import Tensor

/// What a forward pass needs besides its inputs: whether it trains (dropout, expert dropout,
/// regularisers, Sinkhorn routing), the generator that draws the random masks, and, in a
/// data-parallel job, the other ranks: layers whose training pass reduces over the whole
/// batch (the σ-MoE regulariser, Switch's balancing loss, batch norm) reduce across
/// `collective`, and the loss is normalised by the scored positions of the whole batch.
public struct ForwardContext: Sendable {
    public var training: Bool
    /// False turns every dropout (and expert dropout) off while keeping training behaviour
    /// otherwise: `lmtrain step` uses it so its gradients are deterministic.
    public var dropout: Bool
    public var rng: RandomGenerator
    /// The ranks of the job (a single process: `SingleProcess`).
    public var collective: any Collective
    /// Scored positions of the whole batch over every rank, by which the mean cross-entropy
    /// divides (nil: this pass's own, as in a single process).
    public var scoredPositionsOverall: Int?
    /// Index in the whole batch of this pass's first stream (a rank's share starts there).
    public var firstStream = 0
    /// Draw dropout masks from `rng` over the whole pass at once, as lmtrain did before masks
    /// were drawn per stream: runs whose config predates that keep it (one process only).
    public var sharedDropoutDraws = false

    public init(
        training: Bool, dropout: Bool? = nil, rng: RandomGenerator,
        collective: any Collective = SingleProcess.shared, scoredPositionsOverall: Int? = nil
    ) {
        self.training = training
        self.dropout = dropout ?? training
        self.rng = rng
        self.collective = collective
        self.scoredPositionsOverall = scoredPositionsOverall
    }

    /// The collective a training pass reduces over, nil in a single process or evaluation
    /// (evaluation passes reduce nothing inside the model).
    public var trainingCollective: (any Collective)? {
        training && collective.isDistributed ? collective : nil
    }

    /// The generator of one stream's masks in a pass: `base` (one draw of the shared generator
    /// per mask, the same on every rank) mixed with the stream's index in the whole batch
    /// through SplitMix64's finaliser, so that streams never share a sequence.
    public static func streamGenerator(base: UInt64, stream: Int) -> RandomGenerator {
        func mix(_ value: UInt64) -> UInt64 {
            var z = value
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        return RandomGenerator(seed: mix(base ^ mix(UInt64(stream) &+ 0x9E37_79B9_7F4A_7C15)))
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
