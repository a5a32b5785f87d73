import Tensor

// The e-LSTM ("QuasiLSTM"): one recurrent layer whose cell sees the previous cell only
// elementwise, with an output gate computed from the input and the new cell.
// Legend: B sequences, T positions, E input width, D cell width, R = B T rows; σ the logistic
//   sigmoid, ⊙ the elementwise product, [e; c] the concatenation (E + D values).
// Forward, per sequence with c_0 = 0:
//   z_t = tanh(W_z e_t + v_z ⊙ c_(t-1) + b_z)
//   f_t = σ(W_f e_t + v_f ⊙ c_(t-1) + b_f)
//   c_t = f_t ⊙ c_(t-1) + (1 - f_t) ⊙ z_t
//   s_t = σ(W_o [e_t; c_t] + b_o);  o_t = c_t ⊙ s_t        (output [R, D])
//   W_z, W_f [D, E] (one product [R, E] x [E, 2D] for all positions), v_z, v_f, b_z, b_f [D];
//   W_o [D, E + D], b_o [D]. Init: W_z, W_f, v_z, v_f, b_z, b_f N(0, std 0.1);
//   W_o, b_o U(±1/sqrt(E + D)). Tensors `input_z.weight`, `input_f.weight`, `cell_z` (v_z),
//   `cell_f` (v_f), `bias_z`, `bias_f`, `output.weight`, `output.bias`.
// Backward, do [R, D]:
//   dp = do ⊙ c ⊙ s(1 - s)                             (p = W_o [e; c] + b_o)
//   dW_o += dp^T [e; c];  db_o += column sums of dp;  de += dp W_o[:, :E]
//   dc_t (direct) = do ⊙ s + dp W_o[:, E:]
//   through time, t = T ... 1, with the carry dc_t += dc flowing back from step t+1:
//     dz = dc_t ⊙ (1 - f);  df = dc_t ⊙ (c_(t-1) - z)
//     da_z = dz ⊙ (1 - z^2);  da_f = df ⊙ f(1 - f)
//     carry to c_(t-1) = dc_t ⊙ f + da_z ⊙ v_z + da_f ⊙ v_f
//     dv_z += da_z ⊙ c_(t-1);  dv_f += da_f ⊙ c_(t-1);  db_z += da_z;  db_f += da_f
//   dW_z += da_z^T e;  dW_f += da_f^T e;  de += da_z W_z + da_f W_f
// Parallel work: one task per sequence for the recurrence, each with its own partial dv_z,
// dv_f, db_z, db_f, added to the gradients in sequence order.

/// The e-LSTM layer: `[B, T, E]` -> `[B, T, D]`.
public final class QuasiLSTM {
    public let inputWidth: Int
    public let width: Int

    public let inputZ: ParameterView  // W_z [D, E]
    public let inputF: ParameterView  // W_f [D, E], stored right after W_z
    public let cellZ: ParameterView  // v_z [D]
    public let cellF: ParameterView  // v_f [D]
    public let biasZ: ParameterView  // b_z [D]
    public let biasF: ParameterView  // b_f [D]
    public let outputWeight: ParameterView  // W_o [D, E + D]
    public let outputBias: ParameterView  // b_o [D]

    private var saved = TokenShape(batch: 0, length: 0)
    private let candidates = FloatBuffer()  // activated [z | f]: [R, 2D]
    private let cells = FloatBuffer()  // c: [R, D]
    private let outputGates = FloatBuffer()  // s: [R, D]
    // Backward only.
    private let dOutputGates = FloatBuffer()  // dp: [R, D]
    private let dCells = FloatBuffer()  // direct dc: [R, D]
    private let dCandidates = FloatBuffer()  // [da_z | da_f]: [R, 2D]
    private let partials = FloatBuffer()  // per sequence dv_z, dv_f, db_z, db_f, carry: [B, 5D]

    /// Registers the tensors listed above under `scope`.
    public init(_ scope: ParameterScope, inputWidth: Int, width: Int) {
        precondition(inputWidth > 0 && width > 0)
        self.inputWidth = inputWidth
        self.width = width
        inputZ = scope.tensor("input_z.weight", shape: [width, inputWidth])
        inputF = scope.tensor("input_f.weight", shape: [width, inputWidth])
        cellZ = scope.tensor("cell_z", shape: [width])
        cellF = scope.tensor("cell_f", shape: [width])
        biasZ = scope.tensor("bias_z", shape: [width])
        biasF = scope.tensor("bias_f", shape: [width])
        outputWeight = scope.tensor("output.weight", shape: [width, inputWidth + width])
        outputBias = scope.tensor("output.bias", shape: [width])
        // W_z and W_f are read as one [2D, E] matrix.
        precondition(inputF.offset == inputZ.offset + inputZ.count)
    }

