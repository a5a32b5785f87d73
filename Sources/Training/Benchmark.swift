import Configuration
import Datasets
import Foundation
import Layers
import Models
import Tensor

/// `lmtrain bench`: the sgemm rate this machine reaches and the training throughput of the
/// `bench` preset, measured in one run (Docs/performance.md).
public enum Benchmark {
    public struct Report: Codable, Sendable {
        public var threads: Int
        public var sgemmSize: Int
        public var sgemmGFLOPS: Double
        public var preset: String
        public var tokensPerStep: Int
        public var secondsPerStep: Double
        public var tokensPerSecond: Double
        public var modelFLOPsPerToken: Double
        public var modelGFLOPS: Double
        public var fractionOfSgemm: Double
        public var measuredSteps: Int
        public var stepSeconds: [Double]
        public var moeStepSeconds: Double?
        public var moeToDenseStepRatio: Double?
        public var feedForwardBlockSeconds: [String: Double]?
        public var moeToDenseBlockRatio: Double?
        /// The OpenBLAS kernel of the measurement and why it was chosen.
        public var openBLAS: OpenBLASKernel.Status?
        public var moeTokensPerSecond: Double?
        /// Evaluation of the same model under its protocol (batch 4, 4 segments of memory).
        public var evaluation: EvaluationFigures?
        /// The quick-start model (training step and evaluation), as `Scripts/quickstart` trains it.
        public var quickstart: QuickstartFigures?

        public init(
            threads: Int, sgemmSize: Int, sgemmGFLOPS: Double, preset: String, tokensPerStep: Int,
            secondsPerStep: Double, tokensPerSecond: Double, modelFLOPsPerToken: Double,
            modelGFLOPS: Double, fractionOfSgemm: Double, measuredSteps: Int, stepSeconds: [Double]
        ) {
            self.threads = threads
            self.sgemmSize = sgemmSize
            self.sgemmGFLOPS = sgemmGFLOPS
            self.preset = preset
            self.tokensPerStep = tokensPerStep
            self.secondsPerStep = secondsPerStep
            self.tokensPerSecond = tokensPerSecond
            self.modelFLOPsPerToken = modelFLOPsPerToken
            self.modelGFLOPS = modelGFLOPS
            self.fractionOfSgemm = fractionOfSgemm
            self.measuredSteps = measuredSteps
            self.stepSeconds = stepSeconds
        }

        enum CodingKeys: String, CodingKey {
            case threads, preset
            case sgemmSize = "sgemm_size", sgemmGFLOPS = "sgemm_gflops", tokensPerStep = "tokens_per_step"
            case secondsPerStep = "seconds_per_step_median", tokensPerSecond = "tokens_per_second"
            case modelFLOPsPerToken = "model_flops_per_token", modelGFLOPS = "model_gflops"
            case fractionOfSgemm = "fraction_of_sgemm", measuredSteps = "measured_steps", stepSeconds = "step_seconds"
            case moeStepSeconds = "moe_seconds_per_step_median", moeToDenseStepRatio = "moe_to_dense_step_ratio"
            case feedForwardBlockSeconds = "feedforward_block_seconds_median", moeToDenseBlockRatio = "moe_to_dense_block_ratio"
            case openBLAS = "openblas", moeTokensPerSecond = "moe_tokens_per_second"
            case evaluation, quickstart
        }
    }

    /// Evaluation throughput once the memory is full, against the training throughput of the
    /// same model measured in the same run.
    public struct EvaluationFigures: Codable, Sendable {
        public var batchSize: Int
        public var memorySegments: Int
        public var secondsPerBatch: Double
        public var tokensPerSecond: Double
        public var toTrainingRatio: Double
        /// The ratio the two would have at equal FLOP/s: training FLOPs per token (3 x a
        /// forward pass at the training memory) over evaluation's (a forward pass reading
        /// `memorySegments` segments of memory), both by the accountant's count.
        public var ratioAtEqualFLOPRate: Double
        public var batchSeconds: [Double]

