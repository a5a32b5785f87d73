import Configuration
import Datasets
import Foundation
import Layers
import Models
import Tensor

/// Language modelling on ordered streams: the training split is cut into B contiguous
/// streams and step p reads chunk p mod (chunks per epoch) of each, so a model's memory stays
/// coherent; the memory restarts with every epoch. Evaluation follows the Transformer-XL
/// protocol: its own batch of streams, segments of T, a memory of `memorySegments` x T rows
/// that starts empty and fills up, no dropout, every predictable token scored once (the last
/// segment may be shorter). Bytes are scored in bits per character, tokens in perplexity (and
/// word-level perplexity when the split's word count is known).
public final class LanguageModelingTask: TrainingTask {
    public let corpus: Corpus
    public let training: TrainingConfig
    public let evaluation: EvaluationConfig
    public let batcher: OrderedBatcher
    private let inputs: Buffer<Int32>
    private let targets: Buffer<Int32>

    /// Refuses a training split too short for one batch.
    public init(corpus: Corpus, training: TrainingConfig, evaluation: EvaluationConfig) throws {
        self.corpus = corpus
        self.training = training
        self.evaluation = evaluation
        let (b, t) = (training.batchSize, training.segmentLength)
        batcher = OrderedBatcher(tokens: corpus.train, batch: b, segmentLength: t)
        guard batcher.fullChunks > 0 else {
            throw DataError("the train split of \(corpus.name) has \(corpus.train.count) tokens: batch \(b) x (segment \(t) + 1) needs at least \(b * (t + 1)); lower --batch-size or --segment-length")
        }
        // Evaluation needs the other splits too: refuse before training rather than after it.
        for split in [Split.valid, .test] {
            try Self.requireEvaluable(corpus.split(split), split: split.rawValue, batchSize: evaluation.batchSize, segmentLength: t)
        }
        inputs = Buffer(count: b * t)
        targets = Buffer(count: b * t)
    }

    /// Throws when `tokens` cannot fill one evaluation batch (each of its streams needs an
    /// input and a target).
    static func requireEvaluable(_ tokens: TokenSequence, split: String, batchSize: Int, segmentLength: Int) throws {
        guard OrderedBatcher(tokens: tokens, batch: batchSize, segmentLength: segmentLength).allChunks > 0 else {
            throw DataError("the \(split) split has \(tokens.count) tokens, too few for evaluation batch \(batchSize) (needs at least \(2 * batchSize)): give it a larger share (--split) or lower --eval-batch-size")
        }
    }

    public convenience init(corpus: Corpus, config: RunConfig) throws {
        try self.init(corpus: corpus, training: config.training, evaluation: config.evaluation)
    }

    public var dataName: String { corpus.name }

    public var dataSummary: String {
        "data \(corpus.name): train \(corpus.train.count), valid \(corpus.valid.count), test \(corpus.test.count) tokens"
    }

    public var outputClasses: Int { corpus.vocabularySize }
    public var dataFingerprint: String { corpus.fingerprint }
    public var vocabularyDescription: String { corpus.vocabularyDescription }

    public var batchesPerEpoch: Int { batcher.fullChunks }

    public func trainingBatch(step: Int) -> (batch: TokenBatch, restartsState: Bool) {
        let chunk = step % batcher.fullChunks
        batcher.chunk(chunk, inputs: inputs.pointer, targets: targets.pointer)
        let shape = TokenShape(batch: training.batchSize, length: training.segmentLength)
        // An epoch starts: the memory of the previous epoch's end is stale.
        return (TokenBatch(shape: shape, inputs: inputs.pointer, targets: targets.pointer), chunk == 0)
    }

    /// Every `validation_interval` steps (0: never), not after the last (the final evaluation
    /// follows it).
    public func evaluatesAfter(step: Int) -> Bool {
        training.validationInterval > 0 && step % training.validationInterval == 0 && step < training.steps
    }

    public var validationSplits: [String] { [Split.valid.rawValue] }
    public var validationBatches: Int? { training.validationBatches == 0 ? nil : training.validationBatches }
    public var finalSplits: [String] { [Split.valid.rawValue, Split.test.rawValue] }

    public func evaluate(
        _ model: any SequenceModel, split: String, maximumBatches: Int?, collective: any Collective,
        progress: ((EvaluationProgress) -> Void)?
    ) throws -> EvaluationResult {
        guard let which = Split(rawValue: split) else {
            throw DataError("unknown split \(split): use train, valid or test")
        }
        return try Self.evaluate(
            model, tokens: corpus.split(which), unit: corpus.unit, split: split,
            batchSize: evaluation.batchSize, segmentLength: training.segmentLength,
            memorySegments: evaluation.memorySegments, maximumBatches: maximumBatches,
            collective: collective, progress: progress)
    }

