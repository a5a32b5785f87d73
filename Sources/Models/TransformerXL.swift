import Layers
import Tensor

// The Transformer-XL language model (Docs/model.md):
//   h0 = Drop(E[tokens]);  h_{l+1} = Block_l(h_l, memory_l);  z = Wout Drop(LN(h_L)) + bout
//   loss = mean cross-entropy(z, targets) + auxiliary losses of the FFN blocks (training).
// Memory (`TransformerXLMemory`): block l keeps its detached inputs h_l of earlier segments,
// up to a capacity of rows per stream; it is reset at epoch end and at the start of evaluation.
// Legend: B batch, T segment length, d width, V vocabulary.

/// A Transformer-XL LM whose parameters live in one arena.
public final class TransformerXL: SequenceModel {
    public let config: Config
    public let layout: ParameterLayout
    /// Allocated on first use, so a model built for the accountant costs no parameter memory.
    public private(set) lazy var arena = ParameterArena(layout: layout)
    public let embedding: Embedding
    public let blocks: [TransformerXLBlock]
    public let finalNorm: LayerNorm
    public let outputLayer: Linear
    let embeddingDropout: Dropout
    let outputDropout: Dropout
    let crossEntropy: SoftmaxCrossEntropy

    private var shape = TokenShape(batch: 0, length: 0)
    /// The evaluation memory's projections the last pass read and extended (nil after a
    /// training pass, whose weights are about to change).
    private var projectedMemory: MemoryProjections?
    private var scoredPositions = 0
    private let planner = PassPlanner()
    private let tokens = Buffer<Int32>()
    private let targets = Buffer<Int32>()
    private let hidden: [FloatBuffer]
    private let finalHidden = FloatBuffer()
    private let logitBuffer = FloatBuffer()
    private let dLogits = FloatBuffer()
    private let dFinal = FloatBuffer()
    private let dHidden = (FloatBuffer(), FloatBuffer())

    /// Builds the layers and the layout; parameters are zero until `initialize`.
    public init(config: Config) throws {
        try config.validate()
        self.config = config
        let root = ParameterScope()
        embedding = Embedding(root.child("embedding"), vocabularySize: config.vocabularySize, width: config.modelWidth)
        let attentionScratch = AttentionScratch(), blockScratch = BlockScratch()
        blocks = (0..<config.layers).map { index in
            TransformerXLBlock(
                root.child("layers.\(index)"), config: config, attentionScratch: attentionScratch,
                scratch: blockScratch)
        }
        finalNorm = LayerNorm(root.child("final_norm"), width: config.modelWidth)
        outputLayer = Linear(
            root.child("output"), inputWidth: config.modelWidth, outputWidth: config.vocabularySize,
            bias: true)
        layout = root.layout
        embeddingDropout = Dropout(rate: config.dropout)
        outputDropout = Dropout(rate: config.dropout)
        crossEntropy = SoftmaxCrossEntropy(vocabularySize: config.vocabularySize)
        hidden = (0...config.layers).map { _ in FloatBuffer() }
    }

    public var outputClasses: Int { config.vocabularySize }

    /// Number of parameters (the arena's size).
    public var parameterCount: Int { layout.count }

    /// Draws all initial parameters from `seed`: embedding Xavier-uniform, blocks by the
    /// official prenorm init, the output layer PyTorch's default U(+-1/sqrt(d)) for weight and
    /// bias (it is not re-initialised in the official code).
    public func initialize(seed: UInt64) {
        var context = InitializationContext(seed: seed, layerCount: config.layers)
        embedding.initialize(arena, &context)
        for block in blocks { block.initialize(arena, &context) }
        finalNorm.initialize(arena)
        let bound = 1 / Double(config.modelWidth).squareRoot()
        Initializer.uniform(
            arena.value(outputLayer.weight), count: outputLayer.weight.count, bound: bound,
            rng: &context.rng)
        Initializer.uniform(
            arena.value(outputLayer.bias!), count: config.vocabularySize, bound: bound,
            rng: &context.rng)
    }

