import Layers
import Tensor

/// Small blocks of every registered feedforward kind (several settings for some), for tests
/// that must cover all variants. `FeedForwardExampleTests` fails when a registered kind has
/// no example here, so a new variant cannot go untested.
public enum FeedForwardExamples {
    /// Blocks for a model of width `d` (even, at least 8).
    public static func all(width d: Int) -> [FeedForwardConfig] {
        [
            FeedForwardConfig(DenseFeedForward.Config(hiddenSize: 2 * d)),
            FeedForwardConfig(TopKFeedForward.Config(hiddenSize: 3 * d / 2, k: 5)),
            FeedForwardConfig(ProductKeyMemory.Config(keysPerHalf: 3, heads: 2, knn: 4, activation: .relu)),
            FeedForwardConfig(ProductKeyMemory.Config(keysPerHalf: 4, heads: 2, knn: 3, query: .mlpBatchNorm)),
            FeedForwardConfig(MixtureOfExperts.SigmaConfig(experts: 4, expertSize: 3, k: 2, expertDropout: 0.2, regularization: 0.05)),
            FeedForwardConfig(MixtureOfExperts.SigmaConfig(experts: 4, expertSize: 3, k: 3, regularization: 0.05, selection: .softmaxAfterTopK)),
            FeedForwardConfig(MixtureOfExperts.SwitchConfig(experts: 3, expertSize: 4, balance: 0.5)),
            FeedForwardConfig(MixtureOfExperts.SBaseConfig(experts: 4, expertSize: 3, k: 2, regularization: 0.05)),
        ]
    }
}

/// Reserves a block's buffers for training passes of `shape`, which also covers evaluation
/// passes of that shape: for tests that run a block on its own.
public func reserveBuffers(_ layer: any FeedForwardLayer, _ shape: TokenShape) {
    BufferPlan.reserve { layer.declareBuffers(for: PassShape(tokens: shape, training: true, dropout: true), in: &$0) }
}
