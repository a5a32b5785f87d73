import Foundation
import Tensor

// Fast-weight cores: the recurrent part of the linear Transformer, DeltaNet and Recurrent
// DeltaNet mixers (Irie, Csordás, Schmidhuber, EMNLP 2023), shared storage and per-step kernels.
// Legend: B sequences, T positions, H heads, d head size, P projection floats per head and
//   position; per (sequence, head) a fast weight W, [d, d] row-major, W_0 = 0 for every sequence.
//   read  y = q W         y_m = Σ_e q_e W[e, m]
//   write W += k ⊗ u      W[e, m] += k_e u_m
// Every core writes, then reads, at each step:
//   W_t = W_{t-1} + k_t ⊗ u_t,  y_t = q_t W_t
// with u = v (linear Transformer) or the delta rule u = beta (v - vbar), vbar = k W_{t-1}.
// Backward through time carries S = dL/dW_t from t = T-1 down to 0 (S = 0 after the last step):
//   read:   S += q ⊗ dy,  dq = W_t dy        (dq_e = Σ_m W_t[e, m] dy_m)
//   write:  du = k S,      dk = S u           (du_m = Σ_e k_e S[e, m], dk_e = Σ_m S[e, m] u_m)
//   delta:  dv = beta du,  dbeta = du . (v - vbar),  dvbar = -dv,
//           dk += W_{t-1} dvbar,  S += k ⊗ dvbar  (S is now dL/dW_{t-1})
// W_{t-1} and W_t come from what a training forward pass stores, not from undoing the rank-1
// updates (which drifts in float32). (The linear Transformer stores no W: see
// LinearTransformerCore.swift.) The steps are cut into chunks of C = ceil(sqrt(T)); the
// forward pass keeps W at the end of every chunk, and backward, on reaching a chunk's last
// step, rebuilds the chunk's other W_t from the previous chunk's end and the saved keys and
// updates with the forward pass's own write (the same bits). Memory per (sequence, head) is
// ceil(T / C) + C - 1 matrices instead of T, and the rebuilt chunk stays in cache instead of
// a matrix per step being written to memory and read back (backward used to wait on those
// loads: before a prefetch was added they were 58% of the linear Transformer's backward).
// Kernels: one task per (sequence, head) walks its T steps; every matrix pass runs over rows
// of d contiguous floats (axpy or SIMD dot), so each task touches W about twice per step. For
// d = 16 the kernels hand over to FastWeightKernels16 (one SIMD16 per row, sums in registers).

/// The recurrent core of a fast-weight mixer: per-head projections of every position in,
/// per-head outputs out, with a fast weight per (sequence, head) that restarts at 0 for every
/// sequence. Padding at the end of sequences needs no handling: every core is causal.
public protocol FastWeightCore: AnyObject {
    /// Heads H and head size d.
    var heads: Int { get }
    var headSize: Int { get }
    /// Floats per head per position of the projection: 3d (linear Transformer) or 3d + 1,
    /// laid out q[d], k[d], v[d], (b).
    var projectionWidth: Int { get }
    /// Draws the core's own parameters (Recurrent DeltaNet's R_q, R_k, R_v, r_b); nothing for
    /// the others.
    func initialize(_ arena: ParameterArena, _ context: inout InitializationContext)
    /// Every buffer of a pass (a training pass also keeps what backward needs: the fast weights
    /// at chunk ends and the step vectors).
    func declareBuffers(for pass: PassShape, in plan: inout BufferPlan)
    /// p: [B, T, H, projectionWidth] -> y: [B, T, H, d] (overwritten). State restarts per
    /// sequence.
    func forward(
        _ p: UnsafePointer<Float>, shape: TokenShape, output y: UnsafeMutablePointer<Float>,
        arena: ParameterArena, training: Bool)
    /// dy: [B, T, H, d] -> dp: [B, T, H, projectionWidth] (overwritten); accumulates (+=) the
    /// core's parameter gradients.
    func backward(
        dOutput dy: UnsafePointer<Float>, shape: TokenShape,
        dProjection dp: UnsafeMutablePointer<Float>, arena: ParameterArena)
}

