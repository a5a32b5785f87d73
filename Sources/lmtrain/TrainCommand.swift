import ArgumentParser
import Configuration
import Datasets
import Foundation
import Layers
import Models
import Tensor
import Training

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a model; evaluates on valid and test at the end.",
        discussion: "Writes config.json, metrics.jsonl, checkpoints/ and report.json into the run directory.")

    @OptionGroup var options: ConfigOptions
    @OptionGroup var threads: ThreadOptions

    @Option(help: "Run directory (default runs/PRESET-DATE-TIME).")
    var runDir: String?

    @Option(help: "Continue a run: its directory (newest checkpoint) or a checkpoint file.")
    var resume: String?

    @Option(help: "Stop after this many steps (checkpointing there) without changing the schedule; resume later with --resume.")
    var stopAt: Int?

    func run() throws {
        try threads.apply()
        let trainer: Trainer
        if let resume {
            if options.changesConfig {
                throw ValidationError("--resume continues the saved config: drop the config flags (only --threads and --stop-at apply)")
            }
            let (runDirectory, checkpointURL) = try Self.locate(resume)
            if let checkpointURL {
                let checkpoint = try loadCheckpoint(checkpointURL)
                trainer = try Trainer(resuming: checkpoint, task: Trainer.task(for: checkpoint.config), runDirectory: runDirectory)
                print("resuming \(checkpointURL.path) at step \(trainer.step)")
            } else {
                // Stopped before its first checkpoint: start over with the saved config.
                let file = runDirectory.appendingPathComponent("config.json")
                let config = try ConfigResolution.decode(ConfigResolution.readObject(file), source: file.path)
                trainer = try Trainer(config: config, task: Trainer.task(for: config), runDirectory: runDirectory, restarting: true)
                print("\(runDirectory.path) has no checkpoint yet: starting it over from step 0 with its config.json")
            }
        } else {
            let (config, note) = try options.resolveWithNote()
            if let note { print(note) }
            let directory = runDir.map { URL(fileURLWithPath: $0) } ?? Self.defaultRunDirectory(preset: options.preset)
            trainer = try Trainer(config: config, task: Trainer.task(for: config), runDirectory: directory)
        }
        let t = trainer.config.training
        print("run \(trainer.runDirectory.path)")
        print(trainer.task.dataSummary)
        print("model \(trainer.config.model.kind): \(trainer.config.model.summary), \(trainer.model.layout.count) parameters")
        print("training \(t.steps) steps\(t.epochs.map { " (\($0) epochs)" } ?? "") of \(trainer.task.batchDescription), \(t.optimizer.rawValue), lr \(t.learningRate) \(t.schedule.rawValue), \(Threads.count) threads")
        let blas = OpenBLASKernel.status
        print("OpenBLAS kernel \(blas.kernel) (\(blas.reason))")
        let observer = ConsoleObserver(logInterval: t.logInterval, describe: trainer.task.describe(loss:))
        try trainer.run(stopAt: stopAt, observer: observer)
        Self.printUsage(trainer.runUsage)
        guard trainer.isFinished else {
            print("stopped at step \(trainer.step); continue with: lmtrain train --resume \(trainer.runDirectory.path)")
            return
        }
        let report = try trainer.finish()
        print("")
        print("evaluation (\(trainer.task.evaluationDescription)\(trainer.bestScore == nil ? "" : ", best checkpoint")):")
        for r in report.results {
            print("  \(r.split.padding(toLength: 6, withPad: " ", startingAt: 0)) loss \(String(format: "%.4f", r.loss)) | \(r.metricText) | \(r.tokens) tokens")
        }
        print("  (a uniform prediction scores \(trainer.task.uniformPredictionText))")
        print("report \(trainer.runDirectory.appendingPathComponent("report.json").path)")
    }

    /// Expert (or value-row) usage over the training steps of this process, per layer.
    static func printUsage(_ runUsage: [UsageCounts]) {
        guard !runUsage.isEmpty else { return }
        let unit = runUsage[0].unit
        print("\(unit) usage over the training steps run here (relative perplexity exp(H)/N, \(unit == "value" ? "share of value rows used" : "dead \(unit)s")):")
        for (layer, usage) in runUsage.enumerated() {
            let share = unit == "value"
                ? String(format: "%.1f%% used", 100 * usage.usedFraction)
                : "\(usage.counts.filter { $0 == 0 }.count)/\(usage.counts.count) dead"
            print("  layer \(layer): perplexity \(String(format: "%.3f", usage.relativePerplexity)), \(share)")
        }
    }

    static func defaultRunDirectory(preset: String) -> URL {
        let formatter = DateFormatter()
        formatter.dateFormat = "yyyyMMdd-HHmmss"
        return URL(fileURLWithPath: "runs/\(preset)-\(formatter.string(from: Date()))")
    }

    /// A run directory (its newest checkpoint, or none yet) or a checkpoint file inside
    /// `RUN/checkpoints/`.
    static func locate(_ path: String) throws -> (URL, URL?) {
        let url = URL(fileURLWithPath: path)
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) else {
            throw ValidationError("--resume \(path): no such run directory or checkpoint")
        }
        if isDirectory.boolValue {
            if let newest = Trainer.checkpoints(in: url).last { return (url, newest) }
            guard FileManager.default.fileExists(atPath: url.appendingPathComponent("config.json").path) else {
                throw ValidationError("--resume \(path): not a run directory (no config.json and no checkpoints/step-*.safetensors)")
            }
            return (url, nil)
        }
        return (url.deletingLastPathComponent().deletingLastPathComponent(), url)
    }
}
