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
    /// Global gradient norm before clipping.
    public var gradientNorm: Double
    public var tokensPerSecond: Double
    public var elapsedSeconds: Double
}

/// Receives progress; the CLI prints it, tests collect it.
public protocol TrainingObserver: AnyObject {
    func didStep(_ record: StepRecord, totalSteps: Int, unit: TokenUnit)
    func didEvaluate(_ result: EvaluationResult, atStep step: Int)
    func didSaveCheckpoint(_ url: URL, atStep step: Int)
}

/// Training stopped for a reason the user must see.
public struct TrainingError: Error, CustomStringConvertible {
    public let description: String
}

/// Runs the training loop of DESIGN.md: ordered batches with memory, loss + regularisers,
/// backward, global-norm clipping, AdamW with the warmup + cosine schedule, periodic
/// validation, atomic checkpoints, metrics as JSON lines.
public final class Trainer {
    public let config: RunConfig
    public let corpus: Corpus
    public let model: TransformerXL
    public let optimizer: AdamW
    /// The training memory (validation uses its own).
    public let memory: ModelMemory
    public let runDirectory: URL
    public private(set) var rng: RandomGenerator
    /// Optimiser steps completed.
    public private(set) var step: Int
    public let batcher: OrderedBatcher
    public let schedule: LearningRateSchedule
    private let metrics: MetricsLog
    private let inputs: Buffer<Int32>
    private let targets: Buffer<Int32>
    public private(set) var lastCheckpoint: URL?
    /// Selection counts of the sparse blocks (one entry per layer that has them) over training
    /// passes only: the current log interval, and the whole run in this process.
    public private(set) var intervalUsage: [UsageCounts] = []
    public private(set) var runUsage: [UsageCounts] = []

    public var checkpointDirectory: URL { runDirectory.appendingPathComponent("checkpoints") }

    /// A fresh run: checks the data against the config, creates the run directory (refusing
    /// one that already holds a run), writes `config.json`, initialises the model from the seed.
    /// `restarting` starts a run directory over that holds a config but no checkpoint yet (a
    /// run stopped before its first checkpoint), from step 0 with that config.
    public convenience init(config: RunConfig, corpus: Corpus, runDirectory: URL, restarting: Bool = false) throws {
        var config = config
        config.model.vocabularySize = corpus.vocabularySize
        try config.validate()
        let configURL = runDirectory.appendingPathComponent("config.json")
        if FileManager.default.fileExists(atPath: configURL.path) && !(restarting && Self.checkpoints(in: runDirectory).isEmpty) {
            throw TrainingError(description: "run directory \(runDirectory.path) already holds a run: resume it with --resume \(runDirectory.path) or choose another --run-dir")
        }
        try AtomicFile.write(ConfigResolution.prettyJSON(config), to: configURL)
        try self.init(config: config, corpus: corpus, runDirectory: runDirectory, resumeStep: restarting ? 0 : nil)
        model.initialize(seed: config.training.seed)
    }

    /// Continues the run saved in `checkpoint`, with exactly the state it had.
    public convenience init(resuming checkpoint: Checkpoint.Loaded, corpus: Corpus, runDirectory: URL) throws {
        guard checkpoint.dataFingerprint == corpus.fingerprint else {
            throw TrainingError(description: "\(checkpoint.url.path) was trained on other data (fingerprint \(checkpoint.dataFingerprint), this data \(corpus.fingerprint)): pass the same --data")
        }
        try self.init(config: checkpoint.config, corpus: corpus, runDirectory: runDirectory, resumeStep: checkpoint.step ?? 0)
        let restored = try checkpoint.restoreTraining(model: model, optimizer: optimizer, memory: memory)
        step = restored.step
        rng = restored.rng
        lastCheckpoint = checkpoint.url
    }

