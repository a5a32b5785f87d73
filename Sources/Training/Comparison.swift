import Accounting
import Configuration
import Datasets
import Foundation

/// The outcome of `lmtrain compare`: one row per variant, trained on the same data, seed,
/// steps and schedule, with the audit beside the results.
public struct ComparisonReport: Sendable, Codable {
    public struct Row: Sendable, Codable {
        public var variant: String
        public var feedForward: String
        public var parameters: Int
        public var activeParameters: Int
        public var feedForwardShareUsed: Double
        public var flopsPerToken: Double
        public var valid: EvaluationResult?
        public var test: EvaluationResult?
        public var trainingTokensPerSecond: Double?
        public var peakResidentBytes: Int?
        public var predictedPeakBytes: Int
        public var runDirectory: String
        /// Validation curve: (step, loss in nats) from the run's metrics log.
        public var validation: [[Double]]
        /// Per layer: relative usage perplexity over the run's training steps (sparse blocks).
        public var usagePerplexity: [Double]
        public var usageUnit: String?

        public init(
            variant: String, feedForward: String, parameters: Int, activeParameters: Int,
            feedForwardShareUsed: Double, flopsPerToken: Double, valid: EvaluationResult?,
            test: EvaluationResult?, trainingTokensPerSecond: Double?, peakResidentBytes: Int?,
            predictedPeakBytes: Int, runDirectory: String, validation: [[Double]],
            usagePerplexity: [Double], usageUnit: String?
        ) {
            self.variant = variant
            self.feedForward = feedForward
            self.parameters = parameters
            self.activeParameters = activeParameters
            self.feedForwardShareUsed = feedForwardShareUsed
            self.flopsPerToken = flopsPerToken
            self.valid = valid
            self.test = test
            self.trainingTokensPerSecond = trainingTokensPerSecond
            self.peakResidentBytes = peakResidentBytes
            self.predictedPeakBytes = predictedPeakBytes
            self.runDirectory = runDirectory
            self.validation = validation
            self.usagePerplexity = usagePerplexity
            self.usageUnit = usageUnit
        }

        enum CodingKeys: String, CodingKey {
            case variant, parameters, valid, test, validation
            case feedForward = "feedforward", activeParameters = "active_parameters"
            case feedForwardShareUsed = "feedforward_share_used", flopsPerToken = "flops_per_token"
            case trainingTokensPerSecond = "training_tokens_per_second", peakResidentBytes = "peak_resident_bytes"
            case predictedPeakBytes = "predicted_peak_bytes", runDirectory = "run_directory"
            case usagePerplexity = "usage_perplexity", usageUnit = "usage_unit"
        }
    }

    public var preset: String
    public var steps: Int
    public var seed: UInt64
    public var data: String
    public var unit: TokenUnit
    /// Largest difference in total parameters, in percent of the smallest.
    public var parameterSpreadPercent: Double
    public var tolerancePercent: Double
    /// True when the variants were run although their parameters differ (`--allow-unequal`).
    public var unequal: Bool
    public var rows: [Row]

    enum CodingKeys: String, CodingKey {
        case preset, steps, seed, data, unit, unequal, rows
        case parameterSpreadPercent = "parameter_spread_percent", tolerancePercent = "tolerance_percent"
    }

    public init(preset: String, steps: Int, seed: UInt64, data: String, unit: TokenUnit, parameterSpreadPercent: Double, tolerancePercent: Double, unequal: Bool, rows: [Row]) {
        self.preset = preset
        self.steps = steps
        self.seed = seed
        self.data = data
        self.unit = unit
        self.parameterSpreadPercent = parameterSpreadPercent
        self.tolerancePercent = tolerancePercent
        self.unequal = unequal
        self.rows = rows
    }

    var metricName: String { unit == .bytes ? "bpc" : "perplexity" }

    func metric(_ result: EvaluationResult?) -> String {
        guard let result else { return "-" }
        return result.bitsPerCharacter.map { String(format: "%.4f", $0) } ?? String(format: "%.2f", result.perplexity ?? .nan)
    }

