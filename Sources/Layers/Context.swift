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
