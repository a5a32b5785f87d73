import Layers
import Tensor

/// A model that maps token sequences to a class per position (the next token, for language
/// models): what the trainer, the evaluation, checkpoints, `lmtrain step`, the benchmark and
/// the accountant use, without knowing the architecture. Docs/architecture.md shows how a new
/// model plugs in.
///
/// A pass is `forward` then, in training, `backward`; state carried between consecutive
/// segments of the same streams (Transformer-XL's memory) lives in a `CarriedState` that the
/// caller owns and moves on with `advance` after the pass.
public protocol SequenceModel: AnyObject {
    /// Names, shapes and offsets of the parameters.
    var layout: ParameterLayout { get }
    /// Parameter values and gradients (allocated on first use: a model built only to be
    /// accounted for allocates nothing).
    var arena: ParameterArena { get }
    /// Number of output classes per position (the vocabulary of a language model).
    var outputClasses: Int { get }

    /// Draws every initial parameter from `seed`.
    func initialize(seed: UInt64)

    /// State for `batch` streams keeping up to `capacity` positions, or nil for a model that
    /// carries nothing from one segment to the next.
    func makeState(batch: Int, capacity: Int) -> (any CarriedState)?

    /// Runs the model on `batch` (training or evaluation, as `context` says), attending to
    /// `state` without changing it, and returns the cross-entropy over the scored targets and
    /// the auxiliary losses (training only).
    func forward(
        _ batch: TokenBatch, state: (any CarriedState)?, context: inout ForwardContext
    ) -> ForwardLoss

    /// Accumulates into `arena.gradients` (zero them first) the gradient of the last forward
    /// pass's `ForwardLoss.objective`.
    func backward()

    /// After a pass over a batch: `state` takes in that batch's positions.
    func advance(_ state: any CarriedState)

    /// Logits of the last forward pass, [B*T, outputClasses].
    var logits: UnsafePointer<Float> { get }

    /// Per-position cross-entropy of the last forward pass, [B*T] (0 where not scored).
    var positionLosses: UnsafePointer<Double> { get }

    /// Selection counts of the sparse blocks since the last `resetUsage()`, one entry per
    /// layer that selects (experts, value rows); empty for models without.
    var usage: [UsageCounts] { get }

    /// Starts a new counting period of `usage`.
    func resetUsage()

    /// Non-trained tensors a checkpoint carries besides the parameters (batch-norm running
    /// statistics), by checkpoint name.
    var persistentState: [String: [Float]] { get }

    /// Restores `persistentState` from `tensors`, which returns the values saved under a name
    /// (nil when absent).
    func loadPersistentState(_ tensors: (String) throws -> [Float]?) throws

    // MARK: What the accountant reads

    /// Parameters by component, from the layout.
    var parameterComponents: [ParameterComponent] { get }

    /// Parameters that take part in computing one position's output.
    var activeParametersPerToken: Int { get }

    /// Share of the feedforward parameters used at once (K / N for σ-MoE), nil without a
    /// feedforward block.
    var feedForwardShareUsed: Double? { get }

    /// Matrix-product FLOPs per position of a forward pass of shape `pass`, by component.
    func forwardFLOPs(_ pass: PassShape) -> [FLOPComponent]

    /// Bytes of the state `makeState(batch:capacity:)` would allocate (nothing is allocated).
    func stateBytes(batch: Int, capacity: Int) -> Int

    /// Bytes of that state once evaluation passes of `segmentLength` have run over it (what it
    /// keeps besides the training state, such as projections it reuses).
    func evaluationStateBytes(batch: Int, capacity: Int, segmentLength: Int) -> Int

    /// Reserves the buffers of passes up to `pass` now (the largest batch of a run), so that no
    /// later pass allocates.
    func reserveBuffers(for pass: PassShape)

    /// Declares every buffer a pass of shape `pass` uses; the model reserves the same plan
    /// before such a pass, so the accountant's inventory is exactly what is allocated.
    func declareBuffers(for pass: PassShape, in plan: inout BufferPlan)
}

extension SequenceModel {
    public func evaluationStateBytes(batch: Int, capacity: Int, segmentLength: Int) -> Int {
        stateBytes(batch: batch, capacity: capacity)
    }

    /// Reserves the plan `declareBuffers` makes for `pass`.
    public func reserveBuffers(for pass: PassShape) { BufferPlan.reserve { declareBuffers(for: pass, in: &$0) } }
}

