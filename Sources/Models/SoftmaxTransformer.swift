import Layers
import Tensor

// The softmax Transformer baseline of the formal-language experiments (PyTorch's
// TransformerEncoderLayer, post-LN, Docs/formal-languages.md):
//   h_0 = E[x]                                          E: [V_in, D], N(0, 1), no positions
//   per layer: h = LN1(h + Drop(SelfAttention(h)))       causal, Layers/CausalSelfAttention.swift
//              h = LN2(h + Drop(W2 Drop(ReLU(W1 h + b1)) + b2))
//   logits = W_out LN_f(h_L) + b_out
// All layers start as exact copies of one initialised layer (PyTorch's TransformerEncoder
// deep-copies it). Legend: B sequences, T positions, D width, V_in / V_out vocabularies.

/// A causal softmax-attention Transformer without positional encoding.
public final class SoftmaxTransformer: SequenceWiseModel {
    public let config: Config
    public let layout: ParameterLayout
    /// Allocated on first use, so a model built for the accountant costs no parameter memory.
    public private(set) lazy var arena = ParameterArena(layout: layout)
    let layers: [PostNormLayer]
    let stack: ResidualStack

    public init(config: Config) throws {
        try config.validate()
        self.config = config
        let root = ParameterScope()
        let embedding = Embedding(root.child("embedding"), vocabularySize: config.inputVocabularySize, width: config.modelWidth)
        layers = (0..<config.layers).map { PostNormLayer(root.child("layers.\($0)"), config: config) }
        let finalNorm = LayerNorm(root.child("final_norm"), width: config.modelWidth)
        let head = ClassifierHead(root.child("output"), width: config.modelWidth, classes: config.vocabularySize)
        stack = ResidualStack(embedding: embedding, layers: layers, finalNorm: finalNorm, head: head, width: config.modelWidth)
        layout = root.layout
    }

    public var outputClasses: Int { config.vocabularySize }

    /// The embedding N(0, 1); layer 0 by PyTorch's initialisation, copied into every other
    /// layer; the final LN (1, 0); the output layer U(±1/sqrt(D)).
    public func initialize(seed: UInt64) {
        var context = InitializationContext(seed: seed, layerCount: config.layers)
        let table = stack.embedding.table
        Initializer.normal(arena.value(table), count: table.count, std: 1, rng: &context.rng)
        layers[0].initialize(arena, &context)
        let first = layout.views.filter { $0.name.hasPrefix("layers.0.") }
        for l in 1..<config.layers {
            for view in first {
                let copy = layout.view(named: "layers.\(l)." + view.name.dropFirst("layers.0.".count))!
                arena.value(copy).update(from: arena.value(view), count: view.count)
            }
        }
        stack.finalNorm?.initialize(arena)
        stack.head.output.initializeUniform(arena, &context)
    }


    public func declareBuffers(for pass: PassShape, in plan: inout BufferPlan) { stack.declareBuffers(for: pass, in: &plan) }

    public func forward(
        _ batch: TokenBatch, state: (any CarriedState)?, context: inout ForwardContext
    ) -> ForwardLoss {
        stack.forward(batch, arena: arena, context: &context)
    }

    public var logits: UnsafePointer<Float> { stack.logits }
    public var positionLosses: UnsafePointer<Double> { stack.positionLosses }
    public func backward() { stack.backward(arena: arena) }


    public var parameterComponents: [ParameterComponent] {
        let attention = layout.count { $0.contains(".attention.") }
        let feedForward = layout.count { $0.contains(".feedforward.") }
        let norms = layout.count { $0.contains("norm") }
        return [
            ParameterComponent(name: "embedding", count: layout.count { $0.hasPrefix("embedding.") }),
            ParameterComponent(name: "attention", count: attention, perLayer: attention / config.layers),
            ParameterComponent(name: "layer norms", count: norms),
            ParameterComponent(name: "feedforward", count: feedForward, perLayer: feedForward / config.layers),
            ParameterComponent(name: "output", count: layout.count { $0.hasPrefix("output.") }),
        ]
    }

    public var activeParametersPerToken: Int { layout.count }
    public var feedForwardShareUsed: Double? { nil }

    /// Per token: the in and out projections, and the scores and value reads over the
    /// (on average T / 2) visible positions of a segment of `pass.length`.
    public func forwardFLOPs(_ pass: PassShape) -> [FLOPComponent] {
        let layers = Double(config.layers), d = Double(config.modelWidth)
        let attention = 2 * 4 * d * d + 2 * 2 * d * Double(pass.length + 1) / 2
        let feedForward = 4 * d * Double(config.feedForwardWidth)
        return [
            FLOPComponent(name: "attention", perToken: layers * attention, perLayer: attention),
            FLOPComponent(name: "feedforward", perToken: layers * feedForward, perLayer: feedForward),
            FLOPComponent(name: "output", perToken: 2 * d * Double(config.vocabularySize)),
        ]
    }
}

