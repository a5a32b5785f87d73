import Datasets
import Foundation
import Models

/// Everything that defines a run: model, optimisation, evaluation protocol and data.
/// Serialised as JSON with snake_case keys (`config.json` in a run directory, the
/// `config` metadata of checkpoints, `--config FILE.json` overrides).
public struct RunConfig: Sendable, Codable, Equatable {
    public var model: ModelConfig
    public var training: TrainingConfig
    public var evaluation: EvaluationConfig
    public var data: DataConfig

    public init(model: ModelConfig, training: TrainingConfig, evaluation: EvaluationConfig, data: DataConfig) {
        self.model = model
        self.training = training
        self.evaluation = evaluation
        self.data = data
    }

    /// Cross-field checks; each failure is one line naming the field.
    public func validate() throws {
        try ConfigLimits.check(self)
        try model.validate()
        try training.validate()
        try evaluation.validate()
        try data.validate()
    }
}

/// The optimiser of a run (`training.optimizer`, Docs/model.md "Optimisation").
/// How dropout masks (and expert dropout) are drawn.
public enum DropoutDraws: String, Sendable, Codable, CaseIterable {
    /// Each stream of the batch from its own generator, seeded per mask by the run's generator
    /// and the stream's index: a data-parallel job draws the same masks under any number of ranks.
    case perStream = "per_stream"
    /// The whole pass from the run's generator, as lmtrain did before per-stream draws: runs
    /// whose config lacks the key keep it (and resume as one process only).
    case shared
}

public enum OptimizerKind: String, Sendable, Codable, CaseIterable {
    /// Adam with decoupled weight decay, as `torch.optim.AdamW` (the σ-MoE experiments).
    case adamw
    /// Adam with weight decay added to the gradient, as `torch.optim.Adam`.
    case adam
}

/// The learning-rate schedule of a run (`training.schedule`).
public enum ScheduleKind: String, Sendable, Codable, CaseIterable {
    /// Linear warmup, then cosine decay to 0 over the run (the σ-MoE experiments).
    case cosine
    /// Linear warmup, then the base rate throughout.
    case constant
}

/// Optimisation and schedule (Docs/model.md "Optimisation", "Data").
public struct TrainingConfig: Sendable, Codable, Equatable {
    /// Total optimiser steps (the cosine schedule spans them).
    public var steps: Int
    /// When set, the run lasts this many epochs: `steps` becomes epochs x the task's batches
    /// per epoch when the run starts.
    public var epochs: Int?
    /// B: parallel streams of the ordered batcher.
    public var batchSize: Int
    /// T: tokens per segment.
    public var segmentLength: Int
    /// M: memory rows per stream in training (equal to T in the paper's runs).
    public var memoryLength: Int
    public var optimizer: OptimizerKind
    public var schedule: ScheduleKind
    public var learningRate: Double
    /// Linear warmup steps (0: none).
    public var warmupSteps: Int
    /// Global gradient-norm clipping threshold (0: off).
    public var gradientClip: Double
    public var weightDecay: Double
    public var adamBeta1: Double
    public var adamBeta2: Double
    public var adamEpsilon: Double
    public var seed: UInt64
    /// Steps between metric lines.
    public var logInterval: Int
    /// Steps between validations (0: only at the end).
    public var validationInterval: Int
    /// Segments of the valid split used by periodic validation (0: all of it).
    public var validationBatches: Int
    /// Steps between checkpoints (0: only at the end).
    public var checkpointInterval: Int
    /// Checkpoints kept in the run directory (older ones are deleted).
    public var keepCheckpoints: Int
    public var dropoutDraws: DropoutDraws
    /// G: the batch's streams form G contiguous groups (gcd(G, B) when G does not divide B)
    /// whose gradients are accumulated apart and added pairwise, so that `mpirun -np N` with N
    /// dividing the groups gives one process's gradients to the last bit (Docs/distributed.md).
    public var gradientGroups: Int