    /// W_z, W_f, v_z, v_f, b_z, b_f N(0, std 0.1); W_o, b_o U(±1/sqrt(E + D)).
    public func initialize(_ arena: ParameterArena, _ context: inout InitializationContext) {
        for view in [inputZ, inputF, cellZ, cellF, biasZ, biasF] {
            Initializer.normal(arena.value(view), count: view.count, std: 0.1, rng: &context.rng)
        }
        let bound = 1 / Double(inputWidth + width).squareRoot()
        for view in [outputWeight, outputBias] {
            Initializer.uniform(arena.value(view), count: view.count, bound: bound, rng: &context.rng)
        }
    }

    /// Candidates, cells and output gates of every step; for a training pass their
    /// gradients, the per-sequence partial gradients and the ones of the column sums.
    public func declareBuffers(for pass: PassShape, in plan: inout BufferPlan) {
        let rows = pass.rows, d = width
        plan.declare(candidates, "e-LSTM candidates and forget gates", count: rows * 2 * d)
        plan.declare(cells, "e-LSTM cells", count: rows * d)
        plan.declare(outputGates, "e-LSTM output gates", count: rows * d)
        guard pass.training else { return }
        plan.declare(dOutputGates, "e-LSTM output-gate gradients", count: rows * d)
        plan.declare(dCells, "e-LSTM cell gradients", count: rows * d)
        plan.declare(dCandidates, "e-LSTM candidate and forget-gate gradients", count: rows * 2 * d)
        plan.declare(partials, "e-LSTM partial gradients per sequence", count: pass.batch * 5 * d)
        Ones.shared.declare(count: rows, in: &plan)
    }

    /// e: [B, T, E] -> o: [B, T, D] (overwritten).
    public func forward(
        _ x: UnsafePointer<Float>, shape: TokenShape, output y: UnsafeMutablePointer<Float>,
        arena: ParameterArena
    ) {
        let (b, t, e, d, rows) = (shape.batch, shape.length, inputWidth, width, shape.rows)
        saved = shape
        guard rows > 0 else { return }
        let zf = candidates.reserved(rows * 2 * d), c = cells.reserved(rows * d)
        gemm(transposeB: true, m: rows, n: 2 * d, k: e, a: x, lda: e, b: arena.value(inputZ), ldb: e,
             beta: 0, c: zf, ldc: 2 * d)
        let zfP = SendablePointer(zf), cP = SendablePointer(c)
        let vz = SendablePointer(arena.value(cellZ)), vf = SendablePointer(arena.value(cellF))
        let bz = SendablePointer(arena.value(biasZ)), bf = SendablePointer(arena.value(biasF))
        parallelFor(b) { item in
            for step in 0..<t {
                let row = item * t + step
                let z = zfP.mutable + row * 2 * d, f = z + d, cell = cP.mutable + row * d
                if step > 0 {
                    let previous = cP.pointer + (row - 1) * d
                    for j in 0..<d {
                        z[j] += vz.pointer[j] * previous[j] + bz.pointer[j]
                        f[j] += vf.pointer[j] * previous[j] + bf.pointer[j]
                    }
                    tanhInPlace(z, count: d)
                    sigmoidInPlace(f, count: d)
                    for j in 0..<d { cell[j] = f[j] * previous[j] + (1 - f[j]) * z[j] }
                } else {
                    addInPlace(z, bz.pointer, count: d)
                    addInPlace(f, bf.pointer, count: d)
                    tanhInPlace(z, count: d)
                    sigmoidInPlace(f, count: d)
                    for j in 0..<d { cell[j] = (1 - f[j]) * z[j] }
                }
            }
        }
        // s = σ(W_o[:, :E] e + W_o[:, E:] c + b_o); o = c ⊙ s.
        let s = outputGates.reserved(rows * d), wo = arena.value(outputWeight)
        gemm(transposeB: true, m: rows, n: d, k: e, a: x, lda: e, b: wo, ldb: e + d, beta: 0, c: s, ldc: d)
        gemm(transposeB: true, m: rows, n: d, k: d, a: c, lda: d, b: wo + e, ldb: e + d, beta: 1, c: s, ldc: d)
        addRowVector(s, arena.value(outputBias), rows: rows, columns: d)
        let sP = SendablePointer(s), yP = SendablePointer(y)
        parallelChunks(rows, minimumChunk: max(1, 16_384 / d)) { range in
            let start = range.lowerBound * d, count = range.count * d
            sigmoidInPlace(sP.mutable + start, count: count)
            for i in start..<(start + count) { yP.mutable[i] = cP.pointer[i] * sP.pointer[i] }
        }
    }

