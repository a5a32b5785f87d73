import Layers

// Parameter counts of the feedforward variants and the sizes that match a dense block.
// The accountant (parameter-equal comparisons) builds on these; they must agree with the
// allocated layouts, which ModelsTests check for every variant.

extension FeedForwardConfig {
    /// Parameters of one layer's feedforward block at width `d`.
    public func parameterCount(modelWidth d: Int) -> Int {
        switch self {
        case .dense(let c): 2 * d * c.hiddenSize + c.hiddenSize + d
        case .sigmaMoE(let c): Self.expertParameters(experts: c.experts, expertSize: c.expertSize, modelWidth: d)
        case .switchMoE(let c): Self.expertParameters(experts: c.experts, expertSize: c.expertSize, modelWidth: d)
        case .sBase(let c): Self.expertParameters(experts: c.experts, expertSize: c.expertSize, modelWidth: d)
        case .topK(let c): 2 * d * c.hiddenSize + c.hiddenSize + d
        case .productKeyMemory(let c):
            Self.productKeyParameters(keysPerHalf: c.keysPerHalf, heads: c.heads, modelWidth: d)
                + (c.query == .mlpBatchNorm ? c.heads * d * d + 3 * c.heads * d : 0)
        }
    }

    /// Sub-keys H x 2 x n x d/2 plus n^2 value rows of width d.
    public static func productKeyParameters(keysPerHalf n: Int, heads: Int, modelWidth d: Int) -> Int {
        heads * n * d + n * n * d
    }

    /// The number of sub-keys per half n whose PKM block (identity query) has as many
    /// parameters as `target`, or nil when none has.
    public static func matchedKeysPerHalf(target: Int, heads: Int, modelWidth d: Int) -> Int? {
        // n^2 d + H n d = target.
        let h = Double(heads), t = Double(target) / Double(d)
        let n = ((-h + (h * h + 4 * t).squareRoot()) / 2).rounded()
        return n >= 1 ? Int(n) : nil
    }

    /// W1, W2 of N experts of size G plus the selector: 2 N G d + N d.
    public static func expertParameters(experts: Int, expertSize: Int, modelWidth d: Int) -> Int {
        2 * experts * expertSize * d + experts * d
    }

    /// The expert size G whose block has as many parameters as `target` (rounded to the
    /// nearest integer, at least 1), or nil when even G = 1 has more.
    public static func matchedExpertSize(target: Int, experts: Int, modelWidth d: Int) -> Int? {
        let size = (Double(target - experts * d) / Double(2 * experts * d)).rounded()
        return size >= 1 ? Int(size) : nil
    }
}