    enum CodingKeys: String, CodingKey {
        case steps, epochs, seed, optimizer, schedule
        case batchSize = "batch_size", segmentLength = "segment_length", memoryLength = "memory_length"
        case learningRate = "learning_rate", warmupSteps = "warmup_steps", gradientClip = "gradient_clip"
        case weightDecay = "weight_decay", adamBeta1 = "adam_beta1", adamBeta2 = "adam_beta2"
        case adamEpsilon = "adam_epsilon", logInterval = "log_interval"
        case validationInterval = "validation_interval", validationBatches = "validation_batches"
        case checkpointInterval = "checkpoint_interval", keepCheckpoints = "keep_checkpoints"
        case dropoutDraws = "dropout_draws", gradientGroups = "gradient_groups"
    }

    public init(
        steps: Int, batchSize: Int, segmentLength: Int, memoryLength: Int,
        optimizer: OptimizerKind = .adamw, schedule: ScheduleKind = .cosine,
        learningRate: Double = 2.5e-4, warmupSteps: Int = 0, gradientClip: Double = 0.25,
        weightDecay: Double = 0, adamBeta1: Double = 0.9, adamBeta2: Double = 0.999,
        adamEpsilon: Double = 1e-8, seed: UInt64 = 1, logInterval: Int = 10,
        validationInterval: Int = 0, validationBatches: Int = 0, checkpointInterval: Int = 0,
        keepCheckpoints: Int = 3, dropoutDraws: DropoutDraws = .perStream, gradientGroups: Int = 2
    ) {
        self.steps = steps
        self.batchSize = batchSize
        self.segmentLength = segmentLength
        self.memoryLength = memoryLength
        self.optimizer = optimizer
        self.schedule = schedule
        self.learningRate = learningRate
        self.warmupSteps = warmupSteps
        self.gradientClip = gradientClip
        self.weightDecay = weightDecay
        self.adamBeta1 = adamBeta1
        self.adamBeta2 = adamBeta2
        self.adamEpsilon = adamEpsilon
        self.seed = seed
        self.logInterval = logInterval
        self.validationInterval = validationInterval
        self.validationBatches = validationBatches
        self.checkpointInterval = checkpointInterval
        self.keepCheckpoints = keepCheckpoints
        self.dropoutDraws = dropoutDraws
        self.gradientGroups = gradientGroups
    }

