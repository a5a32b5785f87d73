import Accounting
import Configuration
import Datasets
import Foundation

/// The outcome of `lmtrain compare`: one row per variant and seed, trained on the same data,
/// steps and schedule, with the audit beside the results, and with several seeds a summary per
/// variant: mean and spread over the seeds and the difference to dense with its 95% interval.
public struct ComparisonReport: Sendable, Codable {
    public struct Row: Sendable, Codable {
        public var variant: String
        public var seed: UInt64
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
        /// Per layer: the share of experts (value rows) never selected over the training steps.
        public var deadFraction: [Double]
        public var usageUnit: String?

        public init(
            variant: String, seed: UInt64, feedForward: String, parameters: Int, activeParameters: Int,
            feedForwardShareUsed: Double, flopsPerToken: Double, valid: EvaluationResult?,
            test: EvaluationResult?, trainingTokensPerSecond: Double?, peakResidentBytes: Int?,
            predictedPeakBytes: Int, runDirectory: String, validation: [[Double]],
            usagePerplexity: [Double], deadFraction: [Double], usageUnit: String?
        ) {
            self.variant = variant
            self.seed = seed
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
            self.deadFraction = deadFraction
            self.usageUnit = usageUnit
        }

        enum CodingKeys: String, CodingKey {
            case variant, seed, parameters, valid, test, validation
            case feedForward = "feedforward", activeParameters = "active_parameters"
            case feedForwardShareUsed = "feedforward_share_used", flopsPerToken = "flops_per_token"
            case trainingTokensPerSecond = "training_tokens_per_second", peakResidentBytes = "peak_resident_bytes"
            case predictedPeakBytes = "predicted_peak_bytes", runDirectory = "run_directory"
            case usagePerplexity = "usage_perplexity", usageUnit = "usage_unit", deadFraction = "dead_fraction"
        }
    }

    /// One variant over its seeds.
    public struct Summary: Sendable, Codable {
        public var variant: String
        public var seeds: Int
        /// The headline metric (bpc or perplexity) of each seed's final evaluation.
        public var valid: SeedSummary
        public var test: SeedSummary
        /// mean(variant) - mean(dense), with the 95% interval (nil for dense or without it).
        public var validDifference: SeedDifference?
        public var testDifference: SeedDifference?
        public var trainingTokensPerSecond: SeedSummary
        public var peakResidentBytes: Int?
        /// Per layer, the mean over seeds of the usage perplexity and the dead share.
        public var usagePerplexity: [Double]
        public var deadFraction: [Double]

        enum CodingKeys: String, CodingKey {
            case variant, seeds, valid, test
            case validDifference = "valid_difference_to_dense", testDifference = "test_difference_to_dense"
            case trainingTokensPerSecond = "training_tokens_per_second", peakResidentBytes = "peak_resident_bytes"
            case usagePerplexity = "usage_perplexity", deadFraction = "dead_fraction"
        }
    }

    public var preset: String
    public var steps: Int
    /// The first seed; `seeds` lists all (the first, the next, ...).
    public var seed: UInt64
    public var seeds: [UInt64]
    public var data: String
    public var unit: TokenUnit
    /// Largest difference in total parameters, in percent of the smallest.
    public var parameterSpreadPercent: Double
    public var tolerancePercent: Double
    /// True when the variants were run although their parameters differ (`--allow-unequal`).
    public var unequal: Bool
    public var rows: [Row]
    /// Per variant, in the order of `rows`.
    public var summaries: [Summary]

    enum CodingKeys: String, CodingKey {
        case preset, steps, seed, seeds, data, unit, unequal, rows, summaries
        case parameterSpreadPercent = "parameter_spread_percent", tolerancePercent = "tolerance_percent"
    }

    public init(preset: String, steps: Int, seeds: [UInt64], data: String, unit: TokenUnit, parameterSpreadPercent: Double, tolerancePercent: Double, unequal: Bool, rows: [Row]) {
        self.preset = preset
        self.steps = steps
        self.seed = seeds[0]
        self.seeds = seeds
        self.data = data
        self.unit = unit
        self.parameterSpreadPercent = parameterSpreadPercent
        self.tolerancePercent = tolerancePercent
        self.unequal = unequal
        self.rows = rows
        summaries = Self.summarize(rows)
    }