/// A model whose state restarts with every sequence and that keeps nothing besides its
/// parameters: no carried state, no selection counts, no non-trained tensors (the
/// formal-language models). Conforming gives those parts of `SequenceModel`.
public protocol SequenceWiseModel: SequenceModel {}

extension SequenceWiseModel {
    public func makeState(batch: Int, capacity: Int) -> (any CarriedState)? { nil }
    public func advance(_ state: any CarriedState) {}
    public func stateBytes(batch: Int, capacity: Int) -> Int { 0 }
    public var usage: [UsageCounts] { [] }
    public func resetUsage() {}
    public var persistentState: [String: [Float]] { [:] }
    public func loadPersistentState(_ tensors: (String) throws -> [Float]?) throws {}
}

/// One batch of sequences: inputs and targets [B, T], row-major. A negative target
/// (`SoftmaxCrossEntropy.ignoredTarget`) marks a position that is not scored (padding).
public struct TokenBatch {
    public var shape: TokenShape
    public var inputs: UnsafePointer<Int32>
    public var targets: UnsafePointer<Int32>

    public init(shape: TokenShape, inputs: UnsafePointer<Int32>, targets: UnsafePointer<Int32>) {
        self.shape = shape
        self.inputs = inputs
        self.targets = targets
    }
}

/// The losses of one forward pass.
public struct ForwardLoss: Sendable, Equatable {
    /// Cross-entropy summed over the scored positions (nats).
    public var crossEntropySum: Double
    /// Positions with a target.
    public var scoredPositions: Int
    /// Regularisers and balancing losses of the feedforward blocks (training passes only).
    public var auxiliaryLoss: Double

    public init(crossEntropySum: Double, scoredPositions: Int, auxiliaryLoss: Double) {
        self.crossEntropySum = crossEntropySum
        self.scoredPositions = scoredPositions
        self.auxiliaryLoss = auxiliaryLoss
    }

    /// Mean cross-entropy over the scored positions.
    public var crossEntropy: Double { crossEntropySum / Double(max(1, scoredPositions)) }

    /// What training minimises: the mean cross-entropy plus the auxiliary losses.
    public var objective: Double { crossEntropy + auxiliaryLoss }
}

/// State a model carries from one segment of its streams to the next (Transformer-XL's
/// memory). The caller owns it: the trainer keeps one for training and the evaluation its own.
public protocol CarriedState: AnyObject {
    /// Streams.
    var batch: Int { get }
    /// Empties the state (epoch start, start of an evaluation).
    func reset()
    /// The state as named float tensors, per stream along the first dimension, for checkpoints.
    func checkpointTensors() -> [NamedTensor]
    /// Restores what `checkpointTensors` returned; `tensor` gives the tensor saved under a
    /// name (nil when absent). Throws one line when the saved state does not fit.
    func restore(_ tensor: (String) throws -> NamedTensor?) throws
    /// Bytes the state occupies.
    var bytes: Int { get }
}

/// A named float tensor, row-major.
public struct NamedTensor: Sendable, Equatable {
    public var name: String
    public var shape: [Int]
    public var values: [Float]

    public init(name: String, shape: [Int], values: [Float]) {
        precondition(shape.reduce(1, *) == values.count, "\(name): \(values.count) values for shape \(shape)")
        self.name = name
        self.shape = shape
        self.values = values
    }
}

/// Parameters of one component of a model ("attention", "feedforward", ...).
public struct ParameterComponent: Sendable, Equatable, Codable {
    public var name: String
    public var count: Int
    /// Parameters per layer, for components repeated in every layer.
    public var perLayer: Int?

    public init(name: String, count: Int, perLayer: Int? = nil) {
        self.name = name
        self.count = count
        self.perLayer = perLayer
    }

    enum CodingKeys: String, CodingKey {
        case name, count
        case perLayer = "per_layer"
    }
}

/// Matrix-product FLOPs per position of one component of a forward pass.
public struct FLOPComponent: Sendable, Equatable, Codable {
    public var name: String
    public var perToken: Double
    /// The part spent on routing (feedforward blocks that select).
    public var routing: Double
    /// FLOPs per layer, for components repeated in every layer.
    public var perLayer: Double?

    public init(name: String, perToken: Double, routing: Double = 0, perLayer: Double? = nil) {
        self.name = name
        self.perToken = perToken
        self.routing = routing
        self.perLayer = perLayer
    }

    enum CodingKeys: String, CodingKey {
        case name, routing
        case perToken = "per_token"
        case perLayer = "per_layer"
    }
}
