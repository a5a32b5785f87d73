import Foundation
import Tensor

// Recurrent DeltaNet's fast-weight core (the paper's model id 7, "rec-update-tanh").
// Legend: B sequences, T positions, H heads, d head size; per (sequence, head) a fast weight
//   W [d, d], W_0 = 0; p holds q_x, k_x, v_x [d each] and b_x [1] per head and position;
//   parameters per head R_q, R_k, R_v [d, d] and r_b [d]; s R means Σ_e s_e R[e, m].
//   s_t = tanh(y_{t-1}) (this head's raw output, y_{-1} = 0 so s_0 = 0)
//   q = softmax(q_x + s R_q),  k = softmax(k_x + s R_k),  v = v_x + s R_v
//   beta = sigmoid(b_x + r_b . s)
//   vbar = k W_{t-1};  W_t = W_{t-1} + k ⊗ beta (v - vbar);  y_t = q W_t
// Backward (S = dL/dW_t and c = dL/dy_t through s_{t+1}, both carried back from t = T-1, 0
//   at the start; g = dy_t + c):
//   the delta rule's backward with g gives dq, dk, dv, dbeta and S for t - 1 (FastWeightCore);
//   dq_x = q * (dq - (dq . q)),  dk_x likewise,  dv_x = dv,  db_x = dbeta beta (1 - beta)
//   dR_q += s ⊗ dq_x,  dR_k += s ⊗ dk_x,  dR_v += s ⊗ dv_x,  dr_b += db_x s
//   ds = R_q dq_x + R_k dk_x + R_v dv_x + db_x r_b   (ds_e = Σ_m R[e, m] da_m)
//   c = ds * (1 - s^2)  for step t - 1
// Parameter gradients are summed per (sequence, head) task into partial buffers, then over
// the sequences in order, so they do not depend on the thread count.
// Saved per step: q, k, v - vbar, u, beta (the delta-rule step), then s.

/// Recurrent DeltaNet's recurrence: the delta rule on softmax keys and queries, with the
/// head's previous output fed back (through tanh) into its query, key, value and beta.
public final class RecurrentDeltaNetCore: FastWeightCore {
    public let heads: Int
    public let headSize: Int
    public var projectionWidth: Int { 3 * headSize + 1 }

    /// R_q, R_k, R_v [H, d, d] and r_b [H, d]: the recurrent maps from s = tanh(y_{t-1}).
    public let recurrentQuery: ParameterView
    public let recurrentKey: ParameterView
    public let recurrentValue: ParameterView
    public let recurrentBeta: ParameterView

    let storage: FastWeightStorage
    /// Backward: each task's parameter gradients R_q, R_k, R_v, r_b, [B, H, 3d^2 + d].
    private let partialGradients = FloatBuffer()

    /// Registers `recurrent_query`, `recurrent_key`, `recurrent_value` [H, d, d] and
    /// `recurrent_beta` [H, d] under `scope`.
    public init(_ scope: ParameterScope, heads: Int, headSize: Int) {
        self.heads = heads
        self.headSize = headSize
        recurrentQuery = scope.tensor("recurrent_query", shape: [heads, headSize, headSize])
        recurrentKey = scope.tensor("recurrent_key", shape: [heads, headSize, headSize])
        recurrentValue = scope.tensor("recurrent_value", shape: [heads, headSize, headSize])
        recurrentBeta = scope.tensor("recurrent_beta", shape: [heads, headSize])
        // Step: the delta-rule vectors, then s [d]; backward scratch: g, dq, dk, du, c.
        storage = FastWeightStorage(
            label: "recurrent deltanet", heads: heads, headSize: headSize,
            projectionWidth: 3 * headSize + 1,
            stepWidth: DeltaRuleStep.width(headSize: headSize) + headSize,
            keyOffset: DeltaRuleStep.keyOffset(headSize: headSize),
            updateOffset: DeltaRuleStep.updateOffset(headSize: headSize),
            scratchWidth: 5 * headSize)
    }

    private var partialWidth: Int { 3 * headSize * headSize + headSize }

    /// N(0, 1/d) for every recurrent map, as the official initialisation.
    public func initialize(_ arena: ParameterArena, _ context: inout InitializationContext) {
        let std = 1 / Double(headSize).squareRoot()
        for view in [recurrentQuery, recurrentKey, recurrentValue, recurrentBeta] {
            Initializer.normal(arena.value(view), count: view.count, std: std, rng: &context.rng)
        }
    }

    public func declareBuffers(for pass: PassShape, in plan: inout BufferPlan) {
        storage.declareBuffers(for: pass, in: &plan)
        guard pass.training else { return }
        plan.declare(
            partialGradients, "recurrent deltanet partial parameter gradients",
            count: pass.batch * heads * partialWidth)
    }

