import Foundation
import Testing
import Layers
import Tensor
import TestSupport

/// Relative attention: against a naive O(T (T + M)) implementation of the formula,
/// and by finite differences, with memory present and H x D different from d.
@Suite(.serialized) struct RelativeAttentionTests {
    let d = 8, heads = 3
    let batch = 2
    var length = 4, memory = 3, headSize = 5

    /// The suite with another query and memory length and head size: 150 queries, with and
    /// without memory, give score rows longer than a SIMD block and most rows masked over part
    /// of their keys (and, without backward, two blocks of query rows). Where the panel kernel
    /// runs (`panelKernelRuns`), head sizes 16 and 64 take the per-head products through it
    /// (its 16- and 64-column tiles), 5 through OpenBLAS, and the scores go through it where
    /// the keys per stream are a multiple of 16 (160 and 48).
    func with(length: Int, memory: Int, headSize: Int) -> Self {
        var copy = self
        (copy.length, copy.memory, copy.headSize) = (length, memory, headSize)
        return copy
    }

    static let shapes = [(4, 3, 5), (150, 3, 5), (150, 0, 5), (150, 10, 16), (150, 3, 16), (40, 8, 64)]

    func makeLayer() -> (RelativeAttention, ParameterArena, ParameterLayout) {
        let scope = ParameterScope()
        let layer = RelativeAttention(
            scope.child("attention"), config: .init(heads: heads, headSize: headSize), width: d,
            scratch: AttentionScratch())
        let layout = scope.layout
        let arena = ParameterArena(layout: layout)
        var initialization = InitializationContext(seed: 21, layerCount: 2)
        layer.initialize(arena, &initialization)
        var rng = initialization.rng
        // Buffers for passes with the test's memory (which covers passes without).
        let pass = PassShape(tokens: TokenShape(batch: batch, length: length), memoryCapacity: memory, training: true, dropout: false)
        BufferPlan.reserve { layer.declareBuffers(for: pass, in: &$0) }
        BufferPlan.reserve { layer.declareBuffers(for: PassShape(tokens: pass.tokens, memoryCapacity: memory, training: false, dropout: false), in: &$0) }
        // u and v start at 0 and s at 1/sqrt(D); move them so every term is exercised.
        Initializer.normal(arena.value(layer.contentBias), count: heads * headSize, std: 0.5, rng: &rng)
        Initializer.normal(arena.value(layer.positionBias), count: heads * headSize, std: 0.5, rng: &rng)
        arena.value(layer.scoreScale)[0] = 0.7
        return (layer, arena, layout)
    }

    /// The definition, computed in Double with explicit loops.
    func naive(_ x: [Float], arena: ParameterArena, layer: RelativeAttention) -> [Double] {
        let s = memory + length, hd = heads * headSize
        func w(_ v: ParameterView, _ r: Int, _ c: Int) -> Double { Double(arena.value(v)[r * v.shape[1] + c]) }
        func project(_ v: ParameterView, row: [Double], outRow: Int) -> Double {
            (0..<d).reduce(0) { $0 + w(v, outRow, $1) * row[$1] }
        }
        var out = [Double](repeating: 0, count: batch * length * d)
        let scale = Double(arena.value(layer.scoreScale)[0])
        for b in 0..<batch {
            let rows = (0..<s).map { j in (0..<d).map { Double(x[(b * s + j) * d + $0]) } }
            var merged = [Double](repeating: 0, count: length * hd)
            for h in 0..<heads {
                for i in 0..<length {
                    let q = (0..<headSize).map { project(layer.query, row: rows[memory + i], outRow: h * headSize + $0) }
                    var scores = [Double](repeating: -.infinity, count: s)
                    for j in 0...(memory + i) {
                        let p = j - (memory + i)
                        // Interleaved sinusoid of width d at position p.
                        let r = (0..<d).map { c -> Double in
                            let frequency = Foundation.pow(10000.0, -Double(2 * (c / 2)) / Double(d))
                            return c % 2 == 0 ? Foundation.sin(Double(p) * frequency) : Foundation.cos(Double(p) * frequency)
                        }
                        var content = 0.0, position = 0.0
                        for e in 0..<headSize {
                            let k = project(layer.keyValue, row: rows[j], outRow: h * 2 * headSize + e)
                            let rk = project(layer.position, row: r, outRow: h * headSize + e)
                            let u = Double(arena.value(layer.contentBias)[h * headSize + e])
                            let v = Double(arena.value(layer.positionBias)[h * headSize + e])
                            content += (q[e] + u) * k
                            position += (q[e] + v) * rk
                        }
                        scores[j] = scale * (content + position)
                    }
                    let m = scores.max()!
                    let e = scores.map { Foundation.exp($0 - m) }
                    let total = e.reduce(0, +)
                    for j in 0..<s where e[j] > 0 {
                        for c in 0..<headSize {
                            let value = project(layer.keyValue, row: rows[j], outRow: h * 2 * headSize + headSize + c)
                            merged[i * hd + h * headSize + c] += e[j] / total * value
                        }
                    }
                }
            }
            for i in 0..<length {
                for c in 0..<d {
                    out[(b * length + i) * d + c] = (0..<hd).reduce(0) { $0 + w(layer.output, c, $1) * merged[i * hd + $1] }
                }
            }
        }
        return out
    }

    @Test(arguments: [1, 2], shapes) func forwardMatchesNaiveDefinition(threads: Int, shape: (Int, Int, Int)) {
        with(length: shape.0, memory: shape.1, headSize: shape.2).forwardMatchesNaiveDefinition(threads: threads)
    }

