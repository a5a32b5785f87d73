import Datasets
import Models

/// Named starting configurations; flags and `--config` files override their fields.
public enum Preset: String, CaseIterable, Sendable {
    /// CPU-sized: trains on the default corpus (KJV bytes) in a few minutes on 2 cores.
    case quickstart
    /// The benchmark shape of `lmtrain bench` (d 256, 4 layers, 4 x 64 heads, d_ff 1024,
    /// segment and memory 256, batch 16, bytes).
    case bench
    /// The paper's dense enwik8 model (DESIGN.md table, 41.23M parameters).
    case e8

    public var config: RunConfig {
        switch self {
        case .quickstart:
            RunConfig(
                model: ModelConfig(
                    vocabularySize: 256, modelWidth: 128, layers: 4, heads: 4,
                    feedForward: .dense(.init(hiddenSize: 512)), dropout: 0.1),
                training: TrainingConfig(
                    steps: 1000, batchSize: 16, segmentLength: 64, memoryLength: 64,
                    learningRate: 1e-3, warmupSteps: 50, gradientClip: 0.25, seed: 1,
                    logInterval: 25, validationInterval: 250, validationBatches: 50,
                    checkpointInterval: 250),
                evaluation: EvaluationConfig(batchSize: 4, memorySegments: 4),
                data: DataConfig())
        case .bench:
            RunConfig(
                model: ModelConfig(
                    vocabularySize: 256, modelWidth: 256, layers: 4, heads: 4, headSize: 64,
                    feedForward: .dense(.init(hiddenSize: 1024)), dropout: 0.1),
                training: TrainingConfig(
                    steps: 100, batchSize: 16, segmentLength: 256, memoryLength: 256,
                    learningRate: 2.5e-4, gradientClip: 0.25, logInterval: 10),
                evaluation: EvaluationConfig(),
                data: DataConfig())
        case .e8:
            RunConfig(
                model: ModelConfig(
                    vocabularySize: 205, modelWidth: 512, layers: 12, heads: 8, headSize: 64,
                    feedForward: .dense(.init(hiddenSize: 2053)), dropout: 0.1),
                training: TrainingConfig(
                    steps: 100_000, batchSize: 32, segmentLength: 512, memoryLength: 512,
                    learningRate: 2.5e-4, gradientClip: 0.25, logInterval: 100,
                    validationInterval: 5000, validationBatches: 0, checkpointInterval: 5000),
                evaluation: EvaluationConfig(batchSize: 4, memorySegments: 4),
                data: DataConfig(source: "enwik8"))
        }
    }
}
