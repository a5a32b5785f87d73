import Foundation
import Testing
import Layers
import Tensor
import TestSupport

/// Causal self-attention against the PyTorch definition in Double, by finite differences, for
/// causality, thread-count independence and allocation-free passes.
@Suite(.serialized) struct CausalSelfAttentionTests {
    /// A layer with PyTorch's init, then biases drawn away from 0 so they are exercised.
    static func make(width: Int = 8, heads: Int = 2, batch: Int = 2, length: Int = 7) -> SequenceLayerHarness {
        let scope = ParameterScope()
        let layer = CausalSelfAttention(scope.child("attention"), width: width, heads: heads)
        let arena = ParameterArena(layout: scope.layout)
        var initialization = InitializationContext(seed: 41, layerCount: 1)
        layer.initialize(arena, &initialization)
        for bias in [layer.inputBias, layer.outputBias] {
            Initializer.normal(arena.value(bias), count: bias.count, std: 0.3, rng: &initialization.rng)
        }
        return SequenceLayerHarness(
            layer, arena: arena, batch: batch, length: length, inputWidth: width, outputWidth: width,
            reference: { naive($0, layer: layer, arena: arena, batch: batch, length: length) })
    }

    static func naive(
        _ x: [Float], layer: CausalSelfAttention, arena: ParameterArena, batch: Int, length: Int
    ) -> [Double] {
        let dm = layer.width, d = layer.headSize, w = ReferenceParameters(arena: arena)
        var out = [Double](repeating: 0, count: batch * length * dm)
        for item in 0..<batch {
            // Rows of [q | k | v] for every position.
            let projected = (0..<length).map { t in
                (0..<(3 * dm)).map { r in
                    (0..<dm).reduce(w(layer.inputBias, r)) {
                        $0 + w(layer.inputWeight, r * dm + $1) * Double(x[(item * length + t) * dm + $1])
                    }
                }
            }
            for i in 0..<length {
                var merged = [Double](repeating: 0, count: dm)
                for head in 0..<layer.heads {
                    let scores = (0...i).map { j in
                        (0..<d).reduce(0.0) { $0 + projected[i][head * d + $1] * projected[j][dm + head * d + $1] }
                            / Double(d).squareRoot()
                    }
                    let p = referenceSoftmax(scores)
                    for j in 0...i {
                        for c in 0..<d { merged[head * d + c] += p[j] * projected[j][2 * dm + head * d + c] }
                    }
                }
                for r in 0..<dm {
                    out[(item * length + i) * dm + r] = (0..<dm).reduce(w(layer.outputBias, r)) {
                        $0 + w(layer.outputWeight, r * dm + $1) * merged[$1]
                    }
                }
            }
        }
        return out
    }

    @Test(arguments: [(8, 2), (32, 2)]) func forwardMatchesDefinition(width: Int, heads: Int) {
        Self.make(width: width, heads: heads).expectForwardMatchesReference(seed: 42)
    }

    @Test func laterPositionsDoNotChangeEarlierOutputs() {
        let harness = Self.make()
        let (t, width) = (harness.length, harness.inputWidth)
        var x = randomArray(harness.inputCount, seed: 43)
        let before = harness.output(x)
        for item in 0..<harness.batch {
            for c in 0..<width { x[(item * t + t - 1) * width + c] += 1 }
        }
        let after = harness.output(x)
        for item in 0..<harness.batch {
            let start = item * t * width, last = start + (t - 1) * width
            #expect(before[start..<last] == after[start..<last])
            #expect(before[last..<(last + width)] != after[last..<(last + width)])
        }
    }

    @Test func gradientsMatchFiniteDifferences() {
        Self.make().expectGradientsMatchFiniteDifferences(seed: 44)
    }

    /// The large case splits the projections' products between the threads.
    @Test(arguments: [(12, 3, 2, 7), (128, 4, 4, 16)])
    func resultsDoNotDependOnThreadCount(width: Int, heads: Int, batch: Int, length: Int) {
        SequenceLayerHarness.expectIndependentOfThreadCount {
            Self.make(width: width, heads: heads, batch: batch, length: length)
        }
    }

    @Test func passAllocatesNothingOnceReserved() {
        SequenceLayerHarness.expectPassAllocatesNothing { Self.make() }
    }

    @Test func initialisationFollowsPyTorch() {
        let scope = ParameterScope()
        let layer = CausalSelfAttention(scope.child("a"), width: 64, heads: 4)
        let arena = ParameterArena(layout: scope.layout)
        var initialization = InitializationContext(seed: 45, layerCount: 1)
        layer.initialize(arena, &initialization)
        for (view, bound) in [(layer.inputWeight, (6.0 / 256).squareRoot()), (layer.outputWeight, 1.0 / 8)] {
            let values = UnsafeBufferPointer(start: arena.value(view), count: view.count)
            #expect(values.allSatisfy { abs(Double($0)) <= bound }, "\(view.name)")
            #expect(abs(Double(values.max()!) - bound) < 0.02 * bound, "\(view.name)")
            let std = Initializer.standardDeviation(arena.value(view), count: view.count)
            #expect(abs(std / (bound / 3.0.squareRoot()) - 1) < 0.05, "\(view.name)")
        }
        for view in [layer.inputBias, layer.outputBias] {
            #expect(UnsafeBufferPointer(start: arena.value(view), count: view.count).allSatisfy { $0 == 0 })
        }
        #expect(scope.layout.views.map(\.name) == [
            "a.in_proj.weight", "a.in_proj.bias", "a.out_proj.weight", "a.out_proj.bias",
        ])
    }
}
