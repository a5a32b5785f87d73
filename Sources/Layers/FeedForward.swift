import Foundation
import Tensor

/// A feedforward block: `y = FFN(x)` row by row over `[B*T, d]`, with its own parameters,
/// activations and (training-only) auxiliary loss. Every variant (Docs/feedforward.md)
/// conforms; the Transformer block calls it without knowing which one it has.
public protocol FeedForwardLayer: AnyObject {
    /// Draws the initial parameters (per variant).
    func initialize(_ arena: ParameterArena, _ context: inout InitializationContext)

    /// Declares every buffer `forward` (and, for a training pass, `backward`) uses on `pass`.
    func declareBuffers(for pass: PassShape, in plan: inout BufferPlan)

    /// x: [B*T, d] -> y: [B*T, d] (overwritten).
    func forward(
        _ x: UnsafePointer<Float>, shape: TokenShape, output y: UnsafeMutablePointer<Float>,
        arena: ParameterArena, context: inout ForwardContext)

    /// Accumulates parameter gradients and `dx += dL/dx`, including the gradient of the
    /// auxiliary loss of the last forward pass (which enters the total loss with weight 1).
    func backward(
        _ x: UnsafePointer<Float>, dOutput dy: UnsafePointer<Float>, shape: TokenShape,
        dInput dx: UnsafeMutablePointer<Float>, arena: ParameterArena)

    /// The regulariser or balancing loss of the last training forward pass (0 if none).
    var auxiliaryLoss: Double { get }

    /// How often each expert (or PKM value row) was selected since the last `resetUsage()`,
    /// counted in every forward pass; nil for blocks without selection.
    var usage: UsageCounts? { get }

    /// Starts a new counting period (the trainer calls it after each metrics line).
    func resetUsage()

    /// Non-trained state a checkpoint must carry besides the parameters (PKM's batch-norm
    /// running statistics), by checkpoint tensor name; empty for most blocks.
    var state: [String: [Float]] { get }

    /// Restores what `state` returned.
    func loadState(_ state: [String: [Float]]) throws
}

extension FeedForwardLayer {
    public var auxiliaryLoss: Double { 0 }
    public var usage: UsageCounts? { nil }
    public func resetUsage() {}
    public var state: [String: [Float]] { [:] }
    public func loadState(_ state: [String: [Float]]) throws {}
}

/// A feedforward-block configuration (or saved state) that cannot work, in one line that
/// says what to change.
public struct FeedForwardConfigError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(description: String) { self.description = description }
}

/// Selection counts of a sparse block over a period: one count per expert (σ-MoE, Switch,
/// S-BASE) or per value row (PKM).
public struct UsageCounts: Sendable, Equatable {
    /// What is counted: "expert" or "value".
    public var unit: String
    public var counts: [Int]

    public init(unit: String, counts: [Int]) {
        self.unit = unit
        self.counts = counts
    }

    public var total: Int { counts.reduce(0, +) }

    /// exp(H(counts / total)) / N: 1 when usage is uniform, 1/N when one unit takes all.
    public var relativePerplexity: Double {
        let total = Double(self.total)
        guard total > 0 else { return 0 }
        var entropy = 0.0
        for c in counts where c > 0 {
            let p = Double(c) / total
            entropy -= p * log(p)
        }
        return exp(entropy) / Double(counts.count)
    }

    /// Share of units never selected in the period.
    public var deadFraction: Double {
        Double(counts.filter { $0 == 0 }.count) / Double(max(1, counts.count))
    }

    /// Share of units selected at least once (PKM: "value rows used").
    public var usedFraction: Double { 1 - deadFraction }

    public mutating func add(_ other: UsageCounts) {
        precondition(other.counts.count == counts.count)
        for i in counts.indices { counts[i] += other.counts[i] }
    }
}
