import Foundation
import Models

/// What a run learns from and how it is measured: where each step's batch comes from, when
/// the model's carried state starts over, and how a split is evaluated and reported. The
/// trainer, checkpoints and reports work through it; `LanguageModelingTask` is the task of
/// ordered token streams scored in bits per character or perplexity.
public protocol TrainingTask: AnyObject {
    /// The data, for logs and reports.
    var dataName: String { get }
    /// One line describing the data and its splits.
    var dataSummary: String { get }
    /// Classes the model must predict at every position.
    var outputClasses: Int { get }
    /// A fingerprint of the data and vocabulary: checkpoints record it and `--resume` refuses
    /// other data.
    var dataFingerprint: String { get }
    /// How checkpoints record the vocabulary (`eval` refuses data with another one).
    var vocabularyDescription: String { get }

    /// Positions in every training batch.
    var positionsPerStep: Int { get }
    /// The batch of optimiser step `step` (0-based) and whether the carried state must be
    /// emptied before it (a new epoch of ordered streams). The pointers stay valid until the
    /// next call.
    func trainingBatch(step: Int) -> (batch: TokenBatch, restartsState: Bool)

    /// The splits a finished run is evaluated on, in order.
    var finalSplits: [String] { get }
    /// The split periodic validation uses.
    var validationSplit: String { get }
    /// Evaluates `model` on `split`, at most `maximumBatches` batches when given (periodic
    /// validation); `progress` receives (batches done, batches).
    func evaluate(
        _ model: any SequenceModel, split: String, maximumBatches: Int?,
        progress: ((Int, Int) -> Void)?
    ) throws -> EvaluationResult

    /// The headline measure of a mean training loss: "bpc 1.2345", "ppl 56.78".
    func describe(loss: Double) -> String
    /// The headline measure of a uniform prediction, for scale.
    var uniformPredictionText: String { get }
}
