import Foundation
import Testing
import Layers
import Tensor
import TestSupport

/// Product-key memory: finite-difference gradients of every variant, both paths against plain
/// Double implementations of their formulas (written here from Docs/feedforward.md, not from the layer),
/// the case where the two paths must agree, the selection kernel against its naive reference,
/// sparsity of the value gradient, thread-count independence, usage counts, batch-norm state,
/// initialisation statistics and config errors.
@Suite(.serialized) struct ProductKeyMemoryTests {
    typealias Config = ProductKeyMemory.Config

    // MARK: Helpers

    struct Setup {
        let layer: ProductKeyMemory
        let layout: ParameterLayout
        let arena: ParameterArena
        let rows: Int
        var x: [Float]
    }

    /// A layer whose parameters are all redrawn from N(0, std^2) (batch-norm scales around 1),
    /// so that the scores are O(1) and the activations far from linear.
    static func setup(
        _ config: Config, width: Int = 6, rows: Int = 5, seed: UInt64, std: Double = 0.7
    ) -> Setup {
        let scope = ParameterScope()
        let layer = config.makeLayer(scope.child("pkm"), modelWidth: width, dropout: 0) as! ProductKeyMemory
        let layout = scope.layout
        let arena = ParameterArena(layout: layout)
        var initialization = InitializationContext(seed: seed, layerCount: 2)
        layer.initialize(arena, &initialization)
        var rng = initialization.rng
        reserveBuffers(layer, TokenShape(batch: 1, length: rows))
        Initializer.normal(arena.values, count: arena.count, std: std, rng: &rng)
        if let w = layer.queryNormWeight {
            Initializer.normal(arena.value(w), count: w.count, std: 0.2, mean: 1, rng: &rng)
        }
        let x = randomArray(rows * width, seed: seed &+ 1000)
        return Setup(layer: layer, layout: layout, arena: arena, rows: rows, x: x)
    }

    static func forward(_ s: Setup, x: UnsafePointer<Float>, training: Bool = true) -> [Float] {
        var y = [Float](repeating: .nan, count: s.rows * s.layer.width)
        var context = ForwardContext(training: training, rng: RandomGenerator(seed: 5))
        s.layer.forward(x, shape: TokenShape(batch: 1, length: s.rows), output: &y, arena: s.arena, context: &context)
        return y
    }

    /// What the formulas of Docs/feedforward.md give, in Double.
    struct Reference {
        var y: [Double]
        /// Value rows read by the sparse path, [R, H, k]; empty for the dense path.
        var selected: [Int]
        /// Smallest |score| that a ReLU sees (infinity for softmax).
        var reluMargin: Double
        /// Smallest gap at a sparse selection boundary (per half: m-th vs (m+1)-th sub-key;
        /// sums: k-th vs (k+1)-th candidate); infinity when nothing is cut.
        var selectionMargin: Double
        /// Activation weights per (row, value row): sparse entries added up, dense as is.
        var weights: [[Double]]
    }

