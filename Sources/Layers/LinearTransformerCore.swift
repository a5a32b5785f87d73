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
// Saved per step: fq, fk, v; W_t itself is stored by the shared storage.

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
            updateOffset: 2 * headSize, scratchWidth: 2 * headSize)
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
            for t in 0..<track.length {
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
            let dW = track.weightGradient(task), scratch = track.scratch(task)
            let dfq = scratch, dfk = scratch + d
            for t in (0..<track.length).reversed() {
                track.rebuildChunk(task, endingAt: t)
                let step = track.step(task, t), dx = track.projection(dp, task, t)
                // dv goes straight to its slot of dp.
                FastWeightKernels.writeAndReadBackward(
                    current: track.weights(task, t), key: step + d, update: step + 2 * d,
                    query: step, dOutput: track.output(dy, task, t), weightGradient: dW,
                    dQuery: dfq, dKey: dfk, dUpdate: dx + 2 * d, size: d)
                if d == 16 {
                    store16(load16(dfq) * FastWeightKernels16.derivativeFromFeature(load16(step)), dx)
                    store16(load16(dfk) * FastWeightKernels16.derivativeFromFeature(load16(step + d)), dx + d)
                    continue
                }
                for i in 0..<d {
                    dx[i] = dfq[i] * min(step[i], 1)
                    dx[d + i] = dfk[i] * min(step[d + i], 1)
                }
            }
        }
    }
}
