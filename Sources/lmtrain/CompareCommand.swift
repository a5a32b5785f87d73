import Accounting
import ArgumentParser
import Configuration
import Datasets
import Foundation
import Training

struct Compare: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train several feedforward variants on the same data, seed, steps and schedule, and report them side by side.",
        discussion: """
            Example: lmtrain compare --preset quickstart --variants dense,moe,pkm-matched,topk
            The variants are audited first; unequal parameter counts stop the comparison unless
            --allow-unequal is given (the report then says so). Writes report.md, report.json,
            validation.svg and usage.svg, and one run directory per variant (per variant and
            seed with --seeds N: seeds S, S+1, ..., S+N-1 from --seed S, and the report adds
            mean and standard deviation over the seeds and the difference to dense with its 95%
            interval). The same command with the same --output continues a comparison that was
            stopped: finished runs are kept, stopped ones resumed from their last checkpoint.
            VARIANT:N in --variants gives that variant N seeds instead of --seeds
            (--variants dense:3,moe:3,switch:2).
            """)

    @OptionGroup var options: ConfigOptions
    @Option(help: "Comma-separated variants, each optionally with its seed count as VARIANT:N: \(Preset.Variant.allCases.map(\.rawValue).joined(separator: ", ")).")
    var variants: String = "dense,moe"
    @Option(help: "Output folder (default runs/compare-PRESET-DATE-TIME).") var output: String?
    @Option(help: "Allowed difference in total parameters, in percent.") var tolerance: Double = 0.5
    @Option(help: "Seeds per variant: the config's seed and the next ones.") var seeds: Int = 1
    @Flag(help: "Run even when parameter counts differ by more than the tolerance (the report is marked).")
    var allowUnequal = false
    @OptionGroup var threads: ThreadOptions

    func run() throws {
        try threads.apply()
        guard seeds >= 1 else { throw ValidationError("--seeds must be at least 1 (got \(seeds))") }
        guard let base = Preset(name: options.preset), base.variant == nil else {
            throw ValidationError("compare --preset takes a size (\(Preset.sizeNames)); the variants come from --variants")
        }
        guard options.feedForward.change.isEmpty else {
            throw ValidationError("compare sets the feedforward block of each variant: drop --ffn and the block options")
        }
        let (chosen, seedCounts) = try Self.parseVariants(variants, defaultSeeds: seeds)

        // One config per variant: the size's preset, the variant's block, then the flags.
        var configs: [(Preset.Variant, RunConfig)] = []
        for variant in chosen {
            var variantOptions = options
            variantOptions.preset = variant == .dense ? base.size.rawValue : "\(base.size.rawValue)-\(variant.rawValue)"
            configs.append((variant, try variantOptions.resolve()))
        }
        let corpus = try CorpusLoader.load(configs[0].1.data)
        for i in configs.indices { configs[i].1.model.vocabularySize = corpus.vocabularySize }

        let audit = try Accounting.Audit(configs.map { try Accounting.Audit.Entry(name: $0.0.rawValue, config: $0.1) })
        print(audit.table())
        let spread = 100 * audit.parameterSpread
        let equal = audit.passes(tolerance: tolerance / 100)
        if !equal && !allowUnequal {
            throw ValidationError(String(format: "the variants' parameters differ by %.2f%% (tolerance %.2f%%): refusing an unequal comparison; adjust the sizes or pass --allow-unequal", spread, tolerance))
        }

        let folder = try output.map { URL(fileURLWithPath: $0) } ?? Train.makeDefaultRunDirectory(preset: "compare-\(base.size.rawValue)")
        if FileManager.default.fileExists(atPath: folder.appendingPathComponent("report.json").path) {
            throw ValidationError("\(folder.path) already holds a comparison: choose another --output")
        }
        // A folder with configs but no report holds a comparison that stopped: continue it.
        let continuing = FileManager.default.fileExists(atPath: folder.appendingPathComponent("configs").path)
        try AtomicFile.write(Data(), to: folder.appendingPathComponent(".lmtrain-compare"))
        let firstSeed = configs[0].1.training.seed
        let mostSeeds = seedCounts.max()!
        let seedList = (0..<UInt64(mostSeeds)).map { firstSeed &+ $0 }
        var rows: [ComparisonReport.Row] = []
        for (((variant, config), entry), count) in zip(zip(configs, audit.entries), seedCounts) {
            for seed in seedList.prefix(count) {
                var seeded = config
                seeded.training.seed = seed
                let name = mostSeeds == 1 ? variant.rawValue : "\(variant.rawValue)-seed-\(seed)"
                let runDirectory = folder.appendingPathComponent(name)
                print("\n== \(variant.rawValue)\(mostSeeds == 1 ? "" : ", seed \(seed)"): \(config.model.summary) ==")
                let configFile = folder.appendingPathComponent("configs/\(name).json")
                let configJSON = ConfigResolution.prettyJSON(seeded)
                if continuing, let saved = FileManager.default.contents(atPath: configFile.path), saved != configJSON {
                    throw ValidationError("\(folder.path) holds a stopped comparison with another config for \(name) (\(configFile.path)): repeat its command or choose another --output")
                }
                try AtomicFile.write(configJSON, to: configFile)
                fflush(nil)
                if FileManager.default.fileExists(atPath: runDirectory.appendingPathComponent("report.json").path) {
                    print("finished earlier: kept (\(runDirectory.path))")
                } else if FileManager.default.fileExists(atPath: runDirectory.appendingPathComponent("config.json").path) {
                    // Stopped: resume from its newest checkpoint (or start it over without one).
                    try Self.runChild(["train", "--resume", runDirectory.path, "--threads", String(threads.threads)], variant: name)
                } else {
                    try Self.runChild(["train", "--config", configFile.path, "--run-dir", runDirectory.path, "--threads", String(threads.threads)], variant: name)
                }
                rows.append(try Self.row(variant: variant.rawValue, seed: seed, entry: entry, runDirectory: runDirectory))
            }
        }
        let t = configs[0].1.training
        let report = ComparisonReport(
            preset: base.size.rawValue, steps: t.steps, seeds: seedList, data: corpus.name, unit: corpus.unit,
            parameterSpreadPercent: spread, tolerancePercent: tolerance, unequal: !equal, rows: rows)
        try writeJSON(report, to: folder.appendingPathComponent("report.json"))
        try AtomicFile.write(Data(report.markdown.utf8), to: folder.appendingPathComponent("report.md"))
        try AtomicFile.write(Data(report.validationChart.utf8), to: folder.appendingPathComponent("validation.svg"))
        try AtomicFile.write(Data(report.usageChart.utf8), to: folder.appendingPathComponent("usage.svg"))
        try? FileManager.default.removeItem(at: folder.appendingPathComponent(".lmtrain-compare"))
        print("\ncomparison (\(corpus.name), \(t.steps) steps, \(mostSeeds == 1 ? "seed \(t.seed)" : "seeds \(seedList.map(String.init).joined(separator: ", "))")\(equal ? "" : ", UNEQUAL parameter counts")):")
        print(report.text)
        print("report \(folder.appendingPathComponent("report.md").path)")
    }

    /// Parses `--variants`: names with an optional `:N` seed count (default `defaultSeeds`).
    static func parseVariants(_ list: String, defaultSeeds: Int) throws -> (variants: [Preset.Variant], seeds: [Int]) {
        var chosen: [Preset.Variant] = []
        var counts: [Int] = []
        for item in list.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) {
            let parts = item.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
            guard let variant = Preset.Variant(rawValue: parts[0]) else {
                throw ValidationError("--variants: '\(parts[0])' is unknown: use \(Preset.Variant.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            var count = defaultSeeds
            if parts.count > 1 {
                guard parts.count == 2, let n = Int(parts[1]), n >= 1 else {
                    throw ValidationError("--variants: '\(item)' needs a seed count of at least 1 after the colon (e.g. \(parts[0]):3)")
                }
                count = n
            }
            chosen.append(variant)
            counts.append(count)
        }
        guard chosen.count >= 2, Set(chosen).count == chosen.count else {
            throw ValidationError("--variants needs at least two different variants (got \(list))")
        }
        return (chosen, counts)
    }

    /// Runs this binary as a child (its own process, so its peak memory is its own).
    static func runChild(_ arguments: [String], variant: String) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        process.arguments = arguments
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw ValidationError("variant \(variant) failed (exit \(process.terminationStatus)); its run directory has the details")
        }
    }

    /// Reads a finished run back: report.json and the validation lines of metrics.jsonl.
    static func row(variant: String, seed: UInt64, entry: Accounting.Audit.Entry, runDirectory: URL) throws -> ComparisonReport.Row {
        let report = try RunReport.read(runDirectory.appendingPathComponent("report.json"))
        var validation: [[Double]] = []
        let log = (try? String(contentsOf: runDirectory.appendingPathComponent("metrics.jsonl"), encoding: .utf8)) ?? ""
        for line in log.split(separator: "\n") {
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                let type = object["type"] as? String, let step = object["step"] as? Int, let loss = object["loss"] as? Double
            else { continue }
            if type == "valid" || (type == "final" && object["split"] as? String == "valid") {
                validation.append([Double(step), loss])
            }
        }
        let account = entry.account
        return ComparisonReport.Row(
            variant: variant, seed: seed, feedForward: entry.config.model.feedForward?.summary ?? entry.config.model.summary,
            parameters: account.parameters.total, activeParameters: account.parameters.activePerToken,
            feedForwardShareUsed: account.parameters.feedForwardShareUsed ?? 1, flopsPerToken: account.flops.forwardPerToken,
            valid: report.result("valid"), test: report.result("test"),
            trainingTokensPerSecond: report.trainingTokensPerSecond, peakResidentBytes: report.peakResidentBytes,
            predictedPeakBytes: account.memory.peakTraining, runDirectory: runDirectory.path,
            validation: validation, usagePerplexity: report.usage.map(\.relativePerplexity),
            deadFraction: report.usage.map(\.deadFraction), usageUnit: report.usage.first?.unit)
    }
}