/// The buffers every core needs: the fast weights, the vectors each step saves for backward,
/// and the backward's carried dL/dW and per-step scratch.
final class FastWeightStorage {
    let label: String
    let heads: Int
    let headSize: Int
    let projectionWidth: Int
    /// Floats one step saves for backward (a core's own layout), with the key and the update
    /// u of the write W += k ⊗ u at these offsets (backward rebuilds W from them).
    let stepWidth: Int
    let keyOffset: Int
    let updateOffset: Int
    /// Floats of backward scratch per (sequence, head) task.
    let scratchWidth: Int
    /// Whether a training pass keeps fast weights for backward (chunk ends and the chunk being
    /// walked). False for a core whose backward rebuilds W_t in a sweep forward in time (the
    /// linear Transformer): its passes keep only the running W, which that sweep reuses.
    let keepsWeights: Bool

    /// Training: W at the end of every chunk, [B, H, ceil(T / C), d, d]; evaluation: the
    /// running W, [B, H, d, d].
    let checkpoints = FloatBuffer()
    /// Training: W_t of the other steps of the current chunk, [B, H, C - 1, d, d].
    let chunk = FloatBuffer()
    /// Training: [B, H, T, stepWidth]; evaluation: the current step only, [B, H, stepWidth].
    let steps = FloatBuffer()
    /// Backward: S = dL/dW_t carried back in time, [B, H, d, d].
    let weightGradient = FloatBuffer()
    /// Backward: [B, H, scratchWidth].
    let scratch = FloatBuffer()

    init(
        label: String, heads: Int, headSize: Int, projectionWidth: Int, stepWidth: Int,
        keyOffset: Int, updateOffset: Int, scratchWidth: Int, keepsWeights: Bool = true
    ) {
        self.label = label
        self.heads = heads
        self.headSize = headSize
        self.projectionWidth = projectionWidth
        self.stepWidth = stepWidth
        self.keyOffset = keyOffset
        self.updateOffset = updateOffset
        self.scratchWidth = scratchWidth
        self.keepsWeights = keepsWeights
    }

    /// C, the steps of a chunk of a training pass over `length` positions: ceil(sqrt(T))
    /// minimises the matrices kept, ceil(T / C) + C - 1.
    static func chunkLength(_ length: Int) -> Int {
        var c = max(1, Int(Double(length).squareRoot()))
        while c * c < length { c += 1 }
        return c
    }

    /// Matrices kept per (sequence, head) by a pass over `length` positions.
    func keptMatrices(length: Int, training: Bool) -> (checkpoints: Int, chunk: Int) {
        guard training && keepsWeights else { return (1, 0) }
        let c = Self.chunkLength(length)
        return ((length + c - 1) / c, c - 1)
    }

    func declareBuffers(for pass: PassShape, in plan: inout BufferPlan) {
        let tasks = pass.batch * heads, d = headSize
        let kept = keptMatrices(length: pass.length, training: pass.training)
        let kind = keepsWeights ? "\(BackwardThroughTime.storedStates) at chunk ends" : "running fast weights"
        plan.declare(checkpoints, "\(label) \(kind)", count: tasks * kept.checkpoints * d * d)
        // Evaluation keeps one step; training keeps all T for backward.
        plan.declare(steps, "\(label) step vectors", count: tasks * (pass.training ? pass.length : 1) * stepWidth)
        guard pass.training else { return }
        if keepsWeights {
            plan.declare(chunk, "\(label) \(BackwardThroughTime.storedStates) of one chunk", count: tasks * kept.chunk * d * d)
        }
        plan.declare(weightGradient, "\(label) fast-weight gradient", count: tasks * d * d)
        plan.declare(scratch, "\(label) backward scratch", count: tasks * scratchWidth)
    }

    /// Runs `body(track, task, p, y)` once per (sequence, head) task of a forward pass over
    /// p [B, T, H, P] into y [B, T, H, d], in parallel. A task writes only its own W, step
    /// vectors and head of y, so nothing depends on the schedule or the thread count.
    func forEachTask(
        input p: UnsafePointer<Float>, output y: UnsafeMutablePointer<Float>, shape: TokenShape,
        training: Bool,
        _ body: @Sendable (FastWeightTrack, Int, UnsafePointer<Float>, UnsafeMutablePointer<Float>) -> Void
    ) {
        let track = FastWeightTrack(self, shape: shape, training: training, backward: false)
        let p = SendablePointer(p), y = SendablePointer(y)
        parallelFor(shape.batch * heads) { task in body(track, task, p.pointer, y.mutable) }
    }

