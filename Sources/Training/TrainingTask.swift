import Foundation
import Layers
import Models
import Tensor

/// What a run learns from and how it is measured: where each step's batch comes from, when
/// the model's carried state starts over, when and how the run is evaluated, which evaluation
/// counts as the best, and when the run is done early. The trainer, checkpoints and reports
/// work through it. `LanguageModelingTask` is the task of ordered token streams scored in bits
/// per character or perplexity; `FormalLanguageTask` the per-position classification of
/// padded sequences scored by sequence accuracy.
public protocol TrainingTask: AnyObject {
    /// The data, for logs and reports.
    var dataName: String { get }
    /// One line describing the data and its splits.
    var dataSummary: String { get }
    /// Classes the model must predict at every position.
    var outputClasses: Int { get }
    /// Input symbols the model reads (for language models, the classes it predicts).
    var inputClasses: Int { get }
    /// A fingerprint of the data and vocabulary: checkpoints record it and `--resume` refuses
    /// other data.
    var dataFingerprint: String { get }
    /// How checkpoints record the vocabulary (`eval` refuses data with another one).
    var vocabularyDescription: String { get }

    /// Optimiser steps of one pass over the training data (`training.epochs` counts these).
    var batchesPerEpoch: Int { get }
    /// The largest batch a training step can bring, when batches vary (padded sequences): the
    /// trainer reserves the model's buffers for it once, so no later step allocates.
    var largestTrainingBatch: TokenShape? { get }
    /// The batch of optimiser step `step` (0-based) and whether the carried state must be
    /// emptied before it (a new epoch of ordered streams). The pointers stay valid until the
    /// next call.
    func trainingBatch(step: Int) -> (batch: TokenBatch, restartsState: Bool)

    /// Whether the run is evaluated after `step` optimiser steps (1-based).
    func evaluatesAfter(step: Int) -> Bool
    /// The splits a periodic evaluation uses, in order.
    var validationSplits: [String] { get }
    /// Batches per split of a periodic evaluation (nil: the whole split).
    var validationBatches: Int? { get }
    /// The splits a finished run is evaluated on, in order.
    var finalSplits: [String] { get }
    /// Evaluates `model` on `split`, at most `maximumBatches` batches when given; `progress`
    /// hears after every batch. In a data-parallel job every rank calls it (`collective`), runs
    /// its share of the evaluation streams, and gets the result of the whole split.
    func evaluate(
        _ model: any SequenceModel, split: String, maximumBatches: Int?, collective: any Collective,
        progress: ((EvaluationProgress) -> Void)?
    ) throws -> EvaluationResult

    /// Streams of an evaluation batch that carry state from batch to batch, which the ranks of
    /// a data-parallel job must divide (nil: no carried state; batches may split unevenly).
    var carriedEvaluationBatch: Int? { get }

    /// The score of a periodic evaluation by which the best checkpoint is kept (higher is
    /// better), nil for tasks that keep only the newest checkpoints.
    func selectionScore(_ results: [EvaluationResult]) -> Double?
    /// Whether a periodic evaluation shows the task solved: training stops there.
    func isSolved(_ results: [EvaluationResult]) -> Bool

    /// What a training batch is, for logs: "16 x 64 tokens (memory 64)".
    var batchDescription: String { get }
    /// The evaluation protocol, for logs: "batch 4, memory 4 x 64".
    var evaluationDescription: String { get }

    /// The headline measure of a mean training loss: "bpc 1.2345", "ppl 56.78".
    func describe(loss: Double) -> String
    /// The headline measure of a uniform prediction, for scale.
    var uniformPredictionText: String { get }
}

extension TrainingTask {
    /// `evaluate` in a single process.
    public func evaluate(
        _ model: any SequenceModel, split: String, maximumBatches: Int? = nil,
        progress: ((EvaluationProgress) -> Void)? = nil
    ) throws -> EvaluationResult {
        try evaluate(model, split: split, maximumBatches: maximumBatches, collective: SingleProcess.shared, progress: progress)
    }

    public var carriedEvaluationBatch: Int? { nil }
    public var inputClasses: Int { outputClasses }
    public var largestTrainingBatch: TokenShape? { nil }
    public func selectionScore(_ results: [EvaluationResult]) -> Double? { nil }
    public func isSolved(_ results: [EvaluationResult]) -> Bool { false }
}

/// How far an evaluation has come: once before its first batch (0 batches, which starts the
/// clock of a rate), then after each batch.
public struct EvaluationProgress: Sendable, Equatable {
    public var batches: Int
    public var totalBatches: Int
    /// Positions scored so far.
    public var tokens: Int
}
