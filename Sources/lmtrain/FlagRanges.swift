import ArgumentParser
import Configuration

/// Range checks of the numeric flags, made before any of them reaches a config so the message
/// names the flag: reals must be finite (`Double("nan")` and `Float("inf")` parse), integers
/// within ``ConfigLimits`` (a feedforward block's sizes are multiplied while its free size is
/// matched, before the config is checked as a whole).
extension ConfigOptions {
    var realFlags: [(flag: String, value: Double?)] {
        [
            ("--dropout", dropout.map(Double.init)), ("--lr", lr), ("--clip", clip),
            ("--weight-decay", weightDecay), ("--adam-beta1", adamBeta1), ("--adam-beta2", adamBeta2),
            ("--adam-epsilon", adamEpsilon),
        ] + feedForward.realFlags
    }

    /// Step counts and intervals, bounded by ``ConfigLimits/largestCount``.
    var countFlags: [(flag: String, value: Int?)] {
        [
            ("--steps", steps), ("--epochs", epochs), ("--warmup", warmup), ("--log-every", logEvery),
            ("--eval-every", evalEvery), ("--eval-batches", evalBatches), ("--checkpoint-every", checkpointEvery),
            ("--keep-checkpoints", keepCheckpoints),
        ]
    }

    /// Sizes, bounded by ``ConfigLimits/largestSize``.
    var sizeFlags: [(flag: String, value: Int?)] {
        [
            ("--d-model", dModel), ("--layers", layers), ("--heads", heads), ("--head-size", headSize),
            ("--ff-factor", ffFactor), ("--emb-size", embSize), ("--batch-size", batchSize),
            ("--segment-length", segmentLength), ("--memory-length", memoryLength),
            ("--eval-batch-size", evalBatchSize), ("--eval-memory", evalMemory),
        ] + feedForward.sizeFlags
    }

    func requireFlagRanges() throws {
        for (flag, value) in realFlags {
            if let value, !value.isFinite {
                throw ValidationError("\(flag) must be a finite number (got \(value))")
            }
        }
        for (flags, limit) in [(countFlags, ConfigLimits.largestCount), (sizeFlags, ConfigLimits.largestSize)] {
            for (flag, value) in flags {
                if let value, value.magnitude > limit {
                    throw ValidationError("\(flag) \(value) is too large: at most \(limit)")
                }
            }
        }
    }
}

extension FeedForwardFlags {
    var realFlags: [(flag: String, value: Double?)] {
        [
            (Self.flag(.expertDropout), expertDropout.map(Double.init)), (Self.flag(.regularization), moeReg),
            (Self.flag(.balance), balance),
        ]
    }

    var sizeFlags: [(flag: String, value: Int?)] {
        [
            (Self.flag(.hiddenSize), dFF), (Self.flag(.topK), topk), (Self.flag(.experts), experts),
            (Self.flag(.expertSize), expertSize), (Self.flag(.k), k), (Self.flag(.pkmHeads), pkmHeads),
            (Self.flag(.pkmKeys), pkmKeys), (Self.flag(.pkmKnn), pkmKnn),
        ]
    }
}
