import Foundation
import Testing
import Layers
@testable import Models
import Tensor
import TestSupport

@Suite(.serialized) struct TransformerXLTests {
    /// H x D (2 x 3) differs from d (8) on purpose; dropout is on with a fixed mask.
    static let tiny = TransformerXL.Config(
        vocabularySize: 11, modelWidth: 8, layers: 2, heads: 2, headSize: 3,
        feedForward: FeedForwardConfig(DenseFeedForward.Config(hiddenSize: 12)), dropout: 0.1)

    static func batch(seed: UInt64, shape: TokenShape, vocabulary: Int) -> ([Int32], [Int32]) {
        var rng = RandomGenerator(seed: seed)
        let inputs = (0..<shape.rows).map { _ in Int32(rng.integer(below: vocabulary)) }
        let targets = (0..<shape.rows).map { _ in Int32(rng.integer(below: vocabulary)) }
        return (inputs, targets)
    }

    /// The whole model against finite differences, with one segment of memory present; with 2
    /// gradient groups every batch sum is taken per stream and the groups' copies are added.
    @Test(arguments: [1, 2]) func wholeModelGradientsWithMemory(gradientGroups: Int) throws {
        let model = try TransformerXL(config: Self.tiny)
        model.initialize(seed: 3)
        model.arena.setGradientGroups(gradientGroups)
        // Perturb the zero-initialised tensors (biases, u, v) so their gradients matter.
        var rng = RandomGenerator(seed: 4)
        for view in model.layout.views where view.name.hasSuffix("bias") {
            Initializer.normal(model.arena.value(view), count: view.count, std: 0.2, rng: &rng)
        }
        let shape = TokenShape(batch: 2, length: 4)
        let memory = model.makeMemory(batch: 2, capacity: 4)
        let (firstInputs, firstTargets) = Self.batch(seed: 5, shape: shape, vocabulary: 11)
        var warmup = ForwardContext(training: true, rng: RandomGenerator(seed: 6))
        _ = model.forward(inputs: firstInputs, targets: firstTargets, shape: shape, state: memory, context: &warmup)
        model.advance(memory)
        #expect(memory.length == 4)

        let (inputs, targets) = Self.batch(seed: 7, shape: shape, vocabulary: 11)
        func loss() -> Double {
            var context = ForwardContext(training: true, rng: RandomGenerator(seed: 8))
            return model.forward(inputs: inputs, targets: targets, shape: shape, state: memory, context: &context).objective
        }
        model.arena.zeroGradients()
        _ = loss()
        model.backward()
        model.arena.sumGradientGroups()
        let mismatches = checkGradients(model.checkedTensors, samples: 6, step: 1e-3, loss: loss)
        #expect(mismatches.isEmpty, "\(mismatches)")
        // The memory must matter: without it the loss differs.
        var context = ForwardContext(training: true, rng: RandomGenerator(seed: 8))
        let withoutMemory = model.forward(inputs: inputs, targets: targets, shape: shape, context: &context).crossEntropy
        #expect(abs(withoutMemory - loss()) > 1e-6)
    }

    /// Evaluation projects only the current rows, reads the memory rows' keys and values and
    /// the position keys from the memory, and attends in blocks of query rows over the visible
    /// keys only; its logits must be those of a training pass that computes everything again (a training-mode pass with dropout 0), also for a last, shorter
    /// segment, after a reset, and after a training pass and a weight change on that memory
    /// (stale projections would be off by far more than the tolerance).
    @Test func evaluationReusesProjectionsWithTheSameLogits() throws {
        let config = TransformerXL.Config(
            vocabularySize: 37, modelWidth: 32, layers: 2, heads: 2, headSize: 16,
            feedForward: FeedForwardConfig(DenseFeedForward.Config(hiddenSize: 48)), dropout: 0)
        let model = try TransformerXL(config: config)
        model.initialize(seed: 9)
        var rng = RandomGenerator(seed: 10)
        for view in model.layout.views where view.name.hasSuffix("bias") {
            Initializer.normal(model.arena.value(view), count: view.count, std: 0.2, rng: &rng)
        }
        // Segments of 40 rows: evaluation's attention runs in blocks of 32 query rows.
        let evaluated = model.makeMemory(batch: 3, capacity: 80), recomputed = model.makeMemory(batch: 3, capacity: 80)
        var segment: UInt64 = 0
        func logits(training: Bool, memory: TransformerXLMemory, shape: TokenShape) -> [Float] {
            let (inputs, targets) = Self.batch(seed: 100 + segment, shape: shape, vocabulary: 37)
            var context = ForwardContext(training: training, rng: RandomGenerator(seed: 1))
            _ = model.forward(inputs: inputs, targets: targets, shape: shape, state: memory, context: &context)
            model.advance(memory)
            return Array(UnsafeBufferPointer(start: model.logits, count: shape.rows * 37))
        }
        func compareSegment(length: Int = 40, evaluationTraining: Bool = false) {
            let shape = TokenShape(batch: 3, length: length)
            let reused = logits(training: evaluationTraining, memory: evaluated, shape: shape)
            let reference = logits(training: true, memory: recomputed, shape: shape)
            // The same products on the same rows; OpenBLAS may choose another kernel for
            // another matrix size (fewer rows), so only the last bits may differ.
            let largest = zip(reused, reference).map { abs($0 - $1) / max(1, abs($1)) }.max()!
            #expect(largest <= 1e-5, "segment \(segment): largest difference \(largest)")
            segment += 1
        }
        for _ in 0..<5 { compareSegment() }
        compareSegment(length: 5)
        #expect(evaluated.length == 80 && evaluated.projections?.length == 80)
        evaluated.reset()
        recomputed.reset()
        for _ in 0..<3 { compareSegment() }
        // A training pass drops the projections: the weights change after it.
        compareSegment(evaluationTraining: true)
        #expect(evaluated.projections?.length == 0 && evaluated.projections?.positionRows == 0)
        for view in model.layout.views where view.name.contains("attention") {
            Tensor.scale(model.arena.value(view), by: 1.1, count: view.count)
        }
        for _ in 0..<2 { compareSegment() }
    }

