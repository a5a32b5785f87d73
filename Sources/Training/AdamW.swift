import Configuration
import Foundation
import Tensor

/// AdamW with decoupled weight decay, step for step as PyTorch's `torch.optim.AdamW`
/// (single-tensor path, float32):
///   p *= 1 - lr * wd;  m = lerp(m, g, 1 - b1);  v = b2 v + (1 - b2) g^2;
///   p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
/// Both moments live in flat arrays parallel to the parameter arena.
public final class AdamW: @unchecked Sendable {
    public let count: Int
    public let firstMoment: UnsafeMutablePointer<Float>
    public let secondMoment: UnsafeMutablePointer<Float>
    public var beta1: Float
    public var beta2: Float
    public var epsilon: Float
    public var weightDecay: Float
    /// Updates done so far (t in the bias corrections).
    public var stepCount = 0

    public init(count: Int, beta1: Double, beta2: Double, epsilon: Double, weightDecay: Double) {
        self.count = count
        firstMoment = .allocate(capacity: max(1, count))
        secondMoment = .allocate(capacity: max(1, count))
        firstMoment.initialize(repeating: 0, count: max(1, count))
        secondMoment.initialize(repeating: 0, count: max(1, count))
        self.beta1 = Float(beta1)
        self.beta2 = Float(beta2)
        self.epsilon = Float(epsilon)
        self.weightDecay = Float(weightDecay)
    }

    deinit {
        firstMoment.deallocate()
        secondMoment.deallocate()
    }

    /// One update of all parameters from their gradients.
    public func step(_ arena: ParameterArena, learningRate: Double) {
        precondition(arena.count == count)
        stepCount += 1
        let lr = Float(learningRate)
        let t = Float(stepCount)
        let stepSize = lr / (1 - Foundation.pow(beta1, t))
        let correction2 = (1 - Foundation.pow(beta2, t)).squareRoot()
        let decay = 1 - lr * weightDecay
        let (b1, b2, eps) = (beta1, beta2, epsilon)
        let p = SendablePointer(arena.values), g = SendablePointer(arena.gradients)
        let m = SendablePointer(firstMoment), v = SendablePointer(secondMoment)
        parallelChunks(count, minimumChunk: 65_536) { range in
            for i in range {
                let grad = g.pointer[i]
                p.mutable[i] *= decay
                m.mutable[i] += (grad - m.mutable[i]) * (1 - b1)
                v.mutable[i] = v.mutable[i] * b2 + (1 - b2) * grad * grad
                let denominator = v.mutable[i].squareRoot() / correction2 + eps
                p.mutable[i] -= stepSize * (m.mutable[i] / denominator)
            }
        }
    }
}

/// `torch.nn.utils.clip_grad_norm_`: scales all gradients by max / (norm + 1e-6) when that is
/// below 1. Returns the norm before clipping.
@discardableResult
public func clipGradientNorm(_ arena: ParameterArena, maximum: Double) -> Double {
    let norm = arena.gradientNorm()
    if maximum > 0 {
        let coefficient = maximum / (norm + 1e-6)
        if coefficient < 1 { scale(arena.gradients, by: Float(coefficient), count: arena.count) }
    }
    return norm
}

/// The official schedule: linear warmup to the base rate over `warmupSteps`, then
/// `torch.optim.lr_scheduler.CosineAnnealingLR(T_max = steps)` stepped with the step count
/// minus the warmup, so the rate reaches 0 at `steps` when there is no warmup.
public struct LearningRateSchedule: Sendable {
    public let baseRate: Double
    public let warmupSteps: Int
    public let totalSteps: Int

    public init(baseRate: Double, warmupSteps: Int, totalSteps: Int) {
        self.baseRate = baseRate
        self.warmupSteps = warmupSteps
        self.totalSteps = totalSteps
    }

    /// The rate used by update number `step` (0-based).
    public func rate(at step: Int) -> Double {
        let cosine = baseRate * 0.5
            * (1 + Foundation.cos(Double.pi * Double(max(0, step - warmupSteps)) / Double(totalSteps)))
        if step < warmupSteps { return cosine / Double(warmupSteps) * Double(step + 1) }
        return cosine
    }
}
