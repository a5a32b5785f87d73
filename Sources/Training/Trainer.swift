import Configuration
import Datasets
import Foundation
import Layers
import Models
import Tensor

/// What one optimiser step did.
public struct StepRecord: Sendable, Equatable {
    /// Steps completed, including this one (1-based).
    public var step: Int
    /// Mean cross-entropy plus auxiliary losses: the optimised scalar.
    public var loss: Double
    public var crossEntropy: Double
    public var auxiliaryLoss: Double
    public var learningRate: Double
    /// Positions of the step's batch (padding included).
    public var positions: Int
    /// Global gradient norm before clipping.
    public var gradientNorm: Double
    public var tokensPerSecond: Double
    public var elapsedSeconds: Double
}

/// Receives progress; the CLI prints it, tests collect it.
public protocol TrainingObserver: AnyObject {
    func didStep(_ record: StepRecord, totalSteps: Int)
    func didEvaluate(_ result: EvaluationResult, atStep step: Int)
    func didSaveCheckpoint(_ url: URL, atStep step: Int)
}

/// Training stopped for a reason the user must see.
public struct TrainingError: Error, CustomStringConvertible {
    public let description: String
}

/// The training loop, for any model and task: the task's batches, loss + regularisers,
/// backward, global-norm clipping, the optimiser with its schedule, periodic validation,
/// atomic checkpoints, metrics as JSON lines, and the final evaluation and report.
public final class Trainer {
    public let config: RunConfig
    public let task: any TrainingTask
    public let model: any SequenceModel
    public let optimizer: any Optimizer
    public let schedule: any LearningRateSchedule
    /// The state the model carries between training batches (validation uses its own).
    public let state: (any CarriedState)?
    public let runDirectory: URL
    public private(set) var rng: RandomGenerator
    /// Optimiser steps completed.
    public private(set) var step: Int
    /// The ranks of a data-parallel job (a single process: `SingleProcess`) and the streams of
    /// each batch this rank runs.
    public let collective: any Collective
    public let shard: StreamShard
    /// Rank 0 writes the run directory (metrics, checkpoints, report); the others write nothing.
    public var writesFiles: Bool { collective.rank == 0 }
    /// Seconds spent summing gradients across ranks, over the steps this process ran.
    public private(set) var allReduceSeconds = 0.0
    private let metrics: MetricsLog?
    public private(set) var lastCheckpoint: URL?
    /// Selection counts of the sparse blocks (one entry per layer that has them) over training
    /// passes only: the current log interval, and the whole run in this process.
    public private(set) var intervalUsage: [UsageCounts] = []
    public private(set) var runUsage: [UsageCounts] = []
    /// Training throughput of the steps this process ran (for the final report).
    private var trainedPositions = 0
    private var trainingSeconds = 0.0
    /// The best periodic evaluation's score so far, for tasks that select a best checkpoint.
    public private(set) var bestScore: Double?
    /// A periodic evaluation showed the task solved: the run is over.
    public private(set) var solved = false
    /// Wall-clock seconds of `run` over every session of the run (checkpoints carry it).
    public private(set) var elapsedSeconds = 0.0
    private var sessionStart: Date?

    public var checkpointDirectory: URL { runDirectory.appendingPathComponent("checkpoints") }

    /// The best checkpoint (`checkpoints/best.safetensors`), for tasks that keep one.
    public var bestCheckpoint: URL { checkpointDirectory.appendingPathComponent("best.safetensors") }

    /// Whether the run has nothing left to train: every step done, or the task solved.
    public var isFinished: Bool { solved || step >= config.training.steps }

