import ArgumentParser

// The range of every numeric flag, checked when the command line is parsed so that the message
// names the flag (the config's own checks, which name its JSON keys, still apply to `--config`
// files). The numeric options parse `.unconditional`ly, so `--steps -5` reaches these checks
// instead of reading as a missing value followed by an unknown option.

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
        for (value, flag) in [
            (dModel, "--d-model"), (layers, "--layers"), (heads, "--heads"), (headSize, "--head-size"),
            (ffFactor, "--ff-factor"), (embSize, "--emb-size"), (steps, "--steps"), (epochs, "--epochs"),
            (batchSize, "--batch-size"), (segmentLength, "--segment-length"), (logEvery, "--log-every"),
            (keepCheckpoints, "--keep-checkpoints"), (evalBatchSize, "--eval-batch-size"),
        ] {
            try check(value, flag, atLeast(1))
        }
        for (value, flag) in [
            (memoryLength, "--memory-length"), (warmup, "--warmup"), (evalEvery, "--eval-every"),
            (evalBatches, "--eval-batches"), (checkpointEvery, "--checkpoint-every"), (evalMemory, "--eval-memory"),
        ] {
            try check(value, flag, atLeast(0))
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
        for (value, flag) in [
            (dFF, "--d-ff"), (topk, "--topk"), (experts, "--experts"), (expertSize, "--expert-size"), (k, "--k"),
            (pkmHeads, "--pkm-heads"), (pkmKeys, "--pkm-keys"), (pkmKnn, "--pkm-knn"),
        ] {
            try check(value, flag, atLeast(1))
        }
        try check(expertDropout.map(Double.init), "--expert-dropout", finite(atLeast: 0, below: 1))
        try check(moeReg, "--moe-reg", finite(atLeast: 0))
        try check(balance, "--balance", finite(atLeast: 0))
    }
}
