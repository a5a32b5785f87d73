import Tensor

// Self-referential weight matrix (SRWM): every head keeps fast matrices that produce its
// output, its own queries, keys and learning rates, and rewrites themselves with the delta rule.
// Legend: B sequences, T positions, H heads, d head size, D = H d (input and output width),
//   n = 3d + 4. Per (sequence, head) the four matrices sit side by side as one fast matrix
//   W = [W_y | W_q | W_k | W_b], [d, n] (row e, column m); "x W" is sum_e x_e W[e, :] and
//   "k ⊗ u" adds k_e u_m to W[e, m]. β̄ spreads β = (β_y, β_q, β_k, β_b) over the columns of
//   its block: d copies of β_y, d of β_q, d of β_k, 4 of β_b.
// Forward, x_t = the head's d-slice of input row t, t = 1 ... T, all fast state restarting for
//   every sequence:
//   W_0 = [initial_y | initial_q | initial_k | initial_beta]   (the head's slices)
//   r_t = x_t W_{t-1}                                           (n values, all reads use W_{t-1})
//   y_t = r_t[0 ..< d]                                          (output, read before the update)
//   q_t = softmax(r_t[d ..< 2d]),  k_t = softmax(r_t[2d ..< 3d]),  β_t = sigmoid(r_t[3d ..< n])
//   δ_t = (q_t - k_t) W_{t-1}                                   (q W_* - k W_* of all four at once)
//   W_t = W_{t-1} + k_t ⊗ (β̄_t ⊙ δ_t)
// Backward through time with G_t = dL/dW_t, G_T = 0 (W_T is never read), t = T ... 1, from the
//   stored W_{t-1} and the saved q, k, β, δ of the step:
//   v = β̄ ⊙ δ;  dv = k G_t (= G_t^T k);  dk = G_t v
//   dδ = β̄ ⊙ dv;  dβ_j = sum over the columns m of block j of δ_m dv_m
//   dq = W_{t-1} dδ;  dk -= W_{t-1} dδ               (W dδ: the vector sum_m W[e, m] dδ_m)
//   dr = [dy_t | q ⊙ (dq - q·dq) | k ⊙ (dk - k·dk) | dβ ⊙ β ⊙ (1 - β)]
//   dx_t += W_{t-1} dr
//   G_{t-1} = G_t + x_t ⊗ dr + (q - k) ⊗ dδ
//   and d(initial_*) += the blocks of G_0, summed over the sequences.
// A training pass stores W_0 ... W_{T-1} of every (sequence, head): the exact gradient, where
// rebuilding W_{t-1} by subtracting the rank-one updates again drifts in float32.
// Parallel work: one task per (sequence, head), walking its T steps; each task writes only
// its own states, its head's columns of y and dx, and its own G, and the G_0 of the
// sequences are added to the parameter gradients in sequence order.

/// Self-referential weight matrix layer of H heads: `[B, T, H d]` -> `[B, T, H d]`, no
/// projections around it (head h reads columns h d ..< (h + 1) d of the input).
public final class SelfReferentialWeightMatrix {
    public let heads: Int
    public let headSize: Int
    /// D = H d, the width of input and output rows.
    public var width: Int { heads * headSize }
    /// Columns of the combined fast matrix, n = 3d + 4.
    var columns: Int { 3 * headSize + 4 }
    /// Values saved per step: q (d), k (d), β (4), δ (n).
    var stepStride: Int { 2 * headSize + 4 + columns }

    public let initialY: ParameterView  // W_y0 [H, d, d]
    public let initialQ: ParameterView  // W_q0 [H, d, d]
    public let initialK: ParameterView  // W_k0 [H, d, d]
    public let initialBeta: ParameterView  // W_b0 [H, d, 4]

    private var saved = TokenShape(batch: 0, length: 0)
    private var savedTraining = false
    /// [B*H, T, d, n] for a training pass (W_0 ... W_{T-1}), [B*H, d, n] otherwise.
    private let states = FloatBuffer()
    /// q, k, β, δ: [B*H, T, stepStride] for a training pass, [B*H, stepStride] otherwise.
    private let stepValues = FloatBuffer()
    private let readouts = FloatBuffer()  // r, then β̄ ⊙ δ: [B*H, n]
    // Backward only.
    private let stateGradients = FloatBuffer()  // G per task, [B*H, d, n]
    private let backwardScratch = FloatBuffer()  // [B*H, 3n + 2d]

