import Foundation
import Layers
import Tensor
import Testing
import TestSupport

/// σ-MoE, its softmax ablations, Switch and S-BASE: the sparse kernels against a naive
/// dense-masked reference, finite differences for every variant, hand-computed auxiliary
/// losses, and initialisation statistics.
@Suite(.serialized) struct MixtureOfExpertsTests {
    static let d = 6, experts = 5, expertSize = 4
    static let shape = TokenShape(batch: 2, length: 3)

    /// Builds a block of `config` under the scope "moe" at width `width`.
    static func block(_ config: some FeedForwardVariant, width: Int = d, _ scope: ParameterScope) -> MixtureOfExperts {
        config.makeLayer(scope.child("moe"), modelWidth: width, dropout: 0) as! MixtureOfExperts
    }

    static func make(_ build: (ParameterScope) -> MixtureOfExperts, seed: UInt64 = 1) -> (MixtureOfExperts, ParameterArena, ParameterLayout) {
        let scope = ParameterScope()
        let layer = build(scope)
        let layout = scope.layout
        let arena = ParameterArena(layout: layout)
        reserveBuffers(layer, shape)
        var rng = RandomGenerator(seed: seed)
        // Larger weights than the init so gates and regulariser gradients are not tiny.
        Initializer.normal(arena.values, count: arena.count, std: 0.6, rng: &rng)
        return (layer, arena, layout)
    }

    static func sigma(_ selection: MixtureOfExperts.Selection, k: Int = 2, dropout: Float = 0, gamma: Double = 0.1) -> @Sendable (ParameterScope) -> MixtureOfExperts {
        { block(MixtureOfExperts.SigmaConfig(experts: experts, expertSize: expertSize, k: k, expertDropout: dropout, regularization: gamma, selection: selection), $0) }
    }

    /// The whole layer written densely: every expert computed, masked by the routing.
    /// Returns y, the auxiliary loss and the gradients of sum(y * upstream) + aux.
    struct Reference {
        var y: [Double], aux: Double, dx: [Double], dW1: [Double], dW2: [Double], dW3: [Double]
    }

    static func naiveSigmoid(x: [Float], arena: ParameterArena, layer: MixtureOfExperts, upstream: [Float], k: Int, gamma: Double) -> Reference {
        let (r, d, n, g) = (shape.rows, Self.d, experts, expertSize)
        let w1 = arena.value(layer.keys), w2 = arena.value(layer.values), w3 = arena.value(layer.selector)
        var ref = Reference(y: .init(repeating: 0, count: r * d), aux: 0, dx: .init(repeating: 0, count: r * d),
                            dW1: .init(repeating: 0, count: n * d * g), dW2: .init(repeating: 0, count: n * g * d), dW3: .init(repeating: 0, count: n * d))
        var z = [Double](repeating: 0, count: r * n)
        for row in 0..<r { for e in 0..<n { for c in 0..<d { z[row * n + e] += Double(w3[e * d + c]) * Double(x[row * d + c]) } } }
        var dz = [Double](repeating: 0, count: r * n)
        for row in 0..<r {
            let s = (0..<n).map { 1 / (1 + exp(-z[row * n + $0])) }
            let order = (0..<n).sorted { s[$0] != s[$1] ? s[$0] > s[$1] : $0 < $1 }
            let chosen = Set(order.prefix(k))
            for e in 0..<n where chosen.contains(e) {
                var h = [Double](repeating: 0, count: g)
                for c in 0..<g { for i in 0..<d { h[c] += Double(x[row * d + i]) * Double(w1[e * d * g + i * g + c]) } }
                let a = h.map { max($0, 0) }
                // y += s * a W2_e; W2_e up.
                var w2up = [Double](repeating: 0, count: g)
                for c in 0..<g {
                    for j in 0..<d {
                        ref.y[row * d + j] += s[e] * a[c] * Double(w2[e * g * d + c * d + j])
                        w2up[c] += Double(w2[e * g * d + c * d + j]) * Double(upstream[row * d + j])
                        ref.dW2[e * g * d + c * d + j] += s[e] * a[c] * Double(upstream[row * d + j])
                    }
                }
                let dGate = (0..<g).reduce(0.0) { $0 + a[$1] * w2up[$1] }
                dz[row * n + e] += dGate * s[e] * (1 - s[e])
                for c in 0..<g where h[c] > 0 {
                    let dh = s[e] * w2up[c]
                    for i in 0..<d {
                        ref.dW1[e * d * g + i * g + c] += Double(x[row * d + i]) * dh
                        ref.dx[row * d + i] += Double(w1[e * d * g + i * g + c]) * dh
                    }
                }
            }
        }
        // Entropy regulariser on the raw logits over all rows.
        var logP = [Double](repeating: 0, count: r * n)
        for row in 0..<r {
            let m = (0..<n).map { z[row * n + $0] }.max()!
            let lse = m + log((0..<n).reduce(0.0) { $0 + exp(z[row * n + $1] - m) })
            for e in 0..<n { logP[row * n + e] = z[row * n + e] - lse }
        }
        var logMean = [Double](repeating: 0, count: n)
        for e in 0..<n {
            let column = (0..<r).map { logP[$0 * n + e] }
            let m = column.max()!
            logMean[e] = m + log(column.reduce(0.0) { $0 + exp($1 - m) }) - log(Double(r))
            ref.aux += gamma * exp(logMean[e]) * logMean[e]
        }
        // d aux / d logP_re = gamma (logMean_e + 1) exp(logP_re) / R; then through log_softmax.
        for row in 0..<r {
            let gradLog = (0..<n).map { gamma * (logMean[$0] + 1) * exp(logP[row * n + $0]) / Double(r) }
            let total = gradLog.reduce(0, +)
            for j in 0..<n { dz[row * n + j] += gradLog[j] - exp(logP[row * n + j]) * total }
        }
        for row in 0..<r {
            for e in 0..<n {
                for c in 0..<d {
                    ref.dW3[e * d + c] += dz[row * n + e] * Double(x[row * d + c])
                    ref.dx[row * d + c] += dz[row * n + e] * Double(w3[e * d + c])
                }
            }
        }
        return ref
    }

