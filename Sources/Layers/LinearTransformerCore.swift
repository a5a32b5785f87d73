import Tensor

// The linear Transformer's fast-weight core (the paper's model id 8).
// Legend: B sequences, T positions, H heads, d head size; per (sequence, head) a fast weight
//   W [d, d], W_0 = 0; p holds q, k, v [d each] per head and position.
//   phi(x) = ELU(x) + 1 = x + 1 (x > 0), exp(x) (x <= 0)
//   W_t = W_{t-1} + phi(k_t) ⊗ v_t,  y_t = phi(q_t) W_t   (write, then read: the current
//   token is included; no normalisation of any kind)
// Backward (S = dL/dW_t carried back from t = T-1, fq = phi(q), fk = phi(k)):
//   S += fq ⊗ dy_t;  dfq = W_t dy_t;  dv = fk S;  dfk = S v
//   dq = dfq * phi'(q), dk = dfk * phi'(k), phi'(x) = min(phi(x), 1) (1 for x > 0, exp(x) else)
// Saved per step: fq, fk, v. No W_t is kept: dfq needs W_t, and S needs no W at all, so
// backward is two sweeps per (sequence, head): forward in time rebuilding W_t in the running W
// (the forward pass's write, so the same bits) for dfq, then back in time for S, dv and dfk.
// Nothing grows with T but the step vectors. At d = 16 both sweeps, and the forward pass, hold
// their matrix in registers (`forward16`, `backward16`); with them the recurrence went from
// 26-28% of the training step's perf samples (chunked storage and rebuilds) to 15%. The
// general-d sweeps below keep the running W in memory.

/// The linear Transformer's recurrence: an unnormalised sum of phi(k) ⊗ v outer products,
/// read with phi(q). No parameters of its own.
public final class LinearTransformerCore: FastWeightCore {
    public let heads: Int
    public let headSize: Int
    public var projectionWidth: Int { 3 * headSize }

    let storage: FastWeightStorage

    /// The scope is unused (no parameters); taken so every core is built alike.
    public init(_ scope: ParameterScope, heads: Int, headSize: Int) {
        self.heads = heads
        self.headSize = headSize
        // Step: fq[d], fk[d], v[d]; backward scratch: dfq[d], dfk[d].
        storage = FastWeightStorage(
            label: "linear transformer", heads: heads, headSize: headSize,
            projectionWidth: 3 * headSize, stepWidth: 3 * headSize, keyOffset: headSize,
            updateOffset: 2 * headSize, scratchWidth: 2 * headSize, keepsWeights: false)
    }

    public func initialize(_ arena: ParameterArena, _ context: inout InitializationContext) {}

    public func declareBuffers(for pass: PassShape, in plan: inout BufferPlan) {
        storage.declareBuffers(for: pass, in: &plan)
    }

    public func forward(
        _ p: UnsafePointer<Float>, shape: TokenShape, output y: UnsafeMutablePointer<Float>,
        arena: ParameterArena, training: Bool
    ) {
        let d = headSize
        storage.forEachTask(input: p, output: y, shape: shape, training: training) { track, task, p, y in
            if d == 16 { return Self.forward16(track, task, p, y) }
            for t in 0..<track.length {
                // A task's positions are H * P floats apart in p: the hardware prefetcher
                // loses them at page boundaries, and the loads stalled this loop (perf annotate).
                if t + 4 < track.length { prefetch(track.projection(p, task, t + 4), count: 3 * d) }
                let x = track.projection(p, task, t), step = track.step(task, t)
                _ = FastWeightKernels.eluPlusOne(x, into: step, size: d)
                _ = FastWeightKernels.eluPlusOne(x + d, into: step + d, size: d)
                (step + 2 * d).update(from: x + 2 * d, count: d)
                FastWeightKernels.writeAndRead(
                    previous: track.previousWeights(task, t), next: track.weights(task, t),
                    key: step + d, update: step + 2 * d, query: step,
                    output: track.output(y, task, t), size: d)
            }
        }
    }

