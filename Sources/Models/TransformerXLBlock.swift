import Foundation
import Layers
import Tensor

// One pre-LN Transformer-XL layer (Docs/model.md):
//   h2 = h + Drop(Attn(LN1(concat(mem, h))))      keys/values from all S = M + T rows,
//   h3 = h2 + Drop(FFN(LN2(h2)))                  queries from the current T rows.
// Legend: B batch, T segment length, M memory length, S = M + T, d width.

/// Pre-LN attention sublayer plus feedforward sublayer, each with a residual connection.
public final class TransformerXLBlock {
    public let attentionNorm: LayerNorm
    public let attention: RelativeAttention
    let attentionDropout: Dropout
    public let feedForwardNorm: LayerNorm
    public let feedForward: FeedForwardLayer
    let feedForwardDropout: Dropout
    let width: Int
    let scratch: BlockScratch

    private var saved = (batch: 0, queryLength: 0, memoryLength: 0)
    /// concat(memory, h), [B, S, d]: the layer norm's input, and the source of the next memory.
    let keyInput = FloatBuffer()
    private let normalizedKeys = FloatBuffer()  // LN1(concat(memory, h)), [B, S, d]
    /// The memory and h of the last pass when it reused the memory's keys and values (no
    /// concatenation built).
    private var reusedMemory: UnsafeMutablePointer<Float>?
    private var currentRows: UnsafePointer<Float>?
    private let middle = FloatBuffer()  // h2, [B*T, d]
    private let normalizedMiddle = FloatBuffer()  // LN2(h2), [B*T, d]

    /// Registers `attention_norm`, `attention`, `feedforward_norm` and `feedforward` under
    /// `scope` (`layers.L`).
    init(
        _ scope: ParameterScope, config: TransformerXL.Config, attentionScratch: AttentionScratch,
        scratch: BlockScratch
    ) {
        width = config.modelWidth
        self.scratch = scratch
        attentionNorm = LayerNorm(scope.child("attention_norm"), width: width)
        attention = RelativeAttention(
            scope.child("attention"), config: .init(heads: config.heads, headSize: config.resolvedHeadSize),
            width: width, scratch: attentionScratch)
        attentionDropout = Dropout(rate: config.dropout)
        feedForwardNorm = LayerNorm(scope.child("feedforward_norm"), width: width)
        feedForward = config.feedForward.makeLayer(
            scope.child("feedforward"), modelWidth: width, dropout: config.dropout)
        feedForwardDropout = Dropout(rate: config.dropout)
    }

    func initialize(_ arena: ParameterArena, _ context: inout InitializationContext) {
        attentionNorm.initialize(arena)
        attention.initialize(arena, &context)
        feedForwardNorm.initialize(arena)
        feedForward.initialize(arena, &context)
    }

    /// The block's own buffers for a pass (sized for a full memory), its layers', and the
    /// shared backward scratch.
    func declareBuffers(for pass: PassShape, in plan: inout BufferPlan) {
        let (b, t, s, d) = (pass.batch, pass.length, pass.keyLength, width)
        plan.declare(keyInput, "block concat(memory, h)", count: b * s * d)
        plan.declare(normalizedKeys, "block LN1(concat(memory, h))", count: b * s * d)
        attentionNorm.declareBuffers(rows: b * s, training: pass.training, in: &plan)
        attention.declareBuffers(for: pass, in: &plan)
        attentionDropout.declareBuffers(count: b * t * d, for: pass, in: &plan)
        plan.declare(middle, "block h2", count: b * t * d)
        plan.declare(normalizedMiddle, "block LN2(h2)", count: b * t * d)
        feedForwardNorm.declareBuffers(rows: b * t, training: pass.training, in: &plan)
        feedForward.declareBuffers(for: pass, in: &plan)
        feedForwardDropout.declareBuffers(count: b * t * d, for: pass, in: &plan)
        guard pass.training else { return }
        plan.declare(scratch.dFeedForwardOut, "block output gradient (shared)", count: b * t * d)
        plan.declare(scratch.dNormalizedMiddle, "block LN2 gradient (shared)", count: b * t * d)
        plan.declare(scratch.dNormalizedKeys, "block LN1 gradient (shared)", count: b * s * d)
        plan.declare(scratch.dKeyInput, "block input gradient (shared)", count: b * s * d)
    }