    /// Registers `initial_y`, `initial_q`, `initial_k` [H, d, d] and `initial_beta` [H, d, 4]
    /// under `scope`.
    public init(_ scope: ParameterScope, heads: Int, headSize: Int) {
        precondition(heads > 0 && headSize > 0)
        self.heads = heads
        self.headSize = headSize
        initialY = scope.tensor("initial_y", shape: [heads, headSize, headSize])
        initialQ = scope.tensor("initial_q", shape: [heads, headSize, headSize])
        initialK = scope.tensor("initial_k", shape: [heads, headSize, headSize])
        initialBeta = scope.tensor("initial_beta", shape: [heads, headSize, 4])
    }

    /// initial_y, initial_k N(0, 1/d); initial_q N(0, (0.01)^2/d); initial_beta N(-1, 1/d).
    public func initialize(_ arena: ParameterArena, _ context: inout InitializationContext) {
        let std = 1 / Double(headSize).squareRoot()
        Initializer.normal(arena.value(initialY), count: initialY.count, std: std, rng: &context.rng)
        Initializer.normal(arena.value(initialQ), count: initialQ.count, std: 0.01 * std, rng: &context.rng)
        Initializer.normal(arena.value(initialK), count: initialK.count, std: std, rng: &context.rng)
        Initializer.normal(
            arena.value(initialBeta), count: initialBeta.count, std: std, mean: -1, rng: &context.rng)
    }

    /// The fast states and per-step values of a pass (every step's for a training pass) and
    /// the backward's state gradients and scratch.
    public func declareBuffers(for pass: PassShape, in plan: inout BufferPlan) {
        let tasks = pass.batch * heads, steps = pass.training ? pass.length : 1
        let d = headSize, n = columns
        plan.declare(states, "SRWM \(BackwardThroughTime.storedStates) of every step", count: tasks * steps * d * n)
        plan.declare(stepValues, "SRWM q, k, beta, delta per step", count: tasks * steps * stepStride)
        plan.declare(readouts, "SRWM readouts", count: tasks * n)
        guard pass.training else { return }
        plan.declare(stateGradients, "SRWM fast-weight gradients", count: tasks * d * n)
        plan.declare(backwardScratch, "SRWM backward scratch", count: tasks * (3 * n + 2 * d))
    }

    /// x: [B, T, D] -> y: [B, T, D] (overwritten). `training` keeps every step's state for
    /// `backward` (the pass must have been planned as a training pass).
    public func forward(
        _ x: UnsafePointer<Float>, shape: TokenShape, output y: UnsafeMutablePointer<Float>,
        training: Bool, arena: ParameterArena
    ) {
        let (b, t, h, d, n) = (shape.batch, shape.length, heads, headSize, columns)
        saved = shape
        savedTraining = training
        guard b > 0 && t > 0 else { return }
        let width = self.width, slot = stepStride, matrix = d * n
        let steps = training ? t : 1
        let statesP = SendablePointer(states.reserved(b * h * steps * matrix))
        let valuesP = SendablePointer(stepValues.reserved(b * h * steps * slot))
        let readoutP = SendablePointer(readouts.reserved(b * h * n))
        let xP = SendablePointer(x), yP = SendablePointer(y)
        let initial = initialPointers(arena)
        parallelFor(b * h) { task in
            let item = task / h, head = task % h
            let r = readoutP.mutable + task * n
            var current = statesP.mutable + task * steps * matrix
            Self.loadInitialState(initial, head: head, headSize: d, into: current)
            for step in 0..<t {
                let row = (item * t + step) * width + head * d
                let values = valuesP.mutable + (task * steps + (training ? step : 0)) * slot
                let q = values, k = values + d, beta = values + 2 * d, delta = values + 2 * d + 4
                Self.read(current, by: xP.pointer + row, rows: d, columns: n, into: r)
                (yP.mutable + row).update(from: r, count: d)
                q.update(from: r + d, count: d)
                softmaxInPlace(q, count: d)
                k.update(from: r + 2 * d, count: d)
                softmaxInPlace(k, count: d)
                beta.update(from: r + 3 * d, count: 4)
                sigmoidInPlace(beta, count: 4)
                // W_T is never read: the last step reads only.
                if step == t - 1 { break }
                for e in 0..<d { r[e] = q[e] - k[e] }
                Self.read(current, by: r, rows: d, columns: n, into: delta)
                Self.spread(beta, times: delta, headSize: d, into: r)
                let next = training ? current + matrix : current
                for e in 0..<d {
                    let source = current + e * n, target = next + e * n, ke = k[e]
                    FastWeightKernels.rowSum(source, ke, r, into: target, size: n)
                }
                current = next
            }
        }
    }

