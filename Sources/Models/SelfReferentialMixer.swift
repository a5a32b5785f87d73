import Layers
import Tensor

// The mixer sublayer of the self-referential weight matrix model. Legend as in
// FastWeightMixer.swift.
//   y = SRWM(h)                 the self-referential weight matrix reads the raw block input,
//                               head h its d-slice (no LayerNorm, no projection before it)
//   h' = LN(h) + Drop(y W_o^T)  W_o [D, H*d], no bias; note the residual is LN(h), not h

/// The self-referential weight matrix with its output projection and its residual.
final class SelfReferentialMixer: MixerSublayer {
    let width: Int
    let norm: LayerNorm
    let core: SelfReferentialWeightMatrix
    let output: Linear
    let dropout: Dropout

    private var shape = TokenShape(batch: 0, length: 0)
    private let heads = FloatBuffer()  // y, [B*T, D]
    private let normalized = FloatBuffer()  // LN(h), [B*T, D]
    private let dHeads = FloatBuffer()
    private let dMixed = FloatBuffer()

    /// Registers `norm`, the SRWM's initial matrices under `core`, and `output.weight`.
    init(_ scope: ParameterScope, width: Int, heads: Int, dropout rate: Float) {
        self.width = width
        norm = LayerNorm(scope.child("norm"), width: width)
        core = SelfReferentialWeightMatrix(scope.child("core"), heads: heads, headSize: width / heads)
        output = Linear(scope.child("output"), inputWidth: width, outputWidth: width, bias: false)
        dropout = Dropout(rate: rate)
    }

    /// LN (1, 0), the SRWM's own initialisation, W_o U(±1/sqrt(D)).
    func initialize(_ arena: ParameterArena, _ context: inout InitializationContext) {
        norm.initialize(arena)
        core.initialize(arena, &context)
        output.initializeUniform(arena, &context)
    }

    func declareBuffers(for pass: PassShape, in plan: inout BufferPlan) {
        let n = pass.rows * width
        plan.declare(heads, "SRWM outputs", count: n)
        plan.declare(normalized, "SRWM mixer LN", count: n)
        norm.declareBuffers(rows: pass.rows, training: pass.training, in: &plan)
        core.declareBuffers(for: pass, in: &plan)
        dropout.declareBuffers(count: n, for: pass, in: &plan)
        guard pass.training else { return }
        plan.declare(dHeads, "SRWM output gradient", count: n)
        plan.declare(dMixed, "SRWM mixer gradient", count: n)
    }

    func forward(
        _ h: UnsafePointer<Float>, shape: TokenShape, output out: UnsafeMutablePointer<Float>,
        arena: ParameterArena, context: inout ForwardContext
    ) {
        self.shape = shape
        let rows = shape.rows, n = rows * width
        let y = heads.reserved(n)
        core.forward(h, shape: shape, output: y, training: context.training, arena: arena)
        output.forward(y, rows: rows, output: out, arena: arena)
        dropout.forward(out, count: n, streams: shape.batch, context: &context)
        let z = normalized.reserved(n)
        norm.forward(h, rows: rows, output: z, arena: arena)
        addInPlace(out, z, count: n)
    }

    func backward(
        _ h: UnsafePointer<Float>, dOutput: UnsafePointer<Float>, dInput: UnsafeMutablePointer<Float>,
        arena: ParameterArena
    ) {
        let rows = shape.rows, n = rows * width
        dInput.update(repeating: 0, count: n)
        norm.backward(h, dOutput: dOutput, rows: rows, dInput: dInput, arena: arena)
        let dm = dMixed.reserved(n)
        dm.update(from: dOutput, count: n)
        dropout.backward(dm, count: n)
        let dy = dHeads.reserved(n)
        output.backward(heads.pointer, dOutput: dm, rows: rows, dInput: dy, accumulateInput: false, arena: arena)
        core.backward(h, dOutput: dy, shape: shape, dInput: dInput, arena: arena)
    }
}
