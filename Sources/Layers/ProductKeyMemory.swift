import Foundation
import Tensor

// Product-key memory (Lample et al. 2019) in the forms of DESIGN.md "PKM".
// Legend: R rows (tokens), d width (d/2 per half), H heads, n sub-keys per half (n_keys),
//   N = n^2 values, k = knn, m = min(k, n) sub-keys kept per half, F = H*d query width.
//
//   queries   identity (official σ-MoE code):  q_h = x for every head
//             mlp-bn (XLM):                     q = BN(x Wq^T + bq), q_h = q[h*d ..< (h+1)*d]
//   halves    s1_h[a] = q_h[:d/2] . K1_h[a],  s2_h[b] = q_h[d/2:] . K2_h[b]
//   values    value (a, b) has index a*n + b;  V: [N, d]
//   dense     score[a*n + b] = sum_h (s1_h[a] + s2_h[b]);  y = act(score) V
//             (act over all N scores of a token: softmax, or ReLU)
//   sparse    per head: top-m of s1_h and of s2_h, their m^2 sums, top-k of those
//             -> (idx_hj, score_hj = s1_h[a] + s2_h[b]), gradient through the chosen scores;
//             act jointly over the H*k scores of a token (softmax | relu), or per head over
//             its k (softmax-per-head, XLM); y = sum_hj act_hj V[idx_hj] (duplicates add up)
//
// The dense path is the official code's `forward_dense` (taken when every half has at most knn
// sub-keys, `no_knn`): it sums the heads' scores *before* the activation, so it is a different
// function from the sparse path even when the sparse path prunes nothing; the two agree only
// with one head and k = N (then both activate the same N scores of one head).
//
// Neither official form has dropout inside the memory (`kvmem.dropout = none`): the block's
// output dropout lives in the Transformer block.
//
// Sparse kernels: the per-half top-m keeps the lists sorted best first with ties broken by the
// lower sub-key index; candidate (i, j) of the two lists has position i*m + j and ties among
// sums go to the lower position. A candidate is dominated by every (i', j') <= (i, j), so it
// can only be in the top k when (i + 1)(j + 1) <= k: only those ~k ln k of the m^2 sums are
// formed, with exactly the result of forming all of them (`naiveProductKeyTopK`, tested).
// The value gradient is a scatter by index: (row, slot) entries are counting-sorted by value
// row, and each worker owns a range of value rows, which it accumulates in entry order, so
// only the selected rows are touched and the result never depends on the thread count.

/// Product-key memory feedforward block: `y = sum act(score) V[idx]` over the values addressed
/// by the best sums of two half-query sub-key scores (DESIGN.md "PKM").
public final class ProductKeyMemory: FeedForwardLayer {
    /// How scores become value weights.
    public enum Activation: String, Sendable, Codable, CaseIterable {
        /// Softmax over all scores of a token (dense: N; sparse: H*k jointly, the official code).
        case softmax
        /// ReLU: "PKM improved" (non-competitive).
        case relu
        /// Softmax per head over its k scores, heads' reads summed (XLM); sparse path only.
        case softmaxPerHead = "softmax-per-head"
    }

    /// Where the queries come from.
    public enum Query: String, Sendable, Codable, CaseIterable {
        /// q = x for every head (official σ-MoE code).
        case identity
        /// q = BatchNorm(Linear(x)) of width H*d (XLM): batch statistics in training, running
        /// statistics in evaluation.
        case mlpBatchNorm = "mlp-bn"
    }

    /// Standard deviation of the initial values.
    public enum ValueInit: String, Sendable, Codable, CaseIterable {
        /// N(0, (2/L)/d), like every other PKM tensor.
        case `default`
        /// "+init": N(0, (2/L)/N), as the second layer of a dense block of width N.
        case dense
    }

    /// Which computation runs.
    public enum Path: String, Sendable, Codable, CaseIterable {
        /// Dense when n_keys <= knn (the official `no_knn` test) unless the activation is
        /// softmax-per-head, which only the sparse path defines; sparse otherwise.
        case auto
        case sparse
        case dense
    }

    /// Shape and variant of a memory (`model.feed_forward` with kind `pkm`).
    public struct Config: Sendable, Codable, Equatable {
        /// H: heads, each with its own sub-keys (and, with mlp-bn, its own query).
        public var heads: Int
        /// n: sub-keys per half and head; the memory has n^2 values.
        public var keysPerHalf: Int
        /// k: values read per head on the sparse path (and the n <= k test of `auto`).
        public var knn: Int
        public var activation: Activation
        public var query: Query
        public var valueInit: ValueInit
        public var path: Path

        public init(
            keysPerHalf: Int, heads: Int = 4, knn: Int = 128, activation: Activation = .softmax,
            query: Query = .identity, valueInit: ValueInit = .default, path: Path = .auto
        ) {
            self.heads = heads
            self.keysPerHalf = keysPerHalf
            self.knn = knn
            self.activation = activation
            self.query = query
            self.valueInit = valueInit
            self.path = path
        }

        /// The paper's "PKM improved": ReLU activation and "+init" values.
        public static func improved(keysPerHalf: Int, heads: Int = 4, knn: Int = 128) -> Config {
            Config(
                keysPerHalf: keysPerHalf, heads: heads, knn: knn, activation: .relu,
                valueInit: .dense)
        }

        /// The XLM original: query network with batch norm, softmax per head, sparse reads.
        public static func xlm(keysPerHalf: Int, heads: Int = 4, knn: Int = 32) -> Config {
            Config(
                keysPerHalf: keysPerHalf, heads: heads, knn: knn, activation: .softmaxPerHead,
                query: .mlpBatchNorm, path: .sparse)
        }