    static func reference(
        _ s: Setup, x: [Float], training: Bool = true, runningMean: [Float]? = nil,
        runningVariance: [Float]? = nil
    ) -> Reference {
        let layer = s.layer, c = layer.config, arena = s.arena, rows = s.rows
        let d = layer.width, half = d / 2, heads = c.heads, n = c.keysPerHalf, nn = n * n
        let keys = arena.value(layer.keys), values = arena.value(layer.values)
        // Queries q[r][h][j].
        var q = [[[Double]]](
            repeating: [[Double]](repeating: [Double](repeating: 0, count: d), count: heads), count: rows)
        if let projection = layer.queryProjection {
            let f = heads * d
            let w = arena.value(projection.weight), b = arena.value(projection.bias!)
            var z = [[Double]](repeating: [Double](repeating: 0, count: f), count: rows)
            for r in 0..<rows {
                for o in 0..<f {
                    var t = Double(b[o])
                    for i in 0..<d { t += Double(w[o * d + i]) * Double(x[r * d + i]) }
                    z[r][o] = t
                }
            }
            var mean = [Double](repeating: 0, count: f), variance = [Double](repeating: 0, count: f)
            for o in 0..<f {
                if training {
                    mean[o] = (0..<rows).map { z[$0][o] }.reduce(0, +) / Double(rows)
                    variance[o] = (0..<rows).map { (z[$0][o] - mean[o]) * (z[$0][o] - mean[o]) }.reduce(0, +) / Double(rows)
                } else {
                    mean[o] = Double(runningMean![o])
                    variance[o] = Double(runningVariance![o])
                }
            }
            let gamma = arena.value(layer.queryNormWeight!), beta = arena.value(layer.queryNormBias!)
            for r in 0..<rows {
                for h in 0..<heads {
                    for j in 0..<d {
                        let o = h * d + j
                        q[r][h][j] = Double(gamma[o]) * (z[r][o] - mean[o]) / (variance[o] + 1e-5).squareRoot() + Double(beta[o])
                    }
                }
            }
        } else {
            for r in 0..<rows { for h in 0..<heads { for j in 0..<d { q[r][h][j] = Double(x[r * d + j]) } } }
        }
        // Half scores s[r][p][h][a] against keys [2, H, n, d/2].
        var s = [[[[Double]]]](
            repeating: [[[Double]]](
                repeating: [[Double]](repeating: [Double](repeating: 0, count: n), count: heads), count: 2),
            count: rows)
        for r in 0..<rows {
            for p in 0..<2 {
                for h in 0..<heads {
                    for a in 0..<n {
                        var t = 0.0
                        for j in 0..<half {
                            t += q[r][h][p * half + j] * Double(keys[((p * heads + h) * n + a) * half + j])
                        }
                        s[r][p][h][a] = t
                    }
                }
            }
        }
        func softmax(_ v: [Double]) -> [Double] {
            let m = v.max()!
            let e = v.map { Foundation.exp($0 - m) }
            let total = e.reduce(0, +)
            return e.map { $0 / total }
        }
        var result = Reference(
            y: [Double](repeating: 0, count: rows * d), selected: [], reluMargin: .infinity,
            selectionMargin: .infinity, weights: [])
        for r in 0..<rows {
            var weight = [Double](repeating: 0, count: nn)
            if layer.usesDensePath {
                var score = [Double](repeating: 0, count: nn)
                for a in 0..<n {
                    for b in 0..<n {
                        for h in 0..<heads { score[a * n + b] += s[r][0][h][a] + s[r][1][h][b] }
                    }
                }
                if c.activation == .relu {
                    weight = score.map { max($0, 0) }
                    result.reluMargin = min(result.reluMargin, score.map(abs).min()!)
                } else {
                    weight = softmax(score)
                }
            } else {
                let k = c.knn, m = min(k, n)
                var entryIndex: [Int] = [], entryScore: [Double] = []
                for h in 0..<heads {
                    func best(_ v: [Double]) -> [Int] {
                        let order = (0..<n).sorted { v[$0] > v[$1] || (v[$0] == v[$1] && $0 < $1) }
                        if m < n { result.selectionMargin = min(result.selectionMargin, v[order[m - 1]] - v[order[m]]) }
                        return Array(order.prefix(m))
                    }
                    let first = best(s[r][0][h]), second = best(s[r][1][h])
                    var candidates: [(position: Int, index: Int, score: Double)] = []
                    for i in 0..<m {
                        for j in 0..<m {
                            candidates.append((i * m + j, first[i] * n + second[j], s[r][0][h][first[i]] + s[r][1][h][second[j]]))
                        }
                    }
                    candidates.sort { $0.score > $1.score || ($0.score == $1.score && $0.position < $1.position) }
                    if k < candidates.count {
                        result.selectionMargin = min(result.selectionMargin, candidates[k - 1].score - candidates[k].score)
                    }
                    for candidate in candidates.prefix(k) {
                        entryIndex.append(candidate.index)
                        entryScore.append(candidate.score)
                    }
                }
                var act: [Double]
                switch c.activation {
                case .relu:
                    act = entryScore.map { max($0, 0) }
                    result.reluMargin = min(result.reluMargin, entryScore.map(abs).min()!)
                case .softmax:
                    act = softmax(entryScore)
                case .softmaxPerHead:
                    act = []
                    for h in 0..<heads { act += softmax(Array(entryScore[(h * k)..<((h + 1) * k)])) }
                }
                for (i, index) in entryIndex.enumerated() { weight[index] += act[i] }
                result.selected += entryIndex
            }
            result.weights.append(weight)
            for j in 0..<nn where weight[j] != 0 {
                for o in 0..<d { result.y[r * d + o] += weight[j] * Double(values[j * d + o]) }
            }
        }
        return result
    }

