import Layers
import Tensor

// The Transformer-XL language model (DESIGN.md):
//   h0 = Drop(E[tokens]);  h_{l+1} = Block_l(h_l, memory_l);  z = Wout Drop(LN(h_L)) + bout
//   loss = mean cross-entropy(z, targets) + auxiliary losses of the FFN blocks (training).
// Memory (`ModelMemory`): block l keeps its detached inputs h_l of earlier segments, up to a
// capacity of rows per stream; it is reset at epoch end and at the start of evaluation.
// Legend: B batch, T segment length, d width, V vocabulary.

/// A Transformer-XL LM whose parameters live in one arena.
public final class TransformerXL {
    public let config: ModelConfig
    public let layout: ParameterLayout
    public let arena: ParameterArena
    public let embedding: Embedding
    public let blocks: [TransformerXLBlock]
    public let finalNorm: LayerNorm
    public let outputLayer: Linear
    let embeddingDropout: Dropout
    let outputDropout: Dropout
    let crossEntropy: SoftmaxCrossEntropy

    private var shape = TokenShape(batch: 0, length: 0)
    private let tokens = Buffer<Int32>()
    private let targets = Buffer<Int32>()
    private var hidden: [FloatBuffer] = []
    private let finalHidden = FloatBuffer()
    private let logitBuffer = FloatBuffer()
    private let dLogits = FloatBuffer()
    private let dFinal = FloatBuffer()
    private let dHidden = (FloatBuffer(), FloatBuffer())

    /// Builds the layers and an arena of zeros; call `initialize` to draw the initial values.
    public convenience init(config: ModelConfig) throws {
        try config.validate()
        var layout = ParameterLayout()
        let parts = Self.buildLayers(config, layout: &layout)
        self.init(config: config, layout: layout, parts: parts)
    }

    private init(config: ModelConfig, layout: ParameterLayout, parts: Parts) {
        self.config = config
        self.layout = layout
        embedding = parts.embedding
        blocks = parts.blocks
        finalNorm = parts.finalNorm
        outputLayer = parts.output
        arena = ParameterArena(layout: layout)
        embeddingDropout = Dropout(rate: config.dropout)
        outputDropout = Dropout(rate: config.dropout)
        crossEntropy = SoftmaxCrossEntropy(vocabularySize: config.vocabularySize)
        hidden = (0...config.layers).map { _ in FloatBuffer() }
    }

    private struct Parts {
        let embedding: Embedding
        let blocks: [TransformerXLBlock]
        let finalNorm: LayerNorm
        let output: Linear
    }

    private static func buildLayers(_ config: ModelConfig, layout: inout ParameterLayout) -> Parts {
        let embedding = Embedding(
            name: "embedding", vocabularySize: config.vocabularySize, width: config.modelWidth,
            layout: &layout)
        let attentionScratch = AttentionScratch(), blockScratch = BlockScratch()
        var blocks: [TransformerXLBlock] = []
        for index in 0..<config.layers {
            blocks.append(TransformerXLBlock(
                index: index, config: config, attentionScratch: attentionScratch,
                scratch: blockScratch, layout: &layout))
        }
        let finalNorm = LayerNorm(name: "final_norm", width: config.modelWidth, layout: &layout)
        let output = Linear(
            name: "output", inputWidth: config.modelWidth, outputWidth: config.vocabularySize,
            bias: true, layout: &layout)
        return Parts(embedding: embedding, blocks: blocks, finalNorm: finalNorm, output: output)
    }

    /// The parameter layout of `config` without allocating any parameter memory (the paper
    /// sizes have up to 263M parameters).
    public static func parameterLayout(for config: ModelConfig) throws -> ParameterLayout {
        try config.validate()
        var layout = ParameterLayout()
        _ = buildLayers(config, layout: &layout)
        return layout
    }

    /// Draws all initial parameters from `seed` (DESIGN.md "Init"): embedding Xavier-uniform,
    /// blocks by the official prenorm init, the output layer PyTorch's default
    /// U(+-1/sqrt(d)) for weight and bias (it is not re-initialised in the official code).
    public func initialize(seed: UInt64) {
        var rng = RandomGenerator(seed: seed)
        embedding.initialize(arena, rng: &rng)
        for block in blocks { block.initialize(arena, rng: &rng) }
        finalNorm.initialize(arena)
        let bound = 1 / Double(config.modelWidth).squareRoot()
        Initializer.uniform(
            arena.value(outputLayer.weight), count: outputLayer.weight.count, bound: bound,
            rng: &rng)
        Initializer.uniform(
            arena.value(outputLayer.bias!), count: config.vocabularySize, bound: bound, rng: &rng)
    }

    /// Number of parameters (the arena's size).
    public var parameterCount: Int { layout.count }

    /// A memory sized for this model: `batch` streams of up to `capacity` rows per layer.
    public func makeMemory(batch: Int, capacity: Int) -> ModelMemory {
        ModelMemory(layers: blocks.count, width: config.modelWidth, batch: batch, capacity: capacity)
    }

    /// After a forward (and backward) pass: every layer's memory becomes the last
    /// `memory.capacity` rows of concat(memory, h_l).
    public func advance(_ memory: ModelMemory) {
        guard memory.capacity > 0 else { return }
        let keep = min(memory.length + shape.length, memory.capacity)
        for (block, buffer) in zip(blocks, memory.buffers) {
            block.saveMemory(into: buffer.pointer, memoryStride: memory.capacity, keep: keep)
        }
        memory.length = keep
    }

    // MARK: Forward and backward

