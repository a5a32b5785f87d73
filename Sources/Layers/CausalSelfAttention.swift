import Tensor

// Causal multi-head softmax self-attention with biased input and output projections, as
// PyTorch's `nn.MultiheadAttention` inside `TransformerEncoderLayer` with a causal mask.
// Legend: B sequences, T positions, D width, H heads of size d = D / H, R = B T rows.
// Forward, x [R, D]:
//   [Q | K | V] = x W_in^T + b_in           W_in [3D, D] (rows q, k, v), b_in [3D]; [R, 3D]
//   per sequence and head h (columns h d ..< (h + 1) d of Q, K, V):
//     S = Q_h K_h^T / sqrt(d),  S[i, j] = -inf for j > i  (position i sees j <= i)
//     P = softmax over each row of S;  O_h = P V_h
//   y = O W_out^T + b_out                    W_out [D, D], b_out [D]; O = [O_1 | ... | O_H]
//   No positional encoding, no attention dropout.
// Backward, dy [R, D]:
//   dW_out += dy^T O;  db_out += column sums of dy;  dO = dy W_out
//   per sequence and head: dP = dO_h V_h^T;  dV_h = P^T dO_h
//     dS = P ⊙ (dP - rowsum(P ⊙ dP)) / sqrt(d)   (0 above the diagonal)
//     dQ_h = dS K_h;  dK_h = dS^T Q_h
//   dW_in += [dQ | dK | dV]^T x;  db_in += its column sums;  dx += [dQ | dK | dV] W_in
// Init as PyTorch: W_in xavier-uniform U(±sqrt(6 / (D + 3D))), b_in 0, W_out U(±1/sqrt(D)),
// b_out 0. Tensors `in_proj.weight`, `in_proj.bias`, `out_proj.weight`, `out_proj.bias`.
// Parallel work: one task per (sequence, head), writing only its own probability block and
// its own columns of O (forward) and of dQ, dK, dV (backward).

/// Causal multi-head self-attention: `[B, T, D]` -> `[B, T, D]`.
public final class CausalSelfAttention {
    public let width: Int
    public let heads: Int
    /// d = D / H.
    public var headSize: Int { width / heads }

    public let inputWeight: ParameterView  // W_in [3D, D], rows q, k, v
    public let inputBias: ParameterView  // b_in [3D]
    public let outputWeight: ParameterView  // W_out [D, D]
    public let outputBias: ParameterView  // b_out [D]

    private var saved = TokenShape(batch: 0, length: 0)
    private let projections = FloatBuffer()  // [Q | K | V], [R, 3D]
    private let probabilities = FloatBuffer()  // P, [B*H, T, T]
    private let merged = FloatBuffer()  // O, [R, D]
    // Backward only.
    private let dMerged = FloatBuffer()  // dO, [R, D]
    private let dScores = FloatBuffer()  // dP then dS, [B*H, T, T]
    private let dProjections = FloatBuffer()  // [dQ | dK | dV], [R, 3D]

    /// Registers `in_proj.weight` [3D, D], `in_proj.bias` [3D], `out_proj.weight` [D, D] and
    /// `out_proj.bias` [D] under `scope`; `heads` must divide `width`.
    public init(_ scope: ParameterScope, width: Int, heads: Int) {
        precondition(heads > 0 && width % heads == 0, "\(heads) heads do not divide width \(width)")
        self.width = width
        self.heads = heads
        inputWeight = scope.tensor("in_proj.weight", shape: [3 * width, width])
        inputBias = scope.tensor("in_proj.bias", shape: [3 * width])
        outputWeight = scope.tensor("out_proj.weight", shape: [width, width])
        outputBias = scope.tensor("out_proj.bias", shape: [width])
    }

    /// PyTorch's init: W_in xavier-uniform, W_out U(±1/sqrt(D)), biases 0.
    public func initialize(_ arena: ParameterArena, _ context: inout InitializationContext) {
        let d = Double(width)
        Initializer.uniform(
            arena.value(inputWeight), count: inputWeight.count, bound: (6 / (4 * d)).squareRoot(),
            rng: &context.rng)
        arena.value(inputBias).update(repeating: 0, count: inputBias.count)
        Initializer.uniform(
            arena.value(outputWeight), count: outputWeight.count, bound: 1 / d.squareRoot(),
            rng: &context.rng)
        arena.value(outputBias).update(repeating: 0, count: outputBias.count)
    }

    /// Projections, probabilities and merged heads of a pass; for a training pass also their
    /// gradients and the ones of the bias column sums.
    public func declareBuffers(for pass: PassShape, in plan: inout BufferPlan) {
        let rows = pass.rows, blocks = pass.batch * heads * pass.length * pass.length
        plan.declare(projections, "self-attention q, k, v", count: rows * 3 * width)
        plan.declare(probabilities, "self-attention probabilities", count: blocks)
        plan.declare(merged, "self-attention merged heads", count: rows * width)
        guard pass.training else { return }
        plan.declare(dMerged, "self-attention merged-heads gradient", count: rows * width)
        plan.declare(dScores, "self-attention score gradient", count: blocks)
        plan.declare(dProjections, "self-attention q, k, v gradient", count: rows * 3 * width)
        Ones.shared.declare(count: rows, in: &plan)
    }

