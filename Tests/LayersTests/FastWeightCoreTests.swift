import Foundation
import Testing
import Layers
import Tensor
import TestSupport

/// The fast-weight cores (linear Transformer, DeltaNet, Recurrent DeltaNet): against a plain
/// per-step Double implementation of their equations, by finite differences of every input and
/// parameter, for thread-count independence, and for allocation-free passes.
@Suite(.serialized) struct FastWeightCoreTests {
    enum Kind: String, CaseIterable, Sendable, CustomStringConvertible {
        case linear, delta, recurrent
        var description: String { rawValue }
    }

    /// Length 10: backward rebuilds chunks of 4, 4 and 2 steps (C = ceil(sqrt(10))).
    static let batch = 2, length = 10, heads = 2
    /// Head sizes: 4 runs the kernels' scalar loops only; 12 one 8-lane block and a tail; 16
    /// the SIMD16 kernels (FastWeightKernels16).
    static let headSizes = [4, 12, 16]
    static let cases = Kind.allCases.flatMap { kind in headSizes.map { (kind, $0) } }

    struct Fixture {
        let core: any FastWeightCore
        let arena: ParameterArena
        let layout: ParameterLayout
        let p: [Float]
        let upstream: [Float]
        var shape: TokenShape { TokenShape(batch: FastWeightCoreTests.batch, length: FastWeightCoreTests.length) }
        var outputCount: Int { shape.rows * core.heads * core.headSize }

        init(_ kind: Kind, headSize: Int = 4) {
            let scope = ParameterScope()
            let child = scope.child("core")
            let (h, d) = (FastWeightCoreTests.heads, headSize)
            core = switch kind {
            case .linear: LinearTransformerCore(child, heads: h, headSize: d)
            case .delta: DeltaNetCore(child, heads: h, headSize: d)
            case .recurrent: RecurrentDeltaNetCore(child, heads: h, headSize: d)
            }
            layout = scope.layout
            arena = ParameterArena(layout: layout)
            var initialization = InitializationContext(seed: 31, layerCount: 2)
            core.initialize(arena, &initialization)
            let tokens = TokenShape(batch: FastWeightCoreTests.batch, length: FastWeightCoreTests.length)
            let core = self.core
            BufferPlan.reserve { plan in
                core.declareBuffers(for: PassShape(tokens: tokens, training: true, dropout: false), in: &plan)
                core.declareBuffers(for: PassShape(tokens: tokens, training: false, dropout: false), in: &plan)
            }
            // Inputs at least 0.05 from ELU's kink at 0, so finite differences stay on one side.
            p = randomArray(tokens.rows * h * core.projectionWidth, seed: 32).map {
                $0 < 0 ? $0 - 0.05 : $0 + 0.05
            }
            upstream = randomArray(tokens.rows * h * d, seed: 33)
        }

        func forward(training: Bool) -> [Float] {
            var y = [Float](repeating: .nan, count: outputCount)
            core.forward(p, shape: shape, output: &y, arena: arena, training: training)
            return y
        }

        /// dp after zeroing the parameter gradients and one training forward and backward.
        func gradients() -> [Float] {
            arena.zeroGradients()
            _ = forward(training: true)
            var dp = [Float](repeating: .nan, count: p.count)
            core.backward(dOutput: upstream, shape: shape, dProjection: &dp, arena: arena)
            return dp
        }
    }

    /// The equations, per sequence, head and step, in Double with explicit loops, on the
    /// fixture's projections or on `input`.
    static func reference(_ kind: Kind, _ fixture: Fixture, input: [Float]? = nil) -> [Double] {
        let (d, h, t) = (fixture.core.headSize, heads, length), width = fixture.core.projectionWidth
        let p = input ?? fixture.p
        func parameter(_ name: String) -> [Double] {
            guard let view = fixture.layout.view(named: "core.\(name)") else { return [] }
            return (0..<view.count).map { Double(fixture.arena.value(view)[$0]) }
        }
        let rq = parameter("recurrent_query"), rk = parameter("recurrent_key")
        let rv = parameter("recurrent_value"), rb = parameter("recurrent_beta")
        func phi(_ x: [Double]) -> [Double] { x.map { $0 > 0 ? $0 + 1 : Foundation.exp($0) } }
        func normalised(_ x: [Double]) -> [Double] {
            let total = x.reduce(0, +)
            return x.map { $0 / total }
        }
        func softmax(_ x: [Double]) -> [Double] {
            let top = x.max()!
            return normalised(x.map { Foundation.exp($0 - top) })
        }
        func sigmoid(_ x: Double) -> Double { 1 / (1 + Foundation.exp(-x)) }
        var y = [Double](repeating: 0, count: batch * t * h * d)
        for b in 0..<batch {
            for head in 0..<h {
                var w = [[Double]](repeating: [Double](repeating: 0, count: d), count: d)
                var previous = [Double](repeating: 0, count: d)
                for step in 0..<t {
                    let token = (b * t + step) * h + head
                    let x = (0..<width).map { Double(p[token * width + $0]) }
                    var q = Array(x[0..<d]), k = Array(x[d..<(2 * d)]), v = Array(x[(2 * d)..<(3 * d)])
                    var beta = 1.0
                    switch kind {
                    case .linear:
                        (q, k) = (phi(q), phi(k))
                    case .delta:
                        (q, k, beta) = (normalised(phi(q)), normalised(phi(k)), sigmoid(x[3 * d]))
                    case .recurrent:
                        let s = previous.map { Foundation.tanh($0) }
                        var bx = x[3 * d]
                        for e in 0..<d {
                            for m in 0..<d {
                                let at = (head * d + e) * d + m
                                q[m] += s[e] * rq[at]
                                k[m] += s[e] * rk[at]
                                v[m] += s[e] * rv[at]
                            }
                            bx += rb[head * d + e] * s[e]
                        }
                        (q, k, beta) = (softmax(q), softmax(k), sigmoid(bx))
                    }
                    // Linear Transformer: W += k ⊗ v; delta rule: W += k ⊗ beta (v - k W_old).
                    var u = v
                    if kind != .linear {
                        for m in 0..<d {
                            let vbar = (0..<d).reduce(0.0) { $0 + k[$1] * w[$1][m] }
                            u[m] = beta * (v[m] - vbar)
                        }
                    }
                    for e in 0..<d {
                        for m in 0..<d { w[e][m] += k[e] * u[m] }
                    }
                    for m in 0..<d {
                        previous[m] = (0..<d).reduce(0.0) { $0 + q[$1] * w[$1][m] }
                        y[token * d + m] = previous[m]
                    }
                }
            }
        }
        return y
    }

