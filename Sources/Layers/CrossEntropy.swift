import Foundation
import Tensor

// Softmax cross-entropy averaged over rows. Legend: R rows, V vocabulary.
//   loss = mean_r [ logsumexp(z_r) - z_r[target_r] ]
//   dz_r = (softmax(z_r) - onehot(target_r)) / R

/// Mean softmax cross-entropy of logits against integer targets.
public final class SoftmaxCrossEntropy {
    public let vocabularySize: Int
    private let logSumExp = FloatBuffer()
    private let rowLoss = Buffer<Double>()

    public init(vocabularySize: Int) { self.vocabularySize = vocabularySize }

    /// Sum over rows of the per-row loss (in Double, rows summed in order); divide by R for
    /// the mean. Saves logsumexp per row for `backward`.
    public func forward(
        logits: UnsafePointer<Float>, targets: UnsafePointer<Int32>, rows: Int
    ) -> Double {
        let v = vocabularySize
        let z = SendablePointer(logits), t = SendablePointer(targets)
        let lse = SendablePointer(logSumExp.reserve(rows))
        let losses = SendablePointer(rowLoss.reserve(rows))
        parallelChunks(rows, minimumChunk: 16) { range in
            for r in range {
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
                let target = Int(t.pointer[r])
                precondition(target >= 0 && target < v, "target id \(target) outside the vocabulary")
                losses.mutable[r] = Double(l) - Double(row[target])
            }
        }
        var total = 0.0
        for r in 0..<rows { total += losses.pointer[r] }
        return total
    }

    /// Per-row losses of the last forward pass.
    public var lastRowLosses: UnsafePointer<Double> { UnsafePointer(rowLoss.pointer) }

    /// dz = (softmax(z) - onehot) * lossScale, overwriting `dLogits` (`lossScale` is 1/R for the mean).
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
                out.update(from: z.pointer + r * v, count: v)
                _ = expInPlace(out, count: v, minus: lse.pointer[r])
                scale(out, by: lossScale, count: v)
                out[Int(t.pointer[r])] -= lossScale
            }
        }
    }
}