    func forwardMatchesNaiveDefinition(threads: Int) {
        Threads.configure(threads)
        defer { Threads.configure(1) }
        let (layer, arena, _) = makeLayer()
        let s = memory + length
        let x = randomArray(batch * s * d, seed: 22)
        var y = [Float](repeating: 0, count: batch * length * d)
        let reference = naive(x, arena: arena, layer: layer)
        // A training pass, then an evaluation pass (blocks of query rows, no backward state).
        for keepsForBackward in [true, false] {
            layer.forward(x, batch: batch, queryLength: length, memoryLength: memory,
                          keepsForBackward: keepsForBackward, output: &y, arena: arena)
            for i in 0..<y.count {
                #expect(abs(Double(y[i]) - reference[i]) < 1e-4, "element \(i), keepsForBackward \(keepsForBackward)")
            }
        }
    }

    @Test func forwardWithoutMemoryIsCausal() {
        let (layer, arena, _) = makeLayer()
        // Changing the last position must not change earlier outputs.
        var x = randomArray(batch * length * d, seed: 23)
        var y1 = [Float](repeating: 0, count: batch * length * d), y2 = y1
        layer.forward(x, batch: batch, queryLength: length, memoryLength: 0, output: &y1, arena: arena)
        for c in 0..<d { x[(length - 1) * d + c] += 1 }
        layer.forward(x, batch: batch, queryLength: length, memoryLength: 0, output: &y2, arena: arena)
        for i in 0..<((length - 1) * d) { #expect(y1[i] == y2[i]) }
        #expect((0..<d).contains { y1[(length - 1) * d + $0] != y2[(length - 1) * d + $0] })
    }

    @Test(arguments: shapes) func gradientsMatchFiniteDifferences(shape: (Int, Int, Int)) {
        with(length: shape.0, memory: shape.1, headSize: shape.2).gradientsMatchFiniteDifferences()
    }

    func gradientsMatchFiniteDifferences() {
        let (layer, arena, layout) = makeLayer()
        let s = memory + length
        var x = randomArray(batch * s * d, seed: 24)
        let upstream = randomArray(batch * length * d, seed: 25)
        var y = [Float](repeating: 0, count: batch * length * d)
        var dx = [Float](repeating: 0, count: batch * s * d)
        layer.forward(x, batch: batch, queryLength: length, memoryLength: memory, output: &y, arena: arena)
        layer.backward(x, dOutput: upstream, dInput: &dx, arena: arena)
        #expect(arena.gradient(layer.unusedBias)[0] == 0)
        let dxCopy = dx
        x.withUnsafeMutableBufferPointer { xp in
            dxCopy.withUnsafeBufferPointer { dxp in
                let tensors = layout.views.map {
                    CheckedTensor($0.name, values: arena.value($0), gradient: arena.gradient($0), count: $0.count)
                } + [CheckedTensor("x", values: xp.baseAddress!, gradient: dxp.baseAddress!, count: batch * s * d)]
                let mismatches = checkGradients(tensors, samples: 25) {
                    layer.forward(xp.baseAddress!, batch: batch, queryLength: length, memoryLength: memory, output: &y, arena: arena)
                    return weightedSum(y, upstream, count: batch * length * d)
                }
                #expect(mismatches.isEmpty, "\(mismatches)")
            }
        }
    }

    /// A training pass's (head, stream) tasks share one scratch lane per thread: with two
    /// threads they run on two lanes in any order, and every gradient keeps its bits.
    @Test(arguments: shapes) func gradientsAreTheSameOnOneAndTwoThreads(shape: (Int, Int, Int)) {
        with(length: shape.0, memory: shape.1, headSize: shape.2).gradientsAreTheSameOnOneAndTwoThreads()
    }

    func gradientsAreTheSameOnOneAndTwoThreads() {
        defer { Threads.configure(1) }
        let s = memory + length
        let x = randomArray(batch * s * d, seed: 26), upstream = randomArray(batch * length * d, seed: 27)
        var results: [[Float]] = []
        for threads in [1, 2] {
            Threads.configure(threads)
            let (layer, arena, layout) = makeLayer()
            var y = [Float](repeating: 0, count: batch * length * d)
            var dx = [Float](repeating: 0, count: batch * s * d)
            layer.forward(x, batch: batch, queryLength: length, memoryLength: memory, output: &y, arena: arena)
            layer.backward(x, dOutput: upstream, dInput: &dx, arena: arena)
            results.append(y + dx + layout.views.flatMap {
                Array(UnsafeBufferPointer(start: arena.gradient($0), count: $0.count))
            })
        }
        #expect(results[0] == results[1])
    }

    @Test func initialisationFollowsPrenormRule() {
        let scope = ParameterScope()
        let layer = RelativeAttention(
            scope.child("a"), config: .init(heads: 4, headSize: 16), width: 48, scratch: AttentionScratch())
        let arena = ParameterArena(layout: scope.layout)
        var initialization = InitializationContext(seed: 1, layerCount: 3)
        layer.initialize(arena, &initialization)
        for (view, fanIn) in [(layer.query, 48), (layer.keyValue, 48), (layer.position, 48), (layer.output, 64)] {
            let std = Initializer.standardDeviation(arena.value(view), count: view.count)
            #expect(abs(std - (2.0 / Double(3 * fanIn)).squareRoot()) < 1e-6, "\(view.name)")
        }
        #expect(arena.value(layer.scoreScale)[0] == 0.25)
        #expect(layer.keyValue.shape == [2 * 64, 48])
    }
}
