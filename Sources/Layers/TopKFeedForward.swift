import Tensor

// Top-K activation feedforward block. Legend: R rows, d width, F hidden size (d_ff), K kept.
//   h = Drop(ReLU(W1 x + b1))                       [R, F]
//   t_r = K-th largest entry of h[r, :]
//   y = W2 (h * [h >= t]) + b2                      [R, d]
//   W1: [F, d], W2: [d, F], both with bias; weights by the prenorm init, biases 0.
// As the official `TopkTransformer` (RobertCsordas/moe, layers/transformer/topk_transformer.py)
// with the paper's setting `topk_use_norm = 0`: the activation is ReLU, the hidden dropout comes
// *before* the selection (so the dropped-out, rescaled values compete), ties at t_r keep more
// than K entries, the mask carries no gradient, and everything is computed densely (the GEMMs
// cost what the dense block's do). The official default `topk_use_norm = 1` would rank
// h_j * ||W2[:, j]|| instead; the paper's sweeps turn it off, so it is not offered.

/// Two-layer ReLU MLP that keeps only the K largest hidden activations of every token.
public final class TopKFeedForward: FeedForwardLayer {
    /// Hidden size and the number of hidden units kept per token.
    public struct Config: Sendable, Codable, Equatable {
        /// d_ff.
        public var hiddenSize: Int
        /// Hidden units kept per token (more on ties).
        public var k: Int

        public init(hiddenSize: Int, k: Int) {
            self.hiddenSize = hiddenSize
            self.k = k
        }

        enum CodingKeys: String, CodingKey {
            case hiddenSize = "d_ff"
            case k
        }

        /// Throws one line per problem found, the first of them (`FeedForwardConfigError`).
        public func validate(modelWidth: Int) throws {
            if hiddenSize < 1 {
                throw FeedForwardConfigError(description: "top-K d_ff must be at least 1 (got \(hiddenSize))")
            }
            if k < 1 || k > hiddenSize {
                throw FeedForwardConfigError(
                    description: "top-K k must be between 1 and d_ff = \(hiddenSize) (got \(k)): lower k or raise d_ff")
            }
        }
    }

    public let config: Config
    public let width: Int
    public let layerCount: Int
    public let up: Linear
    public let down: Linear
    let hiddenDropout: Dropout

    private let hidden = FloatBuffer()
    private let dHidden = FloatBuffer()
    /// One row of F floats per chunk, for the selection (reserved on the driving thread).
    private let selectionScratch = FloatBuffer()

    public init(
        name: String, config: Config, width: Int, layerCount: Int, dropout: Float,
        layout: inout ParameterLayout
    ) {
        precondition(config.k >= 1 && config.k <= config.hiddenSize, "top-K k must be in 1...d_ff")
        self.config = config
        self.width = width
        self.layerCount = layerCount
        up = Linear(
            name: "\(name).up", inputWidth: width, outputWidth: config.hiddenSize, bias: true,
            layout: &layout)
        down = Linear(
            name: "\(name).down", inputWidth: config.hiddenSize, outputWidth: width, bias: true,
            layout: &layout)
        hiddenDropout = Dropout(rate: dropout)
    }

    public func initialize(_ arena: ParameterArena, rng: inout RandomGenerator) {
        for linear in [up, down] {
            prenormInitialize(linear.weight, layerCount: layerCount, arena: arena, rng: &rng)
            arena.value(linear.bias!).update(repeating: 0, count: linear.outputWidth)
        }
    }

    /// Work items per forward pass: a few coarse row blocks per core.
    private func chunkCount(rows: Int) -> Int { max(1, min(rows, 4 * Threads.count)) }