    /// Runs `body(track, task, dy, dp)` once per task of the backward pass over what the
    /// training forward pass stored, with the task's S = dL/dW zeroed (the gradient of the
    /// state after the last step). A task writes only its own S, scratch and head of dp.
    func forEachTaskBackward(
        dOutput dy: UnsafePointer<Float>, dProjection dp: UnsafeMutablePointer<Float>,
        shape: TokenShape,
        _ body: @Sendable (FastWeightTrack, Int, UnsafePointer<Float>, UnsafeMutablePointer<Float>) -> Void
    ) {
        let track = FastWeightTrack(self, shape: shape, training: true, backward: true), d = headSize
        let dy = SendablePointer(dy), dp = SendablePointer(dp)
        parallelFor(shape.batch * heads) { task in
            track.weightGradient(task).update(repeating: 0, count: d * d)
            body(track, task, dy.pointer, dp.mutable)
        }
    }
}

/// Where one (sequence, head) task finds its inputs, outputs and state at each step: plain
/// pointers and sizes, so `parallelFor` bodies can carry it. Task i is sequence i / H, head i % H.
struct FastWeightTrack: Sendable {
    let heads: Int, length: Int, headSize: Int, projectionWidth: Int, stepWidth: Int
    let keyOffset: Int, updateOffset: Int
    let scratchWidth: Int
    /// Training: the step vectors of every step; evaluation: one running slot.
    let storesSteps: Bool
    /// Training of a core that keeps weights: the chunk ends and the current chunk; otherwise
    /// one running W.
    let storesWeights: Bool
    /// C and the chunk ends kept per task (training).
    let chunkLength: Int
    let chunks: Int
    private let checkpointBase: SendablePointer<Float>
    private let chunkBase: SendablePointer<Float>
    private let stepBase: SendablePointer<Float>
    private let weightGradientBase: SendablePointer<Float>
    private let scratchBase: SendablePointer<Float>

    /// The reserved memory of `storage` for a pass over `shape`; the backward buffers only for
    /// `backward` (the plan declares them for training passes only).
    init(_ storage: FastWeightStorage, shape: TokenShape, training: Bool, backward: Bool) {
        heads = storage.heads
        length = shape.length
        headSize = storage.headSize
        projectionWidth = storage.projectionWidth
        stepWidth = storage.stepWidth
        keyOffset = storage.keyOffset
        updateOffset = storage.updateOffset
        scratchWidth = storage.scratchWidth
        storesSteps = training
        storesWeights = training && storage.keepsWeights
        chunkLength = storesWeights ? FastWeightStorage.chunkLength(length) : 1
        let kept = storage.keptMatrices(length: length, training: training)
        chunks = kept.checkpoints
        let tasks = shape.batch * heads, d = headSize
        checkpointBase = SendablePointer(storage.checkpoints.reserved(tasks * kept.checkpoints * d * d))
        chunkBase = SendablePointer(storesWeights ? storage.chunk.reserved(tasks * kept.chunk * d * d) : storage.chunk.pointer)
        stepBase = SendablePointer(storage.steps.reserved(tasks * (training ? length : 1) * stepWidth))
        weightGradientBase = SendablePointer(
            backward ? storage.weightGradient.reserved(tasks * d * d) : storage.weightGradient.pointer)
        scratchBase = SendablePointer(
            backward ? storage.scratch.reserved(tasks * scratchWidth) : storage.scratch.pointer)
    }

    /// Row of [B, T, H] holding the task's position t.
    @inline(__always) func token(_ task: Int, _ t: Int) -> Int {
        ((task / heads) * length + t) * heads + task % heads
    }

    /// The task's projection slice of position t in p, [B, T, H, P].
    @inline(__always) func projection<Pointer: Strideable>(_ p: Pointer, _ task: Int, _ t: Int) -> Pointer
    where Pointer.Stride == Int {
        p.advanced(by: token(task, t) * projectionWidth)
    }

    /// The task's head slice of position t in y, [B, T, H, d].
    @inline(__always) func output<Pointer: Strideable>(_ y: Pointer, _ task: Int, _ t: Int) -> Pointer
    where Pointer.Stride == Int {
        y.advanced(by: token(task, t) * headSize)
    }

    /// Whether step t is the last of its chunk (training).
    @inline(__always) func endsChunk(_ t: Int) -> Bool {
        t == length - 1 || t % chunkLength == chunkLength - 1
    }