    private init(config: RunConfig, corpus: Corpus, runDirectory: URL, resumeStep: Int?) throws {
        self.config = config
        self.corpus = corpus
        self.runDirectory = runDirectory
        let t = config.training
        batcher = OrderedBatcher(tokens: corpus.train, batch: t.batchSize, segmentLength: t.segmentLength)
        guard batcher.fullChunks > 0 else {
            throw DataError("the train split of \(corpus.name) has \(corpus.train.count) tokens: batch \(t.batchSize) x (segment \(t.segmentLength) + 1) needs at least \(t.batchSize * (t.segmentLength + 1)); lower --batch-size or --segment-length")
        }
        model = try TransformerXL(config: config.model)
        optimizer = AdamW(count: model.parameterCount, beta1: t.adamBeta1, beta2: t.adamBeta2, epsilon: t.adamEpsilon, weightDecay: t.weightDecay)
        memory = model.makeMemory(batch: t.batchSize, capacity: t.memoryLength)
        rng = RandomGenerator(seed: t.seed ^ 0x5EED_D80F)
        step = 0
        schedule = LearningRateSchedule(baseRate: t.learningRate, warmupSteps: t.warmupSteps, totalSteps: t.steps)
        metrics = try MetricsLog(url: runDirectory.appendingPathComponent("metrics.jsonl"), keepingStepsUpTo: resumeStep)
        inputs = Buffer(count: t.batchSize * t.segmentLength)
        targets = Buffer(count: t.batchSize * t.segmentLength)
    }

    /// One optimiser step on the next chunk; throws on a non-finite loss or gradient before
    /// anything is updated, so the last checkpoint stays the last good state.
    public func trainStep() throws -> StepRecord {
        let t = config.training
        let started = Date()
        let chunk = step % batcher.fullChunks
        if chunk == 0 { memory.reset() }  // epoch start: memory of the previous epoch's end is stale
        batcher.chunk(chunk, inputs: inputs.pointer, targets: targets.pointer)
        let shape = TokenShape(batch: t.batchSize, length: t.segmentLength)
        model.arena.zeroGradients()
        var context = ForwardContext(training: true, rng: rng)
        let (ceSum, auxiliary) = model.forward(inputs: inputs.pointer, targets: targets.pointer, shape: shape, memory: memory, context: &context)
        let crossEntropy = ceSum / Double(shape.rows)
        let loss = crossEntropy + auxiliary
        guard loss.isFinite else { throw nonFinite("loss is \(loss)") }
        model.backward()
        let norm = clipGradientNorm(model.arena, maximum: t.gradientClip)
        guard norm.isFinite else { throw nonFinite("gradient norm is \(norm)") }
        let rate = schedule.rate(at: step)
        optimizer.step(model.arena, learningRate: rate)
        model.advance(memory)
        rng = context.rng
        step += 1
        let seconds = Date().timeIntervalSince(started)
        return StepRecord(
            step: step, loss: loss, crossEntropy: crossEntropy, auxiliaryLoss: auxiliary,
            learningRate: rate, gradientNorm: norm, tokensPerSecond: Double(shape.rows) / seconds,
            elapsedSeconds: seconds)
    }

    private func nonFinite(_ what: String) -> TrainingError {
        let kept = lastCheckpoint.map { "the last good checkpoint is \($0.path)" } ?? "no checkpoint was written yet"
        return TrainingError(description: "step \(step + 1): \(what); training stopped, \(kept) (try a lower --lr or stronger --clip)")
    }

