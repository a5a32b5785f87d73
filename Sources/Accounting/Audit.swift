import Configuration
import Foundation
import Models

/// A side-by-side account of several configurations and the parameter-equality check of the
/// papers: sparse models are compared with dense ones of the same size.
public struct Audit: Sendable {
    public struct Entry: Sendable {
        public var name: String
        public var config: RunConfig
        public var account: Account
        public init(name: String, config: RunConfig) throws {
            self.name = name
            self.config = config
            self.account = try Accountant.account(config)
        }
    }

    public let entries: [Entry]

    /// Refuses entries that could not be compared: other vocabularies or other data.
    public init(_ entries: [Entry]) throws {
        guard let first = entries.first else { throw ConfigError("audit: give at least one configuration") }
        for entry in entries.dropFirst() {
            if entry.config.model.vocabularySize != first.config.model.vocabularySize {
                throw ConfigError("audit: \(entry.name) has a vocabulary of \(entry.config.model.vocabularySize), \(first.name) of \(first.config.model.vocabularySize): compare models of the same vocabulary")
            }
            let (a, b) = (entry.config.data, first.config.data)
            if a.source != b.source || a.tokenizer != b.tokenizer {
                throw ConfigError("audit: \(entry.name) uses data \(a.source ?? "kjv") (\(a.tokenizer)), \(first.name) uses \(b.source ?? "kjv") (\(b.tokenizer)): compare models trained on the same data")
            }
        }
        self.entries = entries
    }

    /// (max - min) / min of the total parameter counts.
    public var parameterSpread: Double {
        let counts = entries.map { Double($0.account.parameters.total) }
        return (counts.max()! - counts.min()!) / counts.min()!
    }

    /// True when every pair differs by at most `tolerance` (a fraction: 0.005 = 0.5%).
    public func passes(tolerance: Double) -> Bool { parameterSpread <= tolerance + 1e-12 }

    /// Each entry's difference to the first, in percent.
    public func difference(_ value: (Account) -> Double, _ index: Int) -> Double {
        let base = value(entries[0].account)
        return base == 0 ? 0 : 100 * (value(entries[index].account) - base) / base
    }

    public func table() -> String {
        var rows = [["entry", "ffn", "params", "Δ params", "active", "FFN used", "FLOPs/token", "Δ FLOPs", "peak train mem"]]
        for (i, e) in entries.enumerated() {
            let a = e.account
            rows.append([
                e.name, e.config.model.feedForward?.kind ?? "-", "\(a.parameters.total)",
                String(format: "%+.2f%%", difference({ Double($0.parameters.total) }, i)),
                AccountTable.amount(Double(a.parameters.activePerToken)),
                a.parameters.feedForwardShareUsed.map { String(format: "%.1f%%", 100 * $0) } ?? "-",
                AccountTable.amount(a.flops.forwardPerToken),
                String(format: "%+.1f%%", difference({ $0.flops.forwardPerToken }, i)),
                AccountTable.bytes(a.memory.peakTraining),
            ])
        }
        let widths = rows[0].indices.map { c in rows.map { $0[c].count }.max()! }
        return rows.map { row in
            row.enumerated().map { c, cell in c == 0 ? cell.padding(toLength: widths[c], withPad: " ", startingAt: 0) : cell.leftPadded(widths[c]) }
                .joined(separator: "  ")
        }.joined(separator: "\n")
    }
}
