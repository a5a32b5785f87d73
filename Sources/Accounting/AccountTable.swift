import Configuration
import Foundation
import Models

/// Human-readable renderings of accounts.
public enum AccountTable {
    /// "47.26M", "1.2G", "850.3k".
    public static func amount(_ value: Double) -> String {
        let magnitude = abs(value)
        if magnitude >= 1e9 { return String(format: "%.2fG", value / 1e9) }
        if magnitude >= 1e6 { return String(format: "%.2fM", value / 1e6) }
        if magnitude >= 1e3 { return String(format: "%.1fk", value / 1e3) }
        return String(format: "%.0f", value)
    }

    public static func bytes(_ value: Int) -> String {
        let v = Double(value)
        if v >= 1_073_741_824 { return String(format: "%.2f GiB", v / 1_073_741_824) }
        if v >= 1_048_576 { return String(format: "%.1f MiB", v / 1_048_576) }
        return String(format: "%.1f KiB", v / 1024)
    }

    /// The `lmtrain count` report of one config.
    public static func render(_ account: Account, config: RunConfig, name: String) -> String {
        let p = account.parameters, f = account.flops, m = account.memory
        let model = config.model
        var lines: [String] = []
        lines.append("\(name): \(model.layers) layers, d_model \(model.modelWidth), \(model.heads) x \(model.resolvedHeadSize) heads, ffn \(model.feedForward.summary), vocabulary \(model.vocabularySize)")
        func row(_ label: String, _ value: String, _ note: String = "") {
            lines.append("  " + label.padding(toLength: 30, withPad: " ", startingAt: 0) + value.leftPadded(14) + (note.isEmpty ? "" : "  " + note))
        }
        lines.append("parameters")
        row("embedding", "\(p.embedding)")
        row("attention", "\(p.attentionPerLayer * p.layers)", "\(p.attentionPerLayer) per layer")
        row("layer norms", "\(p.normsPerLayer * p.layers + p.finalNorm)")
        row("feedforward", "\(p.feedForwardPerLayer * p.layers)", "\(p.feedForwardPerLayer) per layer")
        row("output", "\(p.output)")
        row("total", "\(p.total)", amount(Double(p.total)))
        row("active per token", "\(p.activePerToken)", amount(Double(p.activePerToken)))
        row("% of FFN parameters used", String(format: "%.1f%%", 100 * p.feedForwardShareUsed))
        lines.append("FLOPs per token (matrix products, full memory)")
        row("attention", amount(f.attentionPerLayer * Double(p.layers)))
        row("feedforward", amount(f.feedForwardPerLayer * Double(p.layers)), "routing \(amount(f.routingPerLayer * Double(p.layers)))")
        row("output", amount(f.output))
        row("forward", amount(f.forwardPerToken))
        row("training step (3x)", amount(f.trainingPerToken))
        lines.append("memory (batch \(config.training.batchSize) x \(config.training.segmentLength), memory \(config.training.memoryLength); eval batch \(config.evaluation.batchSize) x \(config.evaluation.memorySegments) segments)")
        row("parameters", bytes(m.parameters))
        row("gradients", bytes(m.gradients))
        row("optimiser (AdamW)", bytes(m.optimizer))
        row("activations (training)", bytes(m.trainingActivations))
        row("Transformer-XL memory", bytes(m.trainingMemory + m.evaluationMemory))
        row("runtime and data", bytes(m.runtime))
        row("predicted peak, train", bytes(m.peakTraining))
        row("predicted peak, eval", bytes(m.peakEvaluation))
        return lines.joined(separator: "\n")
    }
}

extension String {
    func leftPadded(_ width: Int) -> String {
        count >= width ? self : String(repeating: " ", count: width - count) + self
    }
}

extension FeedForwardConfig {
    /// One line: "moe 16 x 128, K 4", "dense d_ff 2053".
    public var summary: String {
        switch self {
        case .dense(let c): "dense d_ff \(c.hiddenSize)"
        case .sigmaMoE(let c): "σ-MoE \(c.experts) x \(c.expertSize), K \(c.k), \(c.selection.rawValue), δ \(c.expertDropout), γ \(c.regularization)"
        case .switchMoE(let c): "Switch \(c.experts) x \(c.expertSize)"
        case .sBase(let c): "S-BASE \(c.experts) x \(c.expertSize), K \(c.k)"
        case .topK(let c): "top-K d_ff \(c.hiddenSize), K \(c.k)"
        case .productKeyMemory(let c):
            "PKM \(c.heads) heads, \(c.keysPerHalf)^2 values, knn \(c.knn), \(c.activation.rawValue), \(c.usesDensePath ? "dense" : "sparse") path\(c.valueInit == .dense ? ", +init" : "")\(c.query == .mlpBatchNorm ? ", mlp-bn query" : "")"
        }
    }
}