    /// A fresh run: checks the config, creates the run directory (refusing one that already
    /// holds a run), allocates the model, then writes `config.json` (so a start that fails leaves
    /// no run behind), and initialises the model from the seed. `restarting` starts a run
    /// directory over that holds a config but no checkpoint yet (a run stopped before its first
    /// checkpoint), from step 0 with that config.
    public convenience init(
        config: RunConfig, task: any TrainingTask, runDirectory: URL, restarting: Bool = false,
        collective: any Collective = SingleProcess.shared
    ) throws {
        let config = try Self.runConfig(config, task: task)
        if !(restarting && Self.checkpoints(in: runDirectory).isEmpty) { try Self.requireFree(runDirectory) }
        // Every rank has looked at the directory before rank 0 writes into it.
        collective.barrier()
        try self.init(
            config: config, task: task, runDirectory: runDirectory, resumeStep: restarting ? 0 : nil,
            collective: collective)
        if writesFiles {
            try AtomicFile.write(ConfigResolution.prettyJSON(config), to: runDirectory.appendingPathComponent("config.json"))
        }
        model.initialize(seed: config.training.seed)
    }

    /// `config` as a run on `task` records it: the task's vocabulary sizes, `epochs` turned into
    /// steps; validated.
    public static func runConfig(_ config: RunConfig, task: any TrainingTask) throws -> RunConfig {
        var config = config
        config.model.vocabularySize = task.outputClasses
        config.model.inputVocabularySize = task.inputClasses
        if let epochs = config.training.epochs { config.training.steps = epochs * task.batchesPerEpoch }
        try config.validate()
        return config
    }

    /// Throws unless `runDirectory` may hold a new run: it has no `config.json`, or only that
    /// of a start that failed.
    public static func requireFree(_ runDirectory: URL) throws {
        let configURL = runDirectory.appendingPathComponent("config.json")
        guard FileManager.default.fileExists(atPath: configURL.path), !isUnstarted(runDirectory) else { return }
        throw TrainingError(description: "run directory \(runDirectory.path) already holds a run: resume it with --resume \(runDirectory.path) or choose another --run-dir")
    }

    /// A run directory whose start failed before training (say, its allocation trapped): no
    /// checkpoint and no metrics line. A new run may take it over.
    public static func isUnstarted(_ runDirectory: URL) -> Bool {
        guard checkpoints(in: runDirectory).isEmpty else { return false }
        let metrics = FileManager.default.contents(atPath: runDirectory.appendingPathComponent("metrics.jsonl").path) ?? Data()
        return metrics.allSatisfy { $0 == UInt8(ascii: "\n") || $0 == UInt8(ascii: " ") }
    }

    /// Continues the run saved in `checkpoint`, with exactly the state it had.
    public convenience init(
        resuming checkpoint: Checkpoint.Loaded, task: any TrainingTask, runDirectory: URL,
        collective: any Collective = SingleProcess.shared
    ) throws {
        try checkpoint.requireConfig(ofRunIn: runDirectory)
        guard checkpoint.dataFingerprint == task.dataFingerprint else {
            throw TrainingError(description: "\(checkpoint.url.path) was trained on other data (fingerprint \(checkpoint.dataFingerprint), this data \(task.dataFingerprint)): pass the same --data")
        }
        try self.init(
            config: checkpoint.config, task: task, runDirectory: runDirectory, resumeStep: checkpoint.step ?? 0,
            collective: collective)
        let restored = try checkpoint.restoreTraining(model: model, optimizer: optimizer, state: state, shard: shard)
        step = restored.step
        rng = restored.rng
        bestScore = checkpoint.bestScore
        solved = checkpoint.solved
        elapsedSeconds = checkpoint.elapsedSeconds
        lastCheckpoint = checkpoint.url
    }

    /// The task a config trains on: a formal-language task when `data.task` names one, else
    /// language modelling on the corpus `data` describes.
    public static func task(for config: RunConfig) throws -> any TrainingTask {
        if config.data.task != nil { return try FormalLanguageTask(config: config) }
        return try LanguageModelingTask(corpus: CorpusLoader.load(config.data), config: config)
    }