    /// Moves the blocks' counts into `intervalUsage` and `runUsage` and resets them.
    private func collectUsage() {
        let current = model.blocks.compactMap { $0.feedForward.usage }
        if intervalUsage.isEmpty { intervalUsage = current.map { UsageCounts(unit: $0.unit, counts: [Int](repeating: 0, count: $0.counts.count)) } }
        if runUsage.isEmpty { runUsage = intervalUsage }
        for i in current.indices {
            intervalUsage[i].add(current[i])
            runUsage[i].add(current[i])
        }
        for block in model.blocks { block.feedForward.resetUsage() }
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

    /// Validation on (part of) the valid split with the evaluation protocol.
    public func validate(maximumChunks: Int?) throws -> EvaluationResult {
        // Training-pass counts are kept apart; the evaluation's own selections are dropped.
        collectUsage()
        defer { for block in model.blocks { block.feedForward.resetUsage() } }
        return try Evaluator.evaluate(
            model: model, tokens: corpus.valid, split: "valid", unit: corpus.unit,
            batchSize: config.evaluation.batchSize, segmentLength: config.training.segmentLength,
            memorySegments: config.evaluation.memorySegments, maximumChunks: maximumChunks)
    }

    /// Writes `checkpoints/step-NNNNNNN.safetensors` and deletes the oldest beyond the limit.
    @discardableResult
    public func saveCheckpoint() throws -> URL {
        let url = checkpointDirectory.appendingPathComponent(String(format: "step-%07d.safetensors", step))
        try Checkpoint.save(
            model: model, config: config, corpusFingerprint: corpus.fingerprint,
            vocabulary: corpus.vocabularyDescription,
            training: .init(step: step, optimizer: optimizer, memory: memory, rng: rng), to: url)
        lastCheckpoint = url
        let all = Self.checkpoints(in: runDirectory)
        for old in all.dropLast(config.training.keepCheckpoints) { try? FileManager.default.removeItem(at: old) }
        return url
    }

    /// Checkpoints of a run directory, oldest first.
    public static func checkpoints(in runDirectory: URL) -> [URL] {
        let folder = runDirectory.appendingPathComponent("checkpoints")
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
        return names.filter { $0.hasPrefix("step-") && $0.hasSuffix(".safetensors") }.sorted()
            .map { folder.appendingPathComponent($0) }
    }

    /// Trains until `config.training.steps` (or `stopAt`, for splitting a run into sessions),
    /// validating and checkpointing on schedule; returns the records of the steps it ran.
    @discardableResult
    public func run(stopAt: Int? = nil, observer: TrainingObserver? = nil) throws -> [StepRecord] {
        let t = config.training
        let end = min(t.steps, stopAt ?? t.steps)
        var records: [StepRecord] = []
        var intervalTokens = 0
        var intervalStart = Date()
        let runStart = Date()
        while step < end {
            var record = try trainStep()
            intervalTokens += t.batchSize * t.segmentLength
            if step % t.logInterval == 0 || step == end {
                let now = Date()
                record.tokensPerSecond = Double(intervalTokens) / now.timeIntervalSince(intervalStart)
                intervalTokens = 0
                intervalStart = now
                metrics.write([
                    ("type", "train"), ("step", record.step), ("loss", record.loss),
                    ("cross_entropy", record.crossEntropy), ("auxiliary_loss", record.auxiliaryLoss),
                    ("learning_rate", record.learningRate), ("gradient_norm", record.gradientNorm),
                    ("tokens_per_second", record.tokensPerSecond),
                    ("elapsed_seconds", now.timeIntervalSince(runStart)),
                ] + usageFields())
            }
            record.elapsedSeconds = Date().timeIntervalSince(runStart)
            records.append(record)
            observer?.didStep(record, totalSteps: t.steps, unit: corpus.unit)
            if t.validationInterval > 0 && step % t.validationInterval == 0 && step < t.steps {
                let result = try validate(maximumChunks: t.validationBatches == 0 ? nil : t.validationBatches)
                writeEvaluation(result)
                observer?.didEvaluate(result, atStep: step)
            }
            if (t.checkpointInterval > 0 && step % t.checkpointInterval == 0) || step == end {
                let url = try saveCheckpoint()
                observer?.didSaveCheckpoint(url, atStep: step)
            }
        }
        collectUsage()
        return records
    }

    /// Appends an evaluation record to the metrics log.
    public func writeEvaluation(_ result: EvaluationResult, type: String = "valid") {
        var fields: [(String, Any)] = [
            ("type", type), ("step", step), ("split", result.split), ("loss", result.loss),
            ("tokens", result.tokens),
        ]
        if let bpc = result.bitsPerCharacter { fields.append(("bpc", bpc)) }
        if let ppl = result.perplexity { fields.append(("perplexity", ppl)) }
        if let words = result.wordPerplexity { fields.append(("word_perplexity", words)) }
        metrics.write(fields)
    }
}

extension Corpus {
    /// How the vocabulary is recorded in checkpoints: the byte values for byte corpora.
    public var vocabularyDescription: String {
        if let bytes = byteVocabulary { return "bytes:" + bytes.symbols.map { String($0) }.joined(separator: ",") }
        return "tokens:\(vocabularySize):\(fingerprint)"
    }
}

