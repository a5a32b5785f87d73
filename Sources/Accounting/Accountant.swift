import Configuration
import FormalLanguages
import Foundation
import Layers
import Models
import Tensor

/// What a configuration costs, computed from the config alone: the model is built (layers and
/// layout, no parameter memory) and asked for its parameters by component, its FLOPs per
/// token and the buffers it declares for the run's passes.
public struct Account: Sendable, Codable, Equatable {
    public struct Parameters: Sendable, Codable, Equatable {
        /// By component, from the layout.
        public var components: [ParameterComponent]
        public var total: Int
        /// Parameters that take part in computing one token's output.
        public var activePerToken: Int
        /// Share of one feedforward block's parameters used for a token at once (σ-MoE: K/N);
        /// nil for models without a feedforward block.
        public var feedForwardShareUsed: Double?

        enum CodingKeys: String, CodingKey {
            case components, total
            case activePerToken = "active_per_token", feedForwardShareUsed = "feedforward_share_used"
        }

        /// The component named `name`, if the model has it.
        public func component(_ name: String) -> ParameterComponent? { components.first { $0.name == name } }
    }

    /// Matrix-product FLOPs (2 per multiply-add) per token of a training segment with a full
    /// memory; elementwise work (norms, softmax, dropout) is not counted.
    public struct FLOPs: Sendable, Codable, Equatable {
        public var components: [FLOPComponent]
        public var forwardPerToken: Double
        /// Forward + backward: 3 x forward.
        public var trainingPerToken: Double

        enum CodingKeys: String, CodingKey {
            case components
            case forwardPerToken = "forward_per_token", trainingPerToken = "training_per_token"
        }

        /// The component named `name`, if the model has it.
        public func component(_ name: String) -> FLOPComponent? { components.first { $0.name == name } }
    }

    /// Bytes.
    public struct Memory: Sendable, Codable, Equatable {
        public var parameters: Int
        public var gradients: Int
        public var optimizer: Int
        /// The buffers of a training process: every buffer at the larger of its training-step
        /// and evaluation sizes (buffers only grow).
        public var trainingActivations: Int
        /// The buffers of an evaluation pass alone (`lmtrain eval`).
        public var evaluationActivations: Int
        /// State carried between segments (the Transformer-XL memory) in training and in
        /// evaluation.
        public var trainingMemory: Int
        public var evaluationMemory: Int
        /// The process itself: code, OpenBLAS, the runtime, the token ids of the corpus.
        public var runtime: Int
        public var peakTraining: Int
        public var peakEvaluation: Int
        /// The training process's buffers by name (summed over layers), largest first.
        public var inventory: [BufferPlan.Entry]
        /// Of the training activations: the fast weights that the fast-weight layers keep for
        /// backward through time (0 for other models).
        public var storedFastWeights: Int {
            inventory.filter { $0.name.contains(BackwardThroughTime.storedStates) }.reduce(0) { $0 + $1.bytes }
        }

        enum CodingKeys: String, CodingKey {
            case parameters, gradients, optimizer, runtime, inventory
            case trainingActivations = "training_activations", evaluationActivations = "evaluation_activations"
            case trainingMemory = "training_memory", evaluationMemory = "evaluation_memory"
            case peakTraining = "peak_training", peakEvaluation = "peak_evaluation"
        }
    }

    public var parameters: Parameters
    public var flops: FLOPs
    public var memory: Memory
}

extension BufferPlan.Entry: Codable {
    enum CodingKeys: String, CodingKey { case name, bytes }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(name: try c.decode(String.self, forKey: .name), bytes: try c.decode(Int.self, forKey: .bytes))
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        try c.encode(bytes, forKey: .bytes)
    }
}

/// Computes `Account`s from what the model declares (tests compare the counts with allocated
/// arenas and the inventory with the bytes a real step allocates).
public enum Accountant {
    /// Bytes of the process beyond lmtrain's own buffers, measured with `lmtrain train` on the
    /// bench preset: code, Swift runtime, OpenBLAS's packing buffers, allocator slack.
    public static let runtimeBaseline = 40 << 20

    /// Optimiser moments per parameter (Adam and AdamW keep two floats).
    public static let optimizerBytesPerParameter = 8