    public func forward(
        _ p: UnsafePointer<Float>, shape: TokenShape, output y: UnsafeMutablePointer<Float>,
        arena: ParameterArena, training: Bool
    ) {
        let d = headSize, maps = RecurrentMaps(self, arena.values)
        // A task reads back only its own earlier output.
        storage.forEachTask(input: p, output: y, shape: shape, training: training) { track, task, p, y in
            let (rq, rk, rv, rb) = maps.head(task % track.heads)
            for t in 0..<track.length {
                let x = track.projection(p, task, t)
                let step = DeltaRuleStep(track.step(task, t), headSize: d)
                let s = step.end
                if d == 16 {
                    typealias K = FastWeightKernels16
                    let sv = t == 0 ? K.Row() : tanh16(load16(track.output(y, task, t - 1)))
                    store16(sv, s)
                    store16(K.softmax(load16(x) + K.product(s, rq)), step.query)
                    store16(K.softmax(load16(x + d) + K.product(s, rk)), step.key)
                    store16(load16(x + 2 * d) + K.product(s, rv), step.delta)
                    step.beta = FastWeightKernels.sigmoid(x[3 * d] + FastWeightKernels16.lanesSum(load16(rb) * sv))
                    FastWeightKernels.deltaRuleForward(
                        step, value: step.delta, previous: track.previousWeights(task, t),
                        next: track.weights(task, t), output: track.output(y, task, t), size: d)
                    continue
                }
                if t == 0 {
                    s.update(repeating: 0, count: d)
                } else {
                    // The SIMD tanh of the recurrent layers (GateActivations.swift).
                    s.update(from: track.output(y, task, t - 1), count: d)
                    tanhInPlace(s, count: d)
                }
                step.query.update(from: x, count: d)
                FastWeightKernels.accumulateProduct(s, rq, into: step.query, size: d)
                softmaxInPlace(step.query, count: d)
                step.key.update(from: x + d, count: d)
                FastWeightKernels.accumulateProduct(s, rk, into: step.key, size: d)
                softmaxInPlace(step.key, count: d)
                // v is built in the delta slot, which the delta rule then overwrites with v - vbar.
                step.delta.update(from: x + 2 * d, count: d)
                FastWeightKernels.accumulateProduct(s, rv, into: step.delta, size: d)
                step.beta = FastWeightKernels.sigmoid(
                    x[3 * d] + FastWeightKernels.rowDot(rb, s, size: d))
                FastWeightKernels.deltaRuleForward(
                    step, value: step.delta, previous: track.previousWeights(task, t),
                    next: track.weights(task, t), output: track.output(y, task, t), size: d)
            }
        }
    }

    /// dz = a * (da - (da . a)): the gradient through a = softmax(z).
    @inline(__always)
    static func softmaxBackward(
        _ a: UnsafePointer<Float>, dOutput da: UnsafePointer<Float>,
        dLogits dz: UnsafeMutablePointer<Float>, size d: Int
    ) {
        let inner = FastWeightKernels.rowDot(da, a, size: d)
        for i in 0..<d { dz[i] = a[i] * (da[i] - inner) }
    }

