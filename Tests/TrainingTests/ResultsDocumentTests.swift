import Datasets
import Testing
import Training

/// The paper's claims read off comparisons built by hand: which verdict each difference and
/// interval gives, and what the document says.
struct ResultsDocumentTests {
    /// A perplexity comparison: each variant's test perplexities over its seeds.
    static func report(_ tests: [(String, [Double])]) -> ComparisonReport {
        var rows: [ComparisonReport.Row] = []
        for (variant, values) in tests {
            for (i, value) in values.enumerated() {
                let result = EvaluationResult(
                    split: "test", tokens: 100, loss: value.squareRoot(),
                    metrics: [Metric(name: "perplexity", value: value, label: "ppl", decimals: 2),
                              Metric(name: "word_perplexity", value: 3 * value, label: "word ppl", decimals: 2)])
                rows.append(ComparisonReport.Row(
                    variant: variant, seed: UInt64(1 + i), feedForward: variant, parameters: 1_000_000,
                    activeParameters: 900_000, feedForwardShareUsed: 1, flopsPerToken: 2e6, valid: result, test: result,
                    trainingTokensPerSecond: 1000, peakResidentBytes: 1 << 20, predictedPeakBytes: 1 << 20,
                    runDirectory: "runs/\(variant)-\(i)", validation: [], usagePerplexity: [], deadFraction: [], usageUnit: nil))
            }
        }
        let seeds = (1...UInt64(tests.map(\.1.count).max()!)).map { $0 }
        return ComparisonReport(
            preset: "wt-cpu", steps: 800, seeds: seeds, data: "wikitext-2", unit: .tokens,
            parameterSpreadPercent: 0.3, tolerancePercent: 0.5, unequal: false, rows: rows)
    }

    static func verdict(_ claims: [ResultsDocument.Claim], _ reference: String) -> ResultsDocument.Claim.Verdict? {
        claims.first { $0.reference == reference }?.verdict
    }

    @Test func verdictsFollowTheIntervals() {
        let claims = ResultsDocument.claims(Self.report([
            ("dense", [100, 101, 102]),
            ("moe", [90, 91, 92]),  // -10 ± 2.27: beats dense
            ("moe-softmax-before", [95, 97]),  // moe - it: -4.5, interval well below 0 (t(1.x) wide?)
            ("moe-softmax-after", [80, 81]),  // moe is worse by 10.5: disagrees
            ("switch", [89, 93]),  // overlapping: unresolved
            ("topk", [100.5, 101.5]),  // no difference to dense: matches
            ("pkm-original", [120, 121]),
            ("pkm-init", [130, 131]),  // improved is worse: disagrees
        ]))
        // S-BASE was not run: no claim about it.
        #expect(claims.map(\.reference) == ["dense", "moe-softmax-before", "moe-softmax-after", "switch", "pkm-original", "dense"])
        #expect(Self.verdict(claims, "dense") == .holds)
        #expect(Self.verdict(claims, "moe-softmax-after") == .disagrees)
        #expect(Self.verdict(claims, "switch") == .unresolved)
        #expect(claims.last?.subject == "topk" && claims.last?.verdict == .holds)
        #expect(Self.verdict(claims, "pkm-original") == .disagrees)
        // moe - softmax-before = 91 - 96 = -5; sd 1 and sqrt 2, Welch df = 1.69 -> t 12.7062,
        // half-width 12.7062 sqrt(1/3 + 1) = 14.67: the interval includes 0.
        #expect(Self.verdict(claims, "moe-softmax-before") == .unresolved)
        #expect(claims[1].evidence == "moe − moe-softmax-before, test perplexity: -5.00 ± 14.67 (3 and 2 seeds)")
    }

    @Test func matchingIsRejectedOnlyByAnIntervalThatExcludesZero() {
        // σ-MoE worse than dense beyond the noise: "matches or beats" disagrees; within the
        // noise it holds. Top-K better than dense beyond the noise does not "match".
        let worse = ResultsDocument.claims(Self.report([("dense", [100, 101, 102]), ("moe", [110, 111, 112])]))
        #expect(Self.verdict(worse, "dense") == .disagrees)
        let close = ResultsDocument.claims(Self.report([("dense", [100, 101, 102]), ("moe", [100, 102, 104])]))
        #expect(Self.verdict(close, "dense") == .holds)
        let better = ResultsDocument.claims(Self.report([("dense", [100, 101, 102]), ("topk", [90, 91, 92]), ("moe", [101])]))
        #expect(better.first { $0.subject == "topk" }?.verdict == .disagrees)
        // One σ-MoE seed: no interval, so no verdict.
        #expect(Self.verdict(better, "dense") == .untested)
    }

    @Test func documentHoldsTheTablesTheClaimsAndTheScale() {
        let report = Self.report([("dense", [100, 101, 102]), ("moe", [110, 111, 112])])
        let document = ResultsDocument(
            sections: [.init(title: "WikiText-2", report: report, folder: "runs/reproduce/wikitext", paperSize: "WT-S",
                             paperParameters: 47_000_000, paperTrainingTokens: 1_638_400_000, trainingTokens: 819_200)],
            command: "Scripts/reproduce", commit: "abc1234", trainedAt: ["9f00d1e", "abc1234"], machine: "a CPU", wallSeconds: 3600,
            date: "2026-12-02")
        let text = document.markdown
        #expect(text.contains("Written by `Scripts/reproduce` at commit `abc1234` on 2026-12-02, on a CPU; the runs trained at commit `9f00d1e`, `abc1234`; the script's wall-clock time was 60 min"))
        #expect(text.contains("| moe | 3 | 1.00M | 900.0k |"), "\(text)")
        #expect(text.contains("| σ-MoE matches or beats the parameter-equal dense model | **disagrees** | moe − dense, test perplexity: +10.00 ± 2.27 (3 and 3 seeds); here moe is worse than dense beyond the noise |"), "\(text)")
        #expect(text.contains("| moe | 333.0 ± 3.0 |"), "\(text)")
        // The dense model's 1.00M against the paper's 47.00M, and 2000x fewer tokens.
        #expect(text.contains("scaled down 47×"))
        #expect(text.contains("with 2000× fewer training tokens than its 1638.40M"))
    }
}