    /// A fresh language-modelling run on `corpus` (`LanguageModelingTask`).
    public convenience init(
        config: RunConfig, corpus: Corpus, runDirectory: URL, restarting: Bool = false,
        collective: any Collective = SingleProcess.shared
    ) throws {
        try self.init(
            config: config, task: LanguageModelingTask(corpus: corpus, config: config),
            runDirectory: runDirectory, restarting: restarting, collective: collective)
    }

    /// Continues a language-modelling run on `corpus`.
    public convenience init(
        resuming checkpoint: Checkpoint.Loaded, corpus: Corpus, runDirectory: URL,
        collective: any Collective = SingleProcess.shared
    ) throws {
        try self.init(
            resuming: checkpoint, task: LanguageModelingTask(corpus: corpus, config: checkpoint.config),
            runDirectory: runDirectory, collective: collective)
    }

    private init(
        config: RunConfig, task: any TrainingTask, runDirectory: URL, resumeStep: Int?, collective: any Collective
    ) throws {
        self.config = config
        self.task = task
        self.runDirectory = runDirectory
        self.collective = collective
        let t = config.training
        shard = try Self.shard(batch: t.batchSize, collective: collective, flag: "--batch-size")
        if collective.isDistributed && t.dropoutDraws == .shared {
            throw TrainingError(description: "this run draws its dropout masks over the whole batch at once (training.dropout_draws shared, from an lmtrain before per-stream draws): train it as one process, without mpirun")
        }
        if let evaluationBatch = task.carriedEvaluationBatch {
            _ = try Self.shard(batch: evaluationBatch, collective: collective, flag: "--eval-batch-size")
        }
        // Temporaries of checkpoints and logs that a killed process of this run left behind.
        if collective.rank == 0 {
            for folder in [runDirectory, runDirectory.appendingPathComponent("checkpoints")] {
                AtomicFile.removeStaleTemporaries(in: folder)
            }
        }
        model = try config.model.makeModel()
        optimizer = t.makeOptimizer(parameters: model.layout.count)
        schedule = t.makeSchedule()
        state = model.makeState(batch: shard.count, capacity: t.memoryLength)
        rng = RandomGenerator(seed: t.seed ^ 0x5EED_D80F)
        step = 0
        metrics = collective.rank == 0
            ? try MetricsLog(url: runDirectory.appendingPathComponent("metrics.jsonl"), keepingStepsUpTo: resumeStep)
            : nil
        model.arena.setGradientGroups(Self.gradientGroups(config: config, task: task, ranks: collective.size))
        if let largest = task.largestTrainingBatch {
            let local = TokenShape(batch: (largest.batch + collective.size - 1) / collective.size, length: largest.length)
            model.reserveBuffers(for: PassShape(tokens: local, memoryCapacity: t.memoryLength, training: true, dropout: true))
        }
    }

    /// The gradient groups of one rank: its share of the batch's gcd(G, B) groups when every
    /// rank holds whole groups, else 1 (then the sums over ranks match one process's only to
    /// rounding). Batches of varying size (padded sequences with a short last batch) keep 1.
    public static func gradientGroups(config: RunConfig, task: any TrainingTask, ranks: Int) -> Int {
        guard task.largestTrainingBatch == nil else { return 1 }
        let groups = config.training.gradientGroups(batch: config.training.batchSize)
        return groups % ranks == 0 ? groups / ranks : 1
    }

    /// This rank's streams of a batch of `batch`; throws one line unless the ranks divide it.
    public static func shard(batch: Int, collective: any Collective, flag: String) throws -> StreamShard {
        guard batch % collective.size == 0 else {
            throw TrainingError(description: "\(flag) \(batch) does not split over \(collective.size) ranks: choose a multiple of \(collective.size) or another mpirun -np")
        }
        return StreamShard(globalBatch: batch, rank: collective.rank, ranks: collective.size)
    }

