import Datasets
import Foundation
import Layers
import Models
import Testing
import Configuration
import Training

/// Small in-memory corpora and configs shared by the training tests.
enum Fixtures {
    /// A byte corpus made of real-looking text (repeated sentences with variation).
    static func textCorpus(bytes count: Int = 60_000) -> Corpus {
        let words = ["the", "king", "said", "unto", "them", "and", "it", "was", "so", "light", "day", "night", "water", "earth"]
        var rng = SimpleRandom(seed: 11)
        var text: [UInt8] = []
        while text.count < count {
            text += Array(words[rng.next() % words.count].utf8)
            text.append(rng.next() % 9 == 0 ? 10 : 32)
        }
        let vocabulary = text.withUnsafeBytes { ByteVocabulary(of: $0) }
        let ids = try! text.withUnsafeBytes { try vocabulary.encode($0, source: "fixture") }
        let all = TokenSequence(bytes: ids)
        let n = ids.count
        return Corpus(
            name: "fixture text", unit: .bytes, vocabularySize: vocabulary.count,
            train: all.slice(0..<(n * 8 / 10)), valid: all.slice((n * 8 / 10)..<(n * 9 / 10)),
            test: all.slice((n * 9 / 10)..<n), fingerprint: "fixture-\(count)", byteVocabulary: vocabulary)
    }

    static func tinyConfig(steps: Int = 20) -> RunConfig {
        var config = Preset.quickstart.config
        config.model = ModelConfig(TransformerXL.Config(
            vocabularySize: 0, modelWidth: 16, layers: 2, heads: 2, headSize: 8,
            feedForward: FeedForwardConfig(DenseFeedForward.Config(hiddenSize: 32)), dropout: 0.1))
        config.training.steps = steps
        config.training.batchSize = 4
        config.training.segmentLength = 8
        config.training.memoryLength = 8
        config.training.warmupSteps = 3
        config.training.logInterval = 5
        config.training.validationInterval = 5
        config.training.validationBatches = 3
        config.training.checkpointInterval = 10
        config.evaluation = EvaluationConfig(batchSize: 2, memorySegments: 2)
        return config
    }

    /// `config` with `block` as every layer's feedforward block.
    static func with(_ config: RunConfig, _ block: some FeedForwardVariant) -> RunConfig {
        var config = config
        config.model.feedForward = FeedForwardConfig(block)
        return config
    }

    /// A file of Tests/TrainingTests/Fixtures/FOLDER, copied into the test bundle.
    static func file(_ name: String, in folder: String) throws -> URL {
        let base = (name as NSString).deletingPathExtension
        let ext = (name as NSString).pathExtension
        return try #require(
            Bundle.module.url(forResource: base, withExtension: ext, subdirectory: folder),
            "missing fixture \(folder)/\(name) (its README.md says how it was made)")
    }

    static func temporaryDirectory(_ name: String) -> URL {
        let url = FileManager.default.temporaryDirectory
            .appendingPathComponent("lmtrain-tests-\(getpid())-\(name)-\(UUID().uuidString.prefix(8))")
        try? FileManager.default.removeItem(at: url)
        return url
    }
}

/// A tiny deterministic generator for building fixtures.
struct SimpleRandom {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> Int {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return Int(state >> 33)
    }
}
