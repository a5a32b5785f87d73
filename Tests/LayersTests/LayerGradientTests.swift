import Foundation
import Testing
import Layers
import Tensor
import TestSupport

/// Finite-difference checks of every layer's hand-written backward pass: the scalar is
/// sum(output * random upstream), parameters and inputs are perturbed one coordinate at a time.
@Suite(.serialized) struct LayerGradientTests {
    /// Width 6 runs the scalar tail only; 37 runs two SIMD16 blocks and a tail.
    @Test(arguments: [6, 37]) func layerNorm(width: Int) {
        let scope = ParameterScope()
        let norm = LayerNorm(scope.child("norm"), width: width)
        let arena = ParameterArena(layout: scope.layout)
        var rng = RandomGenerator(seed: 1)
        Initializer.normal(arena.values, count: arena.count, std: 0.5, mean: 1, rng: &rng)
        let rows = 5
        BufferPlan.reserve { norm.declareBuffers(rows: rows, training: true, in: &$0) }
        var x = randomArray(rows * width, seed: 2)
        let upstream = randomArray(rows * width, seed: 3)
        var y = [Float](repeating: 0, count: rows * width)
        var dx = [Float](repeating: 0, count: rows * width)
        norm.forward(x, rows: rows, output: &y, arena: arena)
        norm.backward(x, dOutput: upstream, rows: rows, dInput: &dx, arena: arena)
        let dxCopy = dx
        x.withUnsafeMutableBufferPointer { xp in
            dxCopy.withUnsafeBufferPointer { dxp in
                let mismatches = checkGradients([
                    CheckedTensor("weight", values: arena.value(norm.weight), gradient: arena.gradient(norm.weight), count: width),
                    CheckedTensor("bias", values: arena.value(norm.bias), gradient: arena.gradient(norm.bias), count: width),
                    CheckedTensor("x", values: xp.baseAddress!, gradient: dxp.baseAddress!, count: rows * width),
                ], samples: 30) {
                    norm.forward(xp.baseAddress!, rows: rows, output: &y, arena: arena)
                    return weightedSum(y, upstream, count: rows * width)
                }
                #expect(mismatches.isEmpty, "\(mismatches)")
            }
        }
    }

    @Test(arguments: [true, false]) func linear(bias: Bool) {
        let scope = ParameterScope()
        let linear = Linear(scope.child("l"), inputWidth: 4, outputWidth: 3, bias: bias)
        let arena = ParameterArena(layout: scope.layout)
        var rng = RandomGenerator(seed: 4)
        Initializer.normal(arena.values, count: arena.count, std: 1, rng: &rng)
        let rows = 5
        BufferPlan.reserve { linear.declareBuffers(rows: rows, training: true, in: &$0) }
        var x = randomArray(rows * 4, seed: 5)
        let upstream = randomArray(rows * 3, seed: 6)
        var y = [Float](repeating: 0, count: rows * 3)
        var dx = [Float](repeating: 0.5, count: rows * 4)  // backward accumulates onto this
        linear.forward(x, rows: rows, output: &y, arena: arena)
        linear.backward(x, dOutput: upstream, rows: rows, dInput: &dx, arena: arena)
        let dxNet = dx.map { $0 - 0.5 }
        var tensors = [CheckedTensor("weight", values: arena.value(linear.weight), gradient: arena.gradient(linear.weight), count: 12)]
        if let b = linear.bias {
            tensors.append(CheckedTensor("bias", values: arena.value(b), gradient: arena.gradient(b), count: 3))
        }
        x.withUnsafeMutableBufferPointer { xp in
            dxNet.withUnsafeBufferPointer { dxp in
                tensors.append(CheckedTensor("x", values: xp.baseAddress!, gradient: dxp.baseAddress!, count: rows * 4))
                let mismatches = checkGradients(tensors, samples: 40) {
                    linear.forward(xp.baseAddress!, rows: rows, output: &y, arena: arena)
                    return weightedSum(y, upstream, count: rows * 3)
                }
                #expect(mismatches.isEmpty, "\(mismatches)")
            }
        }
    }

