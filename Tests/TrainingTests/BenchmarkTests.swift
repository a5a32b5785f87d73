import Configuration
import Datasets
import Layers
import Models
import Testing
import Training

/// The evaluation figures of `lmtrain bench`: one timing per batch after the memory is full,
/// and the ratio training and evaluation would have at equal FLOP/s, from the accountant's
/// per-pass counts.
struct BenchmarkTests {
    @Test func evaluationIsTimedPerBatchOnceTheMemoryIsFull() throws {
        var config = Fixtures.tinyConfig()
        config.model.vocabularySize = 40
        let seconds = try Benchmark.evaluationBatchSeconds(config, batches: 3)
        #expect(seconds.count == 3)
        #expect(seconds.allSatisfy { $0 > 0 })
        let figures = try Benchmark.EvaluationFigures(config, batchSeconds: seconds, trainingTokensPerSecond: 1000)
        let tokens = Double(config.evaluation.batchSize * config.training.segmentLength)
        #expect(abs(figures.tokensPerSecond - tokens / Benchmark.median(seconds)) < 1e-9 * figures.tokensPerSecond)
        #expect(abs(figures.toTrainingRatio - figures.tokensPerSecond / 1000) < 1e-12 * figures.toTrainingRatio)
    }

    /// An evaluation reports once before its first batch (0 batches, which starts a console's
    /// rate clock), then after every batch, the last with all its tokens.
    @Test func evaluationReportsBeforeItsFirstBatchThenAfterEach() throws {
        var config = Fixtures.tinyConfig()
        config.model.vocabularySize = 40
        let model = try config.model.makeModel()
        model.initialize(seed: 1)
        let tokens = TokenSequence(bytes: (0..<(4 * 25)).map { UInt8($0 % 40) })
        var reports: [EvaluationProgress] = []
        let result = try LanguageModelingTask.evaluate(
            model, tokens: tokens, unit: .bytes, split: "check", batchSize: 4, segmentLength: 8,
            memorySegments: 1, maximumBatches: nil
        ) { reports.append($0) }
        #expect(reports.map(\.batches) == [0, 1, 2, 3])
        #expect(reports.allSatisfy { $0.totalBatches == 3 })
        #expect(reports.first?.tokens == 0 && reports.last?.tokens == result.tokens)
    }

    /// With training's batch and as much memory as training reads, a forward pass would cost
    /// per token what a training pass's forward does (ratio 3), but evaluation projects only
    /// the current rows to keys and values (M of the S rows fewer) and takes the position
    /// keys from its memory (their product, once per batch, is gone); more memory makes
    /// evaluation's attention dearer.
    @Test func ratioAtEqualFLOPRateFollowsTheMemory() throws {
        var config = Fixtures.tinyConfig()
        config.model.vocabularySize = 40
        config.evaluation = EvaluationConfig(batchSize: 4, memorySegments: 1)  // training's batch and memory
        let same = try Benchmark.EvaluationFigures(config, batchSeconds: [1], trainingTokensPerSecond: 1)
        // The tiny model: d 16, 2 layers of 2 x 8 heads, T = M = 8, B = 4.
        let (d, hd, layers, t, m, b) = (16.0, 16.0, 2.0, 8.0, 8.0, 4.0)
        let trainingModel = try config.model.makeModel()
        let forward: Double = trainingModel.forwardFLOPs(PassShape(
            tokens: TokenShape(batch: 4, length: 8), memoryCapacity: 8, training: true, dropout: false)).reduce(0) { $0 + $1.perToken }
        let saved: Double = layers * (4 * hd * d * m / t + 2 * hd * d * (m + t) / (b * t))
        #expect(abs(same.ratioAtEqualFLOPRate - 3 * forward / (forward - saved)) < 1e-12 * same.ratioAtEqualFLOPRate)
        #expect(same.ratioAtEqualFLOPRate > 3)
        config.evaluation = EvaluationConfig(batchSize: 2, memorySegments: 4)
        let longer = try Benchmark.EvaluationFigures(config, batchSeconds: [1], trainingTokensPerSecond: 1)
        #expect(longer.ratioAtEqualFLOPRate < 3)
        let model = try config.model.makeModel()
        let length = config.training.segmentLength
        let trainingPass = model.forwardFLOPs(PassShape(
            tokens: TokenShape(batch: 4, length: length), memoryCapacity: length, training: true, dropout: false))
        let evaluationPass = model.forwardFLOPs(PassShape(
            tokens: TokenShape(batch: 2, length: length), memoryCapacity: 4 * length, training: false, dropout: false))
        let trainingPerToken: Double = trainingPass.reduce(0) { $0 + $1.perToken }
        let evaluationPerToken: Double = evaluationPass.reduce(0) { $0 + $1.perToken }
        let expected = 3 * trainingPerToken / evaluationPerToken
        #expect(abs(longer.ratioAtEqualFLOPRate - expected) < 1e-12 * expected)
    }
}