    // MARK: Memory

    /// A memory sized for this model: `batch` streams of up to `capacity` rows per layer.
    public func makeMemory(batch: Int, capacity: Int) -> TransformerXLMemory {
        TransformerXLMemory(layers: blocks.count, width: config.modelWidth, batch: batch, capacity: capacity)
    }

    public func makeState(batch: Int, capacity: Int) -> (any CarriedState)? {
        makeMemory(batch: batch, capacity: capacity)
    }

    public func stateBytes(batch: Int, capacity: Int) -> Int {
        TransformerXLMemory.bytes(layers: blocks.count, batch: batch, capacity: capacity, width: config.modelWidth)
    }

    /// An evaluation memory also holds its rows' keys and values and the position keys.
    public func evaluationStateBytes(batch: Int, capacity: Int, segmentLength: Int) -> Int {
        guard capacity > 0 else { return stateBytes(batch: batch, capacity: capacity) }
        return stateBytes(batch: batch, capacity: capacity)
            + MemoryProjections.bytes(
                layers: blocks.count, batch: batch, capacity: capacity, segmentLength: segmentLength,
                keyValueWidth: keyValueWidth)
    }

    /// After a forward (and backward) pass: every layer's memory becomes the last
    /// `memory.capacity` rows of concat(memory, h_l).
    public func advance(_ state: any CarriedState) {
        let memory = state as! TransformerXLMemory
        guard memory.capacity > 0 else { return }
        let keep = min(memory.length + shape.length, memory.capacity)
        for (block, buffer) in zip(blocks, memory.buffers) {
            block.saveMemory(into: buffer.pointer, memoryStride: memory.capacity, keep: keep)
        }
        memory.length = keep
        if let projections = memory.projections, projections === projectedMemory {
            for (block, buffer) in zip(blocks, projections.keyValues) {
                block.attention.saveKeyValues(into: buffer.pointer, stride: projections.stride, keep: keep)
            }
            projections.length = keep
        } else {
            memory.projections?.invalidate()
        }
    }

    /// Width of a row of keys and values, 2HD.
    var keyValueWidth: Int { 2 * config.heads * config.resolvedHeadSize }

    /// The projections of an evaluation memory, allocated on its first evaluation pass.
    func projections(of memory: TransformerXLMemory, segmentLength: Int) -> MemoryProjections {
        if let projections = memory.projections, projections.segmentLength >= segmentLength { return projections }
        let projections = MemoryProjections(
            layers: blocks.count, batch: memory.batch, capacity: memory.capacity,
            segmentLength: segmentLength, keyValueWidth: keyValueWidth)
        memory.projections = projections
        return projections
    }

    // MARK: Buffers

    public func declareBuffers(for pass: PassShape, in plan: inout BufferPlan) {
        let rows = pass.rows, d = config.modelWidth, v = config.vocabularySize
        plan.declare(tokens, "input ids", count: rows)
        plan.declare(targets, "target ids", count: rows)
        for (l, buffer) in hidden.enumerated() { plan.declare(buffer, "hidden states \(l)", count: rows * d) }
        embeddingDropout.declareBuffers(count: rows * d, for: pass, in: &plan)
        for block in blocks { block.declareBuffers(for: pass, in: &plan) }
        finalNorm.declareBuffers(rows: rows, training: pass.training, in: &plan)
        plan.declare(finalHidden, "final hidden states", count: rows * d)
        outputDropout.declareBuffers(count: rows * d, for: pass, in: &plan)
        plan.declare(logitBuffer, "logits", count: rows * v)
        crossEntropy.declareBuffers(rows: rows, in: &plan)
        guard pass.training else { return }
        outputLayer.declareBuffers(rows: rows, training: true, in: &plan)
        plan.declare(dLogits, "logit gradient", count: rows * v)
        plan.declare(dFinal, "final hidden gradient", count: rows * d)
        plan.declare(dHidden.0, "hidden-state gradient", count: rows * d)
        plan.declare(dHidden.1, "hidden-state gradient (second)", count: rows * d)
    }

