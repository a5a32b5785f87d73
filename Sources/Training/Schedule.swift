import Foundation

/// The learning rate of every update.
public protocol LearningRateSchedule: Sendable {
    /// The rate used by update number `step` (0-based).
    func rate(at step: Int) -> Double
}

/// The official schedule of the σ-MoE experiments: linear warmup to the base rate over
/// `warmupSteps`, then `torch.optim.lr_scheduler.CosineAnnealingLR(T_max = steps)` stepped with
/// the step count minus the warmup, so the rate reaches 0 at `steps` when there is no warmup.
public struct WarmupCosineSchedule: LearningRateSchedule {
    public let baseRate: Double
    public let warmupSteps: Int
    public let totalSteps: Int

    public init(baseRate: Double, warmupSteps: Int, totalSteps: Int) {
        self.baseRate = baseRate
        self.warmupSteps = warmupSteps
        self.totalSteps = totalSteps
    }

    public func rate(at step: Int) -> Double {
        let cosine = baseRate * 0.5
            * (1 + Foundation.cos(Double.pi * Double(max(0, step - warmupSteps)) / Double(totalSteps)))
        if step < warmupSteps { return cosine / Double(warmupSteps) * Double(step + 1) }
        return cosine
    }
}

/// Linear warmup to the base rate over `warmupSteps` (none by default), then the base rate:
/// the formal-language experiments train at a constant rate.
public struct ConstantSchedule: LearningRateSchedule {
    public let baseRate: Double
    public let warmupSteps: Int

    public init(baseRate: Double, warmupSteps: Int = 0) {
        self.baseRate = baseRate
        self.warmupSteps = warmupSteps
    }

    public func rate(at step: Int) -> Double {
        step < warmupSteps ? baseRate / Double(warmupSteps) * Double(step + 1) : baseRate
    }
}