    /// Runs the model on `inputs` [B, T] (attending to `memory`, which it does not change:
    /// call `advance(memory)` after the step) and returns the summed cross-entropy against
    /// `targets` [B, T] (divide by B*T for the mean) and the auxiliary losses of the FFN
    /// blocks (training only).
    public func forward(
        inputs: UnsafePointer<Int32>, targets targetIDs: UnsafePointer<Int32>, shape: TokenShape,
        memory: ModelMemory?, context: inout ForwardContext
    ) -> (crossEntropySum: Double, auxiliaryLoss: Double) {
        let memoryLength = memory?.length ?? 0
        precondition(
            memory == nil || shape.batch == memory!.batch,
            "batch \(shape.batch) differs from the memory's batch \(memory!.batch)")
        self.shape = shape
        let rows = shape.rows, d = config.modelWidth, v = config.vocabularySize
        let tokenCopy = tokens.reserve(rows), targetCopy = targets.reserve(rows)
        tokenCopy.update(from: inputs, count: rows)
        targetCopy.update(from: targetIDs, count: rows)

        let h0 = hidden[0].reserve(rows * d)
        embedding.forward(tokenCopy, rows: rows, output: h0, arena: arena)
        embeddingDropout.forward(h0, count: rows * d, context: &context)
        for (l, block) in blocks.enumerated() {
            let memoryRows = memoryLength > 0 ? UnsafePointer(memory!.buffers[l].pointer) : nil
            block.forward(
                hidden[l].pointer, memory: memoryRows, memoryStride: memory?.capacity ?? 0,
                memoryLength: memoryLength, shape: shape, output: hidden[l + 1].reserve(rows * d),
                arena: arena, context: &context)
        }
        let f = finalHidden.reserve(rows * d)
        finalNorm.forward(hidden[blocks.count].pointer, rows: rows, output: f, arena: arena)
        outputDropout.forward(f, count: rows * d, context: &context)
        let z = logitBuffer.reserve(rows * v)
        outputLayer.forward(f, rows: rows, output: z, arena: arena)
        let loss = crossEntropy.forward(logits: z, targets: targetCopy, rows: rows)
        var auxiliary = 0.0
        if context.training {
            for block in blocks { auxiliary += block.feedForward.auxiliaryLoss }
        }
        return (loss, auxiliary)
    }

    /// Logits of the last forward pass, [B*T, V].
    public var logits: UnsafePointer<Float> { UnsafePointer(logitBuffer.pointer) }

    /// Per-token cross-entropy of the last forward pass, [B*T].
    public var tokenLosses: UnsafePointer<Double> { crossEntropy.lastRowLosses }

    /// Accumulates the gradient of `mean cross-entropy + auxiliary losses` of the last
    /// forward pass into `arena.gradients` (zero them first).
    public func backward() {
        let rows = shape.rows, d = config.modelWidth, v = config.vocabularySize
        let dz = dLogits.reserve(rows * v)
        crossEntropy.backward(
            logits: logitBuffer.pointer, targets: targets.pointer, rows: rows,
            lossScale: 1 / Float(rows), dLogits: dz)
        let df = dFinal.reserve(rows * d)
        outputLayer.backward(
            finalHidden.pointer, dOutput: dz, rows: rows, dInput: df, accumulateInput: false,
            arena: arena)
        outputDropout.backward(df, count: rows * d)
        var dCurrent = dHidden.0.reserve(rows * d), dNext = dHidden.1.reserve(rows * d)
        dCurrent.update(repeating: 0, count: rows * d)
        finalNorm.backward(
            hidden[blocks.count].pointer, dOutput: df, rows: rows, dInput: dCurrent, arena: arena)
        for block in blocks.reversed() {
            block.backward(dOutput: dCurrent, dInput: dNext, arena: arena)
            swap(&dCurrent, &dNext)
        }
        embeddingDropout.backward(dCurrent, count: rows * d)
        embedding.backward(tokens.pointer, dOutput: dCurrent, rows: rows, arena: arena)
    }
}

/// The Transformer-XL memory of one model: per layer, the detached inputs of the last
/// `length` positions of every stream, `[batch, capacity, d]` with `length <= capacity`.
/// Training and evaluation each keep their own, so validation never disturbs training.
public final class ModelMemory {
    public let batch: Int
    public let capacity: Int
    public let width: Int
    /// Rows filled per stream (0 after a reset).
    public internal(set) var length = 0
    let buffers: [FloatBuffer]

    init(layers: Int, width: Int, batch: Int, capacity: Int) {
        self.batch = batch
        self.capacity = capacity
        self.width = width
        buffers = (0..<layers).map { _ in FloatBuffer(count: max(1, batch * capacity * width)) }
    }

    public var layers: Int { buffers.count }

    /// Empties the memory (epoch end, start of evaluation).
    public func reset() { length = 0 }

    /// Layer `layer` packed as [batch, length, d] into `destination`.
    public func copy(layer: Int, into destination: UnsafeMutablePointer<Float>) {
        for item in 0..<batch {
            (destination + item * length * width).update(
                from: buffers[layer].pointer + item * capacity * width, count: length * width)
        }
    }

    /// Sets `length` and fills layer `layer` from packed [batch, length, d] values.
    public func restore(layer: Int, length: Int, from source: UnsafePointer<Float>) {
        precondition(length <= capacity)
        self.length = length
        for item in 0..<batch {
            (buffers[layer].pointer + item * capacity * width).update(
                from: source + item * length * width, count: length * width)
        }
    }
}
