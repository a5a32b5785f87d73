import Foundation
import Tensor

// Product-key memory (Lample et al. 2019) in the forms of the official σ-MoE code and of XLM:
// the layer and its config, the queries and half scores both paths share, and the dispatch to
// the dense path (ProductKeyMemoryDensePath.swift) or the sparse one
// (ProductKeyMemorySparsePath.swift, selection in ProductKeySelection.swift).
// Legend: R rows (tokens), d width (d/2 per half), H heads, n sub-keys per half (n_keys),
//   N = n^2 values, k = knn, F = H*d query width.
//
//   queries   identity (official σ-MoE code):  q_h = x for every head
//             mlp-bn (XLM):                     q = BN(x Wq^T + bq), q_h = q[h*d ..< (h+1)*d]
//   halves    s1_h[a] = q_h[:d/2] . K1_h[a],  s2_h[b] = q_h[d/2:] . K2_h[b]   [R, 2, H, n]
//   values    value (a, b) has index a*n + b;  V: [N, d]
//   paths     dense: act over the N sums of the heads' scores; sparse: act over each head's k
//             best sums; both y = sum act V[idx].  Backward: a path turns dL/dy into dV and
//             dL/d(half scores), from which this file goes on to the sub-keys and the queries.
//
// Neither official form has dropout inside the memory (`kvmem.dropout = none`): the block's
// output dropout lives in the Transformer block.