    /// One optimiser step on the next batch; throws on a non-finite loss or gradient before
    /// anything is updated, so the last checkpoint stays the last good state.
    public func trainStep() throws -> StepRecord {
        let t = config.training
        let started = Date()
        let (wholeBatch, restartsState) = task.trainingBatch(step: step)
        let stepShard = StreamShard(globalBatch: wholeBatch.shape.batch, rank: collective.rank, ranks: collective.size)
        let batch = wholeBatch.streams(stepShard)
        if restartsState { state?.reset() }
        model.arena.zeroGradients()
        let distributed = collective.isDistributed
        var context = ForwardContext(
            training: true, rng: rng, collective: collective,
            scoredPositionsOverall: distributed ? collective.sum(batch.scoredPositions) : nil)
        context.firstStream = stepShard.first
        context.sharedDropoutDraws = t.dropoutDraws == .shared
        // A rank whose share of a last, short batch of sequences is empty contributes nothing.
        var result = batch.shape.batch > 0
            ? model.forward(batch, state: state, context: &context)
            : ForwardLoss(crossEntropySum: 0, scoredPositions: 0, auxiliaryLoss: 0)
        if distributed {
            // The loss of the whole batch (the auxiliary losses already are); a non-finite loss
            // on any rank is non-finite on every rank, so all stop together.
            let sums = collective.sum([result.crossEntropySum, Double(result.scoredPositions)])
            result.crossEntropySum = sums[0]
            result.scoredPositions = Int(sums[1])
        }
        let loss = result.objective
        guard loss.isFinite else { throw nonFinite("loss is \(loss)") }
        if batch.shape.batch > 0 { model.backward() }
        model.arena.sumGradientGroups()
        if distributed {
            // Each rank's gradient is its streams' share of the whole batch's: their sum is it,
            // added in the order of the gradient groups' pairwise sum.
            let started = DispatchTime.now().uptimeNanoseconds
            collective.allReduceSumPairwise(model.arena.gradients, count: model.arena.count)
            allReduceSeconds += Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
        }
        let norm = clipGradientNorm(model.arena, maximum: t.gradientClip)
        guard norm.isFinite else { throw nonFinite("gradient norm is \(norm)") }
        let rate = schedule.rate(at: step)
        optimizer.step(model.arena, learningRate: rate)
        if let state { model.advance(state) }
        rng = context.rng
        step += 1
        let seconds = Date().timeIntervalSince(started)
        // Positions of the whole batch: the job's throughput.
        trainedPositions += wholeBatch.shape.rows
        trainingSeconds += seconds
        return StepRecord(
            step: step, loss: loss, crossEntropy: result.crossEntropy, auxiliaryLoss: result.auxiliaryLoss,
            learningRate: rate, positions: wholeBatch.shape.rows, gradientNorm: norm,
            tokensPerSecond: Double(wholeBatch.shape.rows) / seconds,
            elapsedSeconds: seconds)
    }

    private func nonFinite(_ what: String) -> TrainingError {
        let kept = lastCheckpoint.map { "the last good checkpoint is \($0.path)" } ?? "no checkpoint was written yet"
        return TrainingError(description: "step \(step + 1): \(what); training stopped, \(kept) (try a lower --lr or stronger --clip)")
    }

    /// Moves the model's counts (summed over ranks) into `intervalUsage` and `runUsage` and
    /// resets them.
    private func collectUsage() {
        var current = model.usage
        if collective.isDistributed {
            let summed = collective.sum(current.flatMap { $0.counts.map(Double.init) })
            var offset = 0
            for i in current.indices {
                current[i].counts = summed[offset..<(offset + current[i].counts.count)].map { Int($0) }
                offset += current[i].counts.count
            }
        }
        if intervalUsage.isEmpty { intervalUsage = current.map { UsageCounts(unit: $0.unit, counts: [Int](repeating: 0, count: $0.counts.count)) } }
        if runUsage.isEmpty { runUsage = intervalUsage }
        for i in current.indices {
            intervalUsage[i].add(current[i])
            runUsage[i].add(current[i])
        }
        model.resetUsage()
    }

