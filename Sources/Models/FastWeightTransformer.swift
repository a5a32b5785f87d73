import Layers
import Tensor

// The fast-weight programmer stack of the formal-language experiments (Docs/formal-languages.md):
//   h_0 = E[x]                                   E: [V_in, D], N(0, 1), no scaling, no dropout
//   per layer: h = Mixer(h)                      FastWeightMixer.swift, SelfReferentialMixer.swift
//              h = h + Drop(W2 Drop(ReLU(W1 LN(h) + b1)) + b2)     W1 [F, D], W2 [D, F]
//   logits = W_out h + b_out                     no final LayerNorm
// Every state restarts with each sequence, so nothing is carried between batches.
// Legend: B sequences, T positions, D width, F = ff_factor * D, V_in / V_out vocabularies
// (pad included).

/// A linear Transformer, DeltaNet, Recurrent DeltaNet or self-referential weight matrix model.
public final class FastWeightTransformer: SequenceWiseModel {
    public let config: Config
    public let layout: ParameterLayout
    /// Allocated on first use, so a model built for the accountant costs no parameter memory.
    public private(set) lazy var arena = ParameterArena(layout: layout)
    let blocks: [FastWeightBlock]
    let stack: ResidualStack

    public init(config: Config) throws {
        try config.validate()
        self.config = config
        let root = ParameterScope()
        let embedding = Embedding(root.child("embedding"), vocabularySize: config.inputVocabularySize, width: config.modelWidth)
        blocks = (0..<config.layers).map { FastWeightBlock(root.child("layers.\($0)"), config: config) }
        let head = ClassifierHead(root.child("output"), width: config.modelWidth, classes: config.vocabularySize)
        stack = ResidualStack(embedding: embedding, layers: blocks, finalNorm: nil, head: head, width: config.modelWidth)
        layout = root.layout
    }

    public var outputClasses: Int { config.vocabularySize }

    /// The embedding N(0, 1) (its pad row too), every block's own initialisation, the output
    /// layer U(±1/sqrt(D)).
    public func initialize(seed: UInt64) {
        var context = InitializationContext(seed: seed, layerCount: config.layers)
        let table = stack.embedding.table
        Initializer.normal(arena.value(table), count: table.count, std: 1, rng: &context.rng)
        for block in blocks { block.initialize(arena, &context) }
        stack.head.output.initializeUniform(arena, &context)
    }


    // MARK: Buffers

    public func declareBuffers(for pass: PassShape, in plan: inout BufferPlan) { stack.declareBuffers(for: pass, in: &plan) }

    // MARK: Forward and backward

    public func forward(
        _ batch: TokenBatch, state: (any CarriedState)?, context: inout ForwardContext
    ) -> ForwardLoss {
        stack.forward(batch, arena: arena, context: &context)
    }

    public var logits: UnsafePointer<Float> { stack.logits }
    public var positionLosses: UnsafePointer<Double> { stack.positionLosses }
    public func backward() { stack.backward(arena: arena) }

    // MARK: Accounting

    public var parameterComponents: [ParameterComponent] {
        let layers = config.layers
        func inLayers(_ part: String) -> Int {
            layout.count { $0.hasPrefix("layers.") && $0.split(separator: ".").dropFirst(2).first.map(String.init) == part }
        }
        let mixer = inLayers("mixer"), feedForward = inLayers("feedforward") + inLayers("feedforward_norm")
        return [
            ParameterComponent(name: "embedding", count: layout.count { $0.hasPrefix("embedding.") }),
            ParameterComponent(name: "mixer (\(config.mixer.rawValue))", count: mixer, perLayer: mixer / layers),
            ParameterComponent(name: "feedforward", count: feedForward, perLayer: feedForward / layers),
            ParameterComponent(name: "output", count: layout.count { $0.hasPrefix("output.") }),
        ]
    }

    public var activeParametersPerToken: Int { layout.count }
    public var feedForwardShareUsed: Double? { nil }

    public func forwardFLOPs(_ pass: PassShape) -> [FLOPComponent] {
        let layers = Double(config.layers), d = Double(config.modelWidth)
        let mixer = blocks[0].mixerFLOPsPerToken
        let feedForward = 4 * d * Double(config.feedForwardWidth)
        return [
            FLOPComponent(name: "mixer (\(config.mixer.rawValue))", perToken: layers * mixer, perLayer: mixer),
            FLOPComponent(name: "feedforward", perToken: layers * feedForward, perLayer: feedForward),
            FLOPComponent(name: "output", perToken: 2 * d * Double(config.vocabularySize)),
        ]
    }
}

/// One layer of the fast-weight stack: the mixer sublayer, then the feedforward sublayer.
final class FastWeightBlock: StackLayer {
    let mixer: any MixerSublayer
    let feedForwardNorm: LayerNorm
    let feedForward: DenseFeedForward
    let feedForwardDropout: Dropout
    let width: Int
    /// Matrix FLOPs per token of the mixer.
    let mixerFLOPsPerToken: Double