    public func forward(
        _ x: UnsafePointer<Float>, shape: TokenShape, output y: UnsafeMutablePointer<Float>,
        arena: ParameterArena, context: inout ForwardContext
    ) {
        let rows = shape.rows, f = config.hiddenSize, k = config.k
        let count = rows * f
        let h = hidden.reserve(count)
        up.forward(x, rows: rows, output: h, arena: arena)
        for i in 0..<count { h[i] = max(h[i], 0) }
        hiddenDropout.forward(h, count: count, context: &context)
        let chunks = chunkCount(rows: rows)
        let scratch = SendablePointer(selectionScratch.reserve(chunks * f))
        let hp = SendablePointer(h)
        // Each chunk owns its rows of h and its own scratch row.
        parallelFor(chunks) { chunk in
            let buffer = scratch.mutable + chunk * f
            for r in (chunk * rows / chunks)..<((chunk + 1) * rows / chunks) {
                TopKFeedForward.keepLargest(hp.mutable + r * f, count: f, k: k, scratch: buffer)
            }
        }
        down.forward(h, rows: rows, output: y, arena: arena)
    }

    public func backward(
        _ x: UnsafePointer<Float>, dOutput dy: UnsafePointer<Float>, shape: TokenShape,
        dInput dx: UnsafeMutablePointer<Float>, arena: ParameterArena
    ) {
        let count = shape.rows * config.hiddenSize
        let h = hidden.pointer
        let dh = dHidden.reserve(count)
        down.backward(h, dOutput: dy, rows: shape.rows, dInput: dh, accumulateInput: false, arena: arena)
        // A kept hidden value is positive exactly where ReLU passed, dropout kept and the top-K
        // kept it; every other entry gets no gradient (the mask itself carries none).
        hiddenDropout.backward(dh, count: count)
        for i in 0..<count { dh[i] = h[i] > 0 ? dh[i] : 0 }
        up.backward(x, dOutput: dh, rows: shape.rows, dInput: dx, arena: arena)
    }

    /// Zeroes every entry of a non-negative row below its K-th largest value.
    ///
    /// Only positive entries can matter: when at most K are positive nothing changes, otherwise
    /// the threshold is the K-th largest of the positives, found by `kthLargest` on a
    /// compacted copy (ReLU leaves about half the row at 0, which the selection then skips).
    static func keepLargest(
        _ row: UnsafeMutablePointer<Float>, count: Int, k: Int, scratch: UnsafeMutablePointer<Float>
    ) {
        var positives = 0
        for i in 0..<count where row[i] > 0 {
            scratch[positives] = row[i]
            positives += 1
        }
        if positives <= k { return }
        let threshold = kthLargestInPlace(scratch, count: positives, k: k)
        for i in 0..<count where row[i] < threshold { row[i] = 0 }
    }
}

/// The K-th largest of `values[0..<count]` (K counted from 1), reordering `values`:
/// quickselect with a median-of-three pivot and a three-way partition, so runs of equal values
/// (the zeros ReLU leaves) cost one pass. Tested against `naiveKthLargest`.
@inlinable
public func kthLargestInPlace(_ values: UnsafeMutablePointer<Float>, count: Int, k: Int) -> Float {
    precondition(k >= 1 && k <= count)
    let target = k - 1  // position in descending order
    var low = 0, high = count
    while high - low > 16 {
        let a = values[low], b = values[(low + high) / 2], c = values[high - 1]
        let pivot = max(min(a, b), min(max(a, b), c))
        // [low, greater) > pivot, [greater, index) == pivot, [less, high) < pivot.
        var greater = low, index = low, less = high
        while index < less {
            let v = values[index]
            if v > pivot {
                values[index] = values[greater]
                values[greater] = v
                greater += 1
                index += 1
            } else if v < pivot {
                less -= 1
                values[index] = values[less]
                values[less] = v
            } else {
                index += 1
            }
        }
        if target < greater {
            high = greater
        } else if target >= less {
            low = less
        } else {
            return pivot
        }
    }
    // Insertion sort, descending, of the last short range.
    if low < high {
        for i in (low + 1)..<high {
            let v = values[i]
            var j = i
            while j > low && values[j - 1] < v {
                values[j] = values[j - 1]
                j -= 1
            }
            values[j] = v
        }
    }
    return values[target]
}

/// Reference for `kthLargestInPlace`: sort a copy in descending order. Tests only.
public func naiveKthLargest(_ values: [Float], k: Int) -> Float {
    values.sorted(by: >)[k - 1]
}
