import Layers
import Tensor

// The recurrent baselines of the formal-language experiments (Docs/formal-languages.md):
//   e = E[x]                     E: [V_in, E_emb], N(0, 1)
//   o = LSTM(e)  (L layers)      Layers/LSTM.swift, or
//   o = eLSTM(e) (one layer)     Layers/QuasiLSTM.swift
//   logits = W_out Drop(o) + b_out
// Legend: B sequences, T positions, E_emb embedding width, D state width.

/// The recurrent layer of a `RecurrentNetwork`: LSTM or e-LSTM, over [B, T, in] -> [B, T, D].
protocol RecurrentLayer: AnyObject {
    func initialize(_ arena: ParameterArena, _ context: inout InitializationContext)
    func declareBuffers(for pass: PassShape, in plan: inout BufferPlan)
    func forward(_ x: UnsafePointer<Float>, shape: TokenShape, output y: UnsafeMutablePointer<Float>, arena: ParameterArena)
    /// Accumulates (+=) into dInput and the parameter gradients.
    func backward(
        _ x: UnsafePointer<Float>, dOutput dy: UnsafePointer<Float>, shape: TokenShape,
        dInput dx: UnsafeMutablePointer<Float>, arena: ParameterArena)
}

extension LSTM: RecurrentLayer {}
extension QuasiLSTM: RecurrentLayer {}

/// An LSTM or e-LSTM classifying every position.
public final class RecurrentNetwork: SequenceWiseModel {
    public let config: Config
    public let layout: ParameterLayout
    /// Allocated on first use, so a model built for the accountant costs no parameter memory.
    public private(set) lazy var arena = ParameterArena(layout: layout)
    let embedding: Embedding
    let recurrent: any RecurrentLayer
    let dropout: Dropout
    let head: ClassifierHead

    private let planner = PassPlanner()
    private var shape = TokenShape(batch: 0, length: 0)
    private let tokens = Buffer<Int32>()
    private let embedded = FloatBuffer()  // [R, E_emb]
    private let states = FloatBuffer()  // o, then Drop(o), [R, D]
    private let dStates = FloatBuffer()
    private let dEmbedded = FloatBuffer()

    public init(config: Config) throws {
        try config.validate()
        self.config = config
        let root = ParameterScope()
        embedding = Embedding(root.child("embedding"), vocabularySize: config.inputVocabularySize, width: config.embeddingSize)
        switch config.cell {
        case .lstm:
            recurrent = LSTM(root.child("lstm"), inputWidth: config.embeddingSize, width: config.modelWidth, layers: config.layers)
        case .elstm:
            recurrent = QuasiLSTM(root.child("elstm"), inputWidth: config.embeddingSize, width: config.modelWidth)
        }
        dropout = Dropout(rate: config.dropout)
        head = ClassifierHead(root.child("output"), width: config.modelWidth, classes: config.vocabularySize)
        layout = root.layout
    }

    public var outputClasses: Int { config.vocabularySize }

    /// The embedding N(0, 1), the recurrent layer's own initialisation, the output layer
    /// U(±1/sqrt(D)).
    public func initialize(seed: UInt64) {
        var context = InitializationContext(seed: seed, layerCount: config.layers)
        Initializer.normal(arena.value(embedding.table), count: embedding.table.count, std: 1, rng: &context.rng)
        recurrent.initialize(arena, &context)
        head.output.initializeUniform(arena, &context)
    }


    public func declareBuffers(for pass: PassShape, in plan: inout BufferPlan) {
        let rows = pass.rows
        plan.declare(tokens, "input ids", count: rows)
        plan.declare(embedded, "embeddings", count: rows * config.embeddingSize)
        recurrent.declareBuffers(for: pass, in: &plan)
        plan.declare(states, "recurrent outputs", count: rows * config.modelWidth)
        dropout.declareBuffers(count: rows * config.modelWidth, for: pass, in: &plan)
        head.declareBuffers(rows: rows, training: pass.training, in: &plan)
        guard pass.training else { return }
        plan.declare(dStates, "recurrent output gradient", count: rows * config.modelWidth)
        plan.declare(dEmbedded, "embedding gradient", count: rows * config.embeddingSize)
    }

    public func forward(
        _ batch: TokenBatch, state: (any CarriedState)?, context: inout ForwardContext
    ) -> ForwardLoss {
        let shape = batch.shape, pass = PassShape(tokens: shape, context: context)
        planner.prepare(pass) { declareBuffers(for: pass, in: &$0) }
        self.shape = shape
        let rows = shape.rows
        let ids = tokens.reserved(rows)
        ids.update(from: batch.inputs, count: rows)
        let e = embedded.reserved(rows * config.embeddingSize)
        embedding.forward(ids, rows: rows, output: e, arena: arena)
        let o = states.reserved(rows * config.modelWidth)
        recurrent.forward(e, shape: shape, output: o, arena: arena)
        dropout.forward(o, count: rows * config.modelWidth, streams: shape.batch, context: &context)
        let (loss, scored) = head.forward(o, targets: batch.targets, rows: rows, arena: arena, scoredOverall: context.scoredPositionsOverall)
        return ForwardLoss(crossEntropySum: loss, scoredPositions: scored, auxiliaryLoss: 0)
    }

    public var logits: UnsafePointer<Float> { head.logits }
    public var positionLosses: UnsafePointer<Double> { head.crossEntropy.lastRowLosses }

    public func backward() {
        let rows = shape.rows
        let dOut = dStates.reserved(rows * config.modelWidth)
        head.backward(states.pointer, dInput: dOut, arena: arena)
        dropout.backward(dOut, count: rows * config.modelWidth)
        let de = dEmbedded.reserved(rows * config.embeddingSize)
        de.update(repeating: 0, count: rows * config.embeddingSize)
        recurrent.backward(embedded.pointer, dOutput: dOut, shape: shape, dInput: de, arena: arena)
        embedding.backward(tokens.pointer, dOutput: de, rows: rows, arena: arena)
    }


    public var parameterComponents: [ParameterComponent] {
        let cell = layout.count { !$0.hasPrefix("embedding.") && !$0.hasPrefix("output.") }
        return [
            ParameterComponent(name: "embedding", count: layout.count { $0.hasPrefix("embedding.") }),
            ParameterComponent(name: config.cell.rawValue, count: cell, perLayer: cell / config.layers),
            ParameterComponent(name: "output", count: layout.count { $0.hasPrefix("output.") }),
        ]
    }

    public var activeParametersPerToken: Int { layout.count }
    public var feedForwardShareUsed: Double? { nil }

    public func forwardFLOPs(_ pass: PassShape) -> [FLOPComponent] {
        let (e, d) = (Double(config.embeddingSize), Double(config.modelWidth))
        let cell: Double = switch config.cell {
        // Four gates over the input and the previous state, per layer.
        case .lstm: 2 * 4 * d * (e + d) + Double(config.layers - 1) * 2 * 4 * d * (d + d)
        // z and f over the input, the output gate over [input; cell].
        case .elstm: 2 * 2 * d * e + 2 * d * (e + d)
        }
        return [
            FLOPComponent(name: config.cell.rawValue, perToken: cell),
            FLOPComponent(name: "output", perToken: 2 * d * Double(config.vocabularySize)),
        ]
    }
}