        public init(_ config: RunConfig, batchSeconds: [Double], trainingTokensPerSecond: Double) throws {
            batchSize = config.evaluation.batchSize
            memorySegments = config.evaluation.memorySegments
            self.batchSeconds = batchSeconds
            secondsPerBatch = Benchmark.median(batchSeconds)
            tokensPerSecond = Double(batchSize * config.training.segmentLength) / secondsPerBatch
            toTrainingRatio = tokensPerSecond / trainingTokensPerSecond
            // Forward FLOPs per token of each pass, as `lmtrain count` counts them.
            let model = try config.model.makeModel(), t = config.training.segmentLength
            func perToken(batch: Int, memory: Int, training: Bool) -> Double {
                let pass = PassShape(tokens: TokenShape(batch: batch, length: t), memoryCapacity: memory, training: training, dropout: false)
                return model.forwardFLOPs(pass).reduce(0) { $0 + $1.perToken }
            }
            ratioAtEqualFLOPRate = 3 * perToken(batch: config.training.batchSize, memory: config.training.memoryLength, training: true)
                / perToken(batch: batchSize, memory: memorySegments * t, training: false)
        }

        enum CodingKeys: String, CodingKey {
            case batchSize = "batch_size", memorySegments = "memory_segments"
            case secondsPerBatch = "seconds_per_batch_median", tokensPerSecond = "tokens_per_second"
            case toTrainingRatio = "to_training_ratio", ratioAtEqualFLOPRate = "ratio_at_equal_flop_rate"
            case batchSeconds = "batch_seconds"
        }
    }

    public struct QuickstartFigures: Codable, Sendable {
        public var secondsPerStep: Double
        public var tokensPerSecond: Double
        public var stepSeconds: [Double]
        public var evaluation: EvaluationFigures

        public init(secondsPerStep: Double, tokensPerSecond: Double, stepSeconds: [Double], evaluation: EvaluationFigures) {
            self.secondsPerStep = secondsPerStep
            self.tokensPerSecond = tokensPerSecond
            self.stepSeconds = stepSeconds
            self.evaluation = evaluation
        }

        enum CodingKeys: String, CodingKey {
            case secondsPerStep = "seconds_per_step_median", tokensPerSecond = "tokens_per_second"
            case stepSeconds = "step_seconds", evaluation
        }
    }

