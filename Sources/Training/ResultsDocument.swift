import Foundation

/// Docs/results.md, written from the reports of finished comparisons: their tables as the
/// reports hold them, and the paper's qualitative claims checked against the numbers. Nothing
/// in it is typed by hand; `Scripts/reproduce` writes it with `lmtrain results`.
public struct ResultsDocument: Sendable {
    /// One of the paper's claims, read off a comparison: a difference of test metrics between
    /// two variants (lower is better for perplexity and bpc) with its 95% interval over seeds.
    public struct Claim: Sendable, Equatable {
        public enum Kind: Sendable, Equatable {
            /// `subject` has a lower test metric than `reference`.
            case beats
            /// `subject` is not worse than `reference`: lower, or no difference beyond the noise.
            case matchesOrBeats
            /// No difference beyond the noise.
            case matches
        }

        public enum Verdict: String, Sendable, Equatable {
            case holds = "holds"
            case disagrees = "disagrees"
            /// The interval includes 0 where the claim needs a difference.
            case unresolved = "not resolved (within the seed noise)"
            /// A variant is missing, or has a single seed (no interval).
            case untested = "not tested"
        }

        public var statement: String
        public var subject: String
        public var reference: String
        public var kind: Kind
        public var verdict: Verdict
        /// "σ-MoE − dense: −1.23 ± 0.45 (3 and 3 seeds)".
        public var evidence: String

        /// Checks `subject` against `reference` in `report`.
        public init(_ statement: String, _ subject: String, _ kind: Kind, _ reference: String, in report: ComparisonReport) {
            self.statement = statement
            self.subject = subject
            self.reference = reference
            self.kind = kind
            let summaries = report.summaries
            guard let a = summaries.first(where: { $0.variant == subject }),
                let b = summaries.first(where: { $0.variant == reference })
            else {
                verdict = .untested
                evidence = "\(subject) or \(reference) was not run"
                return
            }
            let difference = SeedDifference(a.test, minus: b.test)
            let decimals = report.unit == .bytes ? 4 : 2
            evidence = "\(subject) − \(reference), test \(report.metricName): \(difference.text(decimals: decimals))"
                + (difference.halfWidth == nil ? "" : " (\(a.seeds) and \(b.seeds) seeds)")
            guard let halfWidth = difference.halfWidth, difference.difference.isFinite else {
                verdict = .untested
                return
            }
            let lower = difference.difference - halfWidth
            let upper = difference.difference + halfWidth
            switch kind {
            case .beats: verdict = upper < 0 ? .holds : lower > 0 ? .disagrees : .unresolved
            case .matchesOrBeats: verdict = lower > 0 ? .disagrees : .holds
            case .matches: verdict = lower > 0 || upper < 0 ? .disagrees : .holds
            }
            if verdict == .disagrees {
                evidence += "; here \(subject) is \(difference.difference < 0 ? "better" : "worse") than \(reference) beyond the noise"
            }
        }
    }

    /// The paper's claims for a comparison that ran the reproduction's variants.
    public static func claims(_ report: ComparisonReport) -> [Claim] {
        let variants = Set(report.rows.map(\.variant))
        var claims = [Claim("σ-MoE matches or beats the parameter-equal dense model", "moe", .matchesOrBeats, "dense", in: report)]
        let optional: [Claim] = [
            Claim("sigmoid selection beats softmax before top-K", "moe", .beats, "moe-softmax-before", in: report),
            Claim("sigmoid selection beats softmax after top-K", "moe", .beats, "moe-softmax-after", in: report),
            Claim("σ-MoE beats Switch at equal parameters", "moe", .beats, "switch", in: report),
            Claim("σ-MoE beats S-BASE at equal parameters", "moe", .beats, "sbase", in: report),
            Claim("improved PKM beats the original PKM", "pkm-init", .beats, "pkm-original", in: report),
            Claim("top-K matches the dense model", "topk", .matches, "dense", in: report),
        ]
        claims += optional.filter { variants.contains($0.subject) && variants.contains($0.reference) }
        return claims
    }

    public struct Section: Sendable {
        public var title: String
        public var report: ComparisonReport
        /// The comparison's folder (as the script named it).
        public var folder: String
        /// The paper's model this size scales down, and its parameter count.
        public var paperSize: String
        public var paperParameters: Int
        /// Training tokens of the paper's runs (steps x batch x segment).
        public var paperTrainingTokens: Int
        /// Training tokens of each run here.
        public var trainingTokens: Int

        public init(title: String, report: ComparisonReport, folder: String, paperSize: String, paperParameters: Int, paperTrainingTokens: Int, trainingTokens: Int) {
            self.title = title
            self.report = report
            self.folder = folder
            self.paperSize = paperSize
            self.paperParameters = paperParameters
            self.paperTrainingTokens = paperTrainingTokens
            self.trainingTokens = trainingTokens
        }
    }

    public var sections: [Section]
    public var command: String
    public var commit: String
    /// The commits the runs trained at (one unless a stopped reproduction continued at another).
    public var trainedAt: [String]
    public var machine: String
    public var wallSeconds: Double?
    public var date: String

