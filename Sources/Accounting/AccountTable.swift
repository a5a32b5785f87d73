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
        var lines: [String] = []
        lines.append("\(name): \(config.model.kind), \(config.model.summary), vocabulary \(config.model.vocabularySize)")
        func row(_ label: String, _ value: String, _ note: String = "") {
            lines.append("  " + label.padding(toLength: 30, withPad: " ", startingAt: 0) + value.leftPadded(14) + (note.isEmpty ? "" : "  " + note))
        }
        lines.append("parameters")
        for c in p.components {
            row(c.name, "\(c.count)", c.perLayer.map { "\($0) per layer" } ?? "")
        }
        row("total", "\(p.total)", amount(Double(p.total)))
        row("active per token", "\(p.activePerToken)", amount(Double(p.activePerToken)))
        if let share = p.feedForwardShareUsed { row("% of FFN parameters used", String(format: "%.1f%%", 100 * share)) }
        lines.append("FLOPs per token (matrix products, full memory)")
        for c in f.components {
            row(c.name, amount(c.perToken), c.routing > 0 ? "routing \(amount(c.routing))" : "")
        }
        row("forward", amount(f.forwardPerToken))
        row("training step (3x)", amount(f.trainingPerToken))
        if config.data.task != nil {
            let train = Accountant.trainingPass(config).tokens, eval = Accountant.evaluationPass(config).tokens
            lines.append("memory (batch \(train.batch) x \(train.length) positions, the longest training string; eval batch \(eval.batch) x \(eval.length), the longest Bin1 string)")
        } else {
            lines.append("memory (batch \(config.training.batchSize) x \(config.training.segmentLength), memory \(config.training.memoryLength); eval batch \(config.evaluation.batchSize) x \(config.evaluation.memorySegments) segments)")
        }
        row("parameters", bytes(m.parameters))
        row("gradients", bytes(m.gradients))
        row("optimiser (\(config.training.optimizer.rawValue))", bytes(m.optimizer))
        row("activations (training)", bytes(m.trainingActivations), "largest: \(m.inventory.first.map { "\($0.name) \(bytes($0.bytes))" } ?? "-")")
        if m.storedFastWeights > 0 {
            row("  of which stored fast weights", bytes(m.storedFastWeights), "for backward through time")
        }
        row("carried state (memory)", bytes(m.trainingMemory + m.evaluationMemory))
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