    // MARK: Forward and backward

    /// Runs the model on the batch (attending to `state`, a `TransformerXLMemory` that it does
    /// not change: call `advance` after the step).
    public func forward(
        _ batch: TokenBatch, state: (any CarriedState)?, context: inout ForwardContext
    ) -> ForwardLoss {
        let memory = state.map { $0 as! TransformerXLMemory }
        let shape = batch.shape
        precondition(
            memory == nil || shape.batch == memory!.batch,
            "batch \(shape.batch) differs from the memory's batch \(memory!.batch)")
        let pass = PassShape(tokens: shape, memoryCapacity: memory?.capacity ?? 0, context: context)
        planner.prepare(pass) { declareBuffers(for: pass, in: &$0) }
        let memoryLength = memory?.length ?? 0
        self.shape = shape
        let rows = shape.rows, d = config.modelWidth, v = config.vocabularySize
        let tokenCopy = tokens.reserved(rows), targetCopy = targets.reserved(rows)
        tokenCopy.update(from: batch.inputs, count: rows)
        targetCopy.update(from: batch.targets, count: rows)

        let h0 = hidden[0].reserved(rows * d)
        embedding.forward(tokenCopy, rows: rows, output: h0, arena: arena)
        embeddingDropout.forward(h0, count: rows * d, streams: shape.batch, context: &context)
        // Evaluation reads the memory rows' keys and values and the position keys from the
        // memory's projections, where they are valid (the same numbers as computing them again).
        projectedMemory = nil
        if !context.training, let memory, memory.capacity > 0 {
            projectedMemory = projections(of: memory, segmentLength: shape.length)
        }
        for (l, block) in blocks.enumerated() {
            let memoryRows = memoryLength > 0 ? UnsafePointer(memory!.buffers[l].pointer) : nil
            let reuse = projectedMemory.map { projections in
                RelativeAttention.Reuse(
                    keyValues: projections.length == memoryLength ? projections.keyValues[l].pointer : nil,
                    stride: projections.stride, positionKeys: projections.positionKeys[l].pointer,
                    positionRows: projections.positionRows)
            }
            block.forward(
                hidden[l].pointer, memory: memoryRows, memoryStride: memory?.capacity ?? 0,
                memoryLength: memoryLength, shape: shape, reuse: reuse,
                output: hidden[l + 1].reserved(rows * d), arena: arena, context: &context)
        }
        if let projections = projectedMemory, projections.positionRows < memoryLength + shape.length {
            // Every attention layer filled capacity + T rows of its position keys.
            projections.positionRows = memory!.capacity + shape.length
        }
        let f = finalHidden.reserved(rows * d)
        finalNorm.forward(hidden[blocks.count].pointer, rows: rows, output: f, arena: arena)
        outputDropout.forward(f, count: rows * d, streams: shape.batch, context: &context)
        let z = logitBuffer.reserved(rows * v)
        outputLayer.forward(f, rows: rows, output: z, arena: arena)
        let (loss, scored) = crossEntropy.forward(logits: z, targets: targetCopy, rows: rows)
        // The mean over the whole batch: in a data-parallel job, over every rank's positions.
        scoredPositions = context.scoredPositionsOverall ?? scored
        var auxiliary = 0.0
        if context.training {
            for block in blocks { auxiliary += block.feedForward.auxiliaryLoss }
        }
        return ForwardLoss(crossEntropySum: loss, scoredPositions: scored, auxiliaryLoss: auxiliary)
    }

    public var logits: UnsafePointer<Float> { UnsafePointer(logitBuffer.pointer) }

    public var positionLosses: UnsafePointer<Double> { crossEntropy.lastRowLosses }