    /// Accumulates all parameter gradients and `dx += dL/de` ([B, T, E]) after `forward` of
    /// the same x.
    public func backward(
        _ x: UnsafePointer<Float>, dOutput dy: UnsafePointer<Float>, shape: TokenShape,
        dInput dx: UnsafeMutablePointer<Float>, arena: ParameterArena
    ) {
        precondition(shape == saved, "backward needs the shape of the last forward pass")
        let (b, t, e, d, rows) = (shape.batch, shape.length, inputWidth, width, shape.rows)
        guard rows > 0 else { return }
        let c = cells.pointer, s = outputGates.pointer, wo = arena.value(outputWeight)
        let dp = dOutputGates.reserved(rows * d), dc = dCells.reserved(rows * d)
        let dpP = SendablePointer(dp), dcP = SendablePointer(dc), dyP = SendablePointer(dy)
        let cP = SendablePointer(c), sP = SendablePointer(s)
        parallelChunks(rows * d, minimumChunk: 16_384) { range in
            for i in range {
                let gate = sP.pointer[i]
                dpP.mutable[i] = dyP.pointer[i] * cP.pointer[i] * gate * (1 - gate)
                dcP.mutable[i] = dyP.pointer[i] * gate
            }
        }
        // Output gate: W_o's first E columns see e, the last D see c.
        let dWo = arena.gradient(outputWeight)
        gemm(transposeA: true, m: d, n: e, k: rows, a: dp, lda: d, b: x, ldb: e, beta: 1, c: dWo, ldc: e + d)
        gemm(transposeA: true, m: d, n: d, k: rows, a: dp, lda: d, b: c, ldb: d, beta: 1, c: dWo + e, ldc: e + d)
        addColumnSums(arena.gradient(outputBias), of: dp, rows: rows, columns: d, rowStride: d)
        gemm(m: rows, n: e, k: d, a: dp, lda: d, b: wo, ldb: e + d, beta: 1, c: dx, ldc: e)
        gemm(m: rows, n: d, k: d, a: dp, lda: d, b: wo + e, ldb: e + d, beta: 1, c: dc, ldc: d)

        // Through time, one task per sequence.
        let zfP = SendablePointer(candidates.pointer)
        let dzfP = SendablePointer(dCandidates.reserved(rows * 2 * d))
        let partialP = SendablePointer(partials.reserved(b * 5 * d))
        let vz = SendablePointer(arena.value(cellZ)), vf = SendablePointer(arena.value(cellF))
        parallelFor(b) { item in
            let partial = partialP.mutable + item * 5 * d
            partial.update(repeating: 0, count: 5 * d)
            let dvz = partial, dvf = partial + d, dbz = partial + 2 * d, dbf = partial + 3 * d
            let carry = partial + 4 * d
            for step in stride(from: t - 1, through: 0, by: -1) {
                let row = item * t + step
                let z = zfP.pointer + row * 2 * d, f = z + d
                let dz = dzfP.mutable + row * 2 * d, df = dz + d
                let direct = dcP.pointer + row * d
                for j in 0..<d {
                    let total = direct[j] + carry[j]
                    let previous: Float = step > 0 ? cP.pointer[(row - 1) * d + j] : 0
                    let gradientZ = total * (1 - f[j]) * (1 - z[j] * z[j])
                    let gradientF = total * (previous - z[j]) * f[j] * (1 - f[j])
                    dz[j] = gradientZ
                    df[j] = gradientF
                    carry[j] = total * f[j] + gradientZ * vz.pointer[j] + gradientF * vf.pointer[j]
                    dvz[j] += gradientZ * previous
                    dvf[j] += gradientF * previous
                    dbz[j] += gradientZ
                    dbf[j] += gradientF
                }
            }
        }
        for item in 0..<b {
            let partial = partialP.pointer + item * 5 * d
            addInPlace(arena.gradient(cellZ), partial, count: d)
            addInPlace(arena.gradient(cellF), partial + d, count: d)
            addInPlace(arena.gradient(biasZ), partial + 2 * d, count: d)
            addInPlace(arena.gradient(biasF), partial + 3 * d, count: d)
        }
        // W_z and W_f as one [2D, E] matrix.
        gemm(transposeA: true, m: 2 * d, n: e, k: rows, a: dzfP.pointer, lda: 2 * d, b: x, ldb: e,
             beta: 1, c: arena.gradient(inputZ), ldc: e)
        gemm(m: rows, n: e, k: 2 * d, a: dzfP.pointer, lda: 2 * d, b: arena.value(inputZ), ldb: e,
             beta: 1, c: dx, ldc: e)
    }
}
