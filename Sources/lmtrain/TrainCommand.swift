import ArgumentParser
import Datasets
import Foundation
import Models
import Tensor
import Configuration
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
                let checkpoint = try Checkpoint.load(checkpointURL)
                let corpus = try CorpusLoader.load(checkpoint.config.data)
                trainer = try Trainer(resuming: checkpoint, corpus: corpus, runDirectory: runDirectory)
                print("resuming \(checkpointURL.path) at step \(trainer.step)")
            } else {
                // Stopped before its first checkpoint: start over with the saved config.
                let file = runDirectory.appendingPathComponent("config.json")
                let config = try ConfigResolution.decode(ConfigResolution.readObject(file), source: file.path)
                let corpus = try CorpusLoader.load(config.data)
                trainer = try Trainer(config: config, corpus: corpus, runDirectory: runDirectory, restarting: true)
                print("\(runDirectory.path) has no checkpoint yet: starting it over from step 0 with its config.json")
            }
        } else {
            let (config, note) = try options.resolveWithNote()
            if let note { print(note) }
            let corpus = try CorpusLoader.load(config.data)
            let directory = runDir.map { URL(fileURLWithPath: $0) } ?? Self.defaultRunDirectory(preset: options.preset)
            trainer = try Trainer(config: config, corpus: corpus, runDirectory: directory)
        }
        let config = trainer.config
        print("run \(trainer.runDirectory.path)")
        print("data \(trainer.corpus.name): train \(trainer.corpus.train.count), valid \(trainer.corpus.valid.count), test \(trainer.corpus.test.count) tokens")
        print("model \(config.model.layers) layers, d_model \(config.model.modelWidth), \(config.model.heads) heads x \(config.model.resolvedHeadSize), ffn \(config.model.feedForward.kind), \(trainer.model.parameterCount) parameters")
        print("training \(config.training.steps) steps of \(config.training.batchSize) x \(config.training.segmentLength) tokens (memory \(config.training.memoryLength)), lr \(config.training.learningRate), \(Threads.count) threads")
        let observer = ConsoleObserver(logInterval: config.training.logInterval)
        let started = Date()
        let startStep = trainer.step
        try trainer.run(stopAt: stopAt, observer: observer)
        let throughput = Double((trainer.step - startStep) * config.training.batchSize * config.training.segmentLength) / Date().timeIntervalSince(started)
        Self.printUsage(trainer)
        guard trainer.step >= config.training.steps else {
            print("stopped at step \(trainer.step); continue with: lmtrain train --resume \(trainer.runDirectory.path)")
            return
        }
        try Self.finalReport(trainer, trainingTokensPerSecond: throughput)
    }

    /// Full valid and test evaluation with the configured protocol, printed and saved.
    static func finalReport(_ trainer: Trainer, trainingTokensPerSecond: Double) throws {
        let config = trainer.config
        var results: [EvaluationResult] = []
        for split in [Split.valid, .test] {
            let result = try Evaluator.evaluate(
                model: trainer.model, tokens: trainer.corpus.split(split), split: split.rawValue,
                unit: trainer.corpus.unit, batchSize: config.evaluation.batchSize,
                segmentLength: config.training.segmentLength, memorySegments: config.evaluation.memorySegments)
            trainer.writeEvaluation(result, type: "final")
            results.append(result)
        }
        let initial = log(Double(trainer.corpus.vocabularySize))
        print("")
        print("evaluation (batch \(config.evaluation.batchSize), memory \(config.evaluation.memorySegments) x \(config.training.segmentLength)):")
        for r in results {
            print("  \(r.split.padding(toLength: 6, withPad: " ", startingAt: 0)) loss \(String(format: "%.4f", r.loss)) | \(r.metricText) | \(r.tokens) tokens")
        }
        let initialText = trainer.corpus.unit == .bytes ? String(format: "bpc %.4f", initial / log(2.0)) : String(format: "ppl %.1f", exp(initial))
        print("  (a uniform prediction scores \(initialText))")
        let usage = trainer.runUsage.enumerated().map { layer, u in
            FinalReport.Usage(layer: layer, unit: u.unit, relativePerplexity: u.relativePerplexity, deadFraction: u.deadFraction, usedFraction: u.usedFraction, counts: u.counts)
        }
        let report = FinalReport(
            config: config, parameters: trainer.model.parameterCount, steps: trainer.step,
            results: results, checkpoint: trainer.lastCheckpoint?.path,
            trainingTokensPerSecond: trainingTokensPerSecond,
            peakResidentBytes: peakResidentBytes(), usage: usage)
        let url = trainer.runDirectory.appendingPathComponent("report.json")
        try writeJSON(report, to: url)
        print("report \(url.path)")
    }

    /// Expert (or value-row) usage over the training steps of this process, per layer.
    static func printUsage(_ trainer: Trainer) {
        guard !trainer.runUsage.isEmpty else { return }
        let unit = trainer.runUsage[0].unit
        print("\(unit) usage over the training steps run here (relative perplexity exp(H)/N, \(unit == "value" ? "share of value rows used" : "dead \(unit)s")):")
        for (layer, usage) in trainer.runUsage.enumerated() {
            let share = unit == "value"
                ? String(format: "%.1f%% used", 100 * usage.usedFraction)
                : "\(usage.counts.filter { $0 == 0 }.count)/\(usage.counts.count) dead"
            print("  layer \(layer): perplexity \(String(format: "%.3f", usage.relativePerplexity)), \(share)")
        }
    }

    /// `report.json` of a finished run (read back by `lmtrain compare`).
    struct FinalReport: Codable {
        let config: RunConfig
        let parameters: Int
        let steps: Int
        let results: [EvaluationResult]
        let checkpoint: String?
        /// Training tokens per second over the steps this process ran (resumed runs: the last part).
        let trainingTokensPerSecond: Double
        /// Peak resident set size of the process (getrusage).
        let peakResidentBytes: Int
        let usage: [Usage]

        struct Usage: Codable {
            let layer: Int, unit: String, relativePerplexity: Double, deadFraction: Double, usedFraction: Double, counts: [Int]
            enum CodingKeys: String, CodingKey {
                case layer, unit, counts
                case relativePerplexity = "relative_perplexity", deadFraction = "dead_fraction", usedFraction = "used_fraction"
            }
        }

        enum CodingKeys: String, CodingKey {
            case config, parameters, steps, results, checkpoint, usage
            case trainingTokensPerSecond = "training_tokens_per_second", peakResidentBytes = "peak_resident_bytes"
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
