import Layers
import Tensor

// The mixer sublayer of a fast-weight block (Docs/formal-languages.md). Legend: B sequences,
// T positions, D width, H heads of size d = D / H, P = per-head projection width.
//   linear Transformer, DeltaNet, Recurrent DeltaNet:
//     z = LN(h);  p = z W_p^T  (W_p [H*P, D], no bias, per head q, k, v (, b));
//     y = core(p)  [B, T, H*d];  h' = h + Drop(y W_o^T)  (W_o [D, H*d], no bias)
//   self-referential weight matrix (SelfReferentialMixer.swift):
//     y = SRWM(h)  (reads the raw input);  h' = LN(h) + Drop(y W_o^T)

/// The mixer sublayer of a fast-weight block: h -> h', its residual connection included.
protocol MixerSublayer: AnyObject {
    func initialize(_ arena: ParameterArena, _ context: inout InitializationContext)
    func declareBuffers(for pass: PassShape, in plan: inout BufferPlan)
    /// h: [B*T, D] -> output: [B*T, D] (overwritten).
    func forward(
        _ h: UnsafePointer<Float>, shape: TokenShape, output: UnsafeMutablePointer<Float>,
        arena: ParameterArena, context: inout ForwardContext)
    /// h: the forward pass's input (unchanged since); dOutput: [B*T, D] -> dInput: [B*T, D]
    /// (overwritten); accumulates parameter gradients.
    func backward(
        _ h: UnsafePointer<Float>, dOutput: UnsafePointer<Float>, dInput: UnsafeMutablePointer<Float>,
        arena: ParameterArena)
}

/// LN, one bias-free projection to every head's q, k, v (and b), a fast-weight core, the
/// output projection, dropout and the residual: the mixer of the linear Transformer, DeltaNet
/// and Recurrent DeltaNet.
final class ProjectedFastWeightMixer: MixerSublayer {
    let width: Int
    let norm: LayerNorm
    let projection: Linear
    let core: any FastWeightCore
    let output: Linear
    let dropout: Dropout

    private var shape = TokenShape(batch: 0, length: 0)
    private let normalized = FloatBuffer()  // LN(h)
    private let projected = FloatBuffer()  // p, [B*T, H*P]
    private let heads = FloatBuffer()  // y, [B*T, H*d]
    private let dHeads = FloatBuffer()
    private let dProjected = FloatBuffer()
    private let dNormalized = FloatBuffer()
    private let dMixed = FloatBuffer()  // d(Drop(y W_o^T))

    /// Registers `norm`, `projection.weight`, the core's tensors and `output.weight` under
    /// `scope`.
    init(_ scope: ParameterScope, width: Int, core makeCore: (ParameterScope) -> any FastWeightCore, dropout rate: Float) {
        self.width = width
        norm = LayerNorm(scope.child("norm"), width: width)
        let core = makeCore(scope.child("core"))
        self.core = core
        let d = core.heads * core.headSize
        projection = Linear(scope.child("projection"), inputWidth: width, outputWidth: core.heads * core.projectionWidth, bias: false)
        output = Linear(scope.child("output"), inputWidth: d, outputWidth: width, bias: false)
        dropout = Dropout(rate: rate)
    }

    /// LN (1, 0); the projections U(±1/sqrt(fan_in)) (PyTorch's default); the core's own.
    func initialize(_ arena: ParameterArena, _ context: inout InitializationContext) {
        norm.initialize(arena)
        projection.initializeUniform(arena, &context)
        core.initialize(arena, &context)
        output.initializeUniform(arena, &context)
    }

    func declareBuffers(for pass: PassShape, in plan: inout BufferPlan) {
        let rows = pass.rows, hp = core.heads * core.projectionWidth, hd = core.heads * core.headSize
        plan.declare(normalized, "mixer LN", count: rows * width)
        plan.declare(projected, "mixer projections", count: rows * hp)
        plan.declare(heads, "mixer head outputs", count: rows * hd)
        norm.declareBuffers(rows: rows, training: pass.training, in: &plan)
        core.declareBuffers(for: pass, in: &plan)
        dropout.declareBuffers(count: rows * width, for: pass, in: &plan)
        guard pass.training else { return }
        plan.declare(dHeads, "mixer head-output gradient", count: rows * hd)
        plan.declare(dProjected, "mixer projection gradient", count: rows * hp)
        plan.declare(dNormalized, "mixer LN gradient", count: rows * width)
        plan.declare(dMixed, "mixer output gradient", count: rows * width)
    }

    func forward(
        _ h: UnsafePointer<Float>, shape: TokenShape, output out: UnsafeMutablePointer<Float>,
        arena: ParameterArena, context: inout ForwardContext
    ) {
        self.shape = shape
        let rows = shape.rows, n = rows * width
        let z = normalized.reserved(n)
        norm.forward(h, rows: rows, output: z, arena: arena)
        let p = projected.reserved(rows * core.heads * core.projectionWidth)
        projection.forward(z, rows: rows, output: p, arena: arena)
        let y = heads.reserved(rows * core.heads * core.headSize)
        core.forward(p, shape: shape, output: y, arena: arena, training: context.training)
        output.forward(y, rows: rows, output: out, arena: arena)
        dropout.forward(out, count: n, streams: shape.batch, context: &context)
        addInPlace(out, h, count: n)
    }

    func backward(
        _ h: UnsafePointer<Float>, dOutput: UnsafePointer<Float>, dInput: UnsafeMutablePointer<Float>,
        arena: ParameterArena
    ) {
        let rows = shape.rows, n = rows * width
        let hp = core.heads * core.projectionWidth, hd = core.heads * core.headSize
        let dm = dMixed.reserved(n)
        dm.update(from: dOutput, count: n)
        dropout.backward(dm, count: n)
        let dy = dHeads.reserved(rows * hd)
        output.backward(heads.pointer, dOutput: dm, rows: rows, dInput: dy, accumulateInput: false, arena: arena)
        let dp = dProjected.reserved(rows * hp)
        core.backward(dOutput: dy, shape: shape, dProjection: dp, arena: arena)
        let dz = dNormalized.reserved(n)
        projection.backward(normalized.pointer, dOutput: dp, rows: rows, dInput: dz, accumulateInput: false, arena: arena)
        // The residual passes dOutput straight through; LN adds its part.
        dInput.update(from: dOutput, count: n)
        norm.backward(h, dOutput: dz, rows: rows, dInput: dInput, arena: arena)
    }
}