    static func maxRelativeError(_ a: [Float], _ b: [Double]) -> Double {
        let scale = max(1e-3, b.map(abs).max() ?? 0)
        return zip(a, b).map { abs(Double($0) - $1) }.max()! / scale
    }

    // MARK: Gradients

    struct Variant: Sendable, CustomTestStringConvertible {
        let config: Config
        let training: Bool
        var testDescription: String {
            "\(config.usesDensePath ? "dense" : "sparse") \(config.activation.rawValue) \(config.query.rawValue)\(training ? "" : " eval")"
        }
    }

    static let variants: [Variant] = {
        var list: [Variant] = []
        for query in ProductKeyMemory.Query.allCases {
            for activation in ProductKeyMemory.Activation.allCases {
                // n = 3 sub-keys, knn = 2: the sparse path prunes both halves and the sums.
                list.append(Variant(
                    config: Config(keysPerHalf: 3, heads: 2, knn: 2, activation: activation, query: query, path: .sparse),
                    training: true))
                if activation != .softmaxPerHead {
                    list.append(Variant(
                        config: Config(keysPerHalf: 3, heads: 2, knn: 4, activation: activation, query: query, path: .dense),
                        training: true))
                }
            }
        }
        // The batch norm's evaluation mode (running statistics) on both paths.
        list.append(Variant(
            config: Config(keysPerHalf: 3, heads: 2, knn: 2, activation: .softmax, query: .mlpBatchNorm, path: .sparse),
            training: false))
        list.append(Variant(
            config: Config(keysPerHalf: 3, heads: 2, knn: 4, activation: .relu, query: .mlpBatchNorm, path: .dense),
            training: false))
        return list
    }()

    @Test(arguments: variants) func gradients(_ variant: Variant) throws {
        // Inputs far from ReLU kinks and selection boundaries (0.1, while a step of 1e-2 moves a
        // score by a few 1e-2), so +-step changes neither. The step is that large because the
        // float32 forward pass has a rounding noise of ~1e-6 on losses of ~10.
        var chosen: Setup?
        for seed in UInt64(1)...60 {
            let candidate = Self.setup(variant.config, rows: 3, seed: seed)
            if !variant.training {
                // Running statistics unlike the batch's, so evaluation mode is really different.
                var rng = RandomGenerator(seed: seed)
                let f = variant.config.heads * candidate.layer.width
                var state = candidate.layer.state
                state["pkm.query_norm.running_mean"] = (0..<f).map { _ in Float(0.5 * rng.normal()) }
                state["pkm.query_norm.running_var"] = (0..<f).map { _ in Float(0.5 + rng.uniformDouble()) }
                try candidate.layer.loadState(state)
            }
            let stats = candidate.layer.state
            let ref = Self.reference(
                candidate, x: candidate.x, training: variant.training,
                runningMean: stats["pkm.query_norm.running_mean"], runningVariance: stats["pkm.query_norm.running_var"])
            if ref.reluMargin > 0.1 && ref.selectionMargin > 0.1 {
                chosen = candidate
                break
            }
        }
        var s = try #require(chosen, "no seed gives inputs away from kinks and ties")
        let width = s.layer.width, count = s.rows * width
        let upstream = randomArray(count, seed: 77)
        var dx = [Float](repeating: 0.5, count: count)  // backward accumulates onto this
        _ = Self.forward(s, x: s.x, training: variant.training)
        // The selected set of each (row, head); its order may change without changing y.
        let knn = variant.config.knn
        let layer = s.layer
        func selectedSets() -> [Set<Int>] {
            let rows = layer.selectedValueRows()
            return stride(from: 0, to: rows.count, by: knn).map { Set(rows[$0..<($0 + knn)]) }
        }
        let selection = selectedSets()
        s.layer.backward(s.x, dOutput: upstream, shape: TokenShape(batch: 1, length: s.rows), dInput: &dx, arena: s.arena)
        let dxNet = dx.map { $0 - 0.5 }
        var selectionChanged = false
        let training = variant.training
        let setup = s
        s.x.withUnsafeMutableBufferPointer { xp in
            dxNet.withUnsafeBufferPointer { dxp in
                let tensors = setup.layout.views.map {
                    CheckedTensor($0.name, values: setup.arena.value($0), gradient: setup.arena.gradient($0), count: $0.count)
                } + [CheckedTensor("x", values: xp.baseAddress!, gradient: dxp.baseAddress!, count: count)]
                let mismatches = checkGradients(tensors, samples: 24, step: 1e-2, absoluteTolerance: 5e-4) {
                    let y = Self.forward(setup, x: xp.baseAddress!, training: training)
                    if selectedSets() != selection { selectionChanged = true }
                    return weightedSum(y, upstream, count: count)
                }
                #expect(mismatches.isEmpty, "\(mismatches)")
            }
        }
        #expect(!selectionChanged, "a finite-difference step changed the sparse selection")
    }

