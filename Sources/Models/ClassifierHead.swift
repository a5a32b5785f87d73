import Layers
import Tensor

// The output end every sequence model shares. Legend: R = B*T rows, D width, V classes.
//   z = h W_out^T + b_out                                     [R, V]
//   loss = sum over scored rows of (logsumexp(z_r) - z_r[target_r])   (negative targets skipped)
//   backward: dz = (softmax(z) - onehot) / scored rows;  dW_out, db_out;  dh = dz W_out

/// The output layer with its cross-entropy: the logits of every position and their loss.
final class ClassifierHead {
    let output: Linear
    let crossEntropy: SoftmaxCrossEntropy
    let classes: Int
    private var rows = 0
    /// Positions the mean cross-entropy divides by: this pass's scored rows, or those of the
    /// whole batch over every rank of a data-parallel job.
    private var normalizer = 0
    private let targets = Buffer<Int32>()
    private let logitBuffer = FloatBuffer()
    private let dLogits = FloatBuffer()

    /// Registers `weight` [V, D] and `bias` [V] under `scope` (`output`).
    init(_ scope: ParameterScope, width: Int, classes: Int) {
        self.classes = classes
        output = Linear(scope, inputWidth: width, outputWidth: classes, bias: true)
        crossEntropy = SoftmaxCrossEntropy(vocabularySize: classes)
    }

    func declareBuffers(rows: Int, training: Bool, in plan: inout BufferPlan) {
        plan.declare(targets, "target ids", count: rows)
        plan.declare(logitBuffer, "logits", count: rows * classes)
        crossEntropy.declareBuffers(rows: rows, in: &plan)
        guard training else { return }
        output.declareBuffers(rows: rows, training: true, in: &plan)
        plan.declare(dLogits, "logit gradient", count: rows * classes)
    }

    /// h: [R, D]; returns the cross-entropy summed over the scored rows and their number.
    /// `scoredOverall` is the normaliser of the mean when it is not this pass's own count.
    func forward(
        _ h: UnsafePointer<Float>, targets targetIDs: UnsafePointer<Int32>, rows: Int, arena: ParameterArena,
        scoredOverall: Int? = nil
    ) -> (sum: Double, scored: Int) {
        self.rows = rows
        let targetCopy = targets.reserved(rows)
        targetCopy.update(from: targetIDs, count: rows)
        let z = logitBuffer.reserved(rows * classes)
        output.forward(h, rows: rows, output: z, arena: arena)
        let loss = crossEntropy.forward(logits: z, targets: targetCopy, rows: rows)
        normalizer = scoredOverall ?? loss.scored
        return loss
    }

    var logits: UnsafePointer<Float> { UnsafePointer(logitBuffer.pointer) }

    /// The gradient of the mean cross-entropy over the scored rows: parameter gradients
    /// accumulated, dInput ([R, D], the forward pass's `h` gradient) overwritten.
    func backward(_ h: UnsafePointer<Float>, dInput: UnsafeMutablePointer<Float>, arena: ParameterArena) {
        let dz = dLogits.reserved(rows * classes)
        crossEntropy.backward(
            logits: logitBuffer.pointer, targets: targets.pointer, rows: rows,
            lossScale: 1 / Float(max(1, normalizer)), dLogits: dz)
        output.backward(h, dOutput: dz, rows: rows, dInput: dInput, accumulateInput: false, arena: arena)
    }
}

/// Reserves a model's buffers for each new pass shape (buffers only grow, so alternating
/// training and evaluation passes allocate once each).
final class PassPlanner {
    private var planned: PassShape?

    /// Declares with `declare` and reserves, unless `pass` was the last shape planned.
    func prepare(_ pass: PassShape, _ declare: (inout BufferPlan) -> Void) {
        guard pass != planned else { return }
        BufferPlan.reserve(declare)
        planned = pass
    }
}