    @Test func lossAtInitialisationIsNearLogVocabulary() throws {
        let config = TransformerXL.Config(
            vocabularySize: 64, modelWidth: 32, layers: 2, heads: 4,
            feedForward: FeedForwardConfig(DenseFeedForward.Config(hiddenSize: 64)), dropout: 0)
        let model = try TransformerXL(config: config)
        model.initialize(seed: 1)
        let shape = TokenShape(batch: 4, length: 16)
        let (inputs, targets) = Self.batch(seed: 2, shape: shape, vocabulary: 64)
        var context = ForwardContext(training: false, rng: RandomGenerator(seed: 0))
        let loss = model.forward(inputs: inputs, targets: targets, shape: shape, context: &context).crossEntropy
        #expect(abs(loss - log(64.0)) < 0.25, "initial loss \(loss), ln V = \(log(64.0))")
    }

    @Test func parameterNamesAndCountsFollowTheLayout() throws {
        let model = try TransformerXL(config: Self.tiny)
        let names = model.layout.views.map(\.name)
        #expect(names.first == "embedding.weight")
        #expect(names.contains("layers.1.attention.key_value.weight"))
        #expect(names.last == "output.bias")
        // Per layer: attention q, kv (2x), position, output + u, v + scale + unused scalar, 2 LayerNorms, FFN.
        let hd = 6, d = 8, f = 12, v = 11
        let perLayer = hd * d * 5 + 2 * hd + 2 + 4 * d + (d * f + f + f * d + d)
        #expect(model.parameterCount == v * d + 2 * perLayer + 2 * d + d * v + v)
    }

    @Test func invalidShapesAreRejectedWithOneLine() {
        var config = Self.tiny
        config.headSize = nil
        config.heads = 3  // 3 does not divide 8
        #expect(throws: ConfigError.self) { try TransformerXL(config: config) }
        do {
            _ = try TransformerXL(config: config)
        } catch {
            #expect("\(error)".contains("heads 3 does not divide d_model 8"))
        }
    }
}

@Suite(.serialized) struct SparseModelTests {
    /// The whole model with every feedforward example: expert dropout and auxiliary losses
    /// included; with 2 gradient groups (one stream each) every batch sum, the σ-MoE and
    /// Switch regularisers' and batch norm's statistics included, is taken per group.
    @Test(arguments: FeedForwardExamples.all(width: 8), [1, 2])
    func wholeModelWithEveryBlockGradients(block: FeedForwardConfig, gradientGroups: Int) throws {
        var config = TransformerXLTests.tiny
        config.feedForward = block
        let model = try TransformerXL(config: config)
        model.initialize(seed: 3)
        model.arena.setGradientGroups(gradientGroups)
        let shape = TokenShape(batch: 2, length: 4)
        let (inputs, targets) = TransformerXLTests.batch(seed: 7, shape: shape, vocabulary: 11)
        // The masks' seed: one whose dropout and expert-dropout masks put no expert or value
        // selection within the finite-difference step of the sampled parameters (a selection
        // that flips there makes the loss jump, which no gradient describes).
        let maskSeed: UInt64 = 9
        func loss() -> Double {
            var context = ForwardContext(training: true, rng: RandomGenerator(seed: maskSeed))
            return model.forward(inputs: inputs, targets: targets, shape: shape, context: &context).objective
        }
        model.arena.zeroGradients()
        var context = ForwardContext(training: true, rng: RandomGenerator(seed: maskSeed))
        let auxiliary = model.forward(inputs: inputs, targets: targets, shape: shape, context: &context).auxiliaryLoss
        if block.kind == MixtureOfExperts.SigmaConfig.kind { #expect(auxiliary < 0) }
        model.backward()
        model.arena.sumGradientGroups()
        let mismatches = checkGradients(model.checkedTensors, samples: 6, step: 1e-3, loss: loss)
        #expect(mismatches.isEmpty, "\(block.summary): \(mismatches)")
    }

    /// A new registered kind fails here until it has an example (and so every variant test
    /// covers it).
    @Test func examplesCoverEveryRegisteredKind() {
        #expect(Set(FeedForwardExamples.all(width: 8).map(\.kind)) == Set(FeedForwardConfig.kinds))
    }
}

extension FeedForwardConfig: CustomTestStringConvertible {
    public var testDescription: String { summary }
}
