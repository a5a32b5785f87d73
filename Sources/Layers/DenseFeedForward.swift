import Tensor

// Dense feedforward block. Legend: R rows, d width, F hidden size (d_ff).
//   y = W2 Drop(ReLU(W1 x + b1)) + b2, W1: [F, d], W2: [d, F], both with bias;
//   weights by the prenorm init, biases 0 (DESIGN.md "Dense").

/// The standard two-layer ReLU MLP of the Transformer. `TopKFeedForward` is this block with
/// one more step on the hidden layer (`sparsifyHidden`).
public class DenseFeedForward: FeedForwardLayer {
    /// Hidden size (the hidden-layer dropout is the model's dropout rate).
    public struct Config: Sendable, Codable, Equatable {
        /// d_ff.
        public var hiddenSize: Int
        public init(hiddenSize: Int) { self.hiddenSize = hiddenSize }
        enum CodingKeys: String, CodingKey { case hiddenSize = "d_ff" }
    }

    public let hiddenSize: Int
    public let width: Int
    public let layerCount: Int
    public let up: Linear
    public let down: Linear
    let hiddenDropout: Dropout

    private let hidden = FloatBuffer()
    private let dHidden = FloatBuffer()

    public convenience init(
        name: String, config: Config, width: Int, layerCount: Int, dropout: Float,
        layout: inout ParameterLayout
    ) {
        self.init(name: name, hiddenSize: config.hiddenSize, width: width, layerCount: layerCount, dropout: dropout, layout: &layout)
    }

    init(
        name: String, hiddenSize: Int, width: Int, layerCount: Int, dropout: Float,
        layout: inout ParameterLayout
    ) {
        self.hiddenSize = hiddenSize
        self.width = width
        self.layerCount = layerCount
        up = Linear(
            name: "\(name).up", inputWidth: width, outputWidth: hiddenSize, bias: true,
            layout: &layout)
        down = Linear(
            name: "\(name).down", inputWidth: hiddenSize, outputWidth: width, bias: true,
            layout: &layout)
        hiddenDropout = Dropout(rate: dropout)
    }

    public func initialize(_ arena: ParameterArena, rng: inout RandomGenerator) {
        for linear in [up, down] {
            prenormInitialize(linear.weight, layerCount: layerCount, arena: arena, rng: &rng)
            arena.value(linear.bias!).update(repeating: 0, count: linear.outputWidth)
        }
    }

    public func forward(
        _ x: UnsafePointer<Float>, shape: TokenShape, output y: UnsafeMutablePointer<Float>,
        arena: ParameterArena, context: inout ForwardContext
    ) {
        let count = shape.rows * hiddenSize
        let h = hidden.reserve(count)
        up.forward(x, rows: shape.rows, output: h, arena: arena)
        for i in 0..<count { h[i] = max(h[i], 0) }
        hiddenDropout.forward(h, count: count, context: &context)
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
        let dh = dHidden.reserve(count)
        down.backward(h, dOutput: dy, rows: shape.rows, dInput: dh, accumulateInput: false, arena: arena)
        // The kept hidden value is positive exactly where ReLU passed and dropout kept; where
        // dropout dropped, the mask multiplies the gradient by 0 anyway.
        hiddenDropout.backward(dh, count: count)
        for i in 0..<count { dh[i] = h[i] > 0 ? dh[i] : 0 }
        up.backward(x, dOutput: dh, rows: shape.rows, dInput: dx, arena: arena)
    }
}
