import Foundation
import Layers
import Models
import Tensor

// Data parallelism with the semantics of one process: rank r of N runs streams
// r * B/N ..< (r + 1) * B/N of every batch (`StreamShard`), the layers reduce what they average
// over the batch across ranks (`ForwardContext.collective`), the gradients are summed across
// ranks after the backward pass, and rank 0 writes checkpoints with the state of every stream.

extension TokenBatch {
    /// The rows of `shard`'s streams ([B, T] row-major, so they are contiguous).
    public func streams(_ shard: StreamShard) -> TokenBatch {
        guard shard.count != shape.batch else { return self }
        precondition(shape.batch == shard.globalBatch, "batch \(shape.batch) is not the shard's \(shard.globalBatch)")
        let offset = shard.first * shape.length
        return TokenBatch(
            shape: TokenShape(batch: shard.count, length: shape.length), inputs: inputs + offset,
            targets: targets + offset)
    }

    /// The rows `collective`'s rank runs of this batch (a last, shorter batch of sequences may
    /// split unevenly).
    public func streams(of collective: any Collective) -> TokenBatch {
        streams(StreamShard(globalBatch: shape.batch, rank: collective.rank, ranks: collective.size))
    }

    /// Positions with a target (not padding).
    public var scoredPositions: Int {
        var count = 0
        for i in 0..<shape.rows where targets[i] >= 0 { count += 1 }
        return count
    }
}

extension NamedTensor {
    /// The entries of `shard`'s streams along the first dimension, when the tensor holds the
    /// whole batch's streams (otherwise unchanged: `CarriedState.restore` then reports it).
    func streams(_ shard: StreamShard) -> NamedTensor {
        guard shard.count != shard.globalBatch, let first = shape.first, first == shard.globalBatch else { return self }
        let stride = values.count / first
        var local = shape
        local[0] = shard.count
        return NamedTensor(
            name: name, shape: local,
            values: Array(values[(shard.first * stride)..<((shard.first + shard.count) * stride)]))
    }
}

/// The carried state of every rank's streams, gathered for rank 0's checkpoint: what one
/// process running the whole batch would save.
final class GatheredState: CarriedState {
    let batch: Int
    private let tensors: [NamedTensor]

    /// Collective: every rank calls it with its own state, in the same order.
    init(_ local: any CarriedState, collective: any Collective) {
        batch = local.batch * collective.size
        tensors = local.checkpointTensors().map { tensor in
            var shape = tensor.shape
            shape[0] *= collective.size
            return NamedTensor(name: tensor.name, shape: shape, values: collective.gather(tensor.values))
        }
    }

    func reset() {}
    func checkpointTensors() -> [NamedTensor] { tensors }
    func restore(_ tensor: (String) throws -> NamedTensor?) throws {
        preconditionFailure("a gathered state is only saved")
    }
    var bytes: Int { tensors.reduce(0) { $0 + $1.values.count * MemoryLayout<Float>.size } }
}