    @Test(arguments: cases) func forwardMatchesPerStepDefinition(kind: Kind, headSize: Int) {
        let fixture = Fixture(kind, headSize: headSize)
        let reference = Self.reference(kind, fixture)
        for training in [true, false] {
            let y = fixture.forward(training: training)
            var worst = 0.0
            for i in 0..<y.count {
                let error = abs(Double(y[i]) - reference[i])
                worst = max(worst, error / max(1, abs(reference[i])))
            }
            #expect(worst < 1e-5, "\(kind) training \(training): max error \(worst)")
        }
        // The running-W evaluation pass computes exactly what the stored-W training pass does.
        #expect(fixture.forward(training: true) == fixture.forward(training: false))
    }

    /// The backward pass against central differences of the Double definition (whose forward
    /// pass the Float one matches, above): differences of the Float forward pass were swamped
    /// by its rounding for the linear Transformer at d = 16, whose unnormalised outputs grow
    /// with the length and the head size. In Double, a small step and tight tolerances apply.
    @Test(arguments: cases) func gradientsMatchFiniteDifferences(kind: Kind, headSize: Int) {
        let fixture = Fixture(kind, headSize: headSize)
        let dp = fixture.gradients()
        let upstream = fixture.upstream
        var p = fixture.p
        p.withUnsafeMutableBufferPointer { pp in
            dp.withUnsafeBufferPointer { dpp in
                let tensors = fixture.layout.views.map {
                    CheckedTensor($0.name, values: fixture.arena.value($0), gradient: fixture.arena.gradient($0), count: $0.count)
                } + [CheckedTensor("p", values: pp.baseAddress!, gradient: dpp.baseAddress!, count: pp.count)]
                // Every coordinate is checked.
                let mismatches = checkGradients(
                    tensors, samples: 1_000_000, step: 1e-3, relativeTolerance: 1e-3, absoluteTolerance: 1e-5
                ) {
                    let y = Self.reference(kind, fixture, input: Array(pp))
                    return zip(y, upstream).reduce(0) { $0 + $1.0 * Double($1.1) }
                }
                #expect(mismatches.isEmpty, "\(kind): \(mismatches)")
            }
        }
    }

    @Test(arguments: cases) func gradientsDoNotDependOnTheThreadCount(kind: Kind, headSize: Int) {
        defer { Threads.configure(1) }
        var results: [[Float]] = []
        for threads in [1, 2] {
            Threads.configure(threads)
            let fixture = Fixture(kind, headSize: headSize)
            let y = fixture.forward(training: true)
            let dp = fixture.gradients()
            results.append(y + dp + Array(UnsafeBufferPointer(start: fixture.arena.gradients, count: fixture.arena.count)))
        }
        #expect(results[0] == results[1])
    }

    @Test(arguments: Kind.allCases) func passesAllocateNothingAfterThePlan(kind: Kind) {
        let fixture = Fixture(kind)
        var y = [Float](repeating: 0, count: fixture.outputCount)
        var dp = [Float](repeating: 0, count: fixture.p.count)
        let before = BufferStatistics.allocations
        fixture.core.forward(fixture.p, shape: fixture.shape, output: &y, arena: fixture.arena, training: true)
        fixture.core.backward(dOutput: fixture.upstream, shape: fixture.shape, dProjection: &dp, arena: fixture.arena)
        fixture.core.forward(fixture.p, shape: fixture.shape, output: &y, arena: fixture.arena, training: false)
        #expect(BufferStatistics.allocations == before)
    }

    @Test func recurrentMapsAreRegisteredAndDrawnAsOfficial() {
        let scope = ParameterScope()
        let core = RecurrentDeltaNetCore(scope.child("rdn"), heads: 3, headSize: 16)
        #expect(scope.layout.views.map(\.name) == [
            "rdn.recurrent_query", "rdn.recurrent_key", "rdn.recurrent_value", "rdn.recurrent_beta",
        ])
        #expect(core.recurrentQuery.shape == [3, 16, 16] && core.recurrentBeta.shape == [3, 16])
        #expect(core.projectionWidth == 49)
        #expect(LinearTransformerCore(ParameterScope(), heads: 3, headSize: 16).projectionWidth == 48)
        let arena = ParameterArena(layout: scope.layout)
        var initialization = InitializationContext(seed: 3, layerCount: 1)
        core.initialize(arena, &initialization)
        for view in scope.layout.views {
            let std = Initializer.standardDeviation(arena.value(view), count: view.count)
            // N(0, 1/16): the sample std of 256 (or 48) draws is within about 20% of 0.25.
            #expect(abs(std - 0.25) < 0.06, "\(view.name): \(std)")
        }
    }
}