/// One post-LN encoder layer: h = LN1(h + Drop(SA(h))), h = LN2(h + Drop(FF(h))).
final class PostNormLayer: StackLayer {
    let attention: CausalSelfAttention
    let attentionDropout: Dropout
    let norm1: LayerNorm
    let feedForward: DenseFeedForward
    let feedForwardDropout: Dropout
    let norm2: LayerNorm
    let width: Int

    private var shape = TokenShape(batch: 0, length: 0)
    private let attended = FloatBuffer()  // h + Drop(SA(h)), [R, D]
    private let middle = FloatBuffer()  // LN1 of it
    private let fed = FloatBuffer()  // middle + Drop(FF(middle))
    private let dFed = FloatBuffer()
    private let dBranch = FloatBuffer()
    private let dMiddle = FloatBuffer()

    /// Registers `attention`, `norm1`, `feedforward`, `norm2` under `scope` (`layers.L`).
    init(_ scope: ParameterScope, config: SoftmaxTransformer.Config) {
        width = config.modelWidth
        attention = CausalSelfAttention(scope.child("attention"), width: width, heads: config.heads)
        attentionDropout = Dropout(rate: config.dropout)
        norm1 = LayerNorm(scope.child("norm1"), width: width)
        feedForward = DenseFeedForward(scope.child("feedforward"), hiddenSize: config.feedForwardWidth, width: width, dropout: config.dropout)
        feedForwardDropout = Dropout(rate: config.dropout)
        norm2 = LayerNorm(scope.child("norm2"), width: width)
    }

    func initialize(_ arena: ParameterArena, _ context: inout InitializationContext) {
        attention.initialize(arena, &context)
        norm1.initialize(arena)
        feedForward.initializeUniform(arena, &context)
        norm2.initialize(arena)
    }

    func declareBuffers(for pass: PassShape, in plan: inout BufferPlan) {
        let rows = pass.rows, n = rows * width
        attention.declareBuffers(for: pass, in: &plan)
        attentionDropout.declareBuffers(count: n, for: pass, in: &plan)
        plan.declare(attended, "post-LN attention sum", count: n)
        plan.declare(middle, "post-LN middle", count: n)
        norm1.declareBuffers(rows: rows, training: pass.training, in: &plan)
        feedForward.declareBuffers(for: pass, in: &plan)
        feedForwardDropout.declareBuffers(count: n, for: pass, in: &plan)
        plan.declare(fed, "post-LN feedforward sum", count: n)
        norm2.declareBuffers(rows: rows, training: pass.training, in: &plan)
        guard pass.training else { return }
        plan.declare(dFed, "post-LN sum gradient", count: n)
        plan.declare(dBranch, "post-LN branch gradient", count: n)
        plan.declare(dMiddle, "post-LN middle gradient", count: n)
    }

    /// h: [R, D] -> output: [R, D].
    func forward(
        _ h: UnsafePointer<Float>, shape: TokenShape, output: UnsafeMutablePointer<Float>,
        arena: ParameterArena, context: inout ForwardContext
    ) {
        self.shape = shape
        let rows = shape.rows, n = rows * width
        let a = attended.reserved(n)
        attention.forward(h, shape: shape, output: a, arena: arena)
        attentionDropout.forward(a, count: n, streams: shape.batch, context: &context)
        addInPlace(a, h, count: n)
        let m = middle.reserved(n)
        norm1.forward(a, rows: rows, output: m, arena: arena)
        let f = fed.reserved(n)
        feedForward.forward(m, shape: shape, output: f, arena: arena, context: &context)
        feedForwardDropout.forward(f, count: n, streams: shape.batch, context: &context)
        addInPlace(f, m, count: n)
        norm2.forward(f, rows: rows, output: output, arena: arena)
    }

    /// dOutput: read only; dInput: dL/dh, overwritten.
    func backward(
        _ h: UnsafePointer<Float>, dOutput: UnsafePointer<Float>, dInput: UnsafeMutablePointer<Float>,
        arena: ParameterArena
    ) {
        let rows = shape.rows, n = rows * width
        // Through LN2: the gradient of the sum middle + Drop(FF(middle)).
        let df = dFed.reserved(n)
        df.update(repeating: 0, count: n)
        norm2.backward(fed.pointer, dOutput: dOutput, rows: rows, dInput: df, arena: arena)
        let dm = dMiddle.reserved(n)
        dm.update(from: df, count: n)
        let branch = dBranch.reserved(n)
        branch.update(from: df, count: n)
        feedForwardDropout.backward(branch, count: n)
        feedForward.backward(middle.pointer, dOutput: branch, shape: shape, dInput: dm, arena: arena)
        // Through LN1: the gradient of the sum h + Drop(SA(h)), reusing the first buffer.
        df.update(repeating: 0, count: n)
        norm1.backward(attended.pointer, dOutput: dm, rows: rows, dInput: df, arena: arena)
        dInput.update(from: df, count: n)
        branch.update(from: df, count: n)
        attentionDropout.backward(branch, count: n)
        attention.backward(h, dOutput: branch, shape: shape, dInput: dInput, arena: arena)
    }
}