    /// Groups the rows by variant (in order of first appearance) and summarises each over its
    /// seeds, with the difference to the variant named `dense` when there is one.
    static func summarize(_ rows: [Row]) -> [Summary] {
        var order: [String] = []
        for row in rows where !order.contains(row.variant) { order.append(row.variant) }
        func headline(_ result: EvaluationResult?) -> Double { result.flatMap { $0.bitsPerCharacter ?? $0.perplexity } ?? .nan }
        func meanPerLayer(_ values: [[Double]]) -> [Double] {
            let layers = values.map(\.count).max() ?? 0
            return (0..<layers).map { layer in
                let present = values.compactMap { layer < $0.count ? $0[layer] : nil }
                return present.reduce(0, +) / Double(max(1, present.count))
            }
        }
        var summaries = order.map { variant -> Summary in
            let runs = rows.filter { $0.variant == variant }
            return Summary(
                variant: variant, seeds: runs.count, valid: SeedSummary(runs.map { headline($0.valid) }),
                test: SeedSummary(runs.map { headline($0.test) }),
                trainingTokensPerSecond: SeedSummary(runs.compactMap(\.trainingTokensPerSecond)),
                peakResidentBytes: runs.compactMap(\.peakResidentBytes).max(),
                usagePerplexity: meanPerLayer(runs.map(\.usagePerplexity)), deadFraction: meanPerLayer(runs.map(\.deadFraction)))
        }
        if let dense = summaries.first(where: { $0.variant == "dense" }) {
            for i in summaries.indices where summaries[i].variant != "dense" {
                summaries[i].validDifference = SeedDifference(summaries[i].valid, minus: dense.valid)
                summaries[i].testDifference = SeedDifference(summaries[i].test, minus: dense.test)
            }
        }
        return summaries
    }

    var metricName: String { unit == .bytes ? "bpc" : "perplexity" }
    private var decimals: Int { unit == .bytes ? 4 : 2 }

    func metric(_ result: EvaluationResult?) -> String {
        guard let result else { return "-" }
        return result.bitsPerCharacter.map { String(format: "%.4f", $0) } ?? String(format: "%.2f", result.perplexity ?? .nan)
    }

    /// With several seeds: one row per variant, the metrics as mean ± standard deviation over
    /// the seeds and the difference to dense with its 95% interval (* when it excludes 0).
    public var seedTable: [[String]] {
        var table = [["variant", "seeds", "params", "active", "FLOPs/token", "valid \(metricName)", "test \(metricName)", "test Δ dense (95%)", "train tok/s", "peak memory", "usage ppl", "dead"]]
        for summary in summaries {
            let row = rows.first { $0.variant == summary.variant }!
            func spread(_ s: SeedSummary) -> String { String(format: "%.\(decimals)f ± %.\(decimals)f", s.mean, s.standardDeviation) }
            table.append([
                summary.variant, String(summary.seeds), AccountTable.amount(Double(row.parameters)),
                AccountTable.amount(Double(row.activeParameters)), AccountTable.amount(row.flopsPerToken),
                spread(summary.valid), spread(summary.test),
                summary.testDifference.map { $0.text(decimals: decimals) + ($0.isSignificant ? " *" : "") } ?? "-",
                String(format: "%.0f", summary.trainingTokensPerSecond.mean),
                summary.peakResidentBytes.map(AccountTable.bytes) ?? "-",
                summary.usagePerplexity.isEmpty ? "-" : String(format: "%.3f", summary.usagePerplexity.reduce(0, +) / Double(summary.usagePerplexity.count)),
                summary.deadFraction.isEmpty ? "-" : String(format: "%.1f%%", 100 * summary.deadFraction.reduce(0, +) / Double(summary.deadFraction.count)),
            ])
        }
        return table
    }

