import Accounting
import Configuration
import Models
import Testing

/// The accountant reproduces the paper's parameter counts (to 0.01M) for the paper presets,
/// and the share of feedforward parameters the σ-MoE models use at once.
struct PaperCountTests {
    static let expected: [(String, Double)] = [
        ("wt-s", 47.26), ("wt-s-moe", 47.26), ("wt-s-star", 237.70), ("wt-s-star-moe", 237.00),
        ("wt-b", 262.48), ("wt-b-moe", 262.46), ("e8", 41.23), ("e8-moe", 41.24),
        ("wt-s-pkm", 35.32), ("wt-s-pkm-matched", 47.13), ("e8-pkm", 30.11), ("e8-pkm-matched", 41.12),
        ("wt-b-pkm", 191.09), ("wt-b-pkm-matched", 263.44),
    ]

    @Test(arguments: 0..<14) func presetCount(index: Int) throws {
        let (name, millions) = Self.expected[index]
        let total = try Accountant.account(Preset(name: name)!.config).parameters.total
        #expect((Double(total) / 1e4).rounded() / 100 == millions, "\(name): \(total)")
    }

    @Test func shareOfFeedForwardParametersUsed() throws {
        let shares = try ["wt-s-moe", "wt-s-star-moe", "wt-b-moe", "e8-moe"].map {
            try Accountant.account(Preset(name: $0)!.config).parameters.feedForwardShareUsed!
        }
        // 4/16, 4/128, 4/32, 4/16: the paper's 25%, 3.1%, 12.5%, 25%.
        #expect(shares.map { ($0 * 1000).rounded() / 10 } == [25.0, 3.1, 12.5, 25.0])
    }

    @Test func vocabulariesOfThePaperData() {
        #expect(Preset(name: "wt-b")!.config.model.vocabularySize == 8000)
        #expect(Preset(name: "e8-pkm")!.config.model.vocabularySize == 205)
    }

    /// A deliberately unequal pair fails the audit, a matched pair passes.
    @Test func auditSeparatesMatchedFromUnequal() throws {
        let dense = try Audit.Entry(name: "e8", config: Preset(name: "e8")!.config)
        let matched = try Audit([dense, try .init(name: "e8-moe", config: Preset(name: "e8-moe")!.config)])
        #expect(matched.passes(tolerance: 0.005))
        let unequal = try Audit([dense, try .init(name: "e8-pkm", config: Preset(name: "e8-pkm")!.config)])
        #expect(!unequal.passes(tolerance: 0.005))
        #expect(abs(unequal.parameterSpread - (41_234_721.0 - 30_107_877.0) / 30_107_877.0) < 1e-12)
        #expect(throws: ConfigError.self) {
            try Audit([dense, try .init(name: "quickstart", config: Preset(name: "quickstart")!.config)])
        }
    }
}