    /// Accumulates the gradient of `mean cross-entropy + auxiliary losses` of the last
    /// forward pass into `arena.gradients` (zero them first).
    public func backward() {
        let rows = shape.rows, d = config.modelWidth, v = config.vocabularySize
        let dz = dLogits.reserved(rows * v)
        crossEntropy.backward(
            logits: logitBuffer.pointer, targets: targets.pointer, rows: rows,
            lossScale: 1 / Float(max(1, scoredPositions)), dLogits: dz)
        let df = dFinal.reserved(rows * d)
        outputLayer.backward(
            finalHidden.pointer, dOutput: dz, rows: rows, dInput: df, accumulateInput: false,
            arena: arena)
        outputDropout.backward(df, count: rows * d)
        var dCurrent = dHidden.0.reserved(rows * d), dNext = dHidden.1.reserved(rows * d)
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

    // MARK: Diagnostics and state

    public var usage: [UsageCounts] { blocks.compactMap { $0.feedForward.usage } }

    public func resetUsage() { for block in blocks { block.feedForward.resetUsage() } }

    public var persistentState: [String: [Float]] {
        blocks.reduce(into: [:]) { all, block in all.merge(block.feedForward.state) { a, _ in a } }
    }

    public func loadPersistentState(_ tensors: (String) throws -> [Float]?) throws {
        for block in blocks {
            let names = block.feedForward.state.keys
            guard !names.isEmpty else { continue }
            var state: [String: [Float]] = [:]
            for name in names { state[name] = try tensors(name) }
            try block.feedForward.loadState(state)
        }
    }

    // MARK: Accounting

    public var parameterComponents: [ParameterComponent] {
        let layers = config.layers
        func inLayers(_ part: String) -> (String) -> Bool {
            { name in name.hasPrefix("layers.") && name.split(separator: ".").dropFirst(2).first.map(String.init) == part }
        }
        let attention = layout.count(where: inLayers("attention"))
        let feedForward = layout.count(where: inLayers("feedforward"))
        let norms = layout.count(where: inLayers("attention_norm")) + layout.count(where: inLayers("feedforward_norm"))
            + layout.count { $0.hasPrefix("final_norm.") }
        return [
            ParameterComponent(name: "embedding", count: layout.count { $0.hasPrefix("embedding.") }),
            ParameterComponent(name: "attention", count: attention, perLayer: attention / layers),
            ParameterComponent(name: "layer norms", count: norms),
            ParameterComponent(name: "feedforward", count: feedForward, perLayer: feedForward / layers),
            ParameterComponent(name: "output", count: layout.count { $0.hasPrefix("output.") }),
        ]
    }

    public var activeParametersPerToken: Int {
        let d = config.modelWidth, block = config.feedForward.variant
        return layout.count - config.layers * (block.parameterCount(modelWidth: d) - block.activeParameters(modelWidth: d))
    }

    public var feedForwardShareUsed: Double? { config.feedForward.variant.shareUsed(modelWidth: config.modelWidth) }

    public func forwardFLOPs(_ pass: PassShape) -> [FLOPComponent] {
        let layers = Double(config.layers)
        // Evaluation with memory reuses projections (see `TransformerXLMemory`).
        let attention = blocks[0].attention.forwardFLOPs(
            batch: pass.batch, length: pass.length, keyLength: pass.keyLength,
            reusesProjections: !pass.training && pass.memoryCapacity > 0)
        let block = config.feedForward.variant.forwardFLOPs(modelWidth: config.modelWidth)
        return [
            FLOPComponent(name: "attention", perToken: layers * attention, perLayer: attention),
            FLOPComponent(
                name: "feedforward", perToken: layers * block.total, routing: layers * block.routing,
                perLayer: block.total),
            FLOPComponent(name: "output", perToken: 2.0 * Double(config.modelWidth * config.vocabularySize)),
        ]
    }
}
