import Layers
import Models
import Tensor

extension SequenceModel {
    /// One forward pass on arrays of ids.
    public func forward(
        inputs: [Int32], targets: [Int32], shape: TokenShape, state: (any CarriedState)? = nil,
        context: inout ForwardContext
    ) -> ForwardLoss {
        inputs.withUnsafeBufferPointer { i in
            targets.withUnsafeBufferPointer { t in
                forward(TokenBatch(shape: shape, inputs: i.baseAddress!, targets: t.baseAddress!), state: state, context: &context)
            }
        }
    }

    /// Every parameter with its gradient, for `checkGradients`.
    public var checkedTensors: [CheckedTensor] {
        layout.views.map { CheckedTensor($0.name, values: arena.value($0), gradient: arena.gradient($0), count: $0.count) }
    }
}

extension TransformerXL.Config {
    /// A Transformer-XL config with `block` as feedforward block.
    public func with(_ block: some FeedForwardVariant) -> Self {
        var config = self
        config.feedForward = FeedForwardConfig(block)
        return config
    }
}