    /// The evaluation streams carry memory from segment to segment: the ranks must divide them.
    public var carriedEvaluationBatch: Int? { evaluation.batchSize }

    /// The protocol on `tokens` of `unit` with explicit settings (`lmtrain eval` chooses them).
    /// In a data-parallel job each rank runs its share of the streams (`collective`'s size must
    /// divide `batchSize`) and every rank returns the result of the whole split.
    public static func evaluate(
        _ model: any SequenceModel, tokens: TokenSequence, unit: TokenUnit, split: String,
        batchSize: Int, segmentLength: Int, memorySegments: Int, maximumBatches: Int? = nil,
        collective: any Collective = SingleProcess.shared,
        progress: ((EvaluationProgress) -> Void)? = nil
    ) throws -> EvaluationResult {
        try requireEvaluable(tokens, split: split, batchSize: batchSize, segmentLength: segmentLength)
        let batcher = OrderedBatcher(tokens: tokens, batch: batchSize, segmentLength: segmentLength)
        let shard = try Trainer.shard(batch: batchSize, collective: collective, flag: "--eval-batch-size")
        let state = model.makeState(batch: shard.count, capacity: memorySegments * segmentLength)
        let chunks = min(batcher.allChunks, maximumBatches ?? .max)
        let inputs = Buffer<Int32>(count: batchSize * segmentLength)
        let targets = Buffer<Int32>(count: batchSize * segmentLength)
        var context = ForwardContext(training: false, rng: RandomGenerator(seed: 0))
        var lossSum = 0.0
        var count = 0
        progress?(EvaluationProgress(batches: 0, totalBatches: chunks, tokens: 0))
        for index in 0..<chunks {
            let length = batcher.length(ofChunk: index)
            batcher.chunk(index, inputs: inputs.pointer, targets: targets.pointer)
            let batch = TokenBatch(
                shape: TokenShape(batch: batchSize, length: length), inputs: inputs.pointer,
                targets: targets.pointer)
            let loss = model.forward(batch.streams(shard), state: state, context: &context)
            if let state { model.advance(state) }
            lossSum += loss.crossEntropySum
            count += loss.scoredPositions
            progress?(EvaluationProgress(batches: index + 1, totalBatches: chunks, tokens: count * collective.size))
        }
        if collective.isDistributed {
            let sums = collective.sum([lossSum, Double(count)])
            (lossSum, count) = (sums[0], Int(sums[1]))
        }
        let loss = lossSum / Double(count)
        var metrics = [headline(loss: loss, unit: unit)]
        if let words = tokens.wordCount {
            let value = Self.wordPerplexity(meanLoss: loss, tokens: tokens.count, words: words)
            metrics.append(Metric(name: "word_perplexity", value: value, label: "word ppl", decimals: 2))
        }
        return EvaluationResult(
            split: split, tokens: count, loss: loss, metrics: metrics,
            settings: ["batch_size": batchSize, "memory_segments": memorySegments])
    }

    /// Bits per character for bytes, perplexity per token otherwise.
    static func headline(loss: Double, unit: TokenUnit) -> Metric {
        unit == .bytes
            ? Metric(name: "bpc", value: loss / Foundation.log(2.0), label: "bpc", decimals: 4)
            : Metric(name: "perplexity", value: Foundation.exp(loss), label: "ppl", decimals: 2)
    }

    public var batchDescription: String {
        "\(training.batchSize) x \(training.segmentLength) tokens (memory \(training.memoryLength))"
    }

    public var evaluationDescription: String {
        "batch \(evaluation.batchSize), memory \(evaluation.memorySegments) x \(training.segmentLength)"
    }

    public func describe(loss: Double) -> String { Self.headline(loss: loss, unit: corpus.unit).text }

    public var uniformPredictionText: String {
        let loss = Foundation.log(Double(corpus.vocabularySize))
        return corpus.unit == .bytes ? String(format: "bpc %.4f", loss / Foundation.log(2.0)) : String(format: "ppl %.1f", Foundation.exp(loss))
    }

    /// Word-level perplexity: exp(loss x tokens of the split / words of the split), words being
    /// whitespace tokens plus one `<eos>` per line as Transformer-XL counts them. The few tokens
    /// the ordered batches leave unscored (the first of each stream, the remainder past batch x
    /// stream length) count at the mean loss of the scored ones.
    public static func wordPerplexity(meanLoss: Double, tokens: Int, words: Int) -> Double {
        Foundation.exp(meanLoss * Double(tokens) / Double(max(1, words)))
    }
}

extension Corpus {
    /// How the vocabulary is recorded in checkpoints: the byte values for byte corpora.
    public var vocabularyDescription: String {
        if let bytes = byteVocabulary { return "bytes:" + bytes.symbols.map { String($0) }.joined(separator: ",") }
        return "tokens:\(vocabularySize):\(fingerprint)"
    }
}