/// Product-key memory feedforward block: `y = sum act(score) V[idx]` over the values addressed
/// by the best sums of two half-query sub-key scores (Lample et al. 2019).
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

    /// Shape and variant of a memory (`--ffn pkm`, `model.feed_forward` with kind `pkm`).
    public struct Config: FeedForwardVariant {
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
                    "PKM knn (\(knn)) exceeds the n_keys^2 = \(valueCount) values: lower knn or raise n_keys")
            }
        }

        public static let kind = "pkm"
        public static let options: Set<FeedForwardOption> = [
            .pkmHeads, .pkmKeys, .pkmKnn, .pkmActivation, .pkmQuery, .pkmPath, .pkmValueInit,
        ]

        /// The official form (softmax, identity query, knn 128) with 4 heads unless given, and
        /// n_keys matched to the replaced block's parameters (without matching: as many values
        /// as the replaced block has hidden units).
        public static func replacing(
            _ replaced: ReplacedBlock, options: FeedForwardOptions
        ) throws -> (block: Self, note: String?) {
            let heads = options.pkmHeads ?? 4
            func block(_ keys: Int) -> Config {
                Config(keysPerHalf: keys, heads: heads, query: options.pkmQuery ?? .identity)
            }
            if let keys = options.pkmKeys { return (block(keys), nil) }
            guard replaced.matching else {
                return (block(max(1, Int(Double(replaced.hiddenSize).squareRoot().rounded()))), nil)
            }
            // knn does not change the count; 1 keeps every candidate size valid.
            guard heads >= 1, let (keys, note) = replaced.closestSize(
                describing: { "n_keys \($0) (\(heads) heads)" },
                count: { Config(keysPerHalf: $0, heads: heads, knn: 1, query: options.pkmQuery ?? .identity).parameterCount(modelWidth: replaced.modelWidth) })
            else {
                throw FeedForwardConfigError(
                    description: "no PKM size matches the \(replaced.parameterCount) parameters of the block it replaces: give n_keys")
            }
            return (block(keys), note)
        }

        public mutating func apply(_ options: FeedForwardOptions) {
            if let v = options.pkmHeads { heads = v }
            if let v = options.pkmKeys { keysPerHalf = v }
            if let v = options.pkmKnn { knn = v }
            if let v = options.pkmActivation { activation = v }
            if let v = options.pkmQuery { query = v }
            if let v = options.pkmPath { path = v }
            if let v = options.pkmValueInit { valueInit = v }
        }

        public func makeLayer(_ scope: ParameterScope, modelWidth: Int, dropout: Float) -> any FeedForwardLayer {
            // The official PKM block has no dropout inside (kvmem.dropout = none).
            ProductKeyMemory(scope, config: self, width: modelWidth)
        }

        /// All parameters on the dense path; on the sparse path the value rows beyond the
        /// H x knn a token reads are idle.
        public func activeParameters(modelWidth d: Int) -> Int {
            let all = parameterCount(modelWidth: d)
            return usesDensePath ? all : all - (valueCount - min(valueCount, heads * knn)) * d
        }

        /// Scoring both halves against every sub-key of every head (plus the query network),
        /// then reading the value rows: all n^2 on the dense path, H x knn on the sparse one.
        public func forwardFLOPs(modelWidth d: Int) -> FeedForwardFLOPs {
            var routing = 2.0 * Double(heads * keysPerHalf * d)
            if query == .mlpBatchNorm { routing += 2.0 * Double(heads * d * d) }
            let rows = usesDensePath ? valueCount : heads * knn
            return FeedForwardFLOPs(total: routing + 2.0 * Double(rows * d), routing: routing)
        }

        public var summary: String {
            "PKM \(heads) heads, \(keysPerHalf)^2 values, knn \(knn), \(activation.rawValue), \(usesDensePath ? "dense" : "sparse") path"
                + (valueInit == .dense ? ", +init" : "") + (query == .mlpBatchNorm ? ", mlp-bn query" : "")
        }
    }

    public let config: Config
    public let width: Int
    /// Sub-keys `NAME.keys` [2, H, n, d/2]: half p of head h at [p, h] (the official code's
    /// `keys.0` and `keys.1` stacked, so one GEMM scores a half for all heads).
    public let keys: ParameterView
    /// `NAME.values` [N, d]; row a*n + b belongs to sub-keys (a, b).
    public let values: ParameterView
    /// mlp-bn only: `NAME.query` [H*d, d] with bias.
    public let queryProjection: Linear?
    /// mlp-bn only: `NAME.query_norm` over the H*d query features (batch statistics in
    /// training, running statistics in evaluation).
    public let queryNorm: BatchNorm?
    /// mlp-bn only: `NAME.query_norm.weight` and `.bias` [H*d] (the batch norm's affine part).
    public var queryNormWeight: ParameterView? { queryNorm?.weight }
    public var queryNormBias: ParameterView? { queryNorm?.bias }
    /// `config.usesDensePath`: which computation every forward pass runs.
    public let usesDensePath: Bool

    // Internal rather than private: the paths' extensions in their own files use them.
    let halfWidth: Int
    let valueCount: Int
    let queryWidth: Int
    /// m: sub-keys kept per half on the sparse path (the official top-k takes all when k >= n).
    let keptPerHalf: Int
    /// Candidates (i, j) with (i + 1)(j + 1) <= k among the m x m: the sums actually formed.
    let candidateCount: Int

    /// [N] reads per value row since resetUsage(), kept across passes; allocated by the first
    /// pass, so a layer built only to be counted allocates nothing of size N.
    var usageTotals: UnsafeMutablePointer<Int> {
        if let usageStorage { return usageStorage }
        let totals = UnsafeMutablePointer<Int>.allocate(capacity: valueCount)
        totals.initialize(repeating: 0, count: valueCount)
        usageStorage = totals
        return totals
    }
    private var usageStorage: UnsafeMutablePointer<Int>?
    private var lastRows = 0

    // Forward activations (kept for backward).
    private let queryValues = FloatBuffer()  // [R, F] batch-norm output
    let halfScores = FloatBuffer()  // [R, 2, H, n]
    let summedHalfScores = FloatBuffer()  // dense: [R, 2, n]
    let selectedIndex = Buffer<Int32>()  // sparse: [R, H*k]
    let selectedScore = FloatBuffer()  // sparse: [R, H*k]
    let activations = FloatBuffer()  // sparse: [R, H*k]; dense: [R, N]
    let indexScratch = Buffer<Int32>()  // sparse: per chunk
    let scoreScratch = FloatBuffer()  // sparse: per chunk
    // Backward.
    let dActivations = FloatBuffer()  // sparse: [R, H*k]; dense: [R, N]
    private let dHalfScores = FloatBuffer()  // [R, 2, H, n]
    private let dQueries = FloatBuffer()  // [R, F]
    let valueStart = Buffer<Int32>()  // sparse: [N + 1]
    let valueCursor = Buffer<Int32>()  // sparse: [N]
    let entryOrder = Buffer<Int32>()  // sparse: [R*H*k]

    /// Registers `keys`, `values` and, with the mlp-bn query, `query.weight`, `query.bias`,
    /// `query_norm.weight`, `query_norm.bias` under `scope`. The config must pass
    /// `validate(modelWidth: width)`.
    init(_ scope: ParameterScope, config: Config, width: Int) {
        do { try config.validate(modelWidth: width) } catch { preconditionFailure("\(error)") }
        self.config = config
        self.width = width
        let n = config.keysPerHalf
        halfWidth = width / 2
        valueCount = n * n
        queryWidth = config.heads * width
        keptPerHalf = min(config.knn, n)
        var candidates = 0
        for i in 0..<keptPerHalf { candidates += min(keptPerHalf, config.knn / (i + 1)) }
        candidateCount = candidates
        usesDensePath = config.usesDensePath
        keys = scope.tensor("keys", shape: [2, config.heads, n, width / 2])
        values = scope.tensor("values", shape: [n * n, width])
        if config.query == .mlpBatchNorm {
            queryProjection = Linear(
                scope.child("query"), inputWidth: width, outputWidth: config.heads * width, bias: true)
            queryNorm = BatchNorm(scope.child("query_norm"), width: queryWidth)
        } else {
            queryProjection = nil
            queryNorm = nil
        }
    }

    deinit { usageStorage?.deallocate() }

    /// Keys N(0, (2/L)/d); values N(0, (2/L)/d) or, with "+init", N(0, (2/L)/N); the query
    /// projection by the prenorm init with zero bias (the official code re-initialises every
    /// Linear so), the batch norm as (1, 0) with running statistics (0, 1).
    public func initialize(_ arena: ParameterArena, _ context: inout InitializationContext) {
        Initializer.normal(
            arena.value(keys), count: keys.count, std: context.depthScaledStd(fanIn: width),
            rng: &context.rng)
        let valueFanIn = config.valueInit == .dense ? valueCount : width
        Initializer.normal(
            arena.value(values), count: values.count, std: context.depthScaledStd(fanIn: valueFanIn),
            rng: &context.rng)
        if let projection = queryProjection, let norm = queryNorm {
            context.prenormInitialize(projection.weight, in: arena)
            arena.value(projection.bias!).update(repeating: 0, count: queryWidth)
            norm.initialize(arena)
        }
    }

    public func declareBuffers(for pass: PassShape, in plan: inout BufferPlan) {
        let rows = pass.rows, h = config.heads, n = config.keysPerHalf
        plan.declare(halfScores, "PKM half scores", count: rows * 2 * h * n)
        if let projection = queryProjection, let norm = queryNorm {
            norm.declareBuffers(rows: rows, in: &plan)
            plan.declare(queryValues, "PKM queries", count: rows * queryWidth)
            projection.declareBuffers(rows: rows, training: pass.training, in: &plan)
            if pass.training { plan.declare(dQueries, "PKM query gradient", count: rows * queryWidth) }
        }
        if pass.training { plan.declare(dHalfScores, "PKM half-score gradient", count: rows * 2 * h * n) }
        if usesDensePath {
            declareDenseBuffers(rows: rows, training: pass.training, in: &plan)
        } else {
            declareSparseBuffers(rows: rows, training: pass.training, in: &plan)
        }
    }

    // MARK: Diagnostics and state

    /// How many times each value row was read since `resetUsage()`, over every forward pass.
    /// Sparse path: one count per selected (token, head, slot), so a row two heads chose for
    /// the same token counts twice. Dense path: one count per (token, row) whose activation is
    /// nonzero (ReLU: positive score; softmax: every row unless exp underflows).
    public var usage: UsageCounts? {
        UsageCounts(
            unit: "value", counts: Array(UnsafeBufferPointer(start: usageTotals, count: valueCount)))
    }

    public func resetUsage() { usageTotals.update(repeating: 0, count: valueCount) }

    /// Non-trained state a checkpoint must carry besides the parameters: with the mlp-bn query,
    /// `NAME.query_norm.running_mean` and `NAME.query_norm.running_var` ([H*d] each, PyTorch's
    /// names and meaning: momentum 0.1, unbiased batch variance); empty otherwise.
    public var state: [String: [Float]] { queryNorm?.state ?? [:] }

    /// Restores what `state` returned; throws one line for a missing name or a wrong length.
    public func loadState(_ state: [String: [Float]]) throws { try queryNorm?.loadState(state) }

    /// The value rows the last sparse forward pass selected, [R, H, k] flattened (best first
    /// within each head); empty after a dense pass. For tests and diagnostics.
    public func selectedValueRows() -> [Int] {
        if usesDensePath { return [] }
        let count = lastRows * config.heads * config.knn
        return (0..<count).map { Int(selectedIndex.pointer[$0]) }
    }

    /// Work items per pass: coarse blocks of rows (more than the cores, which take them as they
    /// finish). A fixed count, so the scratch the sparse path declares does not depend on the
    /// thread count.
    func chunkCount(_ total: Int) -> Int { max(1, min(total, Self.maximumChunks)) }

    static let maximumChunks = 64

    // MARK: Forward

    public func forward(
        _ x: UnsafePointer<Float>, shape: TokenShape, output y: UnsafeMutablePointer<Float>,
        arena: ParameterArena, context: inout ForwardContext
    ) {
        let rows = shape.rows
        lastRows = rows
        let query = queryForward(
            x, rows: rows, training: context.training, arena: arena, collective: context.trainingCollective)
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

    /// mlp-bn: q = BN(x Wq^T + bq) [R, F], by batch statistics in training (which update the
    /// running ones) and running statistics in evaluation (`BatchNorm`).
    private func queryForward(
        _ x: UnsafePointer<Float>, rows: Int, training: Bool, arena: ParameterArena,
        collective: (any Collective)?
    ) -> QueryLayout {
        guard let projection = queryProjection, let norm = queryNorm else { return queryLayout(x) }
        // z goes where the batch norm keeps xhat and is normalised in place.
        let z = norm.inputBuffer(rows: rows)  // [R, F]
        projection.forward(x, rows: rows, output: z, arena: arena)
        norm.forward(
            z, rows: rows, output: queryValues.reserved(rows * queryWidth), training: training,
            arena: arena, collective: collective)
        return queryLayout(x)
    }

    /// halfScores[r, p, h, :] = (half p of q_h[r]) K[p, h]^T for every half p and head h.
    private func scoreHalves(_ query: QueryLayout, rows: Int, arena: ParameterArena) {
        let h = config.heads, n = config.keysPerHalf, half = halfWidth
        let scores = halfScores.reserved(rows * 2 * h * n)
        let k = arena.value(keys)
        for p in 0..<2 {
            if query.headStride == 0 {
                // One query for all heads: a single product per half against all heads' keys.
                gemmInRowGroups(
                    arena.gradientGroups, transposeB: true, m: rows, n: h * n, k: half,
                    a: query.pointer + p * half, lda: query.rowStride,
                    b: k + p * h * n * half, ldb: half,
                    beta: 0, c: scores + p * h * n, ldc: 2 * h * n)
            } else {
                for head in 0..<h {
                    gemmInRowGroups(
                        arena.gradientGroups, transposeB: true, m: rows, n: n, k: half,
                        a: query.pointer + head * query.headStride + p * half, lda: query.rowStride,
                        b: k + (p * h + head) * n * half, ldb: half,
                        beta: 0, c: scores + (p * h + head) * n, ldc: 2 * h * n)
                }
            }
        }
    }

    // MARK: Backward

    public func backward(
        _ x: UnsafePointer<Float>, dOutput dy: UnsafePointer<Float>, shape: TokenShape,
        dInput dx: UnsafeMutablePointer<Float>, arena: ParameterArena
    ) {
        let rows = shape.rows
        let dHalf = dHalfScores.reserved(rows * 2 * config.heads * config.keysPerHalf)
        if usesDensePath {
            backwardDense(dOutput: dy, rows: rows, dHalfScores: dHalf, arena: arena)
        } else {
            backwardSparse(dOutput: dy, rows: rows, dHalfScores: dHalf, arena: arena)
        }
        backwardHalves(x, dHalfScores: dHalf, rows: rows, dInput: dx, arena: arena)
    }

    /// From dL/d(half scores) to the sub-keys and the queries (and on to x).
    private func backwardHalves(
        _ x: UnsafePointer<Float>, dHalfScores dHalf: UnsafePointer<Float>, rows: Int,
        dInput dx: UnsafeMutablePointer<Float>, arena: ParameterArena
    ) {
        let h = config.heads, n = config.keysPerHalf, half = halfWidth
        let k = arena.value(keys)
        let query = queryLayout(x)
        guard let projection = queryProjection, let norm = queryNorm else {
            for p in 0..<2 {
                gemmOverRowGroups(
                    arena.gradientGroups, m: h * n, n: half, rows: rows, a: dHalf + p * h * n, lda: 2 * h * n,
                    b: x + p * half, ldb: width, gradient: { arena.gradient(keys, group: $0) + p * h * n * half }, ldc: half)
                gemmInRowGroups(
                    arena.gradientGroups, m: rows, n: half, k: h * n, a: dHalf + p * h * n, lda: 2 * h * n,
                    b: k + p * h * n * half, ldb: half, beta: 1, c: dx + p * half, ldc: width)
            }
            return
        }
        let dq = dQueries.reserved(rows * queryWidth)
        for p in 0..<2 {
            for head in 0..<h {
                let block = (p * h + head) * n
                gemmOverRowGroups(
                    arena.gradientGroups, m: n, n: half, rows: rows, a: dHalf + block, lda: 2 * h * n,
                    b: query.pointer + head * query.headStride + p * half, ldb: query.rowStride,
                    gradient: { arena.gradient(keys, group: $0) + block * half }, ldc: half)
                gemmInRowGroups(
                    arena.gradientGroups, m: rows, n: half, k: n, a: dHalf + block, lda: 2 * h * n,
                    b: k + block * half, ldb: half,
                    beta: 0, c: dq + head * width + p * half, ldc: queryWidth)
            }
        }
        norm.backward(inPlace: dq, rows: rows, arena: arena)
        projection.backward(x, dOutput: dq, rows: rows, dInput: dx, accumulateInput: true, arena: arena)
    }
}
