import Datasets
import Foundation
import Layers
import Models
import Tensor
import Testing
import TestSupport
import Configuration
import Training

@Suite(.serialized) struct TrainingLoopTests {
    @Test func overfitsOneBatch() throws {
        let config = TransformerXL.Config(
            vocabularySize: 20, modelWidth: 16, layers: 2, heads: 2,
            feedForward: FeedForwardConfig(DenseFeedForward.Config(hiddenSize: 32)), dropout: 0)
        let model = try TransformerXL(config: config)
        model.initialize(seed: 1)
        let optimizer = Adam(count: model.parameterCount, beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: .decoupled(0))
        var rng = RandomGenerator(seed: 2)
        let shape = TokenShape(batch: 2, length: 12)
        let inputs = (0..<shape.rows).map { _ in Int32(rng.integer(below: 20)) }
        let targets = (0..<shape.rows).map { _ in Int32(rng.integer(below: 20)) }
        var first = 0.0, last = 0.0
        for step in 0..<200 {
            model.arena.zeroGradients()
            var context = ForwardContext(training: true, rng: rng)
            let loss = model.forward(inputs: inputs, targets: targets, shape: shape, context: &context).crossEntropy
            model.backward()
            optimizer.step(model.arena, learningRate: 3e-3)
            if step == 0 { first = loss }
            last = loss
        }
        #expect(abs(first - log(20.0)) < 0.5)
        #expect(last < 0.05, "loss went from \(first) to \(last)")
    }

    @Test func sameSeedGivesIdenticalLossesAndOtherSeedDoesNot() throws {
        let corpus = Fixtures.textCorpus()
        func losses(seed: UInt64) throws -> [Double] {
            var config = Fixtures.tinyConfig(steps: 8)
            config.training.seed = seed
            let trainer = try Trainer(config: config, corpus: corpus, runDirectory: Fixtures.temporaryDirectory("seed"))
            return try trainer.run().map(\.loss)
        }
        let a = try losses(seed: 5), b = try losses(seed: 5), c = try losses(seed: 6)
        #expect(a == b)
        #expect(a != c)
    }

    @Test(arguments: [false, true]) func trainingStepAllocatesNothingAfterTheFirst(sparse: Bool) throws {
        var config = Fixtures.tinyConfig()
        if sparse { config = Fixtures.with(config, MixtureOfExperts.SigmaConfig(experts: 4, expertSize: 8, k: 2, expertDropout: 0.1)) }
        let trainer = try Trainer(config: config, corpus: Fixtures.textCorpus(), runDirectory: Fixtures.temporaryDirectory("alloc"))
        _ = try trainer.trainStep()
        let after = BufferStatistics.allocations
        for _ in 0..<4 { _ = try trainer.trainStep() }
        #expect((trainer.state as! TransformerXLMemory).length == 8, "memory filled after the first step")
        #expect(BufferStatistics.allocations == after)
    }

    /// Small and quick: stop at step 10, resume, and compare with one uninterrupted run; the
    /// σ-MoE (expert dropout) and PKM with batch-norm running statistics keep their state too.
    @Test(arguments: [0, 1, 2]) func resumedRunMatchesUninterruptedBitForBit(variant: Int) throws {
        let corpus = Fixtures.textCorpus()
        var config = Fixtures.tinyConfig(steps: 20)
        if variant == 1 { config = Fixtures.with(config, MixtureOfExperts.SigmaConfig(experts: 4, expertSize: 8, k: 2, expertDropout: 0.1)) }
        if variant == 2 { config = Fixtures.with(config, ProductKeyMemory.Config(keysPerHalf: 4, heads: 2, knn: 4, query: .mlpBatchNorm)) }
        let straight = try Trainer(config: config, corpus: corpus, runDirectory: Fixtures.temporaryDirectory("straight"))
        let expected = try straight.run()

        let directory = Fixtures.temporaryDirectory("split")
        let first = try Trainer(config: config, corpus: corpus, runDirectory: directory)
        try first.run(stopAt: 10)
        #expect(first.step == 10)
        let checkpoint = try Checkpoint.load(Trainer.checkpoints(in: directory).last!)
        let second = try Trainer(resuming: checkpoint, corpus: corpus, runDirectory: directory)
        let resumed = try second.run()
        #expect(resumed.map(\.loss) == expected.suffix(10).map(\.loss))
        #expect(resumed.map(\.gradientNorm) == expected.suffix(10).map(\.gradientNorm))
        for view in straight.model.layout.views {
            #expect(memcmp(straight.model.arena.value(view), second.model.arena.value(view), view.count * 4) == 0, "\(view.name)")
        }
        // The resumed run's metrics log holds each step once.
        let lines = try String(contentsOf: directory.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
            .split(separator: "\n").filter { $0.contains("\"type\":\"train\"") }
        #expect(lines.count == 4)
    }

    @Test func nonFiniteLossStopsAndKeepsTheLastCheckpoint() throws {
        let directory = Fixtures.temporaryDirectory("nan")
        let trainer = try Trainer(config: Fixtures.tinyConfig(steps: 20), corpus: Fixtures.textCorpus(), runDirectory: directory)
        try trainer.run(stopAt: 10)
        let saved = Trainer.checkpoints(in: directory).last!
        let bytes = try Data(contentsOf: saved)
        trainer.model.arena.values[0] = .nan
        trainer.model.arena.values[trainer.model.layout.view(named: "output.weight")!.offset] = .nan
        #expect {
            try trainer.run()
        } throws: { error in
            "\(error)".contains("step 11: loss is nan") && "\(error)".contains(saved.path)
        }
        #expect(trainer.step == 10)
        #expect(try Data(contentsOf: saved) == bytes)
        #expect(Trainer.checkpoints(in: directory) == [saved])
    }