    /// One feedforward block timed alone: forward + backward in training mode (dropout 0) on
    /// `tokens` rows of width `width`, median of `repeats` after one warm-up.
    public static func feedForwardSeconds(_ config: FeedForwardConfig, width: Int, tokens: Int, layers: Int = 12, repeats: Int) throws -> [Double] {
        let scope = ParameterScope()
        let layer = config.makeLayer(scope.child("ffn"), modelWidth: width, dropout: 0)
        let arena = ParameterArena(layout: scope.layout)
        var initialization = InitializationContext(seed: 3, layerCount: layers)
        layer.initialize(arena, &initialization)
        var rng = initialization.rng
        let x = FloatBuffer(count: tokens * width), y = FloatBuffer(count: tokens * width)
        let dy = FloatBuffer(count: tokens * width), dx = FloatBuffer(count: tokens * width)
        Initializer.normal(x.pointer, count: tokens * width, std: 1, rng: &rng)
        Initializer.normal(dy.pointer, count: tokens * width, std: 1, rng: &rng)
        let shape = TokenShape(batch: 1, length: tokens)
        var plan = BufferPlan()
        layer.declareBuffers(for: PassShape(tokens: shape, training: true, dropout: true), in: &plan)
        plan.reserve()
        var seconds: [Double] = []
        for i in 0...repeats {
            let start = DispatchTime.now().uptimeNanoseconds
            var context = ForwardContext(training: true, rng: rng)
            layer.forward(x.pointer, shape: shape, output: y.pointer, arena: arena, context: &context)
            dx.pointer.update(repeating: 0, count: tokens * width)
            layer.backward(x.pointer, dOutput: dy.pointer, shape: shape, dInput: dx.pointer, arena: arena)
            if i > 0 { seconds.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9) }
        }
        return seconds
    }

    /// Median of `values`.
    public static func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        let n = sorted.count
        return n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2
    }

    /// Median GFLOP/s of `repeats` square products of size `n` (after one warm-up).
    public static func sgemmRate(size n: Int, repeats: Int) -> Double {
        let a = FloatBuffer(count: n * n), b = FloatBuffer(count: n * n), c = FloatBuffer(count: n * n)
        var rng = RandomGenerator(seed: 1)
        Initializer.normal(a.pointer, count: n * n, std: 1, rng: &rng)
        Initializer.normal(b.pointer, count: n * n, std: 1, rng: &rng)
        var rates: [Double] = []
        for i in 0...repeats {
            let start = DispatchTime.now().uptimeNanoseconds
            gemm(m: n, n: n, k: n, a: a.pointer, lda: n, b: b.pointer, ldb: n, beta: 0, c: c.pointer, ldc: n)
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            if i > 0 { rates.append(2 * Double(n * n * n) / seconds / 1e9) }
        }
        return median(rates)
    }

    /// FLOPs per trained token: 6 x non-embedding parameters plus the attention products
    /// (forward 3 x 2 x S x HD per layer for content scores, position scores and the value
    /// read, x 3 for forward + backward). The projections of memory rows are not counted, so
    /// the figure is a lower bound on the work done.
    public static func modelFLOPsPerToken(_ config: RunConfig) throws -> Double {
        guard let model = config.model.as(TransformerXL.Config.self) else {
            throw ConfigError("the benchmark's FLOP count is defined for Transformer-XL models")
        }
        let embedding = model.vocabularySize * model.modelWidth
        let parameters = try TransformerXL(config: model).parameterCount
        let s = config.training.memoryLength + config.training.segmentLength
        let hd = model.heads * model.resolvedHeadSize
        let attention = 3.0 * Double(model.layers) * 3 * 2 * Double(s * hd)
        return 6 * Double(parameters - embedding) + attention
    }

    /// Times `steps` training steps of `config` on random tokens (after `warmup` steps).
    public static func trainingStepSeconds(_ config: RunConfig, warmup: Int, steps: Int) throws -> [Double] {
        try dataParallelStepSeconds(config, warmup: warmup, steps: steps, collective: SingleProcess.shared).steps
    }

    /// What a data-parallel job's training step costs: per step the seconds of the whole step
    /// and of its gradient all-reduce (0 in a single process).
    public struct DataParallelFigures: Codable, Sendable {
        public var ranks: Int
        public var threadsPerRank: Int
        public var variant: String
        public var tokensPerStep: Int
        public var parameters: Int
        public var secondsPerStep: Double
        public var tokensPerSecond: Double
        public var tokensPerSecondPerRank: Double
        public var allReduceSecondsPerStep: Double
        public var stepSeconds: [Double]
        public var allReduceSeconds: [Double]

        /// Medians of `seconds` (every rank runs the same steps: rank 0's are the job's).
        public init(
            ranks: Int, threadsPerRank: Int, variant: String, tokensPerStep: Int, parameters: Int,
            seconds: (steps: [Double], allReduce: [Double])
        ) {
            self.ranks = ranks
            self.threadsPerRank = threadsPerRank
            self.variant = variant
            self.tokensPerStep = tokensPerStep
            self.parameters = parameters
            secondsPerStep = Benchmark.median(seconds.steps)
            tokensPerSecond = Double(tokensPerStep) / secondsPerStep
            tokensPerSecondPerRank = tokensPerSecond / Double(ranks)
            allReduceSecondsPerStep = Benchmark.median(seconds.allReduce)
            stepSeconds = seconds.steps
            allReduceSeconds = seconds.allReduce
        }

        enum CodingKeys: String, CodingKey {
            case ranks, variant, parameters
            case threadsPerRank = "threads_per_rank"
            case tokensPerStep = "tokens_per_step"
            case secondsPerStep = "seconds_per_step"
            case tokensPerSecond = "tokens_per_second"
            case tokensPerSecondPerRank = "tokens_per_second_per_rank"
            case allReduceSecondsPerStep = "all_reduce_seconds_per_step"
            case stepSeconds = "step_seconds"
            case allReduceSeconds = "all_reduce_seconds"
        }
    }

    /// Seconds of `repeats` all-reduces (sums) of `count` floats across `collective`'s ranks,
    /// each started together (a barrier first) after one untimed call: the communication of a
    /// gradient of `count` parameters alone.
    public static func allReduceSeconds(count: Int, repeats: Int, collective: any Collective) -> [Double] {
        let values = UnsafeMutablePointer<Float>.allocate(capacity: count)
        defer { values.deallocate() }
        values.initialize(repeating: 1, count: count)
        collective.allReduceSum(values, count: count)
        return (0..<repeats).map { _ in
            collective.barrier()
            let start = DispatchTime.now().uptimeNanoseconds
            collective.allReduceSum(values, count: count)
            return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        }
    }

    /// Times `steps` training steps of `config` on random tokens (after `warmup` steps) as one
    /// rank of `collective`'s job (every rank calls it): each step's seconds and the part of
    /// them spent in the gradient all-reduce.
    public static func dataParallelStepSeconds(
        _ config: RunConfig, warmup: Int, steps: Int, collective: any Collective
    ) throws -> (steps: [Double], allReduce: [Double]) {
        var rng = RandomGenerator(seed: 2)
        let needed = config.training.batchSize * (config.training.segmentLength + 1) * (warmup + steps + 2)
        let bytes = (0..<(needed + 1000)).map { _ in UInt8(32 + rng.integer(below: config.model.vocabularySize)) }
        let tokens = TokenSequence(bytes: bytes.map { $0 - 32 })
        let corpus = Corpus(
            name: "random bytes", unit: .bytes, vocabularySize: config.model.vocabularySize,
            train: tokens, valid: tokens, test: tokens, fingerprint: "random")
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("lmtrain-bench-\(getpid())")
        defer { try? FileManager.default.removeItem(at: directory) }
        let trainer = try Trainer(config: config, corpus: corpus, runDirectory: directory, collective: collective)
        var seconds: [Double] = [], allReduce: [Double] = []
        for i in 0..<(warmup + steps) {
            let start = DispatchTime.now().uptimeNanoseconds
            let communicated = trainer.allReduceSeconds
            _ = try trainer.trainStep()
            if i >= warmup {
                seconds.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
                allReduce.append(trainer.allReduceSeconds - communicated)
            }
        }
        return (seconds, allReduce)
    }

    /// Seconds per evaluation batch of `config`'s model (freshly initialised) under its
    /// evaluation protocol (batch size, memory segments) on random tokens, through the same
    /// code as `lmtrain eval`: `batches` batches timed after the batches that fill the memory.
    public static func evaluationBatchSeconds(_ config: RunConfig, batches: Int) throws -> [Double] {
        let model = try config.model.makeModel()
        model.initialize(seed: config.training.seed)
        let (b, t, m) = (config.evaluation.batchSize, config.training.segmentLength, config.evaluation.memorySegments)
        let filling = max(1, m)
        var rng = RandomGenerator(seed: 3)
        let count = b * t * (filling + batches) + 1
        let tokens = TokenSequence(bytes: (0..<count).map { _ in UInt8(rng.integer(below: config.model.vocabularySize)) })
        var stamps = [DispatchTime.now().uptimeNanoseconds]
        _ = try LanguageModelingTask.evaluate(
            model, tokens: tokens, unit: .bytes, split: "bench", batchSize: b, segmentLength: t,
            memorySegments: m, maximumBatches: filling + batches
        ) {
            // The report before the first batch (0 batches) only starts a console's clock.
            if $0.batches > 0 { stamps.append(DispatchTime.now().uptimeNanoseconds) }
        }
        return (filling + 1..<stamps.count).map { Double(stamps[$0] - stamps[$0 - 1]) / 1e9 }
    }

    /// Times `steps` training steps (forward, backward, Adam) of `model` on random ids of
    /// `shape`, every position scored, after `warmup` steps: a model's own speed, without
    /// batching or evaluation.
    public static func sequenceModelStepSeconds(
        _ config: ModelConfig, training: TrainingConfig, shape: TokenShape, warmup: Int, steps: Int
    ) throws -> [Double] {
        let model = try config.makeModel()
        model.initialize(seed: training.seed)
        model.reserveBuffers(for: PassShape(tokens: shape, memoryCapacity: 0, training: true, dropout: true))
        let optimizer = training.makeOptimizer(parameters: model.layout.count)
        var rng = RandomGenerator(seed: 2)
        let inputs = (0..<shape.rows).map { _ in Int32(rng.integer(below: config.inputVocabularySize)) }
        let targets = (0..<shape.rows).map { _ in Int32(rng.integer(below: config.vocabularySize)) }
        var seconds: [Double] = []
        for i in 0..<(warmup + steps) {
            let start = DispatchTime.now().uptimeNanoseconds
            model.arena.zeroGradients()
            var context = ForwardContext(training: true, rng: rng)
            inputs.withUnsafeBufferPointer { x in
                targets.withUnsafeBufferPointer { y in
                    _ = model.forward(TokenBatch(shape: shape, inputs: x.baseAddress!, targets: y.baseAddress!), state: nil, context: &context)
                }
            }
            model.backward()
            optimizer.step(model.arena, learningRate: training.learningRate)
            rng = context.rng
            if i >= warmup { seconds.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9) }
        }
        return seconds
    }
}