    /// Metrics fields for the usage of the current interval, then a new interval.
    private func usageFields() -> [(String, Any)] {
        collectUsage()
        guard !intervalUsage.isEmpty else { return [] }
        let layers: [Any] = intervalUsage.enumerated().map { layer, usage -> [String: Any] in
            ["layer": layer, "unit": usage.unit, "relative_perplexity": usage.relativePerplexity,
             "dead_fraction": usage.deadFraction, "used_fraction": usage.usedFraction, "counts": usage.counts]
        }
        for i in intervalUsage.indices { intervalUsage[i].counts = intervalUsage[i].counts.map { _ in 0 } }
        return [("usage", layers)]
    }

    /// A periodic evaluation: every validation split of the task, keeping the training passes'
    /// selection counts apart from the evaluation's own.
    public func validate() throws -> [EvaluationResult] {
        collectUsage()
        defer { model.resetUsage() }
        return try task.validationSplits.map {
            try task.evaluate(
                model, split: $0, maximumBatches: task.validationBatches, collective: collective, progress: nil)
        }
    }

    /// Writes `checkpoints/step-NNNNNNN.safetensors` and deletes the oldest beyond the limit.
    /// Collective in a data-parallel job: every rank calls it, rank 0 writes.
    @discardableResult
    public func saveCheckpoint() throws -> URL {
        let url = checkpointDirectory.appendingPathComponent(String(format: "step-%07d.safetensors", step))
        try save(to: url)
        lastCheckpoint = url
        if writesFiles {
            let all = Self.checkpoints(in: runDirectory)
            for old in all.dropLast(config.training.keepCheckpoints) { try? FileManager.default.removeItem(at: old) }
        }
        return url
    }

    /// A training checkpoint of the current state at `url`, with the carried state of every
    /// rank's streams (collective), written by rank 0.
    private func save(to url: URL) throws {
        var savedState = state
        if collective.isDistributed, let state { savedState = GatheredState(state, collective: collective) }
        if writesFiles {
            try Checkpoint.save(
                model: model, config: config, dataFingerprint: task.dataFingerprint,
                vocabulary: task.vocabularyDescription,
                training: .init(
                    step: step, optimizer: optimizer, state: savedState, rng: rng, bestScore: bestScore,
                    solved: solved, elapsedSeconds: currentElapsedSeconds),
                to: url)
        }
        // No rank goes on (and could fail or be stopped) before the checkpoint is complete.
        collective.barrier()
    }

    /// `elapsedSeconds` including the running session.
    private var currentElapsedSeconds: Double {
        elapsedSeconds + (sessionStart.map { Date().timeIntervalSince($0) } ?? 0)
    }

    /// Checkpoints of a run directory, oldest first.
    public static func checkpoints(in runDirectory: URL) -> [URL] {
        let folder = runDirectory.appendingPathComponent("checkpoints")
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
        return names.filter { $0.hasPrefix("step-") && $0.hasSuffix(".safetensors") }.sorted()
            .map { folder.appendingPathComponent($0) }
    }