    /// h: [B*T, d]; memory: [B, capacity, d] of which the first `memoryLength` rows per
    /// stream are used; output: [B*T, d]. `reuse` (evaluation): what the attention takes from
    /// earlier segments; with the memory's keys and values, only the current rows are
    /// normalised.
    func forward(
        _ h: UnsafePointer<Float>, memory: UnsafePointer<Float>?, memoryStride: Int,
        memoryLength: Int, shape: TokenShape, reuse: RelativeAttention.Reuse? = nil,
        output: UnsafeMutablePointer<Float>, arena: ParameterArena, context: inout ForwardContext
    ) {
        let (b, t, m, d) = (shape.batch, shape.length, memoryLength, width)
        let s = m + t
        // Buffers are sized for a full memory from the first step on (no growth later).
        let sMax = max(m, memoryStride) + t
        saved = (b, t, m)
        let normalized = normalizedKeys.reserved(b * sMax * d)
        reusedMemory = reuse?.keyValues != nil ? memory.map { UnsafeMutablePointer(mutating: $0) } : nil
        if reusedMemory != nil {
            // The memory rows' keys and values are in `reuse`: only the current rows are
            // normalised, and concat(memory, h) is not built (`saveMemory` shifts in place).
            currentRows = h
            attentionNorm.forward(h, rows: b * t, output: normalized, arena: arena)
        } else {
            let keys = SendablePointer(keyInput.reserved(b * sMax * d))
            let memoryRows = memory.map { SendablePointer($0) }, current = SendablePointer(h)
            parallelFor(b) { item in
                if m > 0, let memoryRows {
                    (keys.mutable + item * s * d).update(from: memoryRows.pointer + item * memoryStride * d, count: m * d)
                }
                (keys.mutable + (item * s + m) * d).update(from: current.pointer + item * t * d, count: t * d)
            }
            attentionNorm.forward(keys.pointer, rows: b * s, output: normalized, arena: arena)
        }
        let h2 = middle.reserved(b * t * d)
        attention.forward(
            normalized, batch: b, queryLength: t, memoryLength: m, memoryCapacity: memoryStride,
            reuse: reuse, keepsForBackward: context.training, output: h2, arena: arena)
        attentionDropout.forward(h2, count: b * t * d, streams: b, context: &context)
        addInPlace(h2, h, count: b * t * d)

        let normalizedH2 = normalizedMiddle.reserved(b * t * d)
        feedForwardNorm.forward(h2, rows: b * t, output: normalizedH2, arena: arena)
        feedForward.forward(normalizedH2, shape: shape, output: output, arena: arena, context: &context)
        feedForwardDropout.forward(output, count: b * t * d, streams: b, context: &context)
        addInPlace(output, h2, count: b * t * d)
    }

    /// dOutput: dL/dh3 [B*T, d] (read only); dInput: dL/dh [B*T, d] (overwritten).
    func backward(
        dOutput: UnsafePointer<Float>, dInput: UnsafeMutablePointer<Float>, arena: ParameterArena
    ) {
        let (b, t, m) = saved
        let d = width, s = m + t, n = b * t * d
        let shape = TokenShape(batch: b, length: t)

        // FFN sublayer: dh2 = dh3 + LN2'(FFN'(Drop'(dh3))).
        let dFeedForwardOut = scratch.dFeedForwardOut.reserved(n)
        dFeedForwardOut.update(from: dOutput, count: n)
        feedForwardDropout.backward(dFeedForwardOut, count: n)
        let dNormalizedMiddle = scratch.dNormalizedMiddle.reserved(n)
        dNormalizedMiddle.update(repeating: 0, count: n)
        feedForward.backward(
            normalizedMiddle.pointer, dOutput: dFeedForwardOut, shape: shape,
            dInput: dNormalizedMiddle, arena: arena)
        let dMiddle = dInput
        dMiddle.update(from: dOutput, count: n)
        feedForwardNorm.backward(
            middle.pointer, dOutput: dNormalizedMiddle, rows: b * t, dInput: dMiddle, arena: arena)

        // Attention sublayer: dh = dh2 + [LN1'(Attn'(Drop'(dh2)))] restricted to current rows.
        let dAttention = scratch.dFeedForwardOut.reserved(n)
        dAttention.update(from: dMiddle, count: n)
        attentionDropout.backward(dAttention, count: n)
        let dNormalizedKeys = scratch.dNormalizedKeys.reserved(b * s * d)
        dNormalizedKeys.update(repeating: 0, count: b * s * d)
        attention.backward(
            normalizedKeys.pointer, dOutput: dAttention, dInput: dNormalizedKeys, arena: arena)
        let dKeys = scratch.dKeyInput.reserved(b * s * d)
        dKeys.update(repeating: 0, count: b * s * d)
        attentionNorm.backward(
            keyInput.pointer, dOutput: dNormalizedKeys, rows: b * s, dInput: dKeys, arena: arena)
        // Memory rows are detached: only the current segment's rows flow back to h.
        for item in 0..<b {
            addInPlace(dInput + item * t * d, dKeys + (item * s + m) * d, count: t * d)
        }
    }

    /// Leaves the last `keep` rows per stream of concat(memory, h) at the start of `memory`'s
    /// streams: copied from the concatenation, or, when the pass did not build it (`reuse`),
    /// shifted within `memory` (the memory the pass read) with h's rows after them.
    func saveMemory(into memory: UnsafeMutablePointer<Float>, memoryStride: Int, keep: Int) {
        let (b, t, m) = saved
        let s = m + t, d = width
        precondition(keep <= s && keep <= memoryStride)
        let to = SendablePointer(memory)
        if let reusedMemory {
            precondition(reusedMemory == memory, "memory saved into another memory than the pass read")
            let current = SendablePointer(currentRows!)
            let kept = max(0, keep - t)  // memory rows that stay
            parallelFor(b) { item in
                let stream = to.mutable + item * memoryStride * d
                memmove(stream, stream + (m - kept) * d, kept * d * MemoryLayout<Float>.size)
                stream.advanced(by: kept * d).update(
                    from: current.pointer + (item * t + t - (keep - kept)) * d, count: (keep - kept) * d)
            }
        } else {
            let from = SendablePointer(keyInput.pointer)
            parallelFor(b) { item in
                (to.mutable + item * memoryStride * d).update(
                    from: from.pointer + (item * s + s - keep) * d, count: keep * d)
            }
        }
    }
}

/// Gradient buffers needed only while one block runs backward, shared by all blocks.
final class BlockScratch {
    let dFeedForwardOut = FloatBuffer()
    let dNormalizedMiddle = FloatBuffer()
    let dNormalizedKeys = FloatBuffer()
    let dKeyInput = FloatBuffer()
}