    @Test func embeddingAccumulatesRepeatedTokens() {
        let scope = ParameterScope()
        let embedding = Embedding(scope.child("e"), vocabularySize: 5, width: 3)
        let arena = ParameterArena(layout: scope.layout)
        var initialization = InitializationContext(seed: 7, layerCount: 1)
        embedding.initialize(arena, &initialization)
        let tokens: [Int32] = [1, 3, 1, 0]
        let upstream = randomArray(4 * 3, seed: 8)
        var y = [Float](repeating: 0, count: 12)
        embedding.forward(tokens, rows: 4, output: &y, arena: arena)
        embedding.backward(tokens, dOutput: upstream, rows: 4, arena: arena)
        let mismatches = checkGradients([
            CheckedTensor("table", values: arena.value(embedding.table), gradient: arena.gradient(embedding.table), count: 15)
        ], samples: 15) {
            embedding.forward(tokens, rows: 4, output: &y, arena: arena)
            return weightedSum(y, upstream, count: 12)
        }
        #expect(mismatches.isEmpty, "\(mismatches)")
        // Token 2 and 4 never occur: zero gradient.
        #expect((0..<3).allSatisfy { arena.gradient(embedding.table)[2 * 3 + $0] == 0 })
    }

    @Test func dropoutKeepsRateAndScalesGradient() {
        let dropout = Dropout(rate: 0.25)
        var context = ForwardContext(training: true, rng: RandomGenerator(seed: 9))
        let n = 100_000
        BufferPlan.reserve {
            dropout.declareBuffers(count: n, for: PassShape(tokens: TokenShape(batch: 1, length: n), context: context), in: &$0)
        }
        var x = [Float](repeating: 1, count: n)
        dropout.forward(&x, count: n, streams: 4, context: &context)
        let kept = x.filter { $0 != 0 }
        #expect(abs(Double(kept.count) / Double(n) - 0.75) < 0.01)
        #expect(kept.allSatisfy { abs($0 - 4.0 / 3.0) < 1e-6 })
        var g = [Float](repeating: 2, count: n)
        dropout.backward(&g, count: n)
        for i in 0..<n { #expect(g[i] == 2 * x[i]) }
        // Evaluation: identity.
        var eval = ForwardContext(training: false, rng: RandomGenerator(seed: 9))
        var y = [Float](repeating: 3, count: 10)
        dropout.forward(&y, count: 10, streams: 1, context: &eval)
        #expect(y == [Float](repeating: 3, count: 10))
    }

    /// Each stream's part of a mask comes from its own generator: the mask of 4 streams is the
    /// masks of streams 0-1 and 2-3 drawn apart (as two ranks draw them), streams differ, and
    /// the run's generator advances by one draw per mask whatever the number of streams.
    @Test func dropoutMasksAreDrawnPerStream() {
        let dropout = Dropout(rate: 0.5)
        let perStream = 64
        let pass = PassShape(tokens: TokenShape(batch: 4, length: perStream), training: true, dropout: true)
        BufferPlan.reserve { dropout.declareBuffers(count: 4 * perStream, for: pass, in: &$0) }
        func mask(streams: Range<Int>, seed: UInt64) -> ([Float], RandomGenerator) {
            var context = ForwardContext(training: true, rng: RandomGenerator(seed: seed))
            context.firstStream = streams.lowerBound
            var x = [Float](repeating: 1, count: streams.count * perStream)
            dropout.forward(&x, count: x.count, streams: streams.count, context: &context)
            return (x, context.rng)
        }
        let (whole, after) = mask(streams: 0..<4, seed: 5)
        let (first, afterFirst) = mask(streams: 0..<2, seed: 5)
        let (second, _) = mask(streams: 2..<4, seed: 5)
        #expect(whole == first + second)
        #expect(after == afterFirst)
        let blocks = (0..<4).map { Array(whole[($0 * perStream)..<(($0 + 1) * perStream)]) }
        #expect(Set(blocks.map { $0.description }).count == 4)
        // Shared draws (runs from before): the whole mask from the run's generator, as before.
        var shared = ForwardContext(training: true, rng: RandomGenerator(seed: 5))
        shared.sharedDropoutDraws = true
        var y = [Float](repeating: 1, count: 4 * perStream)
        dropout.forward(&y, count: y.count, streams: 4, context: &shared)
        var expected = [Float](repeating: 0, count: y.count)
        var rng = RandomGenerator(seed: 5)
        Dropout.fillMask(&expected, count: expected.count, rate: 0.5, rng: &rng)
        #expect(y == expected && shared.rng == rng)
    }

    /// The mean over scored rows against the formula in Double, and the gradient against finite
    /// differences; padded positions (negative targets) are neither scored nor given a gradient.
    @Test(arguments: [false, true]) func crossEntropy(padded: Bool) {
        let (rows, v) = (5, 7)
        let ce = SoftmaxCrossEntropy(vocabularySize: v)
        BufferPlan.reserve { ce.declareBuffers(rows: rows, in: &$0) }
        var z = randomArray(rows * v, std: 2, seed: 10)
        let ignored = SoftmaxCrossEntropy.ignoredTarget
        let targets: [Int32] = padded ? [2, ignored, 6, 0, ignored] : [0, 6, 3, 3, 1]
        let scoredRows = (0..<rows).filter { targets[$0] >= 0 }
        let (sum, scored) = ce.forward(logits: z, targets: targets, rows: rows)
        #expect(scored == scoredRows.count)
        var expected = 0.0
        for r in scoredRows {
            let row = (0..<v).map { Double(z[r * v + $0]) }
            let m = row.max()!
            expected += m + log(row.reduce(0) { $0 + exp($1 - m) }) - row[Int(targets[r])]
        }
        #expect(abs(sum - expected) < 1e-5)
        var dz = [Float](repeating: 7, count: rows * v)
        ce.backward(logits: z, targets: targets, rows: rows, lossScale: 1 / Float(scored), dLogits: &dz)
        for r in 0..<rows where targets[r] < 0 {
            #expect(ce.lastRowLosses[r] == 0 && dz[(r * v)..<((r + 1) * v)].allSatisfy { $0 == 0 })
        }
        let dzCopy = dz
        z.withUnsafeMutableBufferPointer { zp in
            dzCopy.withUnsafeBufferPointer { dzp in
                let mismatches = checkGradients([
                    CheckedTensor("logits", values: zp.baseAddress!, gradient: dzp.baseAddress!, count: rows * v)
                ], samples: 35) {
                    let (sum, scored) = ce.forward(logits: zp.baseAddress!, targets: targets, rows: rows)
                    return sum / Double(scored)
                }
                #expect(mismatches.isEmpty, "\(mismatches)")
            }
        }
        // Uniform logits give ln(V).
        let flat = [Float](repeating: 0.3, count: rows * v)
        let uniform = ce.forward(logits: flat, targets: targets, rows: rows)
        #expect(abs(uniform.sum / Double(uniform.scored) - log(7.0)) < 1e-6)
    }

    /// Dense FFN with hidden dropout: the same seed each evaluation gives the same mask.
    @Test func denseFeedForward() {
        let scope = ParameterScope()
        let ffn = DenseFeedForward.Config(hiddenSize: 9).makeLayer(scope.child("ffn"), modelWidth: 4, dropout: 0.3) as! DenseFeedForward
        let layout = scope.layout
        let arena = ParameterArena(layout: layout)
        var initialization = InitializationContext(seed: 11, layerCount: 2)
        ffn.initialize(arena, &initialization)
        var rng = initialization.rng
        // Biases are initialised to 0; make them nonzero so their gradients are tested.
        Initializer.normal(arena.value(ffn.up.bias!), count: 9, std: 0.3, rng: &rng)
        Initializer.normal(arena.value(ffn.down.bias!), count: 4, std: 0.3, rng: &rng)
        let shape = TokenShape(batch: 2, length: 3)
        BufferPlan.reserve { ffn.declareBuffers(for: PassShape(tokens: shape, training: true, dropout: true), in: &$0) }
        var x = randomArray(shape.rows * 4, seed: 12)
        let upstream = randomArray(shape.rows * 4, seed: 13)
        var y = [Float](repeating: 0, count: shape.rows * 4)
        var dx = [Float](repeating: 0, count: shape.rows * 4)
        func run(_ xp: UnsafePointer<Float>) {
            var context = ForwardContext(training: true, rng: RandomGenerator(seed: 99))
            ffn.forward(xp, shape: shape, output: &y, arena: arena, context: &context)
        }
        run(x)
        ffn.backward(x, dOutput: upstream, shape: shape, dInput: &dx, arena: arena)
        let dxCopy = dx
        x.withUnsafeMutableBufferPointer { xp in
            dxCopy.withUnsafeBufferPointer { dxp in
                let tensors = layout.views.map {
                    CheckedTensor($0.name, values: arena.value($0), gradient: arena.gradient($0), count: $0.count)
                } + [CheckedTensor("x", values: xp.baseAddress!, gradient: dxp.baseAddress!, count: shape.rows * 4)]
                let mismatches = checkGradients(tensors, samples: 20, step: 1e-3) {
                    run(xp.baseAddress!)
                    return weightedSum(y, upstream, count: shape.rows * 4)
                }
                #expect(mismatches.isEmpty, "\(mismatches)")
            }
        }
    }
}