    /// The table: variant, params, active params, % FFN used, FLOPs/token, valid and test
    /// metric, training tokens/s, peak memory.
    public var table: [[String]] {
        var rows = [["variant", "params", "active", "FFN used", "FLOPs/token", "valid \(metricName)", "test \(metricName)", "train tok/s", "peak memory"]]
        for r in self.rows {
            rows.append([
                seeds.count > 1 ? "\(r.variant) (seed \(r.seed))" : r.variant,
                AccountTable.amount(Double(r.parameters)), AccountTable.amount(Double(r.activeParameters)),
                String(format: "%.1f%%", 100 * r.feedForwardShareUsed), AccountTable.amount(r.flopsPerToken),
                metric(r.valid), metric(r.test),
                r.trainingTokensPerSecond.map { String(format: "%.0f", $0) } ?? "-",
                r.peakResidentBytes.map(AccountTable.bytes) ?? "-",
            ])
        }
        return rows
    }

    /// Plain-text table for the terminal: every run, then with several seeds the summary.
    public var text: String {
        seeds.count > 1 ? Self.render(table) + "\n\nover the seeds (mean ± standard deviation; * the 95% interval excludes 0):\n" + Self.render(seedTable) : Self.render(table)
    }

    static func render(_ rows: [[String]]) -> String {
        let widths = rows[0].indices.map { c in rows.map { $0[c].count }.max()! }
        return rows.map { row in
            row.enumerated().map { c, cell in
                c == 0 ? cell.padding(toLength: widths[c], withPad: " ", startingAt: 0)
                    : String(repeating: " ", count: widths[c] - cell.count) + cell
            }.joined(separator: "  ")
        }.joined(separator: "\n")
    }

    /// A Markdown table: the first row is the header.
    static func markdownTable(_ rows: [[String]]) -> [String] {
        ["| " + rows[0].joined(separator: " | ") + " |", "|" + rows[0].map { _ in "---" }.joined(separator: "|") + "|"]
            + rows.dropFirst().map { "| " + $0.joined(separator: " | ") + " |" }
    }

    /// report.md.
    public var markdown: String {
        let rows = table
        var lines = [
            "# lmtrain compare: \(preset)", "",
            "Data \(data); \(steps) steps each, \(seeds.count == 1 ? "seed \(seed)" : "seeds \(seeds.map(String.init).joined(separator: ", "))"), the same schedule for every variant.",
            String(format: "Total parameters differ by at most %.2f%% (tolerance %.2f%%).", parameterSpreadPercent, tolerancePercent),
        ]
        if unequal {
            lines.append("")
            lines.append("**Warning: the variants do NOT have equal parameter counts (`--allow-unequal`); the comparison is not parameter-equal.**")
        }
        lines += [""] + Self.markdownTable(rows)
        if seeds.count > 1 {
            let summary = seedTable
            lines += [
                "", "Over each variant's seeds (column seeds): mean ± sample standard deviation; the test difference to dense with the half-width of its 95% interval (Welch's t over the seeds; * when the interval excludes 0).", "",
            ] + Self.markdownTable(summary)
        }
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
            SVGChart.Series(name: seeds.count > 1 ? "\(row.variant) s\(row.seed)" : row.variant, points: row.validation.map { point in
                (x: point[0], y: unit == .bytes ? point[1] / log(2.0) : exp(point[1]))
            })
        }
        return SVGChart.lines(title: "Validation \(metricName) (\(preset))", xLabel: "step", yLabel: "valid \(metricName)", series: series)
    }

    /// usage.svg: relative usage perplexity per layer of the sparse variants.
    public var usageChart: String {
        let sparse = summaries.filter { !$0.usagePerplexity.isEmpty }
        let layers = sparse.map(\.usagePerplexity.count).max() ?? 0
        return SVGChart.bars(
            title: "Expert / value usage per layer: exp(H) / N (1 = uniform)\(seeds.count > 1 ? ", mean over seeds" : "")", xLabel: "layer", yLabel: "relative usage perplexity",
            categories: (0..<layers).map { String($0) }, series: sparse.map { ($0.variant, $0.usagePerplexity) }, yMaximum: 1)
    }
}