    /// W_t (evaluation, or a core that keeps no weights: the running W, updated in place).
    /// Training: a chunk's last W is kept until backward; the others share the task's chunk
    /// slots, which backward rebuilds.
    @inline(__always) func weights(_ task: Int, _ t: Int) -> UnsafeMutablePointer<Float> {
        let matrix = headSize * headSize
        guard storesWeights else { return checkpointBase.mutable + task * matrix }
        if endsChunk(t) { return checkpointBase.mutable + (task * chunks + t / chunkLength) * matrix }
        return chunkBase.mutable + (task * (chunkLength - 1) + t % chunkLength) * matrix
    }

    /// W_{t-1} (evaluation: the running W); nil for W_0 = 0.
    @inline(__always) func previousWeights(_ task: Int, _ t: Int) -> UnsafePointer<Float>? {
        t == 0 ? nil : UnsafePointer(weights(task, t - 1))
    }

    /// Backward, before the steps of a chunk (called at every step; acts at a chunk's last
    /// step t): rebuilds W of the chunk's earlier steps from the previous chunk's end and the
    /// saved keys and updates, with the forward pass's write, so they are the same bits. Then
    /// starts loading the end of the chunk before the previous one, which the next rebuild
    /// starts from.
    @inline(__always) func rebuildChunk(_ task: Int, endingAt t: Int) {
        guard endsChunk(t) else { return }
        let start = t - t % chunkLength
        for j in start..<t {
            let step = self.step(task, j)
            FastWeightKernels.write(
                previous: previousWeights(task, j), next: weights(task, j), key: step + keyOffset,
                update: step + updateOffset, size: headSize)
        }
        if start - chunkLength - 1 >= 0 {
            prefetch(weights(task, start - chunkLength - 1), count: headSize * headSize)
        }
    }

    /// The vectors step t saves (evaluation: one slot per task, overwritten every step).
    @inline(__always) func step(_ task: Int, _ t: Int) -> UnsafeMutablePointer<Float> {
        stepBase.mutable + (storesSteps ? task * length + t : task) * stepWidth
    }

    /// S = dL/dW, [d, d], and the backward scratch of one task.
    @inline(__always) func weightGradient(_ task: Int) -> UnsafeMutablePointer<Float> {
        weightGradientBase.mutable + task * headSize * headSize
    }

    @inline(__always) func scratch(_ task: Int) -> UnsafeMutablePointer<Float> {
        scratchBase.mutable + task * scratchWidth
    }
}

/// One step's saved vectors of a delta-rule core (DeltaNet, Recurrent DeltaNet):
/// q[d], k[d], delta = v - vbar [d], u = beta delta [d], beta [1]; a core may append its own.
struct DeltaRuleStep {
    static func width(headSize d: Int) -> Int { 4 * d + 1 }
    /// Where k and u sit in the step (the write W += k ⊗ u that backward replays).
    static func keyOffset(headSize d: Int) -> Int { d }
    static func updateOffset(headSize d: Int) -> Int { 3 * d }

    let base: UnsafeMutablePointer<Float>
    let d: Int

    init(_ base: UnsafeMutablePointer<Float>, headSize: Int) {
        self.base = base
        d = headSize
    }

    var query: UnsafeMutablePointer<Float> { base }
    var key: UnsafeMutablePointer<Float> { base + Self.keyOffset(headSize: d) }
    var delta: UnsafeMutablePointer<Float> { base + 2 * d }
    var update: UnsafeMutablePointer<Float> { base + Self.updateOffset(headSize: d) }
    var beta: Float {
        get { base[4 * d] }
        nonmutating set { base[4 * d] = newValue }
    }
    /// Where a core's own saved floats start.
    var end: UnsafeMutablePointer<Float> { base + 4 * d + 1 }
}