    // MARK: Paths against their formulas

    /// (a) The sparse path against the sparse formula: no pruning (knn = n^2), pruning inside
    /// the sums only (knn > n), and pruning of both halves (knn < n); every activation.
    @Test(arguments: [9, 5, 2]) func sparsePathMatchesFormula(knn: Int) {
        for query in ProductKeyMemory.Query.allCases {
            for activation in ProductKeyMemory.Activation.allCases {
                let config = Config(keysPerHalf: 3, heads: 2, knn: knn, activation: activation, query: query, path: .sparse)
                let s = Self.setup(config, rows: 7, seed: 21)
                let y = Self.forward(s, x: s.x)
                let ref = Self.reference(s, x: s.x)
                #expect(Self.maxRelativeError(y, ref.y) < 2e-5, "\(activation) \(query) knn \(knn)")
                #expect(s.layer.selectedValueRows() == ref.selected)
            }
        }
    }

    /// (b) The dense path against the dense formula (heads summed before the activation).
    @Test func densePathMatchesFormula() {
        for query in ProductKeyMemory.Query.allCases {
            for activation in [ProductKeyMemory.Activation.softmax, .relu] {
                let config = Config(keysPerHalf: 4, heads: 3, knn: 4, activation: activation, query: query, path: .auto)
                let s = Self.setup(config, width: 8, rows: 6, seed: 22)
                #expect(s.layer.usesDensePath)
                let y = Self.forward(s, x: s.x)
                #expect(Self.maxRelativeError(y, Self.reference(s, x: s.x).y) < 2e-5, "\(activation) \(query)")
                #expect(s.layer.selectedValueRows().isEmpty)
            }
        }
    }

