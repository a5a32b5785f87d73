import Layers
import Tensor

// The frame the per-position classifiers of the formal-language experiments share:
//   h_0 = E[x];  h_{l+1} = Layer_l(h_l);  logits = W_out N(h_L) + b_out
// with N the final LayerNorm (softmax Transformer) or nothing (fast-weight stack).
// Legend: R = B*T rows, D width.

/// One layer of a `ResidualStack`: [R, D] rows in, [R, D] rows out.
protocol StackLayer: AnyObject {
    func declareBuffers(for pass: PassShape, in plan: inout BufferPlan)
    func forward(
        _ h: UnsafePointer<Float>, shape: TokenShape, output: UnsafeMutablePointer<Float>,
        arena: ParameterArena, context: inout ForwardContext)
    /// dOutput: dL/d(layer output) (read only); dInput: dL/dh (overwritten).
    func backward(
        _ h: UnsafePointer<Float>, dOutput: UnsafePointer<Float>, dInput: UnsafeMutablePointer<Float>,
        arena: ParameterArena)
}

/// The embedding, the layers, an optional final LayerNorm and the classifier head, with the
/// hidden states between them: forward, backward and the buffers of a pass.
final class ResidualStack {
    let embedding: Embedding
    let layers: [any StackLayer]
    let finalNorm: LayerNorm?
    let head: ClassifierHead
    let width: Int

    private let planner = PassPlanner()
    private var shape = TokenShape(batch: 0, length: 0)
    private let tokens = Buffer<Int32>()
    private let hidden: [FloatBuffer]
    private let normalized = FloatBuffer()
    private let dHidden = (FloatBuffer(), FloatBuffer())

    init(embedding: Embedding, layers: [any StackLayer], finalNorm: LayerNorm?, head: ClassifierHead, width: Int) {
        self.embedding = embedding
        self.layers = layers
        self.finalNorm = finalNorm
        self.head = head
        self.width = width
        hidden = (0...layers.count).map { _ in FloatBuffer() }
    }

    func declareBuffers(for pass: PassShape, in plan: inout BufferPlan) {
        let rows = pass.rows, n = rows * width
        plan.declare(tokens, "input ids", count: rows)
        for (l, buffer) in hidden.enumerated() { plan.declare(buffer, "hidden states \(l)", count: n) }
        for layer in layers { layer.declareBuffers(for: pass, in: &plan) }
        if let finalNorm {
            finalNorm.declareBuffers(rows: rows, training: pass.training, in: &plan)
            plan.declare(normalized, "final LN", count: n)
        }
        head.declareBuffers(rows: rows, training: pass.training, in: &plan)
        guard pass.training else { return }
        plan.declare(dHidden.0, "hidden-state gradient", count: n)
        plan.declare(dHidden.1, "hidden-state gradient (second)", count: n)
    }

    func forward(_ batch: TokenBatch, arena: ParameterArena, context: inout ForwardContext) -> ForwardLoss {
        let shape = batch.shape, pass = PassShape(tokens: shape, context: context)
        planner.prepare(pass) { declareBuffers(for: pass, in: &$0) }
        self.shape = shape
        let rows = shape.rows, n = rows * width
        let ids = tokens.reserved(rows)
        ids.update(from: batch.inputs, count: rows)
        embedding.forward(ids, rows: rows, output: hidden[0].reserved(n), arena: arena)
        for (l, layer) in layers.enumerated() {
            layer.forward(hidden[l].pointer, shape: shape, output: hidden[l + 1].reserved(n), arena: arena, context: &context)
        }
        var top = UnsafePointer(hidden[layers.count].pointer)
        if let finalNorm {
            let z = normalized.reserved(n)
            finalNorm.forward(top, rows: rows, output: z, arena: arena)
            top = UnsafePointer(z)
        }
        let (loss, scored) = head.forward(top, targets: batch.targets, rows: rows, arena: arena, scoredOverall: context.scoredPositionsOverall)
        return ForwardLoss(crossEntropySum: loss, scoredPositions: scored, auxiliaryLoss: 0)
    }

    var logits: UnsafePointer<Float> { head.logits }
    var positionLosses: UnsafePointer<Double> { head.crossEntropy.lastRowLosses }

    func backward(arena: ParameterArena) {
        let rows = shape.rows, n = rows * width
        var dCurrent = dHidden.0.reserved(n), dNext = dHidden.1.reserved(n)
        let top = hidden[layers.count].pointer
        if let finalNorm {
            head.backward(normalized.pointer, dInput: dNext, arena: arena)
            dCurrent.update(repeating: 0, count: n)
            finalNorm.backward(top, dOutput: dNext, rows: rows, dInput: dCurrent, arena: arena)
        } else {
            head.backward(top, dInput: dCurrent, arena: arena)
        }
        for (l, layer) in layers.enumerated().reversed() {
            layer.backward(hidden[l].pointer, dOutput: dCurrent, dInput: dNext, arena: arena)
            swap(&dCurrent, &dNext)
        }
        embedding.backward(tokens.pointer, dOutput: dCurrent, rows: rows, arena: arena)
    }
}