/// The per-step kernels the cores share. All sizes are the head size d; pointers to distinct
/// vectors unless a comment allows aliasing.
enum FastWeightKernels {
    /// Σ_i a_i b_i over one head row, inlined: rows are short (d is typically 8 to 64), and the
    /// call and 16-lane reduction of `Tensor.dot` took about 40% of the backward pass at d = 32
    /// (measured). The order of the additions is fixed (8 lanes, then the tail): reproducible.
    @inline(__always)
    static func rowDot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, size d: Int) -> Float {
        var acc = SIMD8<Float>()
        var i = 0
        while i + 8 <= d {
            acc += UnsafeRawPointer(a + i).loadUnaligned(as: SIMD8<Float>.self)
                * UnsafeRawPointer(b + i).loadUnaligned(as: SIMD8<Float>.self)
            i += 8
        }
        var total = acc.sum()
        while i < d {
            total += a[i] * b[i]
            i += 1
        }
        return total
    }

    /// y[m] += Σ_e x_e W[e, m]: a row vector times a [d, d] matrix, row by row so the inner loop
    /// runs over contiguous m.
    @inline(__always)
    static func accumulateProduct(
        _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>,
        size d: Int
    ) {
        if d == 16 { return store16(load16(y) + FastWeightKernels16.product(x, w), y) }
        for e in 0..<d { rowAxpy(y, x[e], w + e * d, size: d) }
    }

    /// y += a x over one head row. Written with 8-lane loads because rows are short: the
    /// compiler's vectorised `axpy` loop is unrolled to 32 floats and runs its scalar tail for
    /// d = 16 (measured: the cores' loops were most of a training step at d_model 64). Each
    /// element is y + a * x rounded as in the scalar loop (no fused multiply-add), so the
    /// results are the same bits.
    @inline(__always)
    static func rowAxpy(_ y: UnsafeMutablePointer<Float>, _ a: Float, _ x: UnsafePointer<Float>, size d: Int) {
        let av = SIMD8<Float>(repeating: a)
        var i = 0
        while i + 8 <= d {
            let yv = UnsafeRawPointer(y + i).loadUnaligned(as: SIMD8<Float>.self)
            let xv = UnsafeRawPointer(x + i).loadUnaligned(as: SIMD8<Float>.self)
            UnsafeMutableRawPointer(y + i).storeBytes(of: yv + av * xv, as: SIMD8<Float>.self)
            i += 8
        }
        while i < d {
            y[i] += a * x[i]
            i += 1
        }
    }

    /// y += a x + b z over one head row (the sum of the two products first, as written), 8
    /// lanes at a time.
    @inline(__always)
    static func rowAxpy(
        _ y: UnsafeMutablePointer<Float>, _ a: Float, _ x: UnsafePointer<Float>, _ b: Float,
        _ z: UnsafePointer<Float>, size d: Int
    ) {
        let av = SIMD8<Float>(repeating: a), bv = SIMD8<Float>(repeating: b)
        var i = 0
        while i + 8 <= d {
            let yv = UnsafeRawPointer(y + i).loadUnaligned(as: SIMD8<Float>.self)
            let xv = UnsafeRawPointer(x + i).loadUnaligned(as: SIMD8<Float>.self)
            let zv = UnsafeRawPointer(z + i).loadUnaligned(as: SIMD8<Float>.self)
            UnsafeMutableRawPointer(y + i).storeBytes(of: yv + (av * xv + bv * zv), as: SIMD8<Float>.self)
            i += 8
        }
        while i < d {
            y[i] += a * x[i] + b * z[i]
            i += 1
        }
    }

    /// target = source + a x over one head row (`target` may be `source`), 8 lanes at a time.
    @inline(__always)
    static func rowSum(
        _ source: UnsafePointer<Float>, _ a: Float, _ x: UnsafePointer<Float>,
        into target: UnsafeMutablePointer<Float>, size d: Int
    ) {
        let av = SIMD8<Float>(repeating: a)
        var i = 0
        while i + 8 <= d {
            let sv = UnsafeRawPointer(source + i).loadUnaligned(as: SIMD8<Float>.self)
            let xv = UnsafeRawPointer(x + i).loadUnaligned(as: SIMD8<Float>.self)
            UnsafeMutableRawPointer(target + i).storeBytes(of: sv + av * xv, as: SIMD8<Float>.self)
            i += 8
        }
        while i < d {
            target[i] = source[i] + a * x[i]
            i += 1
        }
    }

    /// target = a x over one head row, 8 lanes at a time.
    @inline(__always)
    static func rowScaled(_ a: Float, _ x: UnsafePointer<Float>, into target: UnsafeMutablePointer<Float>, size d: Int) {
        let av = SIMD8<Float>(repeating: a)
        var i = 0
        while i + 8 <= d {
            let xv = UnsafeRawPointer(x + i).loadUnaligned(as: SIMD8<Float>.self)
            UnsafeMutableRawPointer(target + i).storeBytes(of: av * xv, as: SIMD8<Float>.self)
            i += 8
        }
        while i < d {
            target[i] = a * x[i]
            i += 1
        }
    }

    /// next = previous + k ⊗ u (previous nil: W_0 = 0), row by row as `writeAndRead` does
    /// (the same bits).
    @inline(__always)
    static func write(
        previous: UnsafePointer<Float>?, next: UnsafeMutablePointer<Float>,
        key k: UnsafePointer<Float>, update u: UnsafePointer<Float>, size d: Int
    ) {
        if d == 16 { return FastWeightKernels16.write(previous: previous, next: next, key: k, update: u) }
        for e in 0..<d {
            if let previous {
                rowSum(previous + e * d, k[e], u, into: next + e * d, size: d)
            } else {
                rowScaled(k[e], u, into: next + e * d, size: d)
            }
        }
    }

    /// next = previous + k ⊗ u (previous nil: W_0 = 0), then y = q next (overwritten).
    /// `next` may be `previous` (in-place update of a running W): row e is read, then written.
    @inline(__always)
    static func writeAndRead(
        previous: UnsafePointer<Float>?, next: UnsafeMutablePointer<Float>,
        key k: UnsafePointer<Float>, update u: UnsafePointer<Float>, query q: UnsafePointer<Float>,
        output y: UnsafeMutablePointer<Float>, size d: Int
    ) {
        if d == 16 {
            return FastWeightKernels16.writeAndRead(previous: previous, next: next, key: k, update: u, query: q, output: y)
        }
        y.update(repeating: 0, count: d)
        for e in 0..<d {
            let row = next + e * d, ke = k[e]
            if let previous {
                rowSum(previous + e * d, ke, u, into: row, size: d)
            } else {
                rowScaled(ke, u, into: row, size: d)
            }
            rowAxpy(y, q[e], row, size: d)
        }
    }

    /// Backward of `writeAndRead` given S = dL/dW_t from later steps:
    ///   S += q ⊗ dy; dq = W_t dy; du = k S; dk = S u   (dq, du, dk overwritten).
    /// S then holds the gradient of W_t including this step's read; the write leaves it as the
    /// gradient of W_{t-1} (the identity part of W_t = W_{t-1} + k ⊗ u).
    @inline(__always)
    static func writeAndReadBackward(
        current w: UnsafePointer<Float>, key k: UnsafePointer<Float>, update u: UnsafePointer<Float>,
        query q: UnsafePointer<Float>, dOutput dy: UnsafePointer<Float>,
        weightGradient s: UnsafeMutablePointer<Float>, dQuery dq: UnsafeMutablePointer<Float>,
        dKey dk: UnsafeMutablePointer<Float>, dUpdate du: UnsafeMutablePointer<Float>, size d: Int
    ) {
        queryGradient(current: w, dOutput: dy, dQuery: dq, size: d)
        carryBackward(key: k, update: u, query: q, dOutput: dy, weightGradient: s, dKey: dk, dUpdate: du, size: d)
    }

    /// The read's gradient with respect to the query: dq = W_t dy (overwritten).
    @inline(__always)
    static func queryGradient(
        current w: UnsafePointer<Float>, dOutput dy: UnsafePointer<Float>, dQuery dq: UnsafeMutablePointer<Float>,
        size d: Int
    ) {
        if d == 16 { return store16(FastWeightKernels16.rowDots(w, load16(dy)), dq) }
        for e in 0..<d { dq[e] = rowDot(w + e * d, dy, size: d) }
    }

    /// The part of `writeAndReadBackward` that needs no W: S += q ⊗ dy; du = k S; dk = S u
    /// (du, dk overwritten).
    @inline(__always)
    static func carryBackward(
        key k: UnsafePointer<Float>, update u: UnsafePointer<Float>, query q: UnsafePointer<Float>,
        dOutput dy: UnsafePointer<Float>, weightGradient s: UnsafeMutablePointer<Float>,
        dKey dk: UnsafeMutablePointer<Float>, dUpdate du: UnsafeMutablePointer<Float>, size d: Int
    ) {
        if d == 16 {
            return FastWeightKernels16.carryBackward(key: k, update: u, query: q, dOutput: dy, weightGradient: s, dKey: dk, dUpdate: du)
        }
        du.update(repeating: 0, count: d)
        for e in 0..<d {
            let row = s + e * d
            rowAxpy(row, q[e], dy, size: d)
            dk[e] = rowDot(row, u, size: d)
            rowAxpy(du, k[e], row, size: d)
        }
    }

    /// One delta-rule step: vbar = k W_{t-1}, delta = v - vbar, u = beta delta, then
    /// `writeAndRead`. Reads q, k, beta from `step` and fills its delta and u. `value` may be
    /// `step.delta` (a core that computes v there).
    @inline(__always)
    static func deltaRuleForward(
        _ step: DeltaRuleStep, value v: UnsafePointer<Float>, previous: UnsafePointer<Float>?,
        next: UnsafeMutablePointer<Float>, output y: UnsafeMutablePointer<Float>, size d: Int
    ) {
        if d == 16 {
            return FastWeightKernels16.deltaRuleForward(step, value: v, previous: previous, next: next, output: y)
        }
        // vbar goes to the u slot first; every later loop reads index m before writing it.
        let vbar = step.update, delta = step.delta, beta = step.beta
        vbar.update(repeating: 0, count: d)
        if let previous { accumulateProduct(step.key, previous, into: vbar, size: d) }
        for m in 0..<d {
            delta[m] = v[m] - vbar[m]
            vbar[m] = beta * delta[m]
        }
        writeAndRead(
            previous: previous, next: next, key: step.key, update: step.update, query: step.query,
            output: y, size: d)
    }

    /// Backward of `deltaRuleForward`: dq, dk (with respect to the q, k the step used), dv and
    /// the returned dbeta; S goes from dL/dW_t (later steps) to dL/dW_{t-1}.
    /// `dUpdate` is scratch.
    @inline(__always)
    static func deltaRuleBackward(
        _ step: DeltaRuleStep, previous: UnsafePointer<Float>?, current: UnsafePointer<Float>,
        dOutput dy: UnsafePointer<Float>, weightGradient s: UnsafeMutablePointer<Float>,
        dQuery dq: UnsafeMutablePointer<Float>, dKey dk: UnsafeMutablePointer<Float>,
        dValue dv: UnsafeMutablePointer<Float>, dUpdate du: UnsafeMutablePointer<Float>, size d: Int
    ) -> Float {
        if d == 16 {
            return FastWeightKernels16.deltaRuleBackward(
                step, previous: previous, current: current, dOutput: dy, weightGradient: s, dQuery: dq,
                dKey: dk, dValue: dv, dUpdate: du)
        }
        writeAndReadBackward(
            current: current, key: step.key, update: step.update, query: step.query, dOutput: dy,
            weightGradient: s, dQuery: dq, dKey: dk, dUpdate: du, size: d)
        let beta = step.beta
        let dBeta = rowDot(du, step.delta, size: d)
        for m in 0..<d { dv[m] = beta * du[m] }
        // dvbar = -dv; W_0 = 0 has no gradient path.
        guard let previous else { return dBeta }
        for e in 0..<d {
            dk[e] -= rowDot(previous + e * d, dv, size: d)
            rowAxpy(s + e * d, -step.key[e], dv, size: d)
        }
        return dBeta
    }

    /// phi(x) = ELU(x) + 1 into `f`; returns Σ f. Its derivative is min(phi(x), 1): 1 for
    /// x > 0 (where phi > 1), exp(x) = phi(x) for x <= 0.
    @inline(__always)
    static func eluPlusOne(
        _ x: UnsafePointer<Float>, into f: UnsafeMutablePointer<Float>, size d: Int
    ) -> Float {
        if d == 16 { return FastWeightKernels16.eluPlusOne(x, into: f) }
        var total: Float = 0
        for i in 0..<d {
            f[i] = x[i] > 0 ? x[i] + 1 : Foundation.exp(x[i])
            total += f[i]
        }
        return total
    }

    /// sigmoid(x).
    @inline(__always)
    static func sigmoid(_ x: Float) -> Float { 1 / (1 + Foundation.exp(-x)) }
}

/// How the fast-weight layers go back through time: a training pass keeps the fast weights
/// backward needs instead of undoing the rank-one updates (which drifts in float32). DeltaNet
/// and Recurrent DeltaNet keep W at the end of every chunk of ceil(sqrt(T)) steps and rebuild
/// the chunk being walked back; the SRWM keeps every step's; the linear Transformer keeps none
/// (its backward rebuilds W_t in a sweep forward in time).
/// The accountant reports these buffers under this name; they grow with the batch.
public enum BackwardThroughTime {
    /// The words in the names of the buffers that keep fast weights for backward.
    public static let storedStates = "stored fast weights"
}