    /// The pass of a training step: the configured batch and segment, a full memory. A
    /// formal-language run pads a batch to its longest string: the longest the task's
    /// generated training split can hold.
    public static func trainingPass(_ config: RunConfig) -> PassShape {
        let t = config.training
        let length = formalTask(config)?.longestString(of: .train) ?? t.segmentLength
        return PassShape(
            tokens: TokenShape(batch: t.batchSize, length: length),
            memoryCapacity: t.memoryLength, training: true, dropout: true)
    }

    /// The pass of the evaluation protocol: its batch, the training segment, its memory; for a
    /// formal-language run the longest string of Bin1.
    public static func evaluationPass(_ config: RunConfig) -> PassShape {
        let e = config.evaluation, t = config.training.segmentLength
        let length = formalTask(config)?.longestString(of: .bin1) ?? t
        return PassShape(
            tokens: TokenShape(batch: e.batchSize, length: length), memoryCapacity: e.memorySegments * t,
            training: false, dropout: false)
    }

    /// The formal-language task a config trains on, if any.
    static func formalTask(_ config: RunConfig) -> FormalTask? {
        config.data.task.flatMap(FormalTask.init(name:))
    }

    public static func account(_ config: RunConfig, corpusTokens: Int = 0) throws -> Account {
        let model = try config.model.makeModel()
        let total = model.layout.count
        let parameters = Account.Parameters(
            components: model.parameterComponents, total: total,
            activePerToken: model.activeParametersPerToken,
            feedForwardShareUsed: model.feedForwardShareUsed)

        let training = trainingPass(config), evaluation = evaluationPass(config)
        let components = model.forwardFLOPs(training)
        let forward = components.reduce(0) { $0 + $1.perToken }
        let flops = Account.FLOPs(components: components, forwardPerToken: forward, trainingPerToken: 3 * forward)

        var trainingPlan = BufferPlan(), evaluationPlan = BufferPlan()
        model.declareBuffers(for: training, in: &trainingPlan)
        model.declareBuffers(for: evaluation, in: &trainingPlan)
        model.declareBuffers(for: evaluation, in: &evaluationPlan)
        let trainingMemory = model.stateBytes(batch: training.batch, capacity: training.memoryCapacity)
        let evaluationMemory = model.evaluationStateBytes(
            batch: evaluation.batch, capacity: evaluation.memoryCapacity, segmentLength: evaluation.length)
        // The corpus: its bytes while loading and one byte per id kept.
        let runtime = runtimeBaseline + 2 * corpusTokens
        let optimizer = optimizerBytesPerParameter * total
        // One copy of the gradients per gradient group (language models; Trainer.gradientGroups).
        let gradientCopies = formalTask(config) == nil ? config.training.gradientGroups(batch: config.training.batchSize) : 1
        let gradients = 4 * total * gradientCopies
        let memory = Account.Memory(
            parameters: 4 * total, gradients: gradients, optimizer: optimizer,
            trainingActivations: trainingPlan.bytes, evaluationActivations: evaluationPlan.bytes,
            trainingMemory: trainingMemory, evaluationMemory: evaluationMemory, runtime: runtime,
            peakTraining: 4 * total + gradients + optimizer + trainingPlan.bytes + trainingMemory + evaluationMemory + runtime,
            peakEvaluation: 8 * total + evaluationPlan.bytes + evaluationMemory + runtime,
            inventory: summed(trainingPlan.entries))
        return Account(parameters: parameters, flops: flops, memory: memory)
    }

    /// Bytes of lmtrain's buffers after training steps of `config` (the model's buffers for a
    /// training pass and the training memory; not parameters or optimiser state), for checking
    /// the inventory against what a real step allocates.
    public static func trainingStepBufferBytes(_ config: RunConfig) throws -> Int {
        let model = try config.model.makeModel()
        let pass = trainingPass(config)
        var plan = BufferPlan()
        model.declareBuffers(for: pass, in: &plan)
        return plan.bytes + model.stateBytes(batch: pass.batch, capacity: pass.memoryCapacity)
    }

    /// Entries of the same name added up, largest first.
    static func summed(_ entries: [BufferPlan.Entry]) -> [BufferPlan.Entry] {
        var order: [String] = [], bytes: [String: Int] = [:]
        for entry in entries {
            if bytes[entry.name] == nil { order.append(entry.name) }
            bytes[entry.name, default: 0] += entry.bytes
        }
        return order.map { BufferPlan.Entry(name: $0, bytes: bytes[$0]!) }.sorted { $0.bytes > $1.bytes }
    }
}