        enum CodingKeys: String, CodingKey {
            case heads, knn, activation, query, path
            case keysPerHalf = "n_keys"
            case valueInit = "value_init"
        }

        /// `n_keys` is required; the other keys default as in `init`.
        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            self.init(
                keysPerHalf: try c.decode(Int.self, forKey: .keysPerHalf),
                heads: try c.decodeIfPresent(Int.self, forKey: .heads) ?? 4,
                knn: try c.decodeIfPresent(Int.self, forKey: .knn) ?? 128,
                activation: try c.decodeIfPresent(Activation.self, forKey: .activation) ?? .softmax,
                query: try c.decodeIfPresent(Query.self, forKey: .query) ?? .identity,
                valueInit: try c.decodeIfPresent(ValueInit.self, forKey: .valueInit) ?? .default,
                path: try c.decodeIfPresent(Path.self, forKey: .path) ?? .auto)
        }

        /// N = n^2.
        public var valueCount: Int { keysPerHalf * keysPerHalf }

        /// Whether `path` resolves to the dense computation.
        public var usesDensePath: Bool {
            switch path {
            case .dense: return true
            case .sparse: return false
            case .auto: return activation != .softmaxPerHead && keysPerHalf <= knn
            }
        }

        /// Throws the first problem found, in one line (`FeedForwardConfigError`).
        public func validate(modelWidth d: Int) throws {
            func fail(_ message: String) throws { throw FeedForwardConfigError(description: message) }
            if d < 2 || d % 2 != 0 {
                try fail("PKM splits each query into two halves: the model width must be even (got \(d))")
            }
            if heads < 1 { try fail("PKM heads must be at least 1 (got \(heads))") }
            if keysPerHalf < 1 { try fail("PKM n_keys must be at least 1 (got \(keysPerHalf))") }
            if keysPerHalf > 46_340 {
                try fail(
                    "PKM n_keys must be at most 46340 so that n_keys^2 values fit 32-bit indices (got \(keysPerHalf))")
            }
            if knn < 1 { try fail("PKM knn must be at least 1 (got \(knn))") }
            if path == .dense && activation == .softmaxPerHead {
                try fail(
                    "PKM activation softmax-per-head needs the sparse path (the dense path sums the heads "
                        + "before the activation): set path to sparse or auto")
            }
            // A top-k larger than the memory is a mistake on either path (the dense path would
            // silently ignore it): reject it everywhere.
            if knn > valueCount {
                try fail(
                    "PKM knn (\(knn)) exceeds the n_keys^2 = \(valueCount) values: lower knn (--pkm-knn) or raise n_keys (--pkm-keys)")
            }
        }
    }

    /// Weight of the current batch in the query batch norm's running statistics (PyTorch's).
    public static let batchNormMomentum: Float = 0.1
    /// Added to the variance before the square root (PyTorch's).
    public static let batchNormEpsilon: Float = 1e-5

    public let config: Config
    public let width: Int
    public let layerCount: Int
    /// Sub-keys `NAME.keys` [2, H, n, d/2]: half p of head h at [p, h] (the official code's
    /// `keys.0` and `keys.1` stacked, so one GEMM scores a half for all heads).
    public let keys: ParameterView
    /// `NAME.values` [N, d]; row a*n + b belongs to sub-keys (a, b).
    public let values: ParameterView
    /// mlp-bn only: `NAME.query` [H*d, d] with bias.
    public let queryProjection: Linear?
    /// mlp-bn only: `NAME.query_norm.weight` and `.bias` [H*d] (the batch norm's affine part).
    public let queryNormWeight: ParameterView?
    public let queryNormBias: ParameterView?
    /// `config.usesDensePath`: which computation every forward pass runs.
    public let usesDensePath: Bool
    private let name: String

    private let halfWidth: Int
    private let valueCount: Int
    private let queryWidth: Int
    /// m: sub-keys kept per half on the sparse path (the official top-k takes all when k >= n).
    private let keptPerHalf: Int
    /// Candidates (i, j) with (i + 1)(j + 1) <= k among the m x m: the sums actually formed.
    private let candidateCount: Int

    private let runningMean = FloatBuffer()
    private let runningVariance = FloatBuffer()
    private var usedBatchStatistics = false
    private var lastRows = 0
    private let usageTotals: Buffer<Int>

    // Forward activations (kept for backward).
    private let normalized = FloatBuffer()  // [R, F] z, then (z - mean) / std in place
    private let queryValues = FloatBuffer()  // [R, F] batch-norm output
    private let inverseStd = FloatBuffer()  // [F]
    private let featureSums = FloatBuffer()  // [2F] per-feature reductions
    private let halfScores = FloatBuffer()  // [R, 2, H, n]
    private let summedHalfScores = FloatBuffer()  // dense: [R, 2, n]
    private let selectedIndex = Buffer<Int32>()  // sparse: [R, H*k]
    private let selectedScore = FloatBuffer()  // sparse: [R, H*k]
    private let activations = FloatBuffer()  // sparse: [R, H*k]; dense: [R, N]
    private let indexScratch = Buffer<Int32>()  // sparse: per chunk
    private let scoreScratch = FloatBuffer()  // sparse: per chunk
    // Backward.
    private let dActivations = FloatBuffer()
    private let dHalfScores = FloatBuffer()  // [R, 2, H, n]
    private let dQueries = FloatBuffer()  // [R, F]
    private let valueStart = Buffer<Int32>()  // [N + 1]
    private let valueCursor = Buffer<Int32>()  // [N]
    private let entryOrder = Buffer<Int32>()  // [R*H*k]

    /// Registers `NAME.keys`, `NAME.values` and, with the mlp-bn query, `NAME.query.weight`,
    /// `NAME.query.bias`, `NAME.query_norm.weight`, `NAME.query_norm.bias`. The config must
    /// pass `validate(modelWidth: width)`.
    public init(
        name: String, config: Config, width: Int, layerCount: Int, layout: inout ParameterLayout
    ) {
        do { try config.validate(modelWidth: width) } catch { preconditionFailure("\(error)") }
        self.name = name
        self.config = config
        self.width = width
        self.layerCount = layerCount
        let n = config.keysPerHalf
        halfWidth = width / 2
        valueCount = n * n
        queryWidth = config.heads * width
        keptPerHalf = min(config.knn, n)
        var candidates = 0
        for i in 0..<keptPerHalf { candidates += min(keptPerHalf, config.knn / (i + 1)) }
        candidateCount = candidates
        usesDensePath = config.usesDensePath
        keys = layout.add("\(name).keys", shape: [2, config.heads, n, width / 2])
        values = layout.add("\(name).values", shape: [n * n, width])
        if config.query == .mlpBatchNorm {
            queryProjection = Linear(
                name: "\(name).query", inputWidth: width, outputWidth: config.heads * width,
                bias: true, layout: &layout)
            queryNormWeight = layout.add("\(name).query_norm.weight", shape: [config.heads * width])
            queryNormBias = layout.add("\(name).query_norm.bias", shape: [config.heads * width])
            runningMean.reserve(queryWidth).initialize(repeating: 0, count: queryWidth)
            runningVariance.reserve(queryWidth).initialize(repeating: 1, count: queryWidth)
        } else {
            queryProjection = nil
            queryNormWeight = nil
            queryNormBias = nil
        }
        usageTotals = Buffer<Int>(count: n * n)
        usageTotals.pointer.initialize(repeating: 0, count: n * n)
    }

    /// Keys N(0, (2/L)/d); values N(0, (2/L)/d) or, with "+init", N(0, (2/L)/N); the query
    /// projection by the prenorm init with zero bias (the official code re-initialises every
    /// Linear so), the batch norm as (1, 0) with running statistics (0, 1).
    public func initialize(_ arena: ParameterArena, rng: inout RandomGenerator) {
        let scale = 2.0 / Double(layerCount)
        Initializer.normal(
            arena.value(keys), count: keys.count, std: (scale / Double(width)).squareRoot(),
            rng: &rng)
        let valueFanIn = config.valueInit == .dense ? valueCount : width
        Initializer.normal(
            arena.value(values), count: values.count,
            std: (scale / Double(valueFanIn)).squareRoot(), rng: &rng)
        if let projection = queryProjection, let weight = queryNormWeight, let bias = queryNormBias {
            prenormInitialize(projection.weight, layerCount: layerCount, arena: arena, rng: &rng)
            arena.value(projection.bias!).update(repeating: 0, count: queryWidth)
            arena.value(weight).update(repeating: 1, count: queryWidth)
            arena.value(bias).update(repeating: 0, count: queryWidth)
            runningMean.pointer.update(repeating: 0, count: queryWidth)
            runningVariance.pointer.update(repeating: 1, count: queryWidth)
        }
    }

    // MARK: Diagnostics and state

    /// How many times each value row was read since `resetUsage()`, over every forward pass.
    /// Sparse path: one count per selected (token, head, slot), so a row two heads chose for
    /// the same token counts twice. Dense path: one count per (token, row) whose activation is
    /// nonzero (ReLU: positive score; softmax: every row unless exp underflows).
    public var usage: UsageCounts? {
        UsageCounts(
            unit: "value", counts: Array(UnsafeBufferPointer(start: usageTotals.pointer, count: valueCount)))
    }

    public func resetUsage() { usageTotals.pointer.update(repeating: 0, count: valueCount) }

    /// Non-trained state a checkpoint must carry besides the parameters: with the mlp-bn query,
    /// `NAME.query_norm.running_mean` and `NAME.query_norm.running_var` ([H*d] each, PyTorch's
    /// names and meaning: momentum 0.1, unbiased batch variance); empty otherwise.
    public var state: [String: [Float]] {
        guard queryProjection != nil else { return [:] }
        return [
            "\(name).query_norm.running_mean":
                Array(UnsafeBufferPointer(start: runningMean.pointer, count: queryWidth)),
            "\(name).query_norm.running_var":
                Array(UnsafeBufferPointer(start: runningVariance.pointer, count: queryWidth)),
        ]
    }

    /// Restores what `state` returned; throws one line for a missing name or a wrong length.
    public func loadState(_ state: [String: [Float]]) throws {
        for (key, buffer) in [("running_mean", runningMean), ("running_var", runningVariance)]
        where queryProjection != nil {
            let full = "\(name).query_norm.\(key)"
            guard let saved = state[full] else {
                throw FeedForwardConfigError(description: "checkpoint lacks \(full)")
            }
            guard saved.count == queryWidth else {
                throw FeedForwardConfigError(
                    description: "checkpoint \(full) has \(saved.count) entries, the model needs \(queryWidth)")
            }
            saved.withUnsafeBufferPointer { buffer.pointer.update(from: $0.baseAddress!, count: queryWidth) }
        }
    }

    /// The value rows the last sparse forward pass selected, [R, H, k] flattened (best first
    /// within each head); empty after a dense pass. For tests and diagnostics.
    public func selectedValueRows() -> [Int] {
        if usesDensePath { return [] }
        let count = lastRows * config.heads * config.knn
        return (0..<count).map { Int(selectedIndex.pointer[$0]) }
    }

    /// Work items per pass: a few coarse blocks of rows per core.
    private func chunkCount(_ total: Int) -> Int { max(1, min(total, 4 * Threads.count)) }

    // MARK: Forward

    public func forward(
        _ x: UnsafePointer<Float>, shape: TokenShape, output y: UnsafeMutablePointer<Float>,
        arena: ParameterArena, context: inout ForwardContext
    ) {
        let rows = shape.rows
        lastRows = rows
        let query = queryForward(x, rows: rows, training: context.training, arena: arena)
        scoreHalves(query, rows: rows, arena: arena)
        if usesDensePath {
            forwardDense(rows: rows, output: y, arena: arena)
        } else {
            forwardSparse(rows: rows, output: y, arena: arena)
        }
    }

    /// Where head h's query row r starts: `pointer + r * rowStride + h * headStride`.
    private struct QueryLayout {
        let pointer: UnsafePointer<Float>
        let rowStride: Int
        let headStride: Int
    }

    private func queryLayout(_ x: UnsafePointer<Float>) -> QueryLayout {
        queryProjection == nil
            ? QueryLayout(pointer: x, rowStride: width, headStride: 0)
            : QueryLayout(pointer: UnsafePointer(queryValues.pointer), rowStride: queryWidth, headStride: width)
    }

    /// mlp-bn: z = x Wq^T + bq; training: normalise by the batch mean and biased variance of each
    /// feature over the R rows and update the running statistics (momentum 0.1, unbiased
    /// variance, as PyTorch's BatchNorm1d); evaluation: normalise by the running statistics.
    private func queryForward(
        _ x: UnsafePointer<Float>, rows: Int, training: Bool, arena: ParameterArena
    ) -> QueryLayout {
        guard let projection = queryProjection else { return queryLayout(x) }
        precondition(!training || rows >= 2, "PKM batch norm needs at least 2 rows in training")
        let f = queryWidth
        // z is written where xhat will be and normalised in place (backward needs only xhat).
        let z = SendablePointer(normalized.reserve(rows * f))
        projection.forward(x, rows: rows, output: z.mutable, arena: arena)
        let xhat = z
        let q = SendablePointer(queryValues.reserve(rows * f))
        let inv = SendablePointer(inverseStd.reserve(f))
        let mean = SendablePointer(featureSums.reserve(2 * f))
        let gamma = SendablePointer(arena.value(queryNormWeight!))
        let beta = SendablePointer(arena.value(queryNormBias!))
        let runningMean = SendablePointer(self.runningMean.pointer)
        let runningVariance = SendablePointer(self.runningVariance.pointer)
        usedBatchStatistics = training
        let eps = Self.batchNormEpsilon, momentum = Self.batchNormMomentum
        let count = Float(rows)
        // Each worker owns a range of features (columns); rows are walked in order.
        parallelChunks(f, minimumChunk: 256) { range in
            let m = mean.mutable
            if training {
                for j in range { m[j] = 0 }
                for r in 0..<rows {
                    let row = z.pointer + r * f
                    for j in range { m[j] += row[j] }
                }
                for j in range { m[j] /= count }
                let v = m + f
                for j in range { v[j] = 0 }
                for r in 0..<rows {
                    let row = z.pointer + r * f
                    for j in range {
                        let c = row[j] - m[j]
                        v[j] += c * c
                    }
                }
                for j in range {
                    v[j] /= count
                    inv.mutable[j] = 1 / (v[j] + eps).squareRoot()
                    runningMean.mutable[j] = (1 - momentum) * runningMean.mutable[j] + momentum * m[j]
                    runningVariance.mutable[j] =
                        (1 - momentum) * runningVariance.mutable[j] + momentum * v[j] * count / (count - 1)
                }
            } else {
                for j in range {
                    m[j] = runningMean.mutable[j]
                    inv.mutable[j] = 1 / (runningVariance.mutable[j] + eps).squareRoot()
                }
            }
            for r in 0..<rows {
                let zr = z.pointer + r * f, xr = xhat.mutable + r * f, qr = q.mutable + r * f
                for j in range {
                    let n = (zr[j] - m[j]) * inv.mutable[j]
                    xr[j] = n
                    qr[j] = gamma.mutable[j] * n + beta.mutable[j]
                }
            }
        }
        return queryLayout(x)
    }

    /// halfScores[r, p, h, :] = (half p of q_h[r]) K[p, h]^T for every half p and head h.
    private func scoreHalves(_ query: QueryLayout, rows: Int, arena: ParameterArena) {
        let h = config.heads, n = config.keysPerHalf, half = halfWidth
        let scores = halfScores.reserve(rows * 2 * h * n)
        let k = arena.value(keys)
        for p in 0..<2 {
            if query.headStride == 0 {
                // One query for all heads: a single product per half against all heads' keys.
                gemm(
                    transposeB: true, m: rows, n: h * n, k: half,
                    a: query.pointer + p * half, lda: query.rowStride,
                    b: k + p * h * n * half, ldb: half,
                    beta: 0, c: scores + p * h * n, ldc: 2 * h * n)
            } else {
                for head in 0..<h {
                    gemm(
                        transposeB: true, m: rows, n: n, k: half,
                        a: query.pointer + head * query.headStride + p * half, lda: query.rowStride,
                        b: k + (p * h + head) * n * half, ldb: half,
                        beta: 0, c: scores + (p * h + head) * n, ldc: 2 * h * n)
                }
            }
        }
    }

    /// score[r, a*n + b] = sum_h s1_h[a] + sum_h s2_h[b]; act in place; y = act V.
    private func forwardDense(
        rows: Int, output y: UnsafeMutablePointer<Float>, arena: ParameterArena
    ) {
        let h = config.heads, n = config.keysPerHalf, nn = valueCount
        let activation = config.activation
        let hs = SendablePointer(halfScores.pointer)
        let summed = SendablePointer(summedHalfScores.reserve(rows * 2 * n))
        let act = SendablePointer(activations.reserve(rows * nn))
        parallelChunks(rows, minimumChunk: max(1, 16_384 / nn)) { range in
            for r in range {
                let s = summed.mutable + r * 2 * n
                for p in 0..<2 {
                    let out = s + p * n
                    let first = hs.pointer + r * 2 * h * n + p * h * n
                    out.update(from: first, count: n)
                    for head in 1..<max(1, h) { addInPlace(out, first + head * n, count: n) }
                }
                let row = act.mutable + r * nn
                for a in 0..<n {
                    let s1 = s[a], line = row + a * n
                    for b in 0..<n { line[b] = s1 + s[n + b] }
                }
                switch activation {
                case .relu: for i in 0..<nn { row[i] = max(row[i], 0) }
                case .softmax, .softmaxPerHead: softmaxInPlace(row, count: nn)  // (validate: not per head)
                }
            }
        }
        gemm(
            m: rows, n: width, k: nn, a: act.pointer, lda: nn, b: arena.value(values), ldb: width,
            beta: 0, c: y, ldc: width)
        // Usage: each worker counts a range of value rows (columns of act) over all tokens.
        let totals = SendablePointer(usageTotals.pointer)
        parallelChunks(nn, minimumChunk: 1024) { range in
            for r in 0..<rows {
                let row = act.pointer + r * nn
                for j in range { totals.mutable[j] &+= row[j] != 0 ? 1 : 0 }
            }
        }
    }

    /// Per token and head: the top-k sums of the two halves' best sub-keys; act over the
    /// token's H*k scores; y = sum act V[idx].
    private func forwardSparse(
        rows: Int, output y: UnsafeMutablePointer<Float>, arena: ParameterArena
    ) {
        let h = config.heads, n = config.keysPerHalf, k = config.knn, m = keptPerHalf
        let slots = h * k, d = width, candidates = candidateCount
        let activation = config.activation
        let chunks = chunkCount(rows)
        let indexStride = 2 * m + 2 * candidates + k
        let indexScratch = SendablePointer(self.indexScratch.reserve(chunks * indexStride))
        let scoreScratch = SendablePointer(self.scoreScratch.reserve(chunks * candidates))
        let hs = SendablePointer(halfScores.pointer)
        let index = SendablePointer(selectedIndex.reserve(rows * slots))
        let score = SendablePointer(selectedScore.reserve(rows * slots))
        let act = SendablePointer(activations.reserve(rows * slots))
        let v = SendablePointer(arena.value(values))
        let out = SendablePointer(y)
        // Each chunk owns its rows of every output and its own scratch.
        parallelFor(chunks) { chunk in
            let scratch = TopSumScratch(
                indices: indexScratch.mutable + chunk * indexStride, kept: m, candidates: candidates,
                knn: k, scores: scoreScratch.mutable + chunk * candidates)
            for r in (chunk * rows / chunks)..<((chunk + 1) * rows / chunks) {
                let rowIndex = index.mutable + r * slots, rowScore = score.mutable + r * slots
                for head in 0..<h {
                    let s1 = hs.pointer + r * 2 * h * n + head * n
                    ProductKeyMemory.selectTopSums(
                        first: s1, second: s1 + h * n, keys: n, kept: m, knn: k, scratch: scratch,
                        indices: rowIndex + head * k, scores: rowScore + head * k)
                }
                let rowAct = act.mutable + r * slots
                switch activation {
                case .relu:
                    for i in 0..<slots { rowAct[i] = max(rowScore[i], 0) }
                case .softmax:
                    rowAct.update(from: rowScore, count: slots)
                    softmaxInPlace(rowAct, count: slots)
                case .softmaxPerHead:
                    rowAct.update(from: rowScore, count: slots)
                    for head in 0..<h { softmaxInPlace(rowAct + head * k, count: k) }
                }
                let yr = out.mutable + r * d
                yr.update(repeating: 0, count: d)
                for i in 0..<slots where rowAct[i] != 0 {
                    axpy(yr, rowAct[i], v.pointer + Int(rowIndex[i]) * d, count: d)
                }
            }
        }
        let totals = usageTotals.pointer, selected = index.pointer
        for i in 0..<(rows * slots) { totals[Int(selected[i])] += 1 }
    }

    // MARK: Backward

    public func backward(
        _ x: UnsafePointer<Float>, dOutput dy: UnsafePointer<Float>, shape: TokenShape,
        dInput dx: UnsafeMutablePointer<Float>, arena: ParameterArena
    ) {
        let rows = shape.rows
        let dHalf = dHalfScores.reserve(rows * 2 * config.heads * config.keysPerHalf)
        if usesDensePath {
            backwardDense(dOutput: dy, rows: rows, dHalfScores: dHalf, arena: arena)
        } else {
            backwardSparse(dOutput: dy, rows: rows, dHalfScores: dHalf, arena: arena)
        }
        backwardHalves(x, dHalfScores: dHalf, rows: rows, dInput: dx, arena: arena)
    }

    /// From dL/dy to dL/d(half scores) [R, 2, H, n] and dV (dense: two GEMMs).
    private func backwardDense(
        dOutput dy: UnsafePointer<Float>, rows: Int, dHalfScores dHalf: UnsafeMutablePointer<Float>,
        arena: ParameterArena
    ) {
        let h = config.heads, n = config.keysPerHalf, nn = valueCount, d = width
        let act = SendablePointer(activations.pointer)
        let da = SendablePointer(dActivations.reserve(rows * nn))
        gemm(
            transposeB: true, m: rows, n: nn, k: d, a: dy, lda: d, b: arena.value(values), ldb: d,
            beta: 0, c: da.mutable, ldc: nn)
        gemm(
            transposeA: true, m: nn, n: d, k: rows, a: act.pointer, lda: nn, b: dy, ldb: d,
            beta: 1, c: arena.gradient(values), ldc: d)
        let activation = config.activation
        let dh = SendablePointer(dHalf)
        parallelChunks(rows, minimumChunk: max(1, 16_384 / nn)) { range in
            for r in range {
                let g = da.mutable + r * nn, p = act.pointer + r * nn
                switch activation {
                case .relu:
                    for i in 0..<nn { g[i] = p[i] > 0 ? g[i] : 0 }
                case .softmax, .softmaxPerHead:
                    let inner = dot(p, g, count: nn)
                    for i in 0..<nn { g[i] = p[i] * (g[i] - inner) }
                }
                // d score / d s1[a] sums over b, d score / d s2[b] over a; every head gets both.
                let row = dh.mutable + r * 2 * h * n
                let d1 = row, d2 = row + h * n
                for a in 0..<n { d1[a] = sum(g + a * n, count: n) }
                d2.update(from: g, count: n)
                for a in 1..<max(1, n) { addInPlace(d2, g + a * n, count: n) }
                for head in 1..<max(1, h) {
                    (d1 + head * n).update(from: d1, count: n)
                    (d2 + head * n).update(from: d2, count: n)
                }
            }
        }
    }

    /// Sparse: d act = dy . V[idx] per entry, through the activation to the chosen scores, which
    /// scatter into the half scores; dV by a counting sort of the entries by value row.
    private func backwardSparse(
        dOutput dy: UnsafePointer<Float>, rows: Int, dHalfScores dHalf: UnsafeMutablePointer<Float>,
        arena: ParameterArena
    ) {
        let h = config.heads, n = config.keysPerHalf, k = config.knn, d = width, nn = valueCount
        let slots = h * k, entries = rows * slots
        let index = SendablePointer(selectedIndex.pointer)
        let act = SendablePointer(activations.pointer)
        let da = SendablePointer(dActivations.reserve(entries))
        let v = SendablePointer(arena.value(values))
        let dyp = SendablePointer(dy)
        let dh = SendablePointer(dHalf)
        let activation = config.activation
        let chunks = chunkCount(rows)
        parallelFor(chunks) { chunk in
            for r in (chunk * rows / chunks)..<((chunk + 1) * rows / chunks) {
                let g = da.mutable + r * slots, p = act.pointer + r * slots
                let rowIndex = index.pointer + r * slots
                let dyr = dyp.pointer + r * d
                for i in 0..<slots { g[i] = dot(dyr, v.pointer + Int(rowIndex[i]) * d, count: d) }
                switch activation {
                case .relu:
                    for i in 0..<slots { g[i] = p[i] > 0 ? g[i] : 0 }
                case .softmax:
                    let inner = dot(p, g, count: slots)
                    for i in 0..<slots { g[i] = p[i] * (g[i] - inner) }
                case .softmaxPerHead:
                    for head in 0..<h {
                        let ph = p + head * k, gh = g + head * k
                        let inner = dot(ph, gh, count: k)
                        for i in 0..<k { gh[i] = ph[i] * (gh[i] - inner) }
                    }
                }
                let row = dh.mutable + r * 2 * h * n
                row.update(repeating: 0, count: 2 * h * n)
                for head in 0..<h {
                    let d1 = row + head * n, d2 = row + (h + head) * n
                    for j in 0..<k {
                        let i = head * k + j, valueRow = Int(rowIndex[i])
                        d1[valueRow / n] += g[i]
                        d2[valueRow % n] += g[i]
                    }
                }
            }
        }
        // Counting sort of the entries by value row (stable: entry order within a row).
        let start = valueStart.reserve(nn + 1), cursor = valueCursor.reserve(nn)
        let order = entryOrder.reserve(entries)
        start.update(repeating: 0, count: nn + 1)
        for e in 0..<entries { start[Int(index.pointer[e]) + 1] += 1 }
        for j in 0..<nn { start[j + 1] += start[j] }
        cursor.update(from: start, count: nn)
        for e in 0..<entries {
            let j = Int(index.pointer[e])
            order[Int(cursor[j])] = Int32(e)
            cursor[j] += 1
        }
        // Workers own ranges of value rows holding about equal numbers of entries.
        let starts = SendablePointer(start), sorted = SendablePointer(order)
        let dV = SendablePointer(arena.gradient(values))
        let parts = chunkCount(entries)
        parallelFor(parts) { part in
            func boundary(_ part: Int) -> Int {
                part == parts
                    ? nn
                    : ProductKeyMemory.firstValueRow(starts.pointer, count: nn, reaching: part * entries / parts)
            }
            let low = boundary(part), high = boundary(part + 1)
            for j in low..<high {
                let target = dV.mutable + j * d
                for t in Int(starts.pointer[j])..<Int(starts.pointer[j + 1]) {
                    let e = Int(sorted.pointer[t])
                    let weight = act.pointer[e]
                    if weight != 0 { axpy(target, weight, dyp.pointer + (e / slots) * d, count: d) }
                }
            }
        }
    }

    /// The smallest j in 0...count with start[j] >= target (start is non-decreasing).
    private static func firstValueRow(
        _ start: UnsafePointer<Int32>, count: Int, reaching target: Int
    ) -> Int {
        var low = 0, high = count
        while low < high {
            let mid = (low + high) / 2
            if Int(start[mid]) < target { low = mid + 1 } else { high = mid }
        }
        return low
    }

    /// From dL/d(half scores) to the sub-keys and the queries (and on to x).
    private func backwardHalves(
        _ x: UnsafePointer<Float>, dHalfScores dHalf: UnsafePointer<Float>, rows: Int,
        dInput dx: UnsafeMutablePointer<Float>, arena: ParameterArena
    ) {
        let h = config.heads, n = config.keysPerHalf, half = halfWidth
        let k = arena.value(keys), dk = arena.gradient(keys)
        let query = queryLayout(x)
        guard let projection = queryProjection else {
            for p in 0..<2 {
                gemm(
                    transposeA: true, m: h * n, n: half, k: rows,
                    a: dHalf + p * h * n, lda: 2 * h * n, b: x + p * half, ldb: width,
                    beta: 1, c: dk + p * h * n * half, ldc: half)
                gemm(
                    m: rows, n: half, k: h * n, a: dHalf + p * h * n, lda: 2 * h * n,
                    b: k + p * h * n * half, ldb: half, beta: 1, c: dx + p * half, ldc: width)
            }
            return
        }
        let dq = dQueries.reserve(rows * queryWidth)
        for p in 0..<2 {
            for head in 0..<h {
                let block = (p * h + head) * n
                gemm(
                    transposeA: true, m: n, n: half, k: rows, a: dHalf + block, lda: 2 * h * n,
                    b: query.pointer + head * query.headStride + p * half, ldb: query.rowStride,
                    beta: 1, c: dk + block * half, ldc: half)
                gemm(
                    m: rows, n: half, k: n, a: dHalf + block, lda: 2 * h * n,
                    b: k + block * half, ldb: half,
                    beta: 0, c: dq + head * width + p * half, ldc: queryWidth)
            }
        }
        batchNormBackward(dq, rows: rows, arena: arena)
        projection.backward(x, dOutput: dq, rows: rows, dInput: dx, accumulateInput: true, arena: arena)
    }

    /// In place: dq -> dz. Training (batch statistics):
    /// dz = gamma * inv / R * (R dq - sum_r dq - xhat sum_r dq xhat); evaluation:
    /// dz = gamma * inv * dq. Accumulates d gamma = sum_r dq xhat and d beta = sum_r dq.
    private func batchNormBackward(
        _ dq: UnsafeMutablePointer<Float>, rows: Int, arena: ParameterArena
    ) {
        let f = queryWidth
        let g = SendablePointer(dq)
        let xhat = SendablePointer(normalized.pointer), inv = SendablePointer(inverseStd.pointer)
        let gamma = SendablePointer(arena.value(queryNormWeight!))
        let dGamma = SendablePointer(arena.gradient(queryNormWeight!))
        let dBeta = SendablePointer(arena.gradient(queryNormBias!))
        let sums = SendablePointer(featureSums.reserve(2 * f))
        let batch = usedBatchStatistics
        let count = Float(rows)
        parallelChunks(f, minimumChunk: 256) { range in
            let s = sums.mutable, sx = sums.mutable + f
            for j in range {
                s[j] = 0
                sx[j] = 0
            }
            for r in 0..<rows {
                let gr = g.pointer + r * f, xr = xhat.pointer + r * f
                for j in range {
                    s[j] += gr[j]
                    sx[j] += gr[j] * xr[j]
                }
            }
            for j in range {
                dGamma.mutable[j] += sx[j]
                dBeta.mutable[j] += s[j]
            }
            for r in 0..<rows {
                let gr = g.mutable + r * f, xr = xhat.pointer + r * f
                for j in range {
                    let scale = gamma.pointer[j] * inv.pointer[j]
                    gr[j] = batch
                        ? scale * (gr[j] - s[j] / count - xr[j] * sx[j] / count)
                        : scale * gr[j]
                }
            }
        }
    }

    // MARK: Top-k of sums (sparse path kernel)

    /// Per-chunk scratch of `selectTopSums`.
    struct TopSumScratch {
        let first: UnsafeMutablePointer<Int32>  // [m] sub-keys of half 1, best first
        let second: UnsafeMutablePointer<Int32>  // [m]
        let rows: UnsafeMutablePointer<Int32>  // [candidates] i of each candidate
        let columns: UnsafeMutablePointer<Int32>  // [candidates] j of each candidate
        let best: UnsafeMutablePointer<Int32>  // [k] chosen candidates, best first
        let scores: UnsafeMutablePointer<Float>  // [candidates]

        init(
            indices: UnsafeMutablePointer<Int32>, kept m: Int, candidates: Int, knn k: Int,
            scores: UnsafeMutablePointer<Float>
        ) {
            first = indices
            second = indices + m
            rows = indices + 2 * m
            columns = indices + 2 * m + candidates
            best = indices + 2 * m + 2 * candidates
            self.scores = scores
        }
    }

    /// The k best sums s1[a] + s2[b] over the m best a and the m best b, best first: value
    /// rows a*n + b into `indices`, sums into `scores`. Ties: lower sub-key index within a half,
    /// lower candidate position i*m + j among sums (see the file header).
    static func selectTopSums(
        first s1: UnsafePointer<Float>, second s2: UnsafePointer<Float>, keys n: Int, kept m: Int,
        knn k: Int, scratch: TopSumScratch, indices: UnsafeMutablePointer<Int32>,
        scores: UnsafeMutablePointer<Float>
    ) {
        selectBest(n, keep: m, into: scratch.first) { a, b in
            s1[a] > s1[b] || (s1[a] == s1[b] && a < b)
        }
        selectBest(n, keep: m, into: scratch.second) { a, b in
            s2[a] > s2[b] || (s2[a] == s2[b] && a < b)
        }
        // Only candidates not dominated by k others; enumerated in position order, so the
        // candidate number orders ties as the position does.
        var count = 0
        let sums = scratch.scores
        for i in 0..<m {
            let columns = min(m, k / (i + 1))
            if columns == 0 { break }
            let base = s1[Int(scratch.first[i])]
            for j in 0..<columns {
                sums[count] = base + s2[Int(scratch.second[j])]
                scratch.rows[count] = Int32(i)
                scratch.columns[count] = Int32(j)
                count += 1
            }
        }
        assert(count >= k, "fewer candidates than knn: validate() should have refused this config")
        selectBest(count, keep: k, into: scratch.best) { a, b in
            sums[a] > sums[b] || (sums[a] == sums[b] && a < b)
        }
        for slot in 0..<k {
            let c = Int(scratch.best[slot])
            let a = scratch.first[Int(scratch.rows[c])], b = scratch.second[Int(scratch.columns[c])]
            indices[slot] = a * Int32(n) + b
            scores[slot] = sums[c]
        }
    }

    /// The `keep` best of the ids 0..<count under the strict total order `better`, best first:
    /// a binary heap whose root is the worst kept id, then a heap sort of the kept ids.
    @inline(__always)
    static func selectBest(
        _ count: Int, keep: Int, into heap: UnsafeMutablePointer<Int32>, better: (Int, Int) -> Bool
    ) {
        @inline(__always) func siftDown(_ start: Int, _ size: Int) {
            var i = start
            while true {
                let left = 2 * i + 1
                if left >= size { return }
                var worse = left
                if left + 1 < size && better(Int(heap[left]), Int(heap[left + 1])) { worse = left + 1 }
                if better(Int(heap[i]), Int(heap[worse])) {
                    let t = heap[i]
                    heap[i] = heap[worse]
                    heap[worse] = t
                    i = worse
                } else {
                    return
                }
            }
        }
        var size = 0
        for id in 0..<count {
            if size < keep {
                var i = size
                heap[i] = Int32(id)
                size += 1
                while i > 0 {
                    let parent = (i - 1) / 2
                    if better(Int(heap[parent]), Int(heap[i])) {
                        let t = heap[i]
                        heap[i] = heap[parent]
                        heap[parent] = t
                        i = parent
                    } else {
                        break
                    }
                }
            } else if better(id, Int(heap[0])) {
                heap[0] = Int32(id)
                siftDown(0, size)
            }
        }
        var end = size - 1
        while end > 0 {
            let t = heap[0]
            heap[0] = heap[end]
            heap[end] = t
            siftDown(0, end)
            end -= 1
        }
    }
}

