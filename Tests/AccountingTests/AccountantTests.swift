import Accounting
import Configuration
import Datasets
import Foundation
import Models
import Tensor
import Testing
import TestSupport
import Training

@Suite(.serialized) struct AccountantTests {
    static func variants(width d: Int) -> [FeedForwardConfig] {
        [
            .dense(.init(hiddenSize: 4 * d)),
            .sigmaMoE(.init(experts: 8, expertSize: d / 2, k: 2, expertDropout: 0.1)),
            .sigmaMoE(.init(experts: 8, expertSize: d / 2, k: 3, selection: .softmaxAfterTopK)),
            .switchMoE(.init(experts: 4, expertSize: d)),
            .sBase(.init(experts: 8, expertSize: d / 2, k: 2)),
            .topK(.init(hiddenSize: 4 * d, k: d / 4)),
            .productKeyMemory(.init(keysPerHalf: 8, heads: 2, knn: 16)),
            .productKeyMemory(.init(keysPerHalf: 8, heads: 2, knn: 4)),
            .productKeyMemory(.init(keysPerHalf: 8, heads: 2, knn: 4, query: .mlpBatchNorm)),
        ]
    }

    /// The accountant's count equals the allocated arena for every variant and every preset.
    @Test func parameterCountsEqualTheAllocatedArena() throws {
        var configs = Preset.allNames.map { Preset(name: $0)!.config }
        for variant in Self.variants(width: 128) {
            var config = Preset.quickstart.config
            config.model.feedForward = variant
            configs.append(config)
        }
        for config in configs {
            let layout = try TransformerXL.parameterLayout(for: config.model)
            let account = Accountant.account(config)
            #expect(account.parameters.total == layout.count, "\(config.model.feedForward.kind)")
        }
    }

    /// The activation inventory matches the bytes one real training step allocates.
    @Test func activationInventoryMatchesARealStep() throws {
        let corpus = TokenSequence(bytes: (0..<200_000).map { UInt8($0 % 50) })
        for variant in Self.variants(width: 32) {
            var config = Preset.quickstart.config
            config.model.modelWidth = 32
            config.model.heads = 2
            config.model.layers = 2
            config.model.feedForward = variant
            config.model.vocabularySize = 50
            config.training.batchSize = 4
            config.training.segmentLength = 16
            config.training.memoryLength = 16
            let data = Corpus(name: "ids", unit: .bytes, vocabularySize: 50, train: corpus, valid: corpus, test: corpus, fingerprint: "ids")
            let before = BufferStatistics.allocatedBytes
            let trainer = try Trainer(config: config, corpus: data, runDirectory: FileManager.default.temporaryDirectory.appendingPathComponent("acct-\(UUID().uuidString)"))
            _ = try trainer.trainStep()
            _ = try trainer.trainStep()
            let measured = BufferStatistics.allocatedBytes - before
            let predicted = Accountant.trainingStepBufferBytes(config)
            #expect(abs(Double(predicted) / Double(measured) - 1) < 0.03, "\(variant.kind): predicted \(predicted), allocated \(measured)")
        }
    }

    @Test func sharesAndFLOPsOfTheExpertModels() {
        var config = Preset.e8.config
        config.model.feedForward = .sigmaMoE(.init(experts: 16, expertSize: 128, k: 4))
        let moe = Accountant.account(config)
        #expect(moe.parameters.feedForwardShareUsed == 0.25)
        config.model.feedForward = .dense(.init(hiddenSize: 2053))
        let dense = Accountant.account(config)
        // K * G = 512 of 2048 channels: a quarter of the dense block's products plus routing.
        let ratio = moe.flops.feedForwardPerLayer / dense.flops.feedForwardPerLayer
        #expect(ratio > 0.25 && ratio < 0.26, "\(ratio)")
        let routing: Double = 2.0 * 16 * 512 + 16 * 5
        #expect(moe.flops.routingPerLayer == routing)
        #expect(moe.parameters.activePerToken < dense.parameters.activePerToken)
    }
}