    private var shape = TokenShape(batch: 0, length: 0)
    private let middle = FloatBuffer()  // after the mixer, [B*T, D]
    private let normalizedMiddle = FloatBuffer()
    private let dFeedForward = FloatBuffer()
    private let dNormalized = FloatBuffer()
    private let dMiddle = FloatBuffer()

    /// Registers `mixer` and `feedforward_norm`, `feedforward` under `scope` (`layers.L`).
    init(_ scope: ParameterScope, config: FastWeightTransformer.Config) {
        let (d, h) = (config.modelWidth, config.heads)
        width = d
        let headSize = d / h
        let mixerScope = scope.child("mixer")
        switch config.mixer {
        case .linearTransformer:
            mixer = ProjectedFastWeightMixer(mixerScope, width: d, core: { LinearTransformerCore($0, heads: h, headSize: headSize) }, dropout: config.dropout)
        case .deltaNet:
            mixer = ProjectedFastWeightMixer(mixerScope, width: d, core: { DeltaNetCore($0, heads: h, headSize: headSize) }, dropout: config.dropout)
        case .recurrentDeltaNet:
            mixer = ProjectedFastWeightMixer(mixerScope, width: d, core: { RecurrentDeltaNetCore($0, heads: h, headSize: headSize) }, dropout: config.dropout)
        case .selfReferential:
            mixer = SelfReferentialMixer(mixerScope, width: d, heads: h, dropout: config.dropout)
        }
        mixerFLOPsPerToken = config.mixerFLOPsPerToken
        feedForwardNorm = LayerNorm(scope.child("feedforward_norm"), width: d)
        feedForward = DenseFeedForward(scope.child("feedforward"), hiddenSize: config.feedForwardWidth, width: d, dropout: config.dropout)
        feedForwardDropout = Dropout(rate: config.dropout)
    }

    func initialize(_ arena: ParameterArena, _ context: inout InitializationContext) {
        mixer.initialize(arena, &context)
        feedForwardNorm.initialize(arena)
        feedForward.initializeUniform(arena, &context)
    }

    func declareBuffers(for pass: PassShape, in plan: inout BufferPlan) {
        let n = pass.rows * width
        mixer.declareBuffers(for: pass, in: &plan)
        plan.declare(middle, "block after mixer", count: n)
        plan.declare(normalizedMiddle, "block LN before feedforward", count: n)
        feedForwardNorm.declareBuffers(rows: pass.rows, training: pass.training, in: &plan)
        feedForward.declareBuffers(for: pass, in: &plan)
        feedForwardDropout.declareBuffers(count: n, for: pass, in: &plan)
        guard pass.training else { return }
        plan.declare(dFeedForward, "block feedforward gradient", count: n)
        plan.declare(dNormalized, "block LN gradient", count: n)
        plan.declare(dMiddle, "block after-mixer gradient", count: n)
    }

    func forward(
        _ h: UnsafePointer<Float>, shape: TokenShape, output: UnsafeMutablePointer<Float>,
        arena: ParameterArena, context: inout ForwardContext
    ) {
        self.shape = shape
        let n = shape.rows * width
        let m = middle.reserved(n)
        mixer.forward(h, shape: shape, output: m, arena: arena, context: &context)
        let normalized = normalizedMiddle.reserved(n)
        feedForwardNorm.forward(m, rows: shape.rows, output: normalized, arena: arena)
        feedForward.forward(normalized, shape: shape, output: output, arena: arena, context: &context)
        feedForwardDropout.forward(output, count: n, streams: shape.batch, context: &context)
        addInPlace(output, m, count: n)
    }

    /// dOutput: dL/d(block output) (read only); dInput: dL/dh (overwritten).
    func backward(
        _ h: UnsafePointer<Float>, dOutput: UnsafePointer<Float>, dInput: UnsafeMutablePointer<Float>,
        arena: ParameterArena
    ) {
        let rows = shape.rows, n = rows * width
        let dff = dFeedForward.reserved(n)
        dff.update(from: dOutput, count: n)
        feedForwardDropout.backward(dff, count: n)
        let dz = dNormalized.reserved(n)
        dz.update(repeating: 0, count: n)
        feedForward.backward(normalizedMiddle.pointer, dOutput: dff, shape: shape, dInput: dz, arena: arena)
        let dm = dMiddle.reserved(n)
        dm.update(from: dOutput, count: n)
        feedForwardNorm.backward(middle.pointer, dOutput: dz, rows: rows, dInput: dm, arena: arena)
        mixer.backward(h, dOutput: dm, dInput: dInput, arena: arena)
    }
}