    @Test func corpusShorterThanOneBatchIsRejected() {
        var config = Fixtures.tinyConfig()
        config.training.batchSize = 64
        config.training.segmentLength = 2000
        #expect {
            _ = try Trainer(config: config, corpus: Fixtures.textCorpus(bytes: 5000), runDirectory: Fixtures.temporaryDirectory("short"))
        } throws: { "\($0)".contains("lower --batch-size or --segment-length") }
    }

    @Test func existingRunDirectoryIsNotOverwritten() throws {
        let directory = Fixtures.temporaryDirectory("exists")
        // A run that has trained (a directory whose start failed before training may be reused).
        try Trainer(config: Fixtures.tinyConfig(), corpus: Fixtures.textCorpus(), runDirectory: directory).run(stopAt: 1)
        let before = try Data(contentsOf: directory.appendingPathComponent("config.json"))
        var other = Fixtures.tinyConfig()
        other.training.steps = 99
        #expect {
            _ = try Trainer(config: other, corpus: Fixtures.textCorpus(), runDirectory: directory)
        } throws: { "\($0)".contains("already holds a run") }
        #expect(try Data(contentsOf: directory.appendingPathComponent("config.json")) == before)
    }
}

struct OptimiserTests {
    /// Two updates of PyTorch's AdamW and Adam written out by hand: decoupled decay shrinks
    /// the parameter, L2 decay enters the gradient (and so the moments).
    @Test(arguments: [true, false]) func adamMatchesTheReferenceFormula(decoupled: Bool) {
        let scope = ParameterScope()
        _ = scope.tensor("p", shape: [2])
        let arena = ParameterArena(layout: scope.layout)
        arena.values[0] = 0.5
        arena.values[1] = -1
        let (b1, b2, eps, wd) = (0.9, 0.995, 1e-9, 0.1)
        let optimizer = Adam(count: 2, beta1: b1, beta2: b2, epsilon: eps, weightDecay: decoupled ? .decoupled(Float(wd)) : .l2(Float(wd)))
        var p: [Double] = [0.5, -1], m: [Double] = [0, 0], v: [Double] = [0, 0]
        let grads: [[Float]] = [[0.2, -0.3], [0.1, 0.4]]
        for (t, g) in grads.enumerated() {
            arena.gradients[0] = g[0]
            arena.gradients[1] = g[1]
            optimizer.step(arena, learningRate: 0.01)
            for i in 0..<2 {
                var grad = Double(g[i])
                if decoupled { p[i] *= 1 - 0.01 * wd } else { grad += wd * p[i] }
                m[i] = b1 * m[i] + (1 - b1) * grad
                v[i] = b2 * v[i] + (1 - b2) * grad * grad
                let mHat = m[i] / (1 - pow(b1, Double(t + 1)))
                let denominator = (v[i] / (1 - pow(b2, Double(t + 1)))).squareRoot() + eps
                p[i] -= 0.01 * mHat / denominator
                #expect(abs(Double(arena.values[i]) - p[i]) < 1e-6)
            }
        }
        #expect(optimizer.stepCount == 2)
    }

    @Test func configChoosesTheOptimiserAndSchedule() {
        var training = Fixtures.tinyConfig().training
        training.weightDecay = 0.5
        #expect((training.makeOptimizer(parameters: 3) as! Adam).weightDecay == .decoupled(0.5))
        #expect(training.makeSchedule() is WarmupCosineSchedule)
        training.optimizer = .adam
        training.schedule = .constant
        #expect((training.makeOptimizer(parameters: 3) as! Adam).weightDecay == .l2(0.5))
        #expect(training.makeSchedule() is ConstantSchedule)
    }

    @Test func clippingScalesToTheThreshold() {
        let scope = ParameterScope()
        _ = scope.tensor("p", shape: [2])
        let arena = ParameterArena(layout: scope.layout)
        arena.gradients[0] = 3
        arena.gradients[1] = 4
        let norm = clipGradientNorm(arena, maximum: 0.5)
        #expect(norm == 5)
        #expect(abs(arena.gradientNorm() - 0.5) < 1e-6)
        clipGradientNorm(arena, maximum: 1)  // below the threshold: untouched
        #expect(abs(arena.gradientNorm() - 0.5) < 1e-6)
    }

    @Test func constantScheduleWarmsUpThenHolds() {
        let plain = ConstantSchedule(baseRate: 0.5)
        #expect([0, 1, 999].map(plain.rate(at:)) == [0.5, 0.5, 0.5])
        let warm = ConstantSchedule(baseRate: 2, warmupSteps: 4)
        #expect([0, 3, 4, 100].map(warm.rate(at:)) == [0.5, 2, 2, 2])
    }

    @Test func scheduleIsWarmupThenOfficialCosine() {
        let plain = WarmupCosineSchedule(baseRate: 1, warmupSteps: 0, totalSteps: 100)
        #expect(plain.rate(at: 0) == 1)
        #expect(abs(plain.rate(at: 50) - 0.5) < 1e-12)
        #expect(abs(plain.rate(at: 100)) < 1e-12)
        let warm = WarmupCosineSchedule(baseRate: 2, warmupSteps: 10, totalSteps: 100)
        #expect(abs(warm.rate(at: 0) - 0.2) < 1e-12)
        #expect(abs(warm.rate(at: 9) - 2) < 1e-12)
        // After warmup the cosine is stepped with (step - warmup) over T_max = steps.
        #expect(abs(warm.rate(at: 60) - 1) < 1e-12)
    }
}
