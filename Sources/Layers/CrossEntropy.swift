import Foundation
import Tensor

// Softmax cross-entropy of logits against integer targets. Legend: R rows, V classes.
//   loss_r = logsumexp(z_r) - z_r[target_r]          for rows with a target in 0..<V
//   dz_r = (softmax(z_r) - onehot(target_r)) * scale  (scale = 1 / scored rows for the mean)
// A row whose target is negative (`ignoredTarget`: padding of shorter sequences) is not
// scored: its loss is 0, it is not counted, and its logits get no gradient.

/// Softmax cross-entropy summed over the scored rows.
public final class SoftmaxCrossEntropy {
    /// The target of a position that is not scored.
    public static let ignoredTarget: Int32 = -1

    public let vocabularySize: Int
    private let logSumExp = FloatBuffer()
    private let rowLoss = Buffer<Double>()

    public init(vocabularySize: Int) { self.vocabularySize = vocabularySize }

    /// The per-row statistics of `rows` rows.
    public func declareBuffers(rows: Int, in plan: inout BufferPlan) {
        plan.declare(logSumExp, "cross-entropy logsumexp", count: rows)
        plan.declare(rowLoss, "cross-entropy row losses", count: rows)
    }

    /// The sum over scored rows of the per-row loss (in Double, rows summed in order) and the
    /// number of scored rows; divide the one by the other for the mean. Saves logsumexp per row
    /// for `backward`.
    public func forward(
        logits: UnsafePointer<Float>, targets: UnsafePointer<Int32>, rows: Int
    ) -> (sum: Double, scored: Int) {
        let v = vocabularySize
        let z = SendablePointer(logits), t = SendablePointer(targets)
        let lse = SendablePointer(logSumExp.reserved(rows))
        let losses = SendablePointer(rowLoss.reserved(rows))
        parallelChunks(rows, minimumChunk: 16) { range in
            for r in range {
                let target = Int(t.pointer[r])
                guard target >= 0 else {
                    losses.mutable[r] = 0
                    continue
                }
                precondition(target < v, "target id \(target) outside the vocabulary")
                let row = z.pointer + r * v
                let m = maximum(row, count: v)
                var acc = SIMD16<Float>()
                let shift = SIMD16<Float>(repeating: m)
                var i = 0
                while i + 16 <= v {
                    acc += exp16(load16(row + i) - shift)
                    i += 16
                }
                var total = acc.sum()
                while i < v {
                    total += exp1(row[i] - m)
                    i += 1
                }
                let l = m + Foundation.log(total)
                lse.mutable[r] = l
                losses.mutable[r] = Double(l) - Double(row[target])
            }
        }
        var total = 0.0, scored = 0
        for r in 0..<rows where targets[r] >= 0 {
            total += losses.pointer[r]
            scored += 1
        }
        return (total, scored)
    }

    /// Per-row losses of the last forward pass (0 for rows not scored).
    public var lastRowLosses: UnsafePointer<Double> { UnsafePointer(rowLoss.pointer) }

    /// dz = (softmax(z) - onehot) * lossScale for scored rows and 0 for the others,
    /// overwriting `dLogits` (`lossScale` is 1 / scored rows for the mean).
    public func backward(
        logits: UnsafePointer<Float>, targets: UnsafePointer<Int32>, rows: Int, lossScale: Float,
        dLogits: UnsafeMutablePointer<Float>
    ) {
        let v = vocabularySize
        let z = SendablePointer(logits), t = SendablePointer(targets)
        let lse = SendablePointer(logSumExp.pointer), dz = SendablePointer(dLogits)
        parallelChunks(rows, minimumChunk: 16) { range in
            for r in range {
                let out = dz.mutable + r * v
                let target = Int(t.pointer[r])
                guard target >= 0 else {
                    out.update(repeating: 0, count: v)
                    continue
                }
                out.update(from: z.pointer + r * v, count: v)
                _ = expInPlace(out, count: v, minus: lse.pointer[r])
                scale(out, by: lossScale, count: v)
                out[target] -= lossScale
            }
        }
    }
}
