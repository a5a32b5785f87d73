import Configuration
import Datasets
import FormalLanguages
import Foundation
import Layers
import Models
import Tensor

/// Per-position classification of formal-language strings (Docs/formal-languages.md), as the
/// paper's training script does it: shuffled batches of padded sequences (a new order every
/// epoch, the last partial batch kept), the mean cross-entropy over the non-pad positions,
/// evaluation on Bin0 and Bin1 after batches 0, N, 2N, ... of every epoch and at every epoch
/// end, scored by sequence accuracy; the best checkpoint is the one with the best mean of the
/// two accuracies, and training stops when both reach 100%.
public final class FormalLanguageTask: TrainingTask {
    public let dataset: FormalDataset
    public let training: TrainingConfig
    public let evaluationBatchSize: Int
    /// Where the data came from, for logs: "generated, seed 1" or a folder.
    public let origin: String
    private var batch = FormalBatch()
    private let inputs = Buffer<Int32>()
    private let targets = Buffer<Int32>()
    /// The shuffled order of the training sequences of `orderEpoch`.
    private var order: [Int] = []
    private var orderEpoch = -1

    public init(dataset: FormalDataset, training: TrainingConfig, evaluation: EvaluationConfig, origin: String) {
        self.dataset = dataset
        self.training = training
        evaluationBatchSize = evaluation.batchSize
        self.origin = origin
        let largest = max(training.batchSize, evaluationBatchSize) * max(dataset.train.longest, dataset.bin0.longest, dataset.bin1.longest)
        inputs.reserve(largest)
        targets.reserve(largest)
    }