    /// The table: variant, params, active params, % FFN used, FLOPs/token, valid and test
    /// metric, training tokens/s, peak memory.
    public var table: [[String]] {
        var rows = [["variant", "params", "active", "FFN used", "FLOPs/token", "valid \(metricName)", "test \(metricName)", "train tok/s", "peak memory"]]
        for r in self.rows {
            rows.append([
                r.variant, AccountTable.amount(Double(r.parameters)), AccountTable.amount(Double(r.activeParameters)),
                String(format: "%.1f%%", 100 * r.feedForwardShareUsed), AccountTable.amount(r.flopsPerToken),
                metric(r.valid), metric(r.test),
                r.trainingTokensPerSecond.map { String(format: "%.0f", $0) } ?? "-",
                r.peakResidentBytes.map(AccountTable.bytes) ?? "-",
            ])
        }
        return rows
    }

    /// Plain-text table for the terminal.
    public var text: String {
        let rows = table
        let widths = rows[0].indices.map { c in rows.map { $0[c].count }.max()! }
        return rows.map { row in
            row.enumerated().map { c, cell in
                c == 0 ? cell.padding(toLength: widths[c], withPad: " ", startingAt: 0)
                    : String(repeating: " ", count: widths[c] - cell.count) + cell
            }.joined(separator: "  ")
        }.joined(separator: "\n")
    }

    /// report.md.
    public var markdown: String {
        let rows = table
        var lines = [
            "# lmtrain compare: \(preset)", "",
            "Data \(data); \(steps) steps each, seed \(seed), the same schedule for every variant.",
            String(format: "Total parameters differ by at most %.2f%% (tolerance %.2f%%).", parameterSpreadPercent, tolerancePercent),
        ]
        if unequal {
            lines.append("")
            lines.append("**Warning: the variants do NOT have equal parameter counts (`--allow-unequal`); the comparison is not parameter-equal.**")
        }
        lines += ["", "| " + rows[0].joined(separator: " | ") + " |", "|" + rows[0].map { _ in "---" }.joined(separator: "|") + "|"]
        lines += rows.dropFirst().map { "| " + $0.joined(separator: " | ") + " |" }
        lines += [
            "",
            "FLOPs per token count the matrix products of a forward pass with a full memory, for sparse blocks only the selected experts or value rows plus routing. Peak memory is the peak resident set size of each training process; the accountant predicted \(self.rows.map { "\($0.variant) \(AccountTable.bytes($0.predictedPeakBytes))" }.joined(separator: ", ")).",
            "", "![validation](validation.svg)", "",
        ]
        if self.rows.contains(where: { !$0.usagePerplexity.isEmpty }) { lines += ["![usage](usage.svg)", ""] }
        lines.append("Runs: " + self.rows.map { "`\($0.runDirectory)`" }.joined(separator: ", "))
        return lines.joined(separator: "\n") + "\n"
    }

    /// validation.svg: the validation metric against the step.
    public var validationChart: String {
        let series = rows.map { row in
            SVGChart.Series(name: row.variant, points: row.validation.map { point in
                (x: point[0], y: unit == .bytes ? point[1] / log(2.0) : exp(point[1]))
            })
        }
        return SVGChart.lines(title: "Validation \(metricName) (\(preset))", xLabel: "step", yLabel: "valid \(metricName)", series: series)
    }

    /// usage.svg: relative usage perplexity per layer of the sparse variants.
    public var usageChart: String {
        let sparse = rows.filter { !$0.usagePerplexity.isEmpty }
        let layers = sparse.map(\.usagePerplexity.count).max() ?? 0
        return SVGChart.bars(
            title: "Expert / value usage per layer: exp(H) / N (1 = uniform)", xLabel: "layer", yLabel: "relative usage perplexity",
            categories: (0..<layers).map { String($0) }, series: sparse.map { ($0.variant, $0.usagePerplexity) }, yMaximum: 1)
    }
}