    /// x: [B, T, D] -> y: [B, T, D] (overwritten).
    public func forward(
        _ x: UnsafePointer<Float>, shape: TokenShape, output y: UnsafeMutablePointer<Float>,
        arena: ParameterArena
    ) {
        let (b, t, h, dm) = (shape.batch, shape.length, heads, width)
        let rows = shape.rows, d = headSize
        saved = shape
        let qkv = projections.reserved(rows * 3 * dm)
        gemm(transposeB: true, m: rows, n: 3 * dm, k: dm, a: x, lda: dm,
             b: arena.value(inputWeight), ldb: dm, beta: 0, c: qkv, ldc: 3 * dm)
        addRowVector(qkv, arena.value(inputBias), rows: rows, columns: 3 * dm)

        let qkvP = SendablePointer(qkv)
        let probabilitiesP = SendablePointer(probabilities.reserved(b * h * t * t))
        let mergedP = SendablePointer(merged.reserved(rows * dm))
        let scale = 1 / Float(d).squareRoot()
        parallelFor(b * h) { task in
            let item = task / h, head = task % h
            let base = qkvP.pointer + item * t * 3 * dm + head * d
            let p = probabilitiesP.mutable + task * t * t
            gemm(transposeB: true, m: t, n: t, k: d, a: base, lda: 3 * dm, b: base + dm, ldb: 3 * dm,
                 beta: 0, c: p, ldc: t)
            for i in 0..<t {
                let row = p + i * t, visible = i + 1
                Tensor.scale(row, by: scale, count: visible)
                softmaxInPlace(row, count: visible)
                (row + visible).update(repeating: 0, count: t - visible)
            }
            gemm(m: t, n: d, k: t, a: p, lda: t, b: base + 2 * dm, ldb: 3 * dm,
                 beta: 0, c: mergedP.mutable + item * t * dm + head * d, ldc: dm)
        }
        gemm(transposeB: true, m: rows, n: dm, k: dm, a: mergedP.pointer, lda: dm,
             b: arena.value(outputWeight), ldb: dm, beta: 0, c: y, ldc: dm)
        addRowVector(y, arena.value(outputBias), rows: rows, columns: dm)
    }

    /// Accumulates all parameter gradients and `dx += dL/dx` ([B, T, D]) after `forward` of
    /// the same x.
    public func backward(
        _ x: UnsafePointer<Float>, dOutput dy: UnsafePointer<Float>, shape: TokenShape,
        dInput dx: UnsafeMutablePointer<Float>, arena: ParameterArena
    ) {
        precondition(shape == saved, "backward needs the shape of the last forward pass")
        let (b, t, h, dm) = (shape.batch, shape.length, heads, width)
        let rows = shape.rows, d = headSize

        // Output projection.
        gemm(transposeA: true, m: dm, n: dm, k: rows, a: dy, lda: dm, b: merged.pointer, ldb: dm,
             beta: 1, c: arena.gradient(outputWeight), ldc: dm)
        addColumnSums(arena.gradient(outputBias), of: dy, rows: rows, columns: dm, rowStride: dm)
        let dO = dMerged.reserved(rows * dm)
        gemm(m: rows, n: dm, k: dm, a: dy, lda: dm, b: arena.value(outputWeight), ldb: dm,
             beta: 0, c: dO, ldc: dm)

        let qkvP = SendablePointer(projections.pointer)
        let probabilitiesP = SendablePointer(probabilities.pointer)
        let dOP = SendablePointer(dO)
        let dScoresP = SendablePointer(dScores.reserved(b * h * t * t))
        let dqkvP = SendablePointer(dProjections.reserved(rows * 3 * dm))
        let scale = 1 / Float(d).squareRoot()
        parallelFor(b * h) { task in
            let item = task / h, head = task % h
            let base = qkvP.pointer + item * t * 3 * dm + head * d
            let dBase = dqkvP.mutable + item * t * 3 * dm + head * d
            let dHead = dOP.pointer + item * t * dm + head * d
            let p = probabilitiesP.pointer + task * t * t, g = dScoresP.mutable + task * t * t
            // dP = dO_h V_h^T; dV_h = P^T dO_h.
            gemm(transposeB: true, m: t, n: t, k: d, a: dHead, lda: dm, b: base + 2 * dm, ldb: 3 * dm,
                 beta: 0, c: g, ldc: t)
            gemm(transposeA: true, m: t, n: d, k: t, a: p, lda: t, b: dHead, ldb: dm,
                 beta: 0, c: dBase + 2 * dm, ldc: 3 * dm)
            for i in 0..<t {
                let gRow = g + i * t, pRow = p + i * t, visible = i + 1
                let inner = dot(gRow, pRow, count: visible)
                for j in 0..<visible { gRow[j] = scale * pRow[j] * (gRow[j] - inner) }
                (gRow + visible).update(repeating: 0, count: t - visible)
            }
            // dQ_h = dS K_h; dK_h = dS^T Q_h.
            gemm(m: t, n: d, k: t, a: g, lda: t, b: base + dm, ldb: 3 * dm,
                 beta: 0, c: dBase, ldc: 3 * dm)
            gemm(transposeA: true, m: t, n: d, k: t, a: g, lda: t, b: base, ldb: 3 * dm,
                 beta: 0, c: dBase + dm, ldc: 3 * dm)
        }

        // Input projection.
        gemm(transposeA: true, m: 3 * dm, n: dm, k: rows, a: dqkvP.pointer, lda: 3 * dm, b: x, ldb: dm,
             beta: 1, c: arena.gradient(inputWeight), ldc: dm)
        addColumnSums(arena.gradient(inputBias), of: dqkvP.pointer, rows: rows, columns: 3 * dm, rowStride: 3 * dm)
        gemm(m: rows, n: dm, k: 3 * dm, a: dqkvP.pointer, lda: 3 * dm, b: arena.value(inputWeight), ldb: dm,
             beta: 1, c: dx, ldc: dm)
    }
}
