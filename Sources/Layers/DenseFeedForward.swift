import Tensor

// Dense feedforward block. Legend: R rows, d width, F hidden size (d_ff).
//   y = W2 Drop(ReLU(W1 x + b1)) + b2, W1: [F, d], W2: [d, F], both with bias;
//   weights by the prenorm init (truncated normal rescaled to std sqrt(2 / (L * fan_in))),
//   biases 0. Tensors `up.weight`, `up.bias`, `down.weight`, `down.bias`.

/// The standard two-layer ReLU MLP of the Transformer. `TopKFeedForward` is this block with
/// one more step on the hidden layer (`sparsifyHidden`).
public class DenseFeedForward: FeedForwardLayer {
    /// Hidden size (the hidden-layer dropout is the model's dropout rate). `--ffn dense`.
    public struct Config: FeedForwardVariant {
        /// d_ff.
        public var hiddenSize: Int
        public init(hiddenSize: Int) { self.hiddenSize = hiddenSize }
        enum CodingKeys: String, CodingKey { case hiddenSize = "d_ff" }

        public static let kind = "dense"
        public static let options: Set<FeedForwardOption> = [.hiddenSize]

        public var denseHiddenSize: Int? { hiddenSize }

        public static func replacing(
            _ replaced: ReplacedBlock, options: FeedForwardOptions
        ) throws -> (block: Self, note: String?) {
            (Config(hiddenSize: replaced.hiddenSize), nil)
        }

        public mutating func apply(_ options: FeedForwardOptions) {
            if let size = options.hiddenSize { hiddenSize = size }
        }

        public func validate(modelWidth: Int) throws {
            if hiddenSize < 1 { throw FeedForwardConfigError(description: "d_ff must be at least 1 (got \(hiddenSize))") }
        }

        public func makeLayer(_ scope: ParameterScope, modelWidth: Int, dropout: Float) -> any FeedForwardLayer {
            DenseFeedForward(scope, hiddenSize: hiddenSize, width: modelWidth, dropout: dropout)
        }

        public func activeParameters(modelWidth: Int) -> Int { parameterCount(modelWidth: modelWidth) }

        public func shareUsed(modelWidth: Int) -> Double { 1 }

        public func forwardFLOPs(modelWidth d: Int) -> FeedForwardFLOPs {
            FeedForwardFLOPs(total: 4.0 * Double(d * hiddenSize))
        }

        public var summary: String { "dense d_ff \(hiddenSize)" }
    }

    public let hiddenSize: Int
    public let width: Int
    public let up: Linear
    public let down: Linear
    let hiddenDropout: Dropout

    private let hidden = FloatBuffer()
    private let dHidden = FloatBuffer()

    /// Registers `up` [F, d] and `down` [d, F], each with a bias, under `scope`.
    public init(_ scope: ParameterScope, hiddenSize: Int, width: Int, dropout: Float) {
        self.hiddenSize = hiddenSize
        self.width = width
        up = Linear(scope.child("up"), inputWidth: width, outputWidth: hiddenSize, bias: true)
        down = Linear(scope.child("down"), inputWidth: hiddenSize, outputWidth: width, bias: true)
        hiddenDropout = Dropout(rate: dropout)
    }

    public func initialize(_ arena: ParameterArena, _ context: inout InitializationContext) {
        for linear in [up, down] {
            context.prenormInitialize(linear.weight, in: arena)
            arena.value(linear.bias!).update(repeating: 0, count: linear.outputWidth)
        }
    }

    /// PyTorch's default `nn.Linear` initialisation of both layers, U(±1/sqrt(fan_in)) for
    /// weights and biases: the feedforward sublayers of the formal-language models.
    public func initializeUniform(_ arena: ParameterArena, _ context: inout InitializationContext) {
        up.initializeUniform(arena, &context)
        down.initializeUniform(arena, &context)
    }

    public func declareBuffers(for pass: PassShape, in plan: inout BufferPlan) {
        let count = pass.rows * hiddenSize
        plan.declare(hidden, "dense hidden layer", count: count)
        hiddenDropout.declareBuffers(count: count, for: pass, in: &plan)
        if pass.training { plan.declare(dHidden, "dense hidden gradient", count: count) }
        up.declareBuffers(rows: pass.rows, training: pass.training, in: &plan)
        down.declareBuffers(rows: pass.rows, training: pass.training, in: &plan)
    }

    public func forward(
        _ x: UnsafePointer<Float>, shape: TokenShape, output y: UnsafeMutablePointer<Float>,
        arena: ParameterArena, context: inout ForwardContext
    ) {
        let count = shape.rows * hiddenSize
        let h = hidden.reserved(count)
        up.forward(x, rows: shape.rows, output: h, arena: arena)
        for i in 0..<count { h[i] = max(h[i], 0) }
        hiddenDropout.forward(h, count: count, streams: shape.batch, context: &context)
        sparsifyHidden(h, rows: shape.rows)
        down.forward(h, rows: shape.rows, output: y, arena: arena)
    }

    /// Zeroes hidden entries after ReLU and dropout: nothing in the dense block. Whatever it
    /// keeps stays positive, so the backward's mask (h > 0) covers it without a gradient of
    /// the mask itself.
    func sparsifyHidden(_ h: UnsafeMutablePointer<Float>, rows: Int) {}

    public func backward(
        _ x: UnsafePointer<Float>, dOutput dy: UnsafePointer<Float>, shape: TokenShape,
        dInput dx: UnsafeMutablePointer<Float>, arena: ParameterArena
    ) {
        let count = shape.rows * hiddenSize
        let h = hidden.pointer
        let dh = dHidden.reserved(count)
        down.backward(h, dOutput: dy, rows: shape.rows, dInput: dh, accumulateInput: false, arena: arena)
        // The kept hidden value is positive exactly where ReLU passed and dropout kept; where
        // dropout dropped, the mask multiplies the gradient by 0 anyway.
        hiddenDropout.backward(dh, count: count)
        for i in 0..<count { dh[i] = h[i] > 0 ? dh[i] : 0 }
        up.backward(x, dOutput: dh, rows: shape.rows, dInput: dx, arena: arena)
    }
}