    @Test func sparseSigmaMoEMatchesDenseMaskedReference() {
        let (layer, arena, _) = Self.make(Self.sigma(.sigmoid, k: 2, gamma: 0.1))
        let x = randomArray(Self.shape.rows * Self.d, seed: 2)
        let upstream = randomArray(Self.shape.rows * Self.d, seed: 3)
        var y = [Float](repeating: 0, count: x.count), dx = [Float](repeating: 0, count: x.count)
        var context = ForwardContext(training: true, rng: RandomGenerator(seed: 4))
        layer.forward(x, shape: Self.shape, output: &y, arena: arena, context: &context)
        layer.backward(x, dOutput: upstream, shape: Self.shape, dInput: &dx, arena: arena)
        let ref = Self.naiveSigmoid(x: x, arena: arena, layer: layer, upstream: upstream, k: 2, gamma: 0.1)
        func close(_ a: UnsafePointer<Float>, _ b: [Double], _ name: String) {
            for i in 0..<b.count { #expect(abs(Double(a[i]) - b[i]) < 1e-4 + 1e-4 * abs(b[i]), "\(name)[\(i)]: \(a[i]) vs \(b[i])") }
        }
        close(y, ref.y, "y")
        #expect(abs(layer.auxiliaryLoss - ref.aux) < 1e-6)
        close(dx, ref.dx, "dx")
        close(arena.gradient(layer.keys), ref.dW1, "dW1")
        close(arena.gradient(layer.values), ref.dW2, "dW2")
        close(arena.gradient(layer.selector), ref.dW3, "dW3")
        #expect(layer.usage?.total == Self.shape.rows * 2)
    }

    /// Every gate of the sparse kernel: the three σ-MoE selections, Switch and S-BASE.
    static let variants: [String: @Sendable (ParameterScope) -> MixtureOfExperts] = [
        "sigmoid": sigma(.sigmoid, k: 2, dropout: 0.3),
        "softmax-before": sigma(.softmaxBeforeTopK, k: 2, dropout: 0.3),
        "softmax-after": sigma(.softmaxAfterTopK, k: 3, dropout: 0.3),
        "switch": { block(MixtureOfExperts.SwitchConfig(experts: experts, expertSize: expertSize, balance: 0.5, initScale: 0.1), $0) },
        "sbase": { block(MixtureOfExperts.SBaseConfig(experts: experts, expertSize: expertSize, k: 2, expertDropout: 0.2, regularization: 0.1), $0) },
    ]

    /// Every variant in training (expert dropout with a fixed mask, regulariser included).
    static let variantNames = ["sigmoid", "softmax-before", "softmax-after", "switch", "sbase"]

    @Test(arguments: variantNames)
    func gradientsMatchFiniteDifferences(name: String) {
        let build = Self.variants[name]!
        let (layer, arena, layout) = Self.make(build, seed: UInt64(10 + Self.variantNames.firstIndex(of: name)!))
        var x = randomArray(Self.shape.rows * Self.d, seed: 20)
        let upstream = randomArray(Self.shape.rows * Self.d, seed: 21)
        var y = [Float](repeating: 0, count: x.count), dx = [Float](repeating: 0, count: x.count)
        func run(_ input: UnsafePointer<Float>) -> Double {
            var context = ForwardContext(training: true, rng: RandomGenerator(seed: 99))
            layer.forward(input, shape: Self.shape, output: &y, arena: arena, context: &context)
            return weightedSum(y, upstream, count: y.count) + layer.auxiliaryLoss
        }
        _ = run(x)
        #expect(layer.auxiliaryLoss != 0, "\(name): the auxiliary loss must be active")
        layer.backward(x, dOutput: upstream, shape: Self.shape, dInput: &dx, arena: arena)
        let dxCopy = dx
        x.withUnsafeMutableBufferPointer { xp in
            dxCopy.withUnsafeBufferPointer { dxp in
                let tensors = layout.views.map { CheckedTensor($0.name, values: arena.value($0), gradient: arena.gradient($0), count: $0.count) }
                    + [CheckedTensor("x", values: xp.baseAddress!, gradient: dxp.baseAddress!, count: xp.count)]
                let mismatches = checkGradients(tensors, samples: 20, step: 1e-3) { run(xp.baseAddress!) }
                #expect(mismatches.isEmpty, "\(name): \(mismatches)")
            }
        }
    }

    /// The regulariser and the balancing loss on cases computed by hand.
    @Test func auxiliaryLossesOnHandComputedCases() {
        // d = N = 2 and W3 = I, so z = x.
        func layer(_ build: (ParameterScope) -> MixtureOfExperts) -> (MixtureOfExperts, ParameterArena) {
            let scope = ParameterScope()
            let l = build(scope)
            let arena = ParameterArena(layout: scope.layout)
            reserveBuffers(l, TokenShape(batch: 1, length: 2))
            let w3 = arena.value(l.selector)
            (w3[0], w3[1], w3[2], w3[3]) = (1, 0, 0, 1)
            return (l, arena)
        }
        let shape = TokenShape(batch: 1, length: 2)
        var y = [Float](repeating: 0, count: 4)
        let (entropy, arenaE) = layer { Self.block(MixtureOfExperts.SigmaConfig(experts: 2, expertSize: 1, k: 1, regularization: 1), width: 2, $0) }
        // softmax rows [0.5, 0.5] and [0.75, 0.25]: pbar = [0.625, 0.375].
        var context = ForwardContext(training: true, rng: RandomGenerator(seed: 0))
        entropy.forward([0, 0, Float(log(3.0)), 0], shape: shape, output: &y, arena: arenaE, context: &context)
        let expected = 0.625 * log(0.625) + 0.375 * log(0.375)
        #expect(abs(entropy.auxiliaryLoss - expected) < 1e-6, "\(entropy.auxiliaryLoss) vs \(expected)")
        // Evaluation adds nothing.
        var evaluation = ForwardContext(training: false, rng: RandomGenerator(seed: 0))
        entropy.forward([0, 0, Float(log(3.0)), 0], shape: shape, output: &y, arena: arenaE, context: &evaluation)
        #expect(entropy.auxiliaryLoss == 0)

        let (balance, arenaS) = layer { Self.block(MixtureOfExperts.SwitchConfig(experts: 2, expertSize: 1, balance: 1), width: 2, $0) }
        // Rows routed to experts 0 and 1: f = [0.5, 0.5], P = [0.5, 0.5]: (1/2)(0.25 + 0.25).
        balance.forward([Float(log(3.0)), 0, 0, Float(log(3.0))], shape: shape, output: &y, arena: arenaS, context: &context)
        #expect(abs(balance.auxiliaryLoss - 0.25) < 1e-6)
        // Both rows to expert 0: f = [1, 0], P_0 = 0.75: (1/2)(0.75).
        balance.forward([Float(log(3.0)), 0, Float(log(3.0)), 0], shape: shape, output: &y, arena: arenaS, context: &context)
        #expect(abs(balance.auxiliaryLoss - 0.375) < 1e-6)
        #expect(balance.usage?.counts == [3, 1])
    }

    /// Softmax after top-K: gates sum to one over the chosen experts.
    @Test func softmaxAfterGatesAreNormalisedOverTheChosen() {
        let (layer, arena, _) = Self.make(Self.sigma(.softmaxAfterTopK, k: 2))
        // With W2 = identity-like and ReLU hidden, check via a single expert... simpler: the
        // output is a convex combination, so scaling all W2 by 2 doubles y exactly.
        let x = randomArray(Self.shape.rows * Self.d, seed: 5)
        var y1 = [Float](repeating: 0, count: x.count), y2 = y1
        var context = ForwardContext(training: false, rng: RandomGenerator(seed: 0))
        layer.forward(x, shape: Self.shape, output: &y1, arena: arena, context: &context)
        scale(arena.value(layer.values), by: 2, count: layer.values.count)
        layer.forward(x, shape: Self.shape, output: &y2, arena: arena, context: &context)
        for i in 0..<y1.count { #expect(abs(y2[i] - 2 * y1[i]) < 1e-5) }
    }

    @Test func sinkhornFollowsTheOfficialIteration() {
        let (t, n) = (4, 3)
        let z = randomArray(t * n, std: 1.5, seed: 6)
        // The formula in Double.
        var a = [Double](repeating: 0, count: n), b = [Double](repeating: 0, count: t)
        func lse(_ v: [Double]) -> Double { let m = v.max()!; return m + log(v.reduce(0) { $0 + exp($1 - m) }) }
        for _ in 0..<3 {
            for i in 0..<t { b[i] = log(Double(t)) - lse((0..<n).map { Double(z[i * n + $0]) - a[$0] }) }
            for e in 0..<n { a[e] = log(Double(n)) - lse((0..<t).map { Double(z[$0 * n + e]) - b[$0] }) }
        }
        // Through the layer: an S-BASE layer in training with W3 = I picks the top-K of r.
        let scope = ParameterScope()
        let layer = Self.block(MixtureOfExperts.SBaseConfig(experts: n, expertSize: 1, k: 1), width: n, scope)
        let arena = ParameterArena(layout: scope.layout)
        reserveBuffers(layer, TokenShape(batch: 1, length: t))
        for e in 0..<n { arena.value(layer.selector)[e * n + e] = 1 }
        var y = [Float](repeating: 0, count: t * n)
        var context = ForwardContext(training: true, rng: RandomGenerator(seed: 0))
        layer.forward(z, shape: TokenShape(batch: 1, length: t), output: &y, arena: arena, context: &context)
        var expectedCounts = [Int](repeating: 0, count: n)
        for i in 0..<t {
            let r = (0..<n).map { exp(Double(z[i * n + $0]) + a[$0] + b[i]) }
            expectedCounts[r.indices.max { r[$0] < r[$1] }!] += 1
        }
        #expect(layer.usage?.counts == expectedCounts)
        // At evaluation S-BASE takes the plain top-K of z.
        layer.resetUsage()
        var evaluation = ForwardContext(training: false, rng: RandomGenerator(seed: 0))
        layer.forward(z, shape: TokenShape(batch: 1, length: t), output: &y, arena: arena, context: &evaluation)
        var plainCounts = [Int](repeating: 0, count: n)
        for i in 0..<t { plainCounts[(0..<n).max { z[i * n + $0] < z[i * n + $1] }!] += 1 }
        #expect(layer.usage?.counts == plainCounts)
    }

    /// The initialisation: std within 5% of the formula on a large layer, equal-norm selector rows.
    @Test func initialisationStatistics() {
        let (d, n, g, layers) = (512, 16, 128, 4)
        let scope = ParameterScope()
        let moe = Self.block(MixtureOfExperts.SigmaConfig(experts: n, expertSize: g, k: 4), width: d, scope.child("m"))
        let sw = Self.block(MixtureOfExperts.SwitchConfig(experts: n, expertSize: g), width: d, scope.child("s"))
        let arena = ParameterArena(layout: scope.layout)
        var initialization = InitializationContext(seed: 7, layerCount: layers)
        moe.initialize(arena, &initialization)
        sw.initialize(arena, &initialization)
        func std(_ v: ParameterView) -> Double { Initializer.standardDeviation(arena.value(v), count: v.count) }
        func within(_ actual: Double, _ formula: Double) -> Bool { abs(actual / formula - 1) < 0.05 }
        let base = 2.0 / Double(layers)
        #expect(within(std(moe.keys), (base / Double(d)).squareRoot()))
        #expect(within(std(moe.values), (base / Double(n * g)).squareRoot()))
        #expect(within(std(moe.selector), (base / Double(d)).squareRoot()))
        let norms = (0..<n).map { sumOfSquaresDouble(arena.value(moe.selector) + $0 * d, count: d).squareRoot() }
        #expect(norms.allSatisfy { abs($0 / norms[0] - 1) < 1e-5 }, "\(norms)")
        // Switch: variances x 0.1, W2 from G alone, selector rows not renormalised.
        #expect(within(std(sw.keys), (0.1 * base / Double(d)).squareRoot()))
        #expect(within(std(sw.values), (0.1 * base / Double(g)).squareRoot()))
        let switchNorms = (0..<n).map { sumOfSquaresDouble(arena.value(sw.selector) + $0 * d, count: d).squareRoot() }
        #expect(!switchNorms.allSatisfy { abs($0 / switchNorms[0] - 1) < 1e-5 })
    }
}
