import Tensor

// DeltaNet's fast-weight core (the paper's model id 2).
// Legend: B sequences, T positions, H heads, d head size; per (sequence, head) a fast weight
//   W [d, d], W_0 = 0; p holds q, k, v [d each] and b [1] per head and position.
//   phi(x) = ELU(x) + 1;  q^ = phi(q) / Σ phi(q),  k^ = phi(k) / Σ phi(k);  beta = sigmoid(b)
//   vbar = k^ W_{t-1}  (the old W)
//   W_t = W_{t-1} + k^ ⊗ beta (v - vbar)
//   y_t = q^ W_t       (the updated W)
// Backward (S = dL/dW_t carried back from t = T-1, u = beta (v - vbar)):
//   S += q^ ⊗ dy_t;  dq^ = W_t dy_t;  du = k^ S;  dk^ = S u
//   dv = beta du;  dbeta = du . (v - vbar);  dk^ -= W_{t-1} dv;  S -= k^ ⊗ dv
//   dq = (dq^ - (dq^ . q^)) * phi'(q) / Σ phi(q)   (likewise k),  phi'(x) = min(phi(x), 1)
//   db = dbeta beta (1 - beta)
// Saved per step: q^, k^, v - vbar, u, beta, and phi'(q) / Σ phi(q), phi'(k) / Σ phi(k).

/// DeltaNet's recurrence: the delta rule on sum-normalised ELU + 1 features, with one learned
/// (input-dependent) learning rate beta per head and step. No parameters of its own.
public final class DeltaNetCore: FastWeightCore {
    public let heads: Int
    public let headSize: Int
    public var projectionWidth: Int { 3 * headSize + 1 }

    let storage: FastWeightStorage

    /// The scope is unused (no parameters); taken so every core is built alike.
    public init(_ scope: ParameterScope, heads: Int, headSize: Int) {
        self.heads = heads
        self.headSize = headSize
        // Step: the delta-rule vectors, then the two feature-derivative factors [d each];
        // backward scratch: dq^, dk^, du.
        storage = FastWeightStorage(
            label: "deltanet", heads: heads, headSize: headSize, projectionWidth: 3 * headSize + 1,
            stepWidth: DeltaRuleStep.width(headSize: headSize) + 2 * headSize,
            keyOffset: DeltaRuleStep.keyOffset(headSize: headSize),
            updateOffset: DeltaRuleStep.updateOffset(headSize: headSize),
            scratchWidth: 3 * headSize)
    }

    public func initialize(_ arena: ParameterArena, _ context: inout InitializationContext) {}

    public func declareBuffers(for pass: PassShape, in plan: inout BufferPlan) {
        storage.declareBuffers(for: pass, in: &plan)
    }

    /// n = phi(x) / Σ phi(x) and the factor g = phi'(x) / Σ phi(x) its backward needs.
    @inline(__always)
    static func normalisedFeatures(
        _ x: UnsafePointer<Float>, into n: UnsafeMutablePointer<Float>,
        factor g: UnsafeMutablePointer<Float>, size d: Int
    ) {
        let inverse = 1 / FastWeightKernels.eluPlusOne(x, into: n, size: d)
        if d == 16 {
            let phi = load16(n), scale = SIMD16<Float>(repeating: inverse)
            store16(FastWeightKernels16.derivativeFromFeature(phi) * scale, g)
            store16(phi * scale, n)
            return
        }
        for i in 0..<d {
            g[i] = min(n[i], 1) * inverse
            n[i] *= inverse
        }
    }

    /// dx = (dn - (dn . n)) * g: the gradient through the sum-normalisation and phi.
    @inline(__always)
    static func normalisedFeaturesBackward(
        _ n: UnsafePointer<Float>, factor g: UnsafePointer<Float>, dFeature dn: UnsafePointer<Float>,
        dInput dx: UnsafeMutablePointer<Float>, size d: Int
    ) {
        let inner = FastWeightKernels.rowDot(dn, n, size: d)
        if d == 16 { return store16((load16(dn) - SIMD16<Float>(repeating: inner)) * load16(g), dx) }
        for i in 0..<d { dx[i] = (dn[i] - inner) * g[i] }
    }

    public func forward(
        _ p: UnsafePointer<Float>, shape: TokenShape, output y: UnsafeMutablePointer<Float>,
        arena: ParameterArena, training: Bool
    ) {
        let d = headSize
        storage.forEachTask(input: p, output: y, shape: shape, training: training) { track, task, p, y in
            for t in 0..<track.length {
                let x = track.projection(p, task, t)
                let step = DeltaRuleStep(track.step(task, t), headSize: d)
                Self.normalisedFeatures(x, into: step.query, factor: step.end, size: d)
                Self.normalisedFeatures(x + d, into: step.key, factor: step.end + d, size: d)
                step.beta = FastWeightKernels.sigmoid(x[3 * d])
                FastWeightKernels.deltaRuleForward(
                    step, value: x + 2 * d, previous: track.previousWeights(task, t),
                    next: track.weights(task, t), output: track.output(y, task, t), size: d)
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
            let dq = scratch, dk = scratch + d, du = scratch + 2 * d
            for t in (0..<track.length).reversed() {
                track.rebuildChunk(task, endingAt: t)
                let step = DeltaRuleStep(track.step(task, t), headSize: d)
                let dx = track.projection(dp, task, t)
                // dv goes straight to its slot of dp.
                let dBeta = FastWeightKernels.deltaRuleBackward(
                    step, previous: track.previousWeights(task, t), current: track.weights(task, t),
                    dOutput: track.output(dy, task, t), weightGradient: dW,
                    dQuery: dq, dKey: dk, dValue: dx + 2 * d, dUpdate: du, size: d)
                Self.normalisedFeaturesBackward(step.query, factor: step.end, dFeature: dq, dInput: dx, size: d)
                Self.normalisedFeaturesBackward(step.key, factor: step.end + d, dFeature: dk, dInput: dx + d, size: d)
                let beta = step.beta
                dx[3 * d] = dBeta * beta * (1 - beta)
            }
        }
    }
}
