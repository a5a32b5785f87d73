import Layers
import Tensor

// One pre-LN Transformer-XL layer (DESIGN.md):
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
    private let middle = FloatBuffer()  // h2, [B*T, d]
    private let normalizedMiddle = FloatBuffer()  // LN2(h2), [B*T, d]

    init(
        index: Int, config: ModelConfig, attentionScratch: AttentionScratch,
        scratch: BlockScratch, layout: inout ParameterLayout
    ) {
        let name = "layers.\(index)"
        width = config.modelWidth
        self.scratch = scratch
        attentionNorm = LayerNorm(name: "\(name).attention_norm", width: width, layout: &layout)
        attention = RelativeAttention(
            name: "\(name).attention",
            config: .init(heads: config.heads, headSize: config.resolvedHeadSize),
            width: width, layerCount: config.layers, scratch: attentionScratch, layout: &layout)
        attentionDropout = Dropout(rate: config.dropout)
        feedForwardNorm = LayerNorm(name: "\(name).feedforward_norm", width: width, layout: &layout)
        feedForward = config.feedForward.makeLayer(
            name: "\(name).feedforward", modelWidth: width, layerCount: config.layers,
            dropout: config.dropout, layout: &layout)
        feedForwardDropout = Dropout(rate: config.dropout)
    }

    func initialize(_ arena: ParameterArena, rng: inout RandomGenerator) {
        attentionNorm.initialize(arena)
        attention.initialize(arena, rng: &rng)
        feedForwardNorm.initialize(arena)
        feedForward.initialize(arena, rng: &rng)
    }

    /// h: [B*T, d]; memory: [B, capacity, d] of which the first `memoryLength` rows per
    /// stream are used; output: [B*T, d].
    func forward(
        _ h: UnsafePointer<Float>, memory: UnsafePointer<Float>?, memoryStride: Int,
        memoryLength: Int, shape: TokenShape, output: UnsafeMutablePointer<Float>,
        arena: ParameterArena, context: inout ForwardContext
    ) {
        let (b, t, m, d) = (shape.batch, shape.length, memoryLength, width)
        let s = m + t
        // Buffers are sized for a full memory from the first step on (no growth later).
        let sMax = max(m, memoryStride) + t
        saved = (b, t, m)
        let keys = keyInput.reserve(b * sMax * d)
        for item in 0..<b {
            if m > 0, let memory {
                (keys + item * s * d).update(from: memory + item * memoryStride * d, count: m * d)
            }
            (keys + (item * s + m) * d).update(from: h + item * t * d, count: t * d)
        }
        let normalized = normalizedKeys.reserve(b * sMax * d)
        attentionNorm.reserve(rows: b * sMax)
        attentionNorm.forward(keys, rows: b * s, output: normalized, arena: arena)
        let h2 = middle.reserve(b * t * d)
        attention.forward(
            normalized, batch: b, queryLength: t, memoryLength: m, memoryCapacity: memoryStride,
            output: h2, arena: arena)
        attentionDropout.forward(h2, count: b * t * d, context: &context)
        addInPlace(h2, h, count: b * t * d)

        let normalizedH2 = normalizedMiddle.reserve(b * t * d)
        for buffer in [scratch.dFeedForwardOut, scratch.dNormalizedMiddle] { buffer.reserve(b * t * d) }
        for buffer in [scratch.dNormalizedKeys, scratch.dKeyInput] { buffer.reserve(b * sMax * d) }
        feedForwardNorm.forward(h2, rows: b * t, output: normalizedH2, arena: arena)
        feedForward.forward(normalizedH2, shape: shape, output: output, arena: arena, context: &context)
        feedForwardDropout.forward(output, count: b * t * d, context: &context)
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
        let dFeedForwardOut = scratch.dFeedForwardOut.reserve(n)
        dFeedForwardOut.update(from: dOutput, count: n)
        feedForwardDropout.backward(dFeedForwardOut, count: n)
        let dNormalizedMiddle = scratch.dNormalizedMiddle.reserve(n)
        dNormalizedMiddle.update(repeating: 0, count: n)
        feedForward.backward(
            normalizedMiddle.pointer, dOutput: dFeedForwardOut, shape: shape,
            dInput: dNormalizedMiddle, arena: arena)
        let dMiddle = dInput
        dMiddle.update(from: dOutput, count: n)
        feedForwardNorm.backward(
            middle.pointer, dOutput: dNormalizedMiddle, rows: b * t, dInput: dMiddle, arena: arena)

        // Attention sublayer: dh = dh2 + [LN1'(Attn'(Drop'(dh2)))] restricted to current rows.
        let dAttention = scratch.dFeedForwardOut.reserve(n)
        dAttention.update(from: dMiddle, count: n)
        attentionDropout.backward(dAttention, count: n)
        let dNormalizedKeys = scratch.dNormalizedKeys.reserve(b * s * d)
        dNormalizedKeys.update(repeating: 0, count: b * s * d)
        attention.backward(
            normalizedKeys.pointer, dOutput: dAttention, dInput: dNormalizedKeys, arena: arena)
        let dKeys = scratch.dKeyInput.reserve(b * s * d)
        dKeys.update(repeating: 0, count: b * s * d)
        attentionNorm.backward(
            keyInput.pointer, dOutput: dNormalizedKeys, rows: b * s, dInput: dKeys, arena: arena)
        // Memory rows are detached: only the current segment's rows flow back to h.
        for item in 0..<b {
            addInPlace(dInput + item * t * d, dKeys + (item * s + m) * d, count: t * d)
        }
    }

    /// Copies the last `keep` rows per stream of concat(memory, h) into `memory`.
    func saveMemory(into memory: UnsafeMutablePointer<Float>, memoryStride: Int, keep: Int) {
        let (b, t, m) = saved
        let s = m + t, d = width
        precondition(keep <= s && keep <= memoryStride)
        for item in 0..<b {
            (memory + item * memoryStride * d).update(
                from: keyInput.pointer + (item * s + s - keep) * d, count: keep * d)
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
