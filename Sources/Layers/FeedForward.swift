import Tensor

/// A feedforward block: `y = FFN(x)` row by row over `[B*T, d]`, with its own parameters,
/// activations and (training-only) auxiliary loss. Every variant of DESIGN.md "Feedforward
/// blocks" conforms; the Transformer block calls it without knowing which one it has.
public protocol FeedForwardLayer: AnyObject {
    /// Draws the initial parameters (DESIGN.md, per variant).
    func initialize(_ arena: ParameterArena, rng: inout RandomGenerator)

    /// x: [B*T, d] -> y: [B*T, d] (overwritten).
    func forward(
        _ x: UnsafePointer<Float>, shape: TokenShape, output y: UnsafeMutablePointer<Float>,
        arena: ParameterArena, context: inout ForwardContext)

    /// Accumulates parameter gradients and `dx += dL/dx`, including the gradient of the
    /// auxiliary loss of the last forward pass (which enters the total loss with weight 1).
    func backward(
        _ x: UnsafePointer<Float>, dOutput dy: UnsafePointer<Float>, shape: TokenShape,
        dInput dx: UnsafeMutablePointer<Float>, arena: ParameterArena)

    /// The regulariser or balancing loss of the last training forward pass (0 if none).
    var auxiliaryLoss: Double { get }
}

extension FeedForwardLayer {
    public var auxiliaryLoss: Double { 0 }
}

/// The official `reset_prenorm_params`: a normal truncated at +-2, rescaled so the tensor's
/// sample std is exactly sqrt(2 / (L * fan_in)); `fan_in` is the weight's second dimension.
public func prenormInitialize(
    _ weight: ParameterView, layerCount: Int, arena: ParameterArena, rng: inout RandomGenerator
) {
    precondition(weight.shape.count == 2)
    let std = (2.0 / Double(layerCount * weight.shape[1])).squareRoot()
    Initializer.truncatedNormalExactStd(
        arena.value(weight), count: weight.count, std: std, rng: &rng)
}