    public init(sections: [Section], command: String, commit: String, trainedAt: [String], machine: String, wallSeconds: Double?, date: String) {
        self.sections = sections
        self.command = command
        self.commit = commit
        self.trainedAt = trainedAt
        self.machine = machine
        self.wallSeconds = wallSeconds
        self.date = date
    }

    static func millions(_ count: Int) -> String { String(format: "%.2fM", Double(count) / 1e6) }

    public var markdown: String {
        var lines = [
            "# Results: the feedforward comparisons at CPU scale", "",
            "Written by `\(command)` at commit `\(commit)` on \(date), on \(machine)"
                + (trainedAt == [commit] ? "" : "; the runs trained at commit " + trainedAt.map { "`\($0)`" }.joined(separator: ", "))
                + (wallSeconds.map { String(format: "; the script's wall-clock time was %.0f min (summed over its invocations if it was stopped and continued)", $0 / 60) } ?? "") + ".",
            "Every number below comes from the comparisons' own reports (`report.json` in each folder); "
                + "none is typed by hand. Lower is better for perplexity and bits per character. "
                + "Differences to dense carry the half-width of their 95% interval over seeds (Welch's t); * marks an interval that excludes 0.",
        ]
        for section in sections {
            let report = section.report
            let dense = report.rows.first { $0.variant == "dense" }
            lines += ["", "## \(section.title)", ""]
            if let dense {
                lines.append(
                    "Data \(report.data), \(report.steps) steps of \(section.trainingTokens / max(1, report.steps)) tokens (\(Self.millions(section.trainingTokens)) training tokens per run). "
                        + "The dense model has \(Self.millions(dense.parameters)) parameters: the paper's \(section.paperSize) (\(Self.millions(section.paperParameters))) "
                        + String(format: "scaled down %.0f×, ", Double(section.paperParameters) / Double(dense.parameters))
                        + String(format: "with %.0f× fewer training tokens than its ", Double(section.paperTrainingTokens) / Double(section.trainingTokens))
                        + "\(Self.millions(section.paperTrainingTokens)). "
                        + String(format: "Total parameters of the variants differ by at most %.2f%%. ", report.parameterSpreadPercent)
                        + "Folder: `\(section.folder)`.")
            }
            lines += [""] + ComparisonReport.markdownTable(report.seedTable)
            let wordLevel = report.summaries.compactMap { summary -> [String]? in
                let values = report.rows.filter { $0.variant == summary.variant }.compactMap { $0.test?.wordPerplexity }
                guard !values.isEmpty else { return nil }
                let s = SeedSummary(values)
                return [summary.variant, String(format: "%.1f ± %.1f", s.mean, s.standardDeviation)]
            }
            if !wordLevel.isEmpty {
                lines += ["", "The same test losses as word-level perplexity (the loss of the whole split over its WikiText words rather than its BPE tokens):", ""]
                lines += ComparisonReport.markdownTable([["variant", "test word-level perplexity"]] + wordLevel)
            }
            lines += ["", "### The paper's claims", ""]
            let claims = Self.claims(report)
            lines += ComparisonReport.markdownTable([["claim", "verdict", "evidence"]] + claims.map { [$0.statement, "**\($0.verdict.rawValue)**", $0.evidence] })
            let doubtful = claims.filter { $0.verdict != .holds }
            if !doubtful.isEmpty, let dense {
                let denseSummary = report.summaries.first { $0.variant == "dense" }
                lines += [
                    "",
                    "Where a claim does not hold here (or is not resolved): these models are "
                        + String(format: "%.0f× smaller", Double(section.paperParameters) / Double(dense.parameters))
                        + " than the paper's and see "
                        + String(format: "%.0f× fewer", Double(section.paperTrainingTokens) / Double(section.trainingTokens))
                        + " training tokens, so the sparse blocks' experts or value rows see far fewer updates each; "
                        + "and with \(denseSummary?.seeds ?? 0) dense seeds the intervals are wide (Student's t with few degrees of freedom). "
                        + "The runs were not tuned toward the paper: every variant uses the preset's settings and the same schedule.",
                ]
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// "AMD EPYC 7B13 (family 25, model 1), 2 logical CPUs" from /proc/cpuinfo, where there is one.
    public static var thisMachine: String {
        let cores = ProcessInfo.processInfo.activeProcessorCount
        guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return "\(cores) logical CPUs" }
        func field(_ name: String) -> String? {
            info.split(separator: "\n").first { $0.hasPrefix(name) }?.split(separator: ":", maxSplits: 1).last
                .map { $0.trimmingCharacters(in: .whitespaces) }
        }
        let name = field("model name") ?? "unknown CPU"
        let family = field("cpu family").map { "family \($0)" }
        let model = field("model\t").map { "model \($0)" }
        let detail = [family, model].compactMap { $0 }.joined(separator: ", ")
        return "\(name)\(detail.isEmpty ? "" : " (\(detail))"), \(cores) logical CPUs"
    }
}