    /// (c) The paths coincide exactly when the sparse path reads every value of a single head
    /// (H = 1, knn = n^2): both activate the same n^2 scores s1[a] + s2[b]; softmax-per-head is
    /// then the joint softmax. With two heads they must differ: dense activates the sum of the
    /// heads' scores, sparse each head's scores separately.
    @Test func pathsAgreeOnlyForOneHeadReadingEverything() {
        let pairs: [(sparse: ProductKeyMemory.Activation, dense: ProductKeyMemory.Activation)] =
            [(.softmax, .softmax), (.relu, .relu), (.softmaxPerHead, .softmax)]
        for query in ProductKeyMemory.Query.allCases {
            for (sparseActivation, denseActivation) in pairs {
                for heads in [1, 2] {
                    let sparse = Self.setup(
                        Config(keysPerHalf: 3, heads: heads, knn: 9, activation: sparseActivation, query: query, path: .sparse),
                        rows: 6, seed: 23)
                    let dense = Self.setup(
                        Config(keysPerHalf: 3, heads: heads, knn: 9, activation: denseActivation, query: query, path: .dense),
                        rows: 6, seed: 23)
                    // Same layout, so the same seed drew the same parameters; check it.
                    #expect(sparse.layout.views == dense.layout.views)
                    #expect(Array(UnsafeBufferPointer(start: sparse.arena.values, count: sparse.arena.count))
                        == Array(UnsafeBufferPointer(start: dense.arena.values, count: dense.arena.count)))
                    let ys = Self.forward(sparse, x: sparse.x), yd = Self.forward(dense, x: dense.x)
                    let difference = zip(ys, yd).map { abs($0 - $1) }.max()!
                    if heads == 1 {
                        #expect(difference < 1e-5, "\(sparseActivation) \(query)")
                    } else {
                        #expect(difference > 1e-2, "\(sparseActivation) \(query): two heads should differ")
                    }
                }
            }
        }
    }

    // MARK: Selection kernel

    @Test func topSumsMatchNaiveReference() {
        var rng = RandomGenerator(seed: 31)
        for n in [1, 2, 3, 5, 8, 13] {
            for knn in Set([1, 2, 3, n, n + 1, 2 * n, n * n / 2, n * n]).filter({ $0 >= 1 && $0 <= n * n }).sorted() {
                for ties in [false, true] {
                    // With ties: values from {-1, 0, 1} so equal scores and equal sums abound.
                    let draw: () -> Float = { ties ? Float(rng.integer(below: 3) - 1) : Float(rng.normal()) }
                    let first = (0..<n).map { _ in draw() }, second = (0..<n).map { _ in draw() }
                    let fast = productKeyTopK(firstHalf: first, secondHalf: second, knn: knn)
                    let naive = naiveProductKeyTopK(firstHalf: first, secondHalf: second, knn: knn)
                    #expect(fast.indices == naive.indices, "n \(n) knn \(knn) ties \(ties)")
                    #expect(fast.scores == naive.scores, "n \(n) knn \(knn) ties \(ties)")
                    #expect(Set(fast.indices).count == knn)
                }
            }
        }
    }

    // MARK: Sparse value gradient

    @Test func sparseBackwardTouchesOnlySelectedValueRows() {
        let config = Config(keysPerHalf: 6, heads: 2, knn: 2, activation: .softmax, path: .sparse)
        let s = Self.setup(config, rows: 3, seed: 41)
        _ = Self.forward(s, x: s.x)
        let selected = Set(s.layer.selectedValueRows())
        #expect(selected.count < 36 / 2)  // most rows unselected, so the check below has teeth
        var dx = [Float](repeating: 0, count: s.x.count)
        s.layer.backward(
            s.x, dOutput: randomArray(s.x.count, seed: 42), shape: TokenShape(batch: 1, length: 3), dInput: &dx,
            arena: s.arena)
        let dv = s.arena.gradient(s.layer.values), d = s.layer.width
        for row in 0..<36 {
            let touched = (0..<d).contains { dv[row * d + $0] != 0 }
            #expect(touched == selected.contains(row), "value row \(row)")
        }
    }

    /// Same outputs and gradients, bit for bit, on 1 and 2 threads (row chunks, value-row
    /// ranges of the scatter and the dense column counts all change with the thread count).
    @Test func resultsDoNotDependOnThreadCount() {
        func run(_ config: Config, threads: Int) -> [Float] {
            Threads.configure(threads)
            defer { Threads.configure(1) }
            let s = Self.setup(config, rows: 40, seed: 51)
            let y = Self.forward(s, x: s.x)
            var dx = [Float](repeating: 0, count: s.x.count)
            s.layer.backward(
                s.x, dOutput: randomArray(s.x.count, seed: 52), shape: TokenShape(batch: 1, length: 40), dInput: &dx,
                arena: s.arena)
            return y + dx + Array(UnsafeBufferPointer(start: s.arena.gradients, count: s.arena.count))
        }
        for config in [
            Config(keysPerHalf: 4, heads: 2, knn: 3, activation: .softmax, query: .mlpBatchNorm, path: .sparse),
            Config(keysPerHalf: 4, heads: 2, knn: 3, activation: .relu, path: .sparse),
            Config(keysPerHalf: 4, heads: 2, knn: 4, activation: .softmax, path: .dense),
        ] {
            #expect(run(config, threads: 1) == run(config, threads: 2), "\(config)")
        }
    }

    // MARK: Usage, batch-norm state

    @Test func usageCountsEveryRead() {
        let sparse = Self.setup(Config(keysPerHalf: 4, heads: 2, knn: 3, activation: .relu, path: .sparse), rows: 5, seed: 61)
        _ = Self.forward(sparse, x: sparse.x)
        var expected = [Int](repeating: 0, count: 16)
        for row in sparse.layer.selectedValueRows() { expected[row] += 1 }
        _ = Self.forward(sparse, x: sparse.x)
        let usage = try! #require(sparse.layer.usage)
        #expect(usage.unit == "value")
        #expect(usage.counts == expected.map { 2 * $0 })
        #expect(usage.total == 2 * 5 * 2 * 3)
        sparse.layer.resetUsage()
        #expect(sparse.layer.usage!.total == 0)

        // Dense ReLU: one count per (token, value row) with a positive score.
        let dense = Self.setup(Config(keysPerHalf: 4, heads: 2, knn: 4, activation: .relu, path: .dense), rows: 5, seed: 62)
        _ = Self.forward(dense, x: dense.x)
        let weights = Self.reference(dense, x: dense.x).weights
        let positive = (0..<16).map { j in weights.filter { $0[j] > 0 }.count }
        #expect(dense.layer.usage!.counts == positive)
        #expect(positive.reduce(0, +) > 0 && positive.reduce(0, +) < 5 * 16)
    }

    @Test func batchNormTrainsOnBatchStatisticsAndEvaluatesOnRunningOnes() throws {
        let config = Config(keysPerHalf: 3, heads: 2, knn: 4, activation: .softmax, query: .mlpBatchNorm, path: .sparse)
        let s = Self.setup(config, rows: 6, seed: 71)
        let f = 2 * s.layer.width
        let initial = s.layer.state
        #expect(initial["pkm.query_norm.running_mean"] == [Float](repeating: 0, count: f))
        #expect(initial["pkm.query_norm.running_var"] == [Float](repeating: 1, count: f))
        // Training forward: running = 0.9 * running + 0.1 * batch (unbiased variance).
        _ = Self.forward(s, x: s.x, training: true)
        let w = s.arena.value(s.layer.queryProjection!.weight), b = s.arena.value(s.layer.queryProjection!.bias!)
        let d = s.layer.width
        let after = s.layer.state
        for o in 0..<f {
            let z = (0..<6).map { r in Double(b[o]) + (0..<d).map { Double(w[o * d + $0]) * Double(s.x[r * d + $0]) }.reduce(0, +) }
            let mean = z.reduce(0, +) / 6
            let unbiased = z.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 5
            #expect(abs(Double(after["pkm.query_norm.running_mean"]![o]) - 0.1 * mean) < 1e-5)
            #expect(abs(Double(after["pkm.query_norm.running_var"]![o]) - (0.9 + 0.1 * unbiased)) < 1e-4)
        }
        // Evaluation uses (and keeps) the running statistics.
        let y = Self.forward(s, x: s.x, training: false)
        #expect(s.layer.state == after)
        let ref = Self.reference(
            s, x: s.x, training: false, runningMean: after["pkm.query_norm.running_mean"],
            runningVariance: after["pkm.query_norm.running_var"])
        #expect(Self.maxRelativeError(y, ref.y) < 2e-5)
        #expect(Self.maxRelativeError(y, Self.reference(s, x: s.x, training: true).y) > 1e-3)
        // Restore round trip and one-line errors.
        let other = Self.setup(config, rows: 6, seed: 72)
        try other.layer.loadState(after)
        #expect(other.layer.state == after)
        var short = after
        short["pkm.query_norm.running_var"] = [1, 2]
        #expect(throws: FeedForwardConfigError.self) { try other.layer.loadState(short) }
        #expect(throws: FeedForwardConfigError.self) { try other.layer.loadState([:]) }
        #expect(Self.setup(Config(keysPerHalf: 3, heads: 2, knn: 4), seed: 1).layer.state.isEmpty)
    }

    // MARK: Initialisation

    @Test func initialStatisticsFollowTheFormulas() {
        let (d, n, heads, layers) = (128, 32, 4, 16)
        for valueInit in ProductKeyMemory.ValueInit.allCases {
            let scope = ParameterScope()
            let layer = Config(keysPerHalf: n, heads: heads, knn: 32, query: .mlpBatchNorm, valueInit: valueInit, path: .sparse)
                .makeLayer(scope.child("ffn"), modelWidth: d, dropout: 0) as! ProductKeyMemory
            let layout = scope.layout
            #expect(layout.views.map(\.name) == [
                "ffn.keys", "ffn.values", "ffn.query.weight", "ffn.query.bias", "ffn.query_norm.weight", "ffn.query_norm.bias",
            ])
            #expect(layer.keys.shape == [2, heads, n, d / 2])
            #expect(layer.values.shape == [n * n, d])
            let arena = ParameterArena(layout: layout)
            var initialization = InitializationContext(seed: 81, layerCount: layers)
            layer.initialize(arena, &initialization)
            func std(_ v: ParameterView) -> Double { Initializer.standardDeviation(arena.value(v), count: v.count) }
            let keyStd = (2.0 / Double(layers) / Double(d)).squareRoot()
            let valueStd = (2.0 / Double(layers) / Double(valueInit == .dense ? n * n : d)).squareRoot()
            #expect(abs(std(layer.keys) / keyStd - 1) < 0.05)
            #expect(abs(std(layer.values) / valueStd - 1) < 0.05)
            let query = layer.queryProjection!
            #expect(abs(std(query.weight) / keyStd - 1) < 1e-4)  // prenorm init: exact sample std
            #expect((0..<query.outputWidth).allSatisfy { arena.value(query.bias!)[$0] == 0 })
            #expect((0..<heads * d).allSatisfy { arena.value(layer.queryNormWeight!)[$0] == 1 && arena.value(layer.queryNormBias!)[$0] == 0 })
        }
    }

    // MARK: Configuration

    @Test func badConfigsGiveOneLineErrors() {
        let cases: [(Config, width: Int, mentions: String)] = [
            (Config(keysPerHalf: 4), 7, "even"),
            (Config(keysPerHalf: 4, heads: 0), 8, "heads"),
            (Config(keysPerHalf: 0), 8, "n_keys"),
            (Config(keysPerHalf: 50_000), 8, "n_keys"),
            (Config(keysPerHalf: 4, knn: 0), 8, "knn"),
            (Config(keysPerHalf: 4, knn: 17, path: .sparse), 8, "knn (17) exceeds"),
            (Config(keysPerHalf: 4, knn: 2, activation: .softmaxPerHead, path: .dense), 8, "softmax-per-head"),
            // auto with softmax-per-head resolves to sparse, so knn must fit the values.
            (Config(keysPerHalf: 4, knn: 17, activation: .softmaxPerHead), 8, "knn (17) exceeds"),
        ]
        for (config, width, mentions) in cases {
            do {
                try config.validate(modelWidth: width)
                Issue.record("\(config) with width \(width) was accepted")
            } catch {
                let text = "\(error)"
                #expect(error is FeedForwardConfigError)
                #expect(!text.contains("\n") && text.contains(mentions), "\(text)")
            }
        }
        // knn beyond the value count is rejected on the dense path too (issue: bad input).
        #expect(throws: FeedForwardConfigError.self) { try Config(keysPerHalf: 4, knn: 128).validate(modelWidth: 8) }
        // Fine: dense path with n_keys <= knn <= n_keys^2 (knn only picks the path there).
        #expect(throws: Never.self) { try Config(keysPerHalf: 4, knn: 16).validate(modelWidth: 8) }
    }

    /// The paper's PKM sizes (4 heads, knn 128, n_keys 46/62 at d 412 and 512, 64/89 at 1024)
    /// all take the dense path; the XLM preset is sparse.
    @Test func paperConfigsTakeTheDensePath() throws {
        for (n, d) in [(46, 412), (62, 412), (46, 512), (62, 512), (64, 1024), (89, 1024)] {
            for config in [Config(keysPerHalf: n), Config.improved(keysPerHalf: n)] {
                try config.validate(modelWidth: d)
                #expect(config.usesDensePath)
            }
        }
        #expect(Config.improved(keysPerHalf: 62).activation == .relu)
        #expect(Config.improved(keysPerHalf: 62).valueInit == .dense)
        #expect(!Config.xlm(keysPerHalf: 64).usesDensePath)
        #expect(!Config(keysPerHalf: 200, knn: 128).usesDensePath)
    }

    @Test func configCodesSnakeCaseWithDefaults() throws {
        let full = #"{"heads": 2, "n_keys": 16, "knn": 8, "activation": "softmax-per-head", "query": "mlp-bn", "value_init": "dense", "path": "sparse"}"#
        let decoded = try JSONDecoder().decode(Config.self, from: Data(full.utf8))
        #expect(decoded == Config(keysPerHalf: 16, heads: 2, knn: 8, activation: .softmaxPerHead, query: .mlpBatchNorm, valueInit: .dense, path: .sparse))
        let minimal = try JSONDecoder().decode(Config.self, from: Data(#"{"n_keys": 46}"#.utf8))
        #expect(minimal == Config(keysPerHalf: 46, heads: 4, knn: 128, activation: .softmax, query: .identity, valueInit: .default, path: .auto))
        let again = try JSONDecoder().decode(Config.self, from: JSONEncoder().encode(decoded))
        #expect(again == decoded)
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(Config.self, from: Data(#"{"n_keys": 4, "activation": "gelu"}"#.utf8)) }
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(Config.self, from: Data(#"{"knn": 4}"#.utf8)) }
    }
}