    public func backward(
        dOutput dy: UnsafePointer<Float>, shape: TokenShape,
        dProjection dp: UnsafeMutablePointer<Float>, arena: ParameterArena
    ) {
        let d = headSize
        storage.forEachTaskBackward(dOutput: dy, dProjection: dp, shape: shape) { track, task, dy, dp in
            if d == 16 { return Self.backward16(track, task, dy, dp) }
            let w = track.weights(task, 0), s = track.weightGradient(task), scratch = track.scratch(task)
            let dfq = scratch, dfk = scratch + d
            // Forward in time: W_t again, with the forward pass's own write (the same bits),
            // in the running W, and dq_t = W_t dy_t.
            for t in 0..<track.length {
                if t + 4 < track.length { prefetch(track.output(dy, task, t + 4), count: d) }
                let step = track.step(task, t), dx = track.projection(dp, task, t)
                FastWeightKernels.write(
                    previous: t == 0 ? nil : UnsafePointer(w), next: w, key: step + d, update: step + 2 * d, size: d)
                FastWeightKernels.queryGradient(current: w, dOutput: track.output(dy, task, t), dQuery: dfq, size: d)
                Self.featureGradient(dfq, feature: step, into: dx, size: d)
            }
            // Back in time: S = dL/dW_t; dv goes straight to its slot of dp.
            for t in (0..<track.length).reversed() {
                let step = track.step(task, t), dx = track.projection(dp, task, t)
                FastWeightKernels.carryBackward(
                    key: step + d, update: step + 2 * d, query: step, dOutput: track.output(dy, task, t),
                    weightGradient: s, dKey: dfk, dUpdate: dx + 2 * d, size: d)
                Self.featureGradient(dfk, feature: step + d, into: dx + d, size: d)
            }
        }
    }

    // MARK: Head size 16, the fast weight in registers

    /// One task's forward pass for d = 16 with W held in registers: the same arithmetic, in
    /// the same order, as the general loop (so the same bits); W is never stored.
    static func forward16(
        _ track: FastWeightTrack, _ task: Int, _ p: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>
    ) {
        var w = FastWeightKernels16.Matrix16()
        for t in 0..<track.length {
            if t + 4 < track.length { prefetch(track.projection(p, task, t + 4), count: 48) }
            let x = track.projection(p, task, t), step = track.step(task, t)
            _ = FastWeightKernels16.eluPlusOne(x, into: step)
            _ = FastWeightKernels16.eluPlusOne(x + 16, into: step + 16)
            let v = load16(x + 32)
            store16(v, step + 32)
            w.addOuter(step + 16, v)
            store16(w.product(step), track.output(y, task, t))
        }
    }

    /// One task's backward pass for d = 16, both sweeps in registers. The first keeps W
    /// transposed (row m is column m of W, each element the forward pass's bits, since
    /// v_m fk_e = fk_e v_m exactly), so dfq = W dy is a sum of broadcast products rather than
    /// sixteen row dot products; the second keeps S.
    static func backward16(
        _ track: FastWeightTrack, _ task: Int, _ dy: UnsafePointer<Float>, _ dp: UnsafeMutablePointer<Float>
    ) {
        var transposed = FastWeightKernels16.Matrix16()
        for t in 0..<track.length {
            if t + 4 < track.length { prefetch(track.output(dy, task, t + 4), count: 16) }
            let step = track.step(task, t), dx = track.projection(dp, task, t)
            transposed.addOuter(step + 32, load16(step + 16))
            let dfq = transposed.pairedProduct(track.output(dy, task, t))
            store16(dfq * FastWeightKernels16.derivativeFromFeature(load16(step)), dx)
        }
        var s = FastWeightKernels16.Matrix16()
        for t in (0..<track.length).reversed() {
            let step = track.step(task, t), dx = track.projection(dp, task, t)
            s.addOuter(step, load16(track.output(dy, task, t)))
            store16(s.pairedProduct(step + 16), dx + 32)
            let dfk = s.rowDots(load16(step + 32))
            store16(dfk * FastWeightKernels16.derivativeFromFeature(load16(step + 16)), dx + 16)
        }
    }

    /// dx = df * phi'(x), with phi'(x) = min(phi(x), 1) from the saved feature phi(x).
    @inline(__always)
    static func featureGradient(
        _ df: UnsafePointer<Float>, feature phi: UnsafePointer<Float>, into dx: UnsafeMutablePointer<Float>, size d: Int
    ) {
        if d == 16 { return store16(load16(df) * FastWeightKernels16.derivativeFromFeature(load16(phi)), dx) }
        for i in 0..<d { dx[i] = df[i] * min(phi[i], 1) }
    }
}
