import Configuration
import Foundation
import Tensor

/// Updates the parameters from their gradients; its state lives in flat arrays parallel to
/// the parameter arena, which checkpoints save per parameter.
public protocol Optimizer: AnyObject {
    /// Updates done so far.
    var stepCount: Int { get set }
    /// One update of all parameters at `learningRate`.
    func step(_ arena: ParameterArena, learningRate: Double)
    /// The state arrays parallel to the arena, each under its checkpoint prefix
    /// (`optimizer.exp_avg` saves `optimizer.exp_avg.NAME` per parameter NAME).
    var stateArrays: [(prefix: String, values: UnsafeMutablePointer<Float>)] { get }
}

/// Adam, step for step as PyTorch's `torch.optim.Adam` / `torch.optim.AdamW` (single-tensor
/// path, float32), which differ only in the weight decay:
///   AdamW (decoupled):  p *= 1 - lr * wd
///   Adam (L2):          g += wd * p
///   then m = lerp(m, g, 1 - b1);  v = b2 v + (1 - b2) g^2;
///   p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
public final class Adam: Optimizer, @unchecked Sendable {
    /// How weight decay enters the update.
    public enum WeightDecay: Sendable, Equatable {
        /// AdamW: parameters shrink by lr * rate before the update.
        case decoupled(Float)
        /// Adam: rate * p is added to the gradient.
        case l2(Float)
    }

    public let count: Int
    public let firstMoment: UnsafeMutablePointer<Float>
    public let secondMoment: UnsafeMutablePointer<Float>
    public var beta1: Float
    public var beta2: Float
    public var epsilon: Float
    public var weightDecay: WeightDecay
    public var stepCount = 0

    public init(count: Int, beta1: Double, beta2: Double, epsilon: Double, weightDecay: WeightDecay) {
        self.count = count
        firstMoment = .allocate(capacity: max(1, count))
        secondMoment = .allocate(capacity: max(1, count))
        firstMoment.initialize(repeating: 0, count: max(1, count))
        secondMoment.initialize(repeating: 0, count: max(1, count))
        self.beta1 = Float(beta1)
        self.beta2 = Float(beta2)
        self.epsilon = Float(epsilon)
        self.weightDecay = weightDecay
    }

    deinit {
        firstMoment.deallocate()
        secondMoment.deallocate()
    }

    public var stateArrays: [(prefix: String, values: UnsafeMutablePointer<Float>)] {
        [("optimizer.exp_avg", firstMoment), ("optimizer.exp_avg_sq", secondMoment)]
    }

    public func step(_ arena: ParameterArena, learningRate: Double) {
        precondition(arena.count == count)
        stepCount += 1
        let lr = Float(learningRate)
        let t = Float(stepCount)
        let stepSize = lr / (1 - Foundation.pow(beta1, t))
        let correction2 = (1 - Foundation.pow(beta2, t)).squareRoot()
        let (decay, l2): (Float, Float) = switch weightDecay {
        case .decoupled(let rate): (1 - lr * rate, 0)
        case .l2(let rate): (1, rate)
        }
        let (b1, b2, eps) = (beta1, beta2, epsilon)
        let p = SendablePointer(arena.values), g = SendablePointer(arena.gradients)
        let m = SendablePointer(firstMoment), v = SendablePointer(secondMoment)
        // Chunks of 16k elements (about 10 µs each): the formal-language models have about 10^5
        // parameters, which a larger minimum left to one thread.
        parallelChunks(count, minimumChunk: 16_384) { range in
            for i in range {
                let grad = l2 == 0 ? g.pointer[i] : g.pointer[i] + l2 * p.pointer[i]
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

extension TrainingConfig {
    /// The configured optimiser for `parameters` parameters.
    public func makeOptimizer(parameters: Int) -> any Optimizer {
        let rate = Float(weightDecay)
        return Adam(
            count: parameters, beta1: adamBeta1, beta2: adamBeta2, epsilon: adamEpsilon,
            weightDecay: optimizer == .adamw ? .decoupled(rate) : .l2(rate))
    }

    /// The configured learning-rate schedule.
    public func makeSchedule() -> any LearningRateSchedule {
        switch schedule {
        case .cosine: WarmupCosineSchedule(baseRate: learningRate, warmupSteps: warmupSteps, totalSteps: steps)
        case .constant: ConstantSchedule(baseRate: learningRate, warmupSteps: warmupSteps)
        }
    }
}
