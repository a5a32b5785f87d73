import Configuration
import Foundation

/// The results of a grid of formal-language runs (`lmtrain formal sweep`): per task and model
/// the best Bin0 and Bin1 accuracy over the seeds, per cell how many seeds reached 100% on
/// Bin1, after how many epochs and in what wall time, and the Bin1 accuracy over training.
public struct FormalSweepReport: Sendable, Codable {
    /// One run of the grid.
    public struct Run: Sendable, Codable {
        public var task: String
        public var model: String
        public var seed: UInt64
        public var runDirectory: String
        /// Accuracies of the best checkpoint (%), nil until the run finished.
        public var bin0: Double?
        public var bin1: Double?
        /// The epoch of the first evaluation with 100% on Bin1, nil if none had.
        public var epochsToSolveBin1: Double?
        /// Epochs trained, fractional when the run stopped inside an epoch.
        public var epochsTrained: Double
        public var trainingSeconds: Double?
        public var parameters: Int?
        /// (epoch, Bin1 accuracy) of every periodic evaluation.
        public var bin1Curve: [[Double]]

        enum CodingKeys: String, CodingKey {
            case task, model, seed, bin0, bin1, parameters
            case runDirectory = "run_directory", epochsToSolveBin1 = "epochs_to_solve_bin1"
            case epochsTrained = "epochs_trained", trainingSeconds = "training_seconds", bin1Curve = "bin1_curve"
        }

        public var finished: Bool { bin0 != nil && bin1 != nil }
    }

    public var tasks: [String]
    public var models: [String]
    /// Seeds per cell of each task.
    public var seeds: [String: Int]
    public var command: String
    public var runs: [Run]

    public init(tasks: [String], models: [String], seeds: [String: Int], command: String, runs: [Run]) {
        self.tasks = tasks
        self.models = models
        self.seeds = seeds
        self.command = command
        self.runs = runs
    }

    /// Reads one run directory: `report.json` when the run finished, the metrics log for the
    /// curve and the epochs.
    public static func run(task: String, model: String, seed: UInt64, directory: URL) -> Run {
        var run = Run(
            task: task, model: model, seed: seed, runDirectory: directory.path, epochsTrained: 0, bin1Curve: [])
        let configURL = directory.appendingPathComponent("config.json")
        guard let object = try? ConfigResolution.readObject(configURL),
            let config = try? ConfigResolution.decode(object, source: configURL.path)
        else { return run }
        let batchesPerEpoch = Double(config.training.steps) / Double(config.training.epochs ?? 1)
        let log = (try? String(contentsOf: directory.appendingPathComponent("metrics.jsonl"), encoding: .utf8)) ?? ""
        for line in log.split(separator: "\n") {
            guard let record = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                let step = record["step"] as? Int
            else { continue }
            let epoch = Double(step) / batchesPerEpoch
            run.epochsTrained = max(run.epochsTrained, epoch)
            guard record["type"] as? String == "valid", record["split"] as? String == "bin1",
                let accuracy = record["accuracy"] as? Double
            else { continue }
            run.bin1Curve.append([epoch, accuracy])
            if accuracy == 100 && run.epochsToSolveBin1 == nil { run.epochsToSolveBin1 = epoch }
        }
        if let report = try? RunReport.read(directory.appendingPathComponent("report.json")) {
            run.bin0 = report.result("bin0")?.metric("accuracy")
            run.bin1 = report.result("bin1")?.metric("accuracy")
            run.trainingSeconds = report.trainingSeconds
            run.parameters = report.parameters
        }
        return run
    }

    func runs(task: String, model: String) -> [Run] {
        runs.filter { $0.task == task && $0.model == model && $0.finished }
    }

    /// "99.95 / 12.30": the best Bin0 and Bin1 accuracy over the finished seeds.
    func cell(task: String, model: String) -> String {
        let finished = runs(task: task, model: model)
        guard let bin0 = finished.compactMap(\.bin0).max(), let bin1 = finished.compactMap(\.bin1).max() else { return "-" }
        return String(format: "%.1f / %.1f", bin0, bin1)
    }

    /// report.md: the accuracy table, then per task with several seeds the seeds table.
    public var markdown: String {
        var lines = [
            "# Formal-language sweep", "",
            "Best Bin0 / Bin1 sequence accuracy (%) of the best checkpoint (by the mean of the two) over the seeds of a cell: "
                + tasks.map { "\($0) \(seeds[$0] ?? 1)" }.joined(separator: ", ") + ".",
            "", "| task | " + models.joined(separator: " | ") + " |",
            "|---|" + models.map { _ in "---:" }.joined(separator: "|") + "|",
        ]
        for task in tasks {
            lines.append("| \(task) | " + models.map { cell(task: task, model: $0) }.joined(separator: " | ") + " |")
        }
        for task in tasks where (seeds[task] ?? 1) > 1 {
            do {
                lines += [
                    "", "## \(task): seeds", "",
                    "| model | seeds at 100% Bin1 | epochs to 100% Bin1 (each such seed) | Bin1 per seed | wall time per seed |",
                    "|---|---:|---|---|---|",
                ]
                for model in models {
                    let finished = runs(task: task, model: model).sorted { $0.seed < $1.seed }
                    let solved = finished.filter { $0.epochsToSolveBin1 != nil }
                    lines.append("| \(model) | \(solved.count) of \(finished.count) | "
                        + (solved.isEmpty ? "-" : solved.map { String(format: "%.1f", $0.epochsToSolveBin1!) }.joined(separator: ", ")) + " | "
                        + finished.map { String(format: "%.1f", $0.bin1 ?? 0) }.joined(separator: ", ") + " | "
                        + finished.map { FormalSweepReport.duration($0.trainingSeconds ?? 0) }.joined(separator: ", ") + " |")
                }
            }
        }
        let total = runs.compactMap(\.trainingSeconds).reduce(0, +)
        lines += [
            "", "Runs: \(runs.filter(\.finished).count) finished of \(runs.count); training time of all runs together \(FormalSweepReport.duration(total)).",
            "", "Command: `\(command)`", "",
        ]
        lines += tasks.map { "![\($0)](accuracy-\($0).svg)" }
        return lines.joined(separator: "\n") + "\n"
    }

    /// accuracy-TASK.svg: Bin1 accuracy over the epochs, one line per model and seed.
    public func chart(task: String) -> String {
        let series = runs.filter { $0.task == task }.map { run in
            SVGChart.Series(name: "\(run.model) s\(run.seed)", points: run.bin1Curve.map { (x: $0[0], y: $0[1]) })
        }
        return SVGChart.lines(title: "Bin1 accuracy, \(task)", xLabel: "epoch", yLabel: "Bin1 accuracy (%)", series: series)
    }

    static func duration(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        return s >= 3600 ? "\(s / 3600) h \(s % 3600 / 60) min" : s >= 60 ? "\(s / 60) min \(s % 60) s" : "\(s) s"
    }
}
