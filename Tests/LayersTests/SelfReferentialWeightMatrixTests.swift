import Foundation
import Testing
import Layers
import Tensor
import TestSupport

/// The SRWM against a per-step Double implementation of its equations (four separate
/// matrices per head, each updated from the old matrices), by finite differences through
/// time, and for thread-count independence and allocation-free passes.
@Suite(.serialized) struct SelfReferentialWeightMatrixTests {
    /// A layer with its official init, except initial_q widened to std 1/sqrt(d) so that
    /// queries differ from keys and every path carries gradient. `training` plans and runs
    /// training passes (every step's state kept) or evaluation passes.
    static func make(
        heads: Int = 2, headSize: Int = 5, training: Bool = true, batch: Int = 2, length: Int = 7
    ) -> SequenceLayerHarness {
        let scope = ParameterScope()
        let layer = SelfReferentialWeightMatrix(scope.child("srwm"), heads: heads, headSize: headSize)
        let arena = ParameterArena(layout: scope.layout)
        var initialization = InitializationContext(seed: 31, layerCount: 1)
        layer.initialize(arena, &initialization)
        Initializer.normal(
            arena.value(layer.initialQ), count: layer.initialQ.count, std: 1 / Double(headSize).squareRoot(),
            rng: &initialization.rng)
        let shape = TokenShape(batch: batch, length: length)
        return SequenceLayerHarness(
            batch: batch, length: length, inputWidth: layer.width, outputWidth: layer.width, arena: arena,
            reserve: {
                BufferPlan.reserve {
                    layer.declareBuffers(for: PassShape(tokens: shape, training: training, dropout: false), in: &$0)
                }
            },
            forward: { x, y in layer.forward(x, shape: shape, output: y, training: training, arena: arena) },
            backward: { x, dy, dx in layer.backward(x, dOutput: dy, shape: shape, dInput: dx, arena: arena) },
            reference: { naive($0, layer: layer, arena: arena, batch: batch, length: length) })
    }

    /// The definition in Double: per sequence and head, W_y, W_q, W_k [d, d] and W_b [d, 4]
    /// from the initial tensors; all reads use the old matrices, the output is read first.
    static func naive(
        _ x: [Float], layer: SelfReferentialWeightMatrix, arena: ParameterArena, batch: Int, length: Int
    ) -> [Double] {
        let h = layer.heads, d = layer.headSize, width = layer.width, w = ReferenceParameters(arena: arena)
        var out = [Double](repeating: 0, count: batch * length * width)
        func matrix(_ view: ParameterView, head: Int, columns: Int) -> [[Double]] {
            (0..<d).map { e in (0..<columns).map { w(view, (head * d + e) * columns + $0) } }
        }
        func read(_ a: [Double], _ m: [[Double]]) -> [Double] {
            (0..<m[0].count).map { column in (0..<d).reduce(0) { $0 + a[$1] * m[$1][column] } }
        }
        for item in 0..<batch {
            for head in 0..<h {
                var fast = [
                    matrix(layer.initialY, head: head, columns: d), matrix(layer.initialQ, head: head, columns: d),
                    matrix(layer.initialK, head: head, columns: d), matrix(layer.initialBeta, head: head, columns: 4),
                ]
                for t in 0..<length {
                    let row = (item * length + t) * width + head * d
                    let xt = (0..<d).map { Double(x[row + $0]) }
                    let y = read(xt, fast[0])
                    for m in 0..<d { out[row + m] = y[m] }
                    let q = referenceSoftmax(read(xt, fast[1])), k = referenceSoftmax(read(xt, fast[2]))
                    let beta = read(xt, fast[3]).map(referenceSigmoid)
                    let old = fast
                    for which in 0..<4 {
                        let new = read(q, old[which]), stored = read(k, old[which])
                        for e in 0..<d {
                            for m in 0..<new.count { fast[which][e][m] += k[e] * beta[which] * (new[m] - stored[m]) }
                        }
                    }
                }
            }
        }
        return out
    }

    /// Training passes (every state stored) and evaluation passes (one state per head, updated
    /// in place, planned on their own) give the definition's outputs.
    @Test(arguments: [(2, 4), (3, 5), (1, 16)]) func forwardMatchesDefinition(heads: Int, headSize: Int) {
        for training in [true, false] {
            Self.make(heads: heads, headSize: headSize, training: training).expectForwardMatchesReference(seed: 32)
        }
    }

    @Test func gradientsMatchFiniteDifferences() {
        Self.make().expectGradientsMatchFiniteDifferences(seed: 33)
    }

    @Test func resultsDoNotDependOnThreadCount() {
        SequenceLayerHarness.expectIndependentOfThreadCount { Self.make(heads: 3, headSize: 5) }
    }

    @Test func passAllocatesNothingOnceReserved() {
        SequenceLayerHarness.expectPassAllocatesNothing { Self.make() }
    }

    @Test func initialisationFollowsTheOfficialDistributions() {
        let scope = ParameterScope()
        let layer = SelfReferentialWeightMatrix(scope.child("srwm"), heads: 4, headSize: 32)
        let arena = ParameterArena(layout: scope.layout)
        var initialization = InitializationContext(seed: 34, layerCount: 1)
        layer.initialize(arena, &initialization)
        let std = 1 / Double(32).squareRoot()
        for (view, mean, expectedStd) in [
            (layer.initialY, 0.0, std), (layer.initialQ, 0.0, 0.01 * std), (layer.initialK, 0.0, std),
            (layer.initialBeta, -1.0, std),
        ] {
            let p = arena.value(view)
            let m = (0..<view.count).reduce(0.0) { $0 + Double(p[$1]) } / Double(view.count)
            let s = Initializer.standardDeviation(p, count: view.count)
            #expect(abs(m - mean) < 4 * expectedStd / Double(view.count).squareRoot(), "\(view.name) mean \(m)")
            #expect(abs(s / expectedStd - 1) < 0.1, "\(view.name) std \(s)")
        }
        #expect(layer.initialBeta.shape == [4, 32, 4])
        #expect(scope.layout.views.map(\.name) == [
            "srwm.initial_y", "srwm.initial_q", "srwm.initial_k", "srwm.initial_beta",
        ])
    }
}
