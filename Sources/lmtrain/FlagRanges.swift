import ArgumentParser
import Configuration
import Layers

// The range of every numeric flag, checked when the command line is parsed so that the message
// names the flag (the config's own checks, which name its JSON keys, still apply to `--config`
// files and to the resolved config as a whole). The numeric options parse `.unconditional`ly,
// so `--steps -5` reaches these checks instead of reading as a missing value followed by an
// unknown option. Reals must be finite (`Double("nan")` and `Float("inf")` parse); integers
// stay within ``ConfigLimits`` (a feedforward block's sizes are multiplied while its free size
// is matched, before the config is checked as a whole).

/// A flag's requirement: its text for the message, and the test.
struct FlagRule<T> {
    let text: String
    let holds: (T) -> Bool
}

/// Throws "FLAG must be ... (got VALUE)" unless `value` is absent or meets `rule`.
func check<T>(_ value: T?, _ flag: String, _ rule: FlagRule<T>) throws {
    guard let value, !rule.holds(value) else { return }
    throw ValidationError("\(flag) must be \(rule.text) (got \(value))")
}

func atLeast(_ minimum: Int) -> FlagRule<Int> { FlagRule(text: "at least \(minimum)") { $0 >= minimum } }

/// Throws "FLAG N is too large: at most LIMIT" for a value above `limit`.
func checkUpperBound(_ value: Int?, _ flag: String, _ limit: Int) throws {
    guard let value, value > limit else { return }
    throw ValidationError("\(flag) \(value) is too large: at most \(limit)")
}

/// A finite real from `minimum` (excluded when `positive`), below `below` when given.
func finite(atLeast minimum: Double, below: Double? = nil, positive: Bool = false) -> FlagRule<Double> {
    func number(_ x: Double) -> String { x == x.rounded() ? String(Int(x)) : String(x) }
    let text = "a finite number \(positive ? ">" : ">=") \(number(minimum))" + (below.map { " and < \(number($0))" } ?? "")
    return FlagRule(text: text) { value in
        value.isFinite && (positive ? value > minimum : value >= minimum) && below.map { value < $0 } ?? true
    }
}

extension ConfigOptions {
    public func validate() throws {
        // Sizes (at most ConfigLimits.largestSize), then step counts and intervals (at most
        // ConfigLimits.largestCount); the minimum of each is the number after the flag.
        let sizes: [(Int?, String, Int)] = [
            (dModel, "--d-model", 1), (layers, "--layers", 1), (heads, "--heads", 1), (headSize, "--head-size", 1),
            (ffFactor, "--ff-factor", 1), (embSize, "--emb-size", 1), (batchSize, "--batch-size", 1),
            (segmentLength, "--segment-length", 1), (memoryLength, "--memory-length", 0),
            (evalBatchSize, "--eval-batch-size", 1), (evalMemory, "--eval-memory", 0),
            (gradientGroups, "--gradient-groups", 1),
        ]
        let counts: [(Int?, String, Int)] = [
            (steps, "--steps", 1), (epochs, "--epochs", 1), (warmup, "--warmup", 0), (logEvery, "--log-every", 1),
            (evalEvery, "--eval-every", 0), (evalBatches, "--eval-batches", 0),
            (checkpointEvery, "--checkpoint-every", 0), (keepCheckpoints, "--keep-checkpoints", 1),
        ]
        for (value, flag, minimum) in sizes {
            try check(value, flag, atLeast(minimum))
            try checkUpperBound(value, flag, ConfigLimits.largestSize)
        }
        for (value, flag, minimum) in counts {
            try check(value, flag, atLeast(minimum))
            try checkUpperBound(value, flag, ConfigLimits.largestCount)
        }
        try check(dropout.map(Double.init), "--dropout", finite(atLeast: 0, below: 1))
        try check(lr, "--lr", finite(atLeast: 0, positive: true))
        try check(clip, "--clip", finite(atLeast: 0))
        try check(weightDecay, "--weight-decay", finite(atLeast: 0))
        try check(adamBeta1, "--adam-beta1", finite(atLeast: 0, below: 1))
        try check(adamBeta2, "--adam-beta2", finite(atLeast: 0, below: 1))
        try check(adamEpsilon, "--adam-epsilon", finite(atLeast: 0, positive: true))
    }
}

extension FeedForwardFlags {
    public func validate() throws {
        for (value, option) in [
            (dFF, FeedForwardOption.hiddenSize), (topk, .topK), (experts, .experts), (expertSize, .expertSize), (k, .k),
            (pkmHeads, .pkmHeads), (pkmKeys, .pkmKeys), (pkmKnn, .pkmKnn),
        ] {
            try check(value, Self.flag(option), atLeast(1))
            try checkUpperBound(value, Self.flag(option), ConfigLimits.largestSize)
        }
        try check(expertDropout.map(Double.init), Self.flag(.expertDropout), finite(atLeast: 0, below: 1))
        try check(moeReg, Self.flag(.regularization), finite(atLeast: 0))
        try check(balance, Self.flag(.balance), finite(atLeast: 0))
    }
}