    /// Accumulates the gradients of the four initial matrices and `dx += dL/dx` ([B, T, D]),
    /// after a training `forward` of the same x.
    public func backward(
        _ x: UnsafePointer<Float>, dOutput dy: UnsafePointer<Float>, shape: TokenShape,
        dInput dx: UnsafeMutablePointer<Float>, arena: ParameterArena
    ) {
        precondition(shape == saved && savedTraining, "backward needs a training forward pass of this shape")
        let (b, t, h, d, n) = (shape.batch, shape.length, heads, headSize, columns)
        guard b > 0 && t > 0 else { return }
        let width = self.width, slot = stepStride, matrix = d * n
        let statesP = SendablePointer(states.reserved(b * h * t * matrix))
        let valuesP = SendablePointer(stepValues.reserved(b * h * t * slot))
        let gradientsP = SendablePointer(stateGradients.reserved(b * h * matrix))
        let scratchP = SendablePointer(backwardScratch.reserved(b * h * (3 * n + 2 * d)))
        let xP = SendablePointer(x), dyP = SendablePointer(dy), dxP = SendablePointer(dx)
        parallelFor(b * h) { task in
            let item = task / h, head = task % h
            let g = gradientsP.mutable + task * matrix
            g.update(repeating: 0, count: matrix)
            let scratch = scratchP.mutable + task * (3 * n + 2 * d)
            let v = scratch, dv = scratch + n, dr = scratch + 2 * n
            let dq = scratch + 3 * n, dk = dq + d
            for step in stride(from: t - 1, through: 0, by: -1) {
                let w = statesP.pointer + (task * t + step) * matrix
                // The next (earlier) state into cache while this step works: the states are read backwards
                // in time, which the hardware prefetcher does not follow.
                if step > 0 { prefetch(w - matrix, count: matrix) }
                let values = valuesP.pointer + (task * t + step) * slot
                let q = values, k = values + d, beta = values + 2 * d, delta = values + 2 * d + 4
                let row = (item * t + step) * width + head * d
                var dBeta = SIMD4<Float>()
                if step < t - 1 {
                    // Through W_t = W_{t-1} + k ⊗ v.
                    Self.spread(beta, times: delta, headSize: d, into: v)
                    dv.update(repeating: 0, count: n)
                    for e in 0..<d {
                        dk[e] = FastWeightKernels.rowDot(g + e * n, v, size: n)
                        FastWeightKernels.rowAxpy(dv, k[e], g + e * n, size: n)
                    }
                    for block in 0..<4 {
                        let start = block * d, end = block == 3 ? n : start + d
                        dBeta[block] = FastWeightKernels.rowDot(delta + start, dv + start, size: end - start)
                    }
                    // dv becomes dδ = β̄ ⊙ dv.
                    Self.spread(beta, times: dv, headSize: d, into: dv)
                    for e in 0..<d {
                        let through = FastWeightKernels.rowDot(w + e * n, dv, size: n)
                        dq[e] = through
                        dk[e] -= through
                    }
                } else {
                    dv.update(repeating: 0, count: n)
                    dq.update(repeating: 0, count: d)
                    dk.update(repeating: 0, count: d)
                }
                // Through the reads r = x W_{t-1}.
                dr.update(from: dyP.pointer + row, count: d)
                let qInner = FastWeightKernels.rowDot(q, dq, size: d), kInner = FastWeightKernels.rowDot(k, dk, size: d)
                for e in 0..<d {
                    dr[d + e] = q[e] * (dq[e] - qInner)
                    dr[2 * d + e] = k[e] * (dk[e] - kInner)
                }
                for j in 0..<4 { dr[3 * d + j] = dBeta[j] * beta[j] * (1 - beta[j]) }
                let xRow = xP.pointer + row, dxRow = dxP.mutable + row
                for e in 0..<d { dxRow[e] += FastWeightKernels.rowDot(w + e * n, dr, size: n) }
                // G_{t-1} = G_t + x ⊗ dr + (q - k) ⊗ dδ.
                for e in 0..<d {
                    FastWeightKernels.rowAxpy(g + e * n, xRow[e], dr, q[e] - k[e], dv, size: n)
                }
            }
        }
        // G_0 of every sequence into the initial matrices' gradients, in sequence order.
        let gradients = (
            y: SendablePointer(arena.gradient(initialY)), q: SendablePointer(arena.gradient(initialQ)),
            k: SendablePointer(arena.gradient(initialK)), beta: SendablePointer(arena.gradient(initialBeta)))
        parallelFor(h) { head in
            for item in 0..<b {
                let g = gradientsP.pointer + (item * h + head) * matrix
                for e in 0..<d {
                    let source = g + e * n, row = head * d + e
                    addInPlace(gradients.y.mutable + row * d, source, count: d)
                    addInPlace(gradients.q.mutable + row * d, source + d, count: d)
                    addInPlace(gradients.k.mutable + row * d, source + 2 * d, count: d)
                    addInPlace(gradients.beta.mutable + row * 4, source + 3 * d, count: 4)
                }
            }
        }
    }