    /// The task of `config.data`: generated from its seed, or read (and checked) from the
    /// `.src`/`.tgt` files of its `source` folder.
    public convenience init(config: RunConfig) throws {
        guard let name = config.data.task, let task = FormalTask(name: name) else {
            throw DataError("data.task '\(config.data.task ?? "")' is unknown: use one of \(FormalTask.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let dataset: FormalDataset
        let origin: String
        if let source = config.data.source {
            dataset = try FormalDataset.read(task, from: URL(fileURLWithPath: source))
            origin = source
        } else {
            dataset = try task.generate(seed: config.data.generatorSeed)
            origin = "generated, seed \(config.data.generatorSeed)"
        }
        self.init(dataset: dataset, training: config.training, evaluation: config.evaluation, origin: origin)
    }

    /// Optimiser steps of one epoch: every training sequence once, the last batch partial.
    public var batchesPerEpoch: Int { (dataset.train.count + training.batchSize - 1) / training.batchSize }

    public var dataName: String { "\(dataset.task.rawValue) (\(origin))" }

    public var dataSummary: String {
        let d = dataset
        func lengths(_ s: FormalSequences) -> String {
            "\(s.inputs.lazy.map(\.count).min() ?? 0)–\(s.longest)"
        }
        return "data \(dataName): train \(d.train.count) (lengths \(lengths(d.train))), bin0 \(d.bin0.count) (\(lengths(d.bin0))), bin1 \(d.bin1.count) (\(lengths(d.bin1))) sequences; \(batchesPerEpoch) batches per epoch"
    }

    public var outputClasses: Int { dataset.targetClassCount }
    public var inputClasses: Int { dataset.inputClassCount }

    /// FNV-1a of the vocabularies and every sequence of every split.
    public var dataFingerprint: String {
        var hash = FNV1a()
        hash.add(dataset.task.rawValue)
        hash.add(dataset.inputVocabulary.joined(separator: " ") + "|" + dataset.targetVocabulary.joined(separator: " "))
        for split in FormalSplit.allCases {
            let sequences = dataset[split]
            for (input, target) in zip(sequences.inputs, sequences.targets) {
                input.withUnsafeBytes { hash.add($0) }
                target.withUnsafeBytes { hash.add($0) }
            }
        }
        return "formal-" + hash.hex
    }

    public var vocabularyDescription: String {
        "formal:\(dataset.task.rawValue):\(dataset.inputVocabulary.joined(separator: ",")):\(dataset.targetVocabulary.joined(separator: ","))"
    }

    public var largestTrainingBatch: TokenShape? {
        TokenShape(batch: min(training.batchSize, dataset.train.count), length: dataset.train.longest)
    }

    /// The training order of `epoch`: a permutation drawn from the training seed and the
    /// epoch, so a resumed run sees the batches an uninterrupted one would.
    func order(ofEpoch epoch: Int) -> [Int] {
        var rng = RandomGenerator(seed: training.seed &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(epoch))
        var order = Array(0..<dataset.train.count)
        for i in stride(from: order.count - 1, to: 0, by: -1) {
            order.swapAt(i, rng.integer(below: i + 1))
        }
        return order
    }

    public func trainingBatch(step: Int) -> (batch: TokenBatch, restartsState: Bool) {
        let epoch = step / batchesPerEpoch, index = step % batchesPerEpoch
        if epoch != orderEpoch {
            order = order(ofEpoch: epoch)
            orderEpoch = epoch
        }
        let b = training.batchSize
        let rows = order[(index * b)..<min((index + 1) * b, order.count)]
        return (fill(.train, rows), false)
    }

    /// The padded batch of `rows` of `split`, in the task's own id buffers.
    private func fill(_ split: FormalSplit, _ rows: some Collection<Int>) -> TokenBatch {
        batch.fill(from: dataset, split: split, indices: rows)
        let count = batch.rows * batch.length
        inputs.reserved(count).update(from: batch.inputs, count: count)
        targets.reserved(count).update(from: batch.targets, count: count)
        return TokenBatch(
            shape: TokenShape(batch: batch.rows, length: batch.length), inputs: inputs.pointer,
            targets: targets.pointer)
    }

    /// After batches 0, N, 2N, ... of every epoch (N = `validation_interval`, 0: none of them)
    /// and after its last batch.
    public func evaluatesAfter(step: Int) -> Bool {
        let index = (step - 1) % batchesPerEpoch
        let interval = training.validationInterval
        return index == batchesPerEpoch - 1 || (interval > 0 && index % interval == 0)
    }

    public var validationSplits: [String] { [FormalSplit.bin0.rawValue, FormalSplit.bin1.rawValue] }
    public var validationBatches: Int? { nil }
    public var finalSplits: [String] { validationSplits }

    /// Sequence accuracy: the share (in %) of sequences whose every non-pad position has the
    /// target as its arg-max over all classes (the pad class included, so predicting it is an
    /// error); the loss is the mean of the batches' mean cross-entropies, as the paper's script
    /// reports it.
    public func evaluate(
        _ model: any SequenceModel, split: String, maximumBatches: Int?, collective: any Collective,
        progress: ((EvaluationProgress) -> Void)?
    ) throws -> EvaluationResult {
        guard let which = FormalSplit(rawValue: split) else {
            throw DataError("unknown split \(split): use train, bin0 or bin1")
        }
        let sequences = dataset[which]
        let b = evaluationBatchSize
        let batches = min((sequences.count + b - 1) / b, maximumBatches ?? .max)
        var context = ForwardContext(training: false, rng: RandomGenerator(seed: 0))
        var lossSum = 0.0, positions = 0, correct = 0, scored = 0
        let v = model.outputClasses
        progress?(EvaluationProgress(batches: 0, totalBatches: batches, tokens: 0))
        for index in 0..<batches {
            let rows = (index * b)..<min((index + 1) * b, sequences.count)
            // In a data-parallel job, this rank's sequences of the batch; the batch's mean
            // cross-entropy is that of all of them.
            let tokenBatch = fill(which, rows).streams(of: collective)
            var loss = ForwardLoss(crossEntropySum: 0, scoredPositions: 0, auxiliaryLoss: 0)
            var batchCorrect = 0
            if tokenBatch.shape.batch > 0 {
                loss = model.forward(tokenBatch, state: nil, context: &context)
                let length = tokenBatch.shape.length
                for row in 0..<tokenBatch.shape.batch where Self.allCorrect(
                    logits: model.logits + row * length * v, targets: tokenBatch.targets + row * length,
                    length: length, classes: v)
                {
                    batchCorrect += 1
                }
            }
            if collective.isDistributed {
                let sums = collective.sum([loss.crossEntropySum, Double(loss.scoredPositions), Double(batchCorrect)])
                (loss.crossEntropySum, loss.scoredPositions, batchCorrect) = (sums[0], Int(sums[1]), Int(sums[2]))
            }
            lossSum += loss.crossEntropy
            positions += loss.scoredPositions
            scored += rows.count
            correct += batchCorrect
            progress?(EvaluationProgress(batches: index + 1, totalBatches: batches, tokens: positions))
        }
        let accuracy = 100 * Double(correct) / Double(max(1, scored))
        return EvaluationResult(
            split: split, tokens: positions, loss: lossSum / Double(max(1, batches)),
            metrics: [Metric(name: "accuracy", value: accuracy, label: "accuracy", decimals: 2)],
            settings: ["batch_size": b, "sequences": scored])
    }

    /// Whether every position with a target (>= 0) has it as the first arg-max of its logits
    /// (`logits` [length, classes], `targets` [length]).
    public static func allCorrect(logits: UnsafePointer<Float>, targets: UnsafePointer<Int32>, length: Int, classes: Int) -> Bool {
        for position in 0..<length where targets[position] >= 0 {
            let row = logits + position * classes
            var best = 0
            for c in 1..<classes where row[c] > row[best] { best = c }
            if best != Int(targets[position]) { return false }
        }
        return true
    }

    /// The mean of the Bin0 and Bin1 accuracies.
    public func selectionScore(_ results: [EvaluationResult]) -> Double? {
        let accuracies = results.compactMap { $0.metric("accuracy") }
        return accuracies.isEmpty ? nil : accuracies.reduce(0, +) / Double(accuracies.count)
    }

    /// Both bins at 100%.
    public func isSolved(_ results: [EvaluationResult]) -> Bool {
        !results.isEmpty && results.allSatisfy { $0.metric("accuracy") == 100 }
    }

    public var batchDescription: String { "\(training.batchSize) padded sequences" }

    public var evaluationDescription: String { "batch \(evaluationBatchSize), sequence accuracy" }

    public func describe(loss: Double) -> String { String(format: "ce %.4f", loss) }

    public var uniformPredictionText: String {
        String(format: "ce %.4f", Foundation.log(Double(outputClasses)))
    }
}
