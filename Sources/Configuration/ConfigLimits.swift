import Foundation
import Models

/// The ranges every number of a run config must lie in before anything computes with it:
/// reals finite, sizes and counts small enough that the parameter, FLOP and memory arithmetic
/// of every model fits in 64-bit integers. Checked over ``ConfigField/all(of:)``, so a field a
/// new model kind adds is covered without being named here. Each failure is one line naming
/// the field as config.json spells it.
public enum ConfigLimits {
    /// The largest value of one size field (a width, a layer or head count, a batch, a
    /// segment): 2^24, far beyond what trains on a CPU.
    public static let largestSize = 1 << 24
    /// The largest step count, epoch count or interval: 2^40.
    public static let largestCount = 1 << 40
    /// The largest product of the four largest size fields with the largest once more
    /// (vocabulary sizes apart, see below). The models multiply at most five sizes together,
    /// some of them squared (d_model x d_model, segment x (segment + memory), n_keys x n_keys),
    /// then bytes per float and a few buffers; 2^56 leaves those factors 2^7 of room below
    /// 2^63. The paper's WT-B uses 2^52.
    public static let largestProduct = 0x1p56
    /// A vocabulary is large (267,735 words on WikiText-103) but only multiplies the width,
    /// the layers and the tokens of a batch: it is bounded with the three largest other sizes.
    public static let largestVocabularyProduct = 0x1p56

    /// Integer fields of `training` that count steps rather than size tensors.
    static let countKeys: Set<String> = [
        "training.steps", "training.epochs", "training.warmup_steps", "training.log_interval",
        "training.validation_interval", "training.validation_batches", "training.checkpoint_interval",
        "training.keep_checkpoints",
    ]

    public static func check(_ config: RunConfig) throws {
        var sizes: [(path: String, value: Int)] = []
        for field in ConfigField.all(of: config) {
            switch field.value {
            case .real(let value):
                guard value.isFinite else {
                    throw ConfigError("\(field.path) must be a finite number (got \(value))")
                }
            case .integer(let value) where countKeys.contains(field.path):
                guard value <= largestCount else {
                    throw ConfigError("\(field.path) = \(value) is too large: at most \(largestCount)")
                }
            case .integer(let value):
                guard value.magnitude <= largestSize else {
                    throw ConfigError("\(field.path) = \(value) is \(value < 0 ? "out of range" : "too large"): a size is at most \(largestSize)")
                }
                sizes.append((field.path, value))
            case .unsigned:
                break  // seeds: any value
            }
        }
        let isVocabulary = { (path: String) in path.split(separator: ".").last!.contains("vocabulary") }
        let bySize = sizes.filter { !isVocabulary($0.path) }.sorted { $0.value.magnitude > $1.value.magnitude }
        let largest = Array(bySize.prefix(4))
        try requireProduct(of: [largest.first].compactMap { $0 } + largest, below: largestProduct)
        for vocabulary in sizes where isVocabulary(vocabulary.path) {
            try requireProduct(of: [vocabulary] + bySize.prefix(3), below: largestVocabularyProduct)
        }
    }

    static func requireProduct(of fields: [(path: String, value: Int)], below limit: Double) throws {
        let product = fields.reduce(1.0) { $0 * Double(max(1, $1.value.magnitude)) }
        if product <= limit { return }
        var named: [String] = []
        for field in fields where !named.contains(where: { $0.hasPrefix(field.path + " ") }) {
            named.append("\(field.path) = \(field.value)")
        }
        throw ConfigError("these sizes together are too large for lmtrain to count (\(named.joined(separator: ", "))): lower them")
    }
}