    /// Every key is required except `optimizer`, `schedule`, `epochs`, `dropout_draws` and
    /// `gradient_groups`, which configs written before they existed lack: those runs used AdamW,
    /// the cosine schedule, `steps`, shared dropout draws and one gradient group.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let epochs = try c.decodeIfPresent(Int.self, forKey: .epochs)
        self.init(
            steps: try c.decode(Int.self, forKey: .steps),
            batchSize: try c.decode(Int.self, forKey: .batchSize),
            segmentLength: try c.decode(Int.self, forKey: .segmentLength),
            memoryLength: try c.decode(Int.self, forKey: .memoryLength),
            optimizer: try c.decodeIfPresent(OptimizerKind.self, forKey: .optimizer) ?? .adamw,
            schedule: try c.decodeIfPresent(ScheduleKind.self, forKey: .schedule) ?? .cosine,
            learningRate: try c.decode(Double.self, forKey: .learningRate),
            warmupSteps: try c.decode(Int.self, forKey: .warmupSteps),
            gradientClip: try c.decode(Double.self, forKey: .gradientClip),
            weightDecay: try c.decode(Double.self, forKey: .weightDecay),
            adamBeta1: try c.decode(Double.self, forKey: .adamBeta1),
            adamBeta2: try c.decode(Double.self, forKey: .adamBeta2),
            adamEpsilon: try c.decode(Double.self, forKey: .adamEpsilon),
            seed: try c.decode(UInt64.self, forKey: .seed),
            logInterval: try c.decode(Int.self, forKey: .logInterval),
            validationInterval: try c.decode(Int.self, forKey: .validationInterval),
            validationBatches: try c.decode(Int.self, forKey: .validationBatches),
            checkpointInterval: try c.decode(Int.self, forKey: .checkpointInterval),
            keepCheckpoints: try c.decode(Int.self, forKey: .keepCheckpoints),
            dropoutDraws: try c.decodeIfPresent(DropoutDraws.self, forKey: .dropoutDraws) ?? .shared,
            gradientGroups: try c.decodeIfPresent(Int.self, forKey: .gradientGroups) ?? 1)
        self.epochs = epochs
    }

    /// Every key, `epochs` as null when unset, so config files list all fields.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(steps, forKey: .steps)
        try c.encode(epochs, forKey: .epochs)
        try c.encode(batchSize, forKey: .batchSize)
        try c.encode(segmentLength, forKey: .segmentLength)
        try c.encode(memoryLength, forKey: .memoryLength)
        try c.encode(optimizer, forKey: .optimizer)
        try c.encode(schedule, forKey: .schedule)
        try c.encode(learningRate, forKey: .learningRate)
        try c.encode(warmupSteps, forKey: .warmupSteps)
        try c.encode(gradientClip, forKey: .gradientClip)
        try c.encode(weightDecay, forKey: .weightDecay)
        try c.encode(adamBeta1, forKey: .adamBeta1)
        try c.encode(adamBeta2, forKey: .adamBeta2)
        try c.encode(adamEpsilon, forKey: .adamEpsilon)
        try c.encode(seed, forKey: .seed)
        try c.encode(logInterval, forKey: .logInterval)
        try c.encode(validationInterval, forKey: .validationInterval)
        try c.encode(validationBatches, forKey: .validationBatches)
        try c.encode(checkpointInterval, forKey: .checkpointInterval)
        try c.encode(keepCheckpoints, forKey: .keepCheckpoints)
        try c.encode(dropoutDraws, forKey: .dropoutDraws)
        try c.encode(gradientGroups, forKey: .gradientGroups)
    }

    /// The gradient groups of a batch of `batch` streams: gcd(G, B).
    public func gradientGroups(batch: Int) -> Int {
        var (a, b) = (gradientGroups, batch)
        while b != 0 { (a, b) = (b, a % b) }
        return max(1, a)
    }

    public func validate() throws {
        func require(_ ok: Bool, _ message: String) throws { if !ok { throw ConfigError(message) } }
        try require(steps >= 1, "training.steps must be at least 1 (got \(steps))")
        if let epochs { try require(epochs >= 1, "training.epochs must be at least 1 (got \(epochs))") }
        try require(batchSize >= 1, "training.batch_size must be at least 1 (got \(batchSize))")
        try require(gradientGroups >= 1, "training.gradient_groups must be at least 1 (got \(gradientGroups))")
        try require(segmentLength >= 1, "training.segment_length must be at least 1 (got \(segmentLength))")
        try require(memoryLength >= 0, "training.memory_length must be >= 0 (got \(memoryLength))")
        try require(learningRate > 0 && learningRate.isFinite, "training.learning_rate must be positive (got \(learningRate))")
        try require(warmupSteps >= 0, "training.warmup_steps must be >= 0 (got \(warmupSteps))")
        try require(gradientClip >= 0 && gradientClip.isFinite, "training.gradient_clip must be >= 0, 0 turns clipping off (got \(gradientClip))")
        try require(weightDecay >= 0 && weightDecay.isFinite, "training.weight_decay must be >= 0 (got \(weightDecay))")
        try require((0..<1).contains(adamBeta1) && (0..<1).contains(adamBeta2), "training.adam_beta1/2 must be in [0, 1)")
        try require(adamEpsilon > 0 && adamEpsilon.isFinite, "training.adam_epsilon must be positive")
        try require(logInterval >= 1, "training.log_interval must be at least 1 (got \(logInterval))")
        try require(validationInterval >= 0 && validationBatches >= 0 && checkpointInterval >= 0, "training.validation_interval, validation_batches and checkpoint_interval must be >= 0")
        try require(keepCheckpoints >= 1, "training.keep_checkpoints must be at least 1")
    }
}

/// The evaluation protocol (Docs/model.md: test with 4 segments of memory, batch 4).
public struct EvaluationConfig: Sendable, Codable, Equatable {
    public var batchSize: Int
    /// Memory of this many segments of T rows (filling up 1, 2, ... at the start).
    public var memorySegments: Int

    enum CodingKeys: String, CodingKey {
        case batchSize = "batch_size", memorySegments = "memory_segments"
    }

    public init(batchSize: Int = 4, memorySegments: Int = 4) {
        self.batchSize = batchSize
        self.memorySegments = memorySegments
    }

    public func validate() throws {
        if batchSize < 1 { throw ConfigError("evaluation.batch_size must be at least 1 (got \(batchSize))") }
        if memorySegments < 0 { throw ConfigError("evaluation.memory_segments must be >= 0 (got \(memorySegments))") }
    }
}