    public func backward(
        dOutput dy: UnsafePointer<Float>, shape: TokenShape,
        dProjection dp: UnsafeMutablePointer<Float>, arena: ParameterArena
    ) {
        let d = headSize, width = partialWidth, maps = RecurrentMaps(self, arena.values)
        let partials = SendablePointer(partialGradients.reserved(shape.batch * heads * width))
        storage.forEachTaskBackward(dOutput: dy, dProjection: dp, shape: shape) { track, task, dy, dp in
            let (rq, rk, rv, rb) = maps.head(task % track.heads)
            let partial = partials.mutable + task * width
            let dRq = partial, dRk = partial + d * d, dRv = partial + 2 * d * d, drb = partial + 3 * d * d
            let dW = track.weightGradient(task), scratch = track.scratch(task)
            let g = scratch, dq = scratch + d, dk = scratch + 2 * d, du = scratch + 3 * d
            let carry = scratch + 4 * d
            partial.update(repeating: 0, count: width)
            carry.update(repeating: 0, count: d)
            for t in (0..<track.length).reversed() {
                track.rebuildChunk(task, endingAt: t)
                let step = DeltaRuleStep(track.step(task, t), headSize: d)
                let dx = track.projection(dp, task, t)
                add(track.output(dy, task, t), carry, into: g, count: d)
                // dv goes straight to its slot of dp.
                let dBeta = FastWeightKernels.deltaRuleBackward(
                    step, previous: track.previousWeights(task, t), current: track.weights(task, t),
                    dOutput: g, weightGradient: dW, dQuery: dq, dKey: dk, dValue: dx + 2 * d,
                    dUpdate: du, size: d)
                if d == 16 {
                    store16(FastWeightKernels16.softmaxBackward(load16(step.query), dOutput: load16(dq)), dx)
                    store16(FastWeightKernels16.softmaxBackward(load16(step.key), dOutput: load16(dk)), dx + d)
                } else {
                    Self.softmaxBackward(step.query, dOutput: dq, dLogits: dx, size: d)
                    Self.softmaxBackward(step.key, dOutput: dk, dLogits: dx + d, size: d)
                }
                let beta = step.beta
                let dLogitBeta = dBeta * beta * (1 - beta)
                dx[3 * d] = dLogitBeta
                // s_0 = 0: no parameter gradient and no earlier output to reach.
                guard t > 0 else { continue }
                let s = step.end
                if d == 16 {
                    // The same sums with the rows of R dotted 16 at once (FastWeightKernels16).
                    let ds = FastWeightKernels16.rowDots(rq, load16(dx))
                        + FastWeightKernels16.rowDots(rk, load16(dx + d))
                        + FastWeightKernels16.rowDots(rv, load16(dx + 2 * d))
                        + SIMD16<Float>(repeating: dLogitBeta) * load16(rb)
                    let sv = load16(s)
                    store16(ds * (SIMD16<Float>(repeating: 1) - sv * sv), carry)
                    // dR_q, dR_k, dR_v after the walk, from the saved s and dp.
                    FastWeightKernels.rowAxpy(drb, dLogitBeta, s, size: d)
                    continue
                }
                for e in 0..<d {
                    let ds = FastWeightKernels.rowDot(rq + e * d, dx, size: d)
                        + FastWeightKernels.rowDot(rk + e * d, dx + d, size: d)
                        + FastWeightKernels.rowDot(rv + e * d, dx + 2 * d, size: d) + dLogitBeta * rb[e]
                    carry[e] = ds * (1 - s[e] * s[e])
                    FastWeightKernels.rowAxpy(dRq + e * d, s[e], dx, size: d)
                    FastWeightKernels.rowAxpy(dRk + e * d, s[e], dx + d, size: d)
                    FastWeightKernels.rowAxpy(dRv + e * d, s[e], dx + 2 * d, size: d)
                }
                FastWeightKernels.rowAxpy(drb, dLogitBeta, s, size: d)
            }
            if d == 16 {
                // dR += Σ_t s_t ⊗ dx_t for t = T-1 down to 1, the walk's order (s_0 = 0).
                let steps = stride(from: track.length - 1, through: 1, by: -1)
                let s = { (t: Int) in UnsafePointer(DeltaRuleStep(track.step(task, t), headSize: d).end) }
                let dx = { (t: Int) in UnsafePointer(track.projection(dp, task, t)) }
                FastWeightKernels16.accumulateOuterProducts(steps, left: s, right: { dx($0) }, into: dRq)
                FastWeightKernels16.accumulateOuterProducts(steps, left: s, right: { dx($0) + d }, into: dRk)
                FastWeightKernels16.accumulateOuterProducts(steps, left: s, right: { dx($0) + 2 * d }, into: dRv)
            }
        }
        // Per head, the sequences' partial gradients in order (one task per head).
        let gradients = RecurrentMaps(self, arena.gradients), batch = shape.batch, heads = self.heads
        parallelFor(heads) { head in
            let (gq, gk, gv, gb) = gradients.head(head)
            for b in 0..<batch {
                let partial = partials.pointer + (b * heads + head) * width
                addInPlace(gq, partial, count: d * d)
                addInPlace(gk, partial + d * d, count: d * d)
                addInPlace(gv, partial + 2 * d * d, count: d * d)
                addInPlace(gb, partial + 3 * d * d, count: d)
            }
        }
    }
}

/// R_q, R_k, R_v and r_b of one arena (values or gradients), sliced per head.
private struct RecurrentMaps: Sendable {
    let query: SendablePointer<Float>, key: SendablePointer<Float>
    let value: SendablePointer<Float>, beta: SendablePointer<Float>
    let headSize: Int

    init(_ core: RecurrentDeltaNetCore, _ base: UnsafeMutablePointer<Float>) {
        query = SendablePointer(base + core.recurrentQuery.offset)
        key = SendablePointer(base + core.recurrentKey.offset)
        value = SendablePointer(base + core.recurrentValue.offset)
        beta = SendablePointer(base + core.recurrentBeta.offset)
        headSize = core.headSize
    }

    /// Head h's R_q, R_k, R_v [d, d] and r_b [d].
    @inline(__always)
    func head(_ h: Int) -> (UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>) {
        let d = headSize
        return (query.mutable + h * d * d, key.mutable + h * d * d, value.mutable + h * d * d, beta.mutable + h * d)
    }
}