/// The sparse path's per-head selection on one token (`ProductKeyMemory.selectTopSums`), with
/// its own scratch: value rows a*n + b and scores s1[a] + s2[b] of the knn best sums, best first.
/// For tests; `n` is the length of both halves.
public func productKeyTopK(
    firstHalf: [Float], secondHalf: [Float], knn: Int
) -> (indices: [Int], scores: [Float]) {
    let n = firstHalf.count
    precondition(secondHalf.count == n && knn >= 1 && knn <= n * n)
    let m = min(knn, n)
    var candidates = 0
    for i in 0..<m { candidates += min(m, knn / (i + 1)) }
    var ints = [Int32](repeating: 0, count: 2 * m + 2 * candidates + knn)
    var floats = [Float](repeating: 0, count: candidates)
    var indices = [Int32](repeating: 0, count: knn)
    var scores = [Float](repeating: 0, count: knn)
    ints.withUnsafeMutableBufferPointer { i in
        floats.withUnsafeMutableBufferPointer { f in
            let scratch = ProductKeyMemory.TopSumScratch(
                indices: i.baseAddress!, kept: m, candidates: candidates, knn: knn, scores: f.baseAddress!)
            ProductKeyMemory.selectTopSums(
                first: firstHalf, second: secondHalf, keys: n, kept: m, knn: knn, scratch: scratch,
                indices: &indices, scores: &scores)
        }
    }
    return (indices.map(Int.init), scores)
}

/// Reference for `productKeyTopK`: full sorts and all m^2 candidate sums, the same tie rules.
public func naiveProductKeyTopK(
    firstHalf: [Float], secondHalf: [Float], knn: Int
) -> (indices: [Int], scores: [Float]) {
    let n = firstHalf.count, m = min(knn, n)
    func best(_ s: [Float]) -> [Int] {
        Array((0..<n).sorted { s[$0] > s[$1] || (s[$0] == s[$1] && $0 < $1) }.prefix(m))
    }
    let first = best(firstHalf), second = best(secondHalf)
    var candidates: [(position: Int, index: Int, score: Float)] = []
    for i in 0..<m {
        for j in 0..<m {
            candidates.append((i * m + j, first[i] * n + second[j], firstHalf[first[i]] + secondHalf[second[j]]))
        }
    }
    candidates.sort { $0.score > $1.score || ($0.score == $1.score && $0.position < $1.position) }
    let chosen = candidates.prefix(knn)
    return (chosen.map(\.index), chosen.map(\.score))
}