    // MARK: Kernels

    private typealias InitialPointers = (
        y: SendablePointer<Float>, q: SendablePointer<Float>, k: SendablePointer<Float>,
        beta: SendablePointer<Float>
    )

    private func initialPointers(_ arena: ParameterArena) -> InitialPointers {
        (SendablePointer(arena.value(initialY)), SendablePointer(arena.value(initialQ)),
         SendablePointer(arena.value(initialK)), SendablePointer(arena.value(initialBeta)))
    }

    /// W_0 of `head`: row e is [initial_y[e] | initial_q[e] | initial_k[e] | initial_beta[e]].
    private static func loadInitialState(
        _ initial: InitialPointers, head: Int, headSize d: Int, into w: UnsafeMutablePointer<Float>
    ) {
        let n = 3 * d + 4
        for e in 0..<d {
            let row = head * d + e, target = w + e * n
            target.update(from: initial.y.pointer + row * d, count: d)
            (target + d).update(from: initial.q.pointer + row * d, count: d)
            (target + 2 * d).update(from: initial.k.pointer + row * d, count: d)
            (target + 3 * d).update(from: initial.beta.pointer + row * 4, count: 4)
        }
    }

    /// out = a W for W [rows, columns] row-major: sum_e a_e W[e, :].
    @inline(__always)
    private static func read(
        _ w: UnsafePointer<Float>, by a: UnsafePointer<Float>, rows: Int, columns: Int,
        into out: UnsafeMutablePointer<Float>
    ) {
        out.update(repeating: 0, count: columns)
        for e in 0..<rows { FastWeightKernels.rowAxpy(out, a[e], w + e * columns, size: columns) }
    }

    /// out = β̄ ⊙ u over the n = 3d + 4 columns (out may be u).
    @inline(__always)
    private static func spread(
        _ beta: UnsafePointer<Float>, times u: UnsafePointer<Float>, headSize d: Int,
        into out: UnsafeMutablePointer<Float>
    ) {
        for block in 0..<3 {
            let factor = beta[block], start = block * d
            for m in start..<(start + d) { out[m] = factor * u[m] }
        }
        for m in (3 * d)..<(3 * d + 4) { out[m] = beta[3] * u[m] }
    }
}