    /// Trains until `config.training.steps` (or `stopAt`, for splitting a run into sessions, or
    /// until the task is solved, or until `shouldStop` says so after a step, which then gets a
    /// checkpoint), validating and checkpointing on schedule; returns the records of the steps
    /// it ran.
    @discardableResult
    public func run(
        stopAt: Int? = nil, observer: TrainingObserver? = nil, shouldStop: (() -> Bool)? = nil
    ) throws -> [StepRecord] {
        let t = config.training
        var end = min(t.steps, stopAt ?? t.steps)
        var records: [StepRecord] = []
        var intervalTokens = 0
        var intervalStart = Date()
        let runStart = Date()
        sessionStart = runStart
        defer {
            elapsedSeconds = currentElapsedSeconds
            sessionStart = nil
        }
        while step < end && !solved {
            var record = try trainStep()
            intervalTokens += record.positions
            if step % t.logInterval == 0 || step == end {
                let now = Date()
                record.tokensPerSecond = Double(intervalTokens) / now.timeIntervalSince(intervalStart)
                intervalTokens = 0
                intervalStart = now
                let usage = usageFields()  // collective: every rank counts
                metrics?.write([
                    ("type", "train"), ("step", record.step), ("loss", record.loss),
                    ("cross_entropy", record.crossEntropy), ("auxiliary_loss", record.auxiliaryLoss),
                    ("learning_rate", record.learningRate), ("gradient_norm", record.gradientNorm),
                    ("tokens_per_second", record.tokensPerSecond),
                    ("elapsed_seconds", now.timeIntervalSince(runStart)),
                ] + usage)
            }
            record.elapsedSeconds = Date().timeIntervalSince(runStart)
            records.append(record)
            observer?.didStep(record, totalSteps: t.steps)
            if task.evaluatesAfter(step: step) {
                let results = try validate()
                for result in results {
                    writeEvaluation(result)
                    observer?.didEvaluate(result, atStep: step)
                }
                if let score = task.selectionScore(results), score > (bestScore ?? -.infinity) {
                    // The official selection: strictly better than every earlier evaluation.
                    bestScore = score
                    try save(to: bestCheckpoint)
                }
                if task.isSolved(results) {
                    solved = true
                    end = step
                }
            }
            // The ranks of a data-parallel job stop together (a signal may reach one first).
            let stopping = step < end && collective.any(shouldStop?() == true)
            if (t.checkpointInterval > 0 && step % t.checkpointInterval == 0) || step == end || stopping {
                let url = try saveCheckpoint()
                observer?.didSaveCheckpoint(url, atStep: step)
            }
            if stopping { break }
        }
        collectUsage()
        return records
    }

    /// Appends an evaluation record to the metrics log.
    public func writeEvaluation(_ result: EvaluationResult, type: String = "valid") {
        metrics?.write([("type", type), ("step", step)] + result.logFields)
    }

    /// Training positions per second over the steps this process ran.
    public var trainingTokensPerSecond: Double { trainingSeconds > 0 ? Double(trainedPositions) / trainingSeconds : 0 }

    /// The end of a finished run: evaluates every final split with the task's protocol (with
    /// the best checkpoint's parameters for tasks that select one), logs the results (`final`
    /// records), and writes `report.json`.
    @discardableResult
    public func finish(progress: ((String, EvaluationProgress) -> Void)? = nil) throws -> RunReport {
        var results: [EvaluationResult] = []
        collectUsage()
        var evaluated = lastCheckpoint
        if bestScore != nil, FileManager.default.fileExists(atPath: bestCheckpoint.path) {
            try Checkpoint.load(bestCheckpoint).loadParameters(into: model)
            evaluated = bestCheckpoint
        }
        for split in task.finalSplits {
            let result = try task.evaluate(model, split: split, maximumBatches: nil, collective: collective) {
                progress?(split, $0)
            }
            writeEvaluation(result, type: "final")
            results.append(result)
        }
        model.resetUsage()
        var report = RunReport(
            config: config, parameters: model.layout.count, steps: step, results: results,
            checkpoint: evaluated?.path, trainingTokensPerSecond: trainingTokensPerSecond,
            trainingSeconds: elapsedSeconds,
            peakResidentBytes: RunReport.peakResidentBytes(),
            usage: runUsage.enumerated().map { RunReport.Usage(layer: $0.offset, $0.element) })
        report.openBLAS = OpenBLASKernel.status
        if writesFiles { try report.write(to: runDirectory.appendingPathComponent("report.json")) }
        return report
    }
}
