import ArgumentParser
import Configuration
import Datasets
import Foundation
import Layers
import Models
import Tensor
import Training

#if canImport(Glibc)
import Glibc
#endif

struct Train: ParsableCommand, DataParallelCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a model; evaluates on valid and test at the end.",
        discussion: """
            Writes config.json, metrics.jsonl, checkpoints/ and report.json into the run directory, \
            which one process at a time may use (it holds RUN/.lock). Ctrl-C or SIGTERM stops after \
            the current step with a checkpoint and exits 130 or 143 (continue with --resume); a \
            second Ctrl-C stops at once. A run whose predicted peak memory (as lmtrain count \
            prints it) exceeds the memory available is refused unless --force.
            """)

    @OptionGroup var options: ConfigOptions
    @OptionGroup var threads: ThreadOptions

    @Option(help: "Run directory (default runs/PRESET-DATE-TIME, with -2, -3, ... when taken). Not with --resume, which continues in the run's own directory.")
    var runDir: String?

    @Option(help: "Continue a run: its directory (newest checkpoint) or a checkpoint file. The run's config is kept; a finished run is left as it is.")
    var resume: String?

    @Option(parsing: .unconditional, help: "Stop after this many steps (checkpointing there) without changing the schedule; resume later with --resume.")
    var stopAt: Int?

    @Flag(help: "Start even when the predicted peak memory exceeds the memory available.")
    var force = false

    func validate() throws {
        if resume != nil, runDir != nil {
            throw ValidationError("--resume continues a run in its own directory: drop --run-dir")
        }
        try check(stopAt, "--stop-at", atLeast(1))
    }

    func run() throws {
        try threads.apply()
        // One process per run directory, from before anything in it is read until this one ends.
        guard let (trainer, lock) = try start() else { return }
        try withExtendedLifetime(lock) { try train(trainer) }
    }

    /// The trainer of a new or resumed run and the lock on its directory; nil for a finished
    /// run, which is left untouched.
    func start() throws -> (Trainer, RunDirectoryLock?)? {
        guard let resume else {
            let (config, note) = try options.resolveWithNote()
            if let note { print(note) }
            let directory = try runDirectory()
            let lock = try lockRunDirectory(directory)
            try Trainer.requireFree(directory)
            let task = try Trainer.task(for: config)
            try admit(Trainer.runConfig(config, task: task))
            return (try Trainer(config: config, task: task, runDirectory: directory, collective: Job.collective), lock)
        }
        if options.changesConfig {
            throw ValidationError("--resume continues the saved config: drop the config flags (only --threads and --stop-at apply)")
        }
        let (runDirectory, checkpointURL) = try Self.locate(resume)
        let lock = try lockRunDirectory(runDirectory)
        guard let checkpointURL else {
            // Stopped before its first checkpoint: start over with the saved config.
            let file = runDirectory.appendingPathComponent("config.json")
            let config = try ConfigResolution.decode(ConfigResolution.readObject(file), source: file.path)
            let task = try Trainer.task(for: config)
            try admit(Trainer.runConfig(config, task: task))
            let trainer = try Trainer(
                config: config, task: task, runDirectory: runDirectory, restarting: true, collective: Job.collective)
            print("\(runDirectory.path) has no checkpoint yet: starting it over from step 0 with its config.json")
            return (trainer, lock)
        }
        let checkpoint = try loadCheckpoint(checkpointURL)
        // A checkpoint of another run is refused before anything is judged from it (such as
        // whether the run has finished).
        try checkpoint.requireConfig(ofRunIn: runDirectory)
        let report = runDirectory.appendingPathComponent("report.json")
        if (checkpoint.solved || (checkpoint.step ?? 0) >= checkpoint.config.training.steps),
            FileManager.default.fileExists(atPath: report.path)
        {
            print("\(runDirectory.path) finished at step \(checkpoint.step ?? 0) and was evaluated (\(report.path)): nothing to resume")
            return nil
        }
        if let note = ConfigDrift.note(runDirectory: runDirectory, checkpoint: checkpoint.config) { print(note) }
        let task = try Trainer.task(for: checkpoint.config)
        try admit(checkpoint.config)
        let trainer = try Trainer(resuming: checkpoint, task: task, runDirectory: runDirectory, collective: Job.collective)
        print("resuming \(checkpointURL.path) at step \(trainer.step)")
        return (trainer, lock)
    }

    /// `--run-dir`, or a new default directory, which rank 0 of a data-parallel job creates and
    /// names to the others.
    func runDirectory() throws -> URL {
        if let runDir { return URL(fileURLWithPath: runDir) }
        let collective = Job.collective
        let path = collective.rank == 0 ? try Self.makeDefaultRunDirectory(preset: options.preset).path : ""
        return URL(fileURLWithPath: collective.broadcast(path))
    }

    /// The lock on the run directory, held by rank 0 for the whole job (nil on the other ranks,
    /// which wait until rank 0 holds it: it also creates the directory).
    func lockRunDirectory(_ directory: URL) throws -> RunDirectoryLock? {
        let collective = Job.collective
        let lock = collective.rank == 0 ? try RunDirectoryLock(directory) : nil
        collective.barrier()
        return lock
    }

    /// Refuses a run that is predicted not to fit in memory, unless --force.
    func admit(_ config: RunConfig) throws {
        guard !force else { return }
        try MemoryAdmission.check(config, available: MemoryAdmission.available())
    }

    /// Trains, then evaluates a finished run. SIGINT or SIGTERM stop it after a step with a
    /// checkpoint and exit 130 or 143.
    func train(_ trainer: Trainer) throws {
        let t = trainer.config.training
        print("run \(trainer.runDirectory.path)")
        print(trainer.task.dataSummary)
        print("model \(trainer.config.model.kind): \(trainer.config.model.summary), \(trainer.model.layout.count) parameters")
        print("training \(t.steps) steps\(t.epochs.map { " (\($0) epochs)" } ?? "") of \(trainer.task.batchDescription), \(t.optimizer.rawValue), lr \(t.learningRate) \(t.schedule.rawValue), \(Threads.count) threads")
        let blas = OpenBLASKernel.status
        print("OpenBLAS kernel \(blas.kernel) (\(blas.reason))")
        let resumeCommand = "lmtrain train --resume \(trainer.runDirectory.path)"
        let interruption = Interruption(resumeCommand: resumeCommand)
        let observer = ConsoleObserver(logInterval: t.logInterval, describe: trainer.task.describe(loss:))
        try trainer.run(stopAt: stopAt, observer: observer) { interruption.receivedSignal != nil }
        Self.printUsage(trainer.runUsage)
        if let signal = interruption.receivedSignal {
            print("interrupted at step \(trainer.step), checkpoint \(trainer.lastCheckpoint?.path ?? "none"); continue with: \(resumeCommand)")
            throw ExitCode(Interruption.status(signal))
        }
        guard trainer.isFinished else {
            print("stopped at step \(trainer.step); continue with: \(resumeCommand)")
            return
        }
        interruption.stopAtOnceFromNow("during the final evaluation: the checkpoint of step \(trainer.step) is kept and resuming evaluates again")
        let progress = EvaluationConsole()
        let report = try trainer.finish { progress.report(split: $0, $1) }
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

    /// Creates `runs/PRESET-DATE-TIME`, or the first of `...-2`, `...-3`, ... not yet taken:
    /// `mkdir` fails on an existing folder, so two runs started in the same second never share one.
    static func makeDefaultRunDirectory(preset: String) throws -> URL {
        let formatter = DateFormatter()
        formatter.dateFormat = "yyyyMMdd-HHmmss"
        let base = "runs/\(preset)-\(formatter.string(from: Date()))"
        do {
            try FileManager.default.createDirectory(atPath: "runs", withIntermediateDirectories: true)
        } catch {
            throw ValidationError("runs: cannot create the folder of run directories here; choose a writable --run-dir")
        }
        for attempt in 1...1000 {
            let path = attempt == 1 ? base : "\(base)-\(attempt)"
            if mkdir(path, 0o755) == 0 { return URL(fileURLWithPath: path) }
            guard errno == EEXIST else {
                throw ValidationError("\(path): cannot create the run directory (\(String(cString: strerror(errno)))); choose a writable --run-dir")
            }
        }
        throw ValidationError("\(base): 1000 run directories of this second exist; choose --run-dir")
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
