import Foundation
import Testing
import Layers
import Tensor
import TestSupport

/// One sequence layer wired for the checks every sequence layer shares: x [B, T, inputWidth]
/// -> y [B, T, outputWidth], a backward that accumulates its parameter gradients and dx, and
/// the layer's definition computed step by step in Double (`reference`), reading the same
/// parameter arena.
struct SequenceLayerHarness {
    let batch: Int
    let length: Int
    let inputWidth: Int
    let outputWidth: Int
    let arena: ParameterArena
    /// Declares the layer's buffers for its pass and reserves them.
    let reserve: () -> Void
    let forward: (UnsafePointer<Float>, UnsafeMutablePointer<Float>) -> Void
    /// (x, dy, dx): dx accumulates.
    let backward: (UnsafePointer<Float>, UnsafePointer<Float>, UnsafeMutablePointer<Float>) -> Void
    let reference: ([Float]) -> [Double]

    /// A harness around a layer with the common pass signatures, planned for a training pass.
    init<Layer: TestedSequenceLayer>(
        _ layer: Layer, arena: ParameterArena, batch: Int, length: Int, inputWidth: Int, outputWidth: Int,
        reference: @escaping ([Float]) -> [Double]
    ) {
        let shape = TokenShape(batch: batch, length: length)
        self.init(
            batch: batch, length: length, inputWidth: inputWidth, outputWidth: outputWidth, arena: arena,
            reserve: {
                BufferPlan.reserve {
                    layer.declareBuffers(for: PassShape(tokens: shape, training: true, dropout: false), in: &$0)
                }
            },
            forward: { x, y in layer.forward(x, shape: shape, output: y, arena: arena) },
            backward: { x, dy, dx in layer.backward(x, dOutput: dy, shape: shape, dInput: dx, arena: arena) },
            reference: reference)
    }

    init(
        batch: Int, length: Int, inputWidth: Int, outputWidth: Int, arena: ParameterArena,
        reserve: @escaping () -> Void,
        forward: @escaping (UnsafePointer<Float>, UnsafeMutablePointer<Float>) -> Void,
        backward: @escaping (UnsafePointer<Float>, UnsafePointer<Float>, UnsafeMutablePointer<Float>) -> Void,
        reference: @escaping ([Float]) -> [Double]
    ) {
        self.batch = batch
        self.length = length
        self.inputWidth = inputWidth
        self.outputWidth = outputWidth
        self.arena = arena
        self.reserve = reserve
        self.forward = forward
        self.backward = backward
        self.reference = reference
    }

    var inputCount: Int { batch * length * inputWidth }
    var outputCount: Int { batch * length * outputWidth }

    func output(_ x: [Float]) -> [Float] {
        reserve()
        var y = [Float](repeating: 0, count: outputCount)
        forward(x, &y)
        return y
    }

    /// One forward and backward pass from zeroed gradients: y, and dx from `dxStart`.
    private func pass(x: [Float], upstream: [Float], dxStart: Float = 0) -> (y: [Float], dx: [Float]) {
        reserve()
        var y = [Float](repeating: 0, count: outputCount)
        var dx = [Float](repeating: dxStart, count: inputCount)
        arena.zeroGradients()
        forward(x, &y)
        backward(x, upstream, &dx)
        return (y, dx)
    }

    // MARK: Checks

    /// The outputs equal the Double definition's within `tolerance`.
    func expectForwardMatchesReference(
        seed: UInt64, tolerance: Double = 1e-5, sourceLocation: SourceLocation = #_sourceLocation
    ) {
        let x = randomArray(inputCount, seed: seed)
        let y = output(x), expected = reference(x)
        let error = zip(y, expected).map { abs(Double($0) - $1) }.max() ?? 0
        #expect(error < tolerance, "max error \(error)", sourceLocation: sourceLocation)
    }

    /// The gradients of every parameter and of x, for a random upstream gradient, against
    /// finite differences of the layer itself (`checkGradients`, sampled coordinates), and
    /// every coordinate against central differences of the Double definition (far sharper:
    /// float32 differences cannot see a term that is off by a few per cent). dx starts at
    /// 0.25, so it must accumulate.
    func expectGradientsMatchFiniteDifferences(seed: UInt64, sourceLocation: SourceLocation = #_sourceLocation) {
        var x = randomArray(inputCount, seed: seed)
        let upstream = randomArray(outputCount, seed: seed + 1)
        var (y, dx) = pass(x: x, upstream: upstream, dxStart: 0.25)
        dx = dx.map { $0 - 0.25 }
        let tensors = arena.layout.views.map {
            CheckedTensor($0.name, values: arena.value($0), gradient: arena.gradient($0), count: $0.count)
        }
        let mismatches = x.withUnsafeMutableBufferPointer { xp in
            dx.withUnsafeBufferPointer { dxp in
                checkGradients(
                    tensors + [CheckedTensor("x", values: xp.baseAddress!, gradient: dxp.baseAddress!, count: inputCount)],
                    samples: 30
                ) {
                    forward(xp.baseAddress!, &y)
                    return weightedSum(y, upstream, count: outputCount)
                }
            }
        }
        #expect(mismatches.isEmpty, "\(mismatches)", sourceLocation: sourceLocation)

        func loss(_ x: [Float]) -> Double { zip(reference(x), upstream).reduce(0) { $0 + $1.0 * Double($1.1) } }
        var worst = (error: 0.0, coordinate: "")
        // `set` stores a value into the coordinate, which is restored to `original` after.
        func compare(_ name: String, _ original: Float, _ analytic: Float, _ set: (Float) -> Void) {
            let upper = original + 1e-3 * max(1, abs(original)), lower = original - 1e-3 * max(1, abs(original))
            set(upper)
            let plus = loss(x)
            set(lower)
            let minus = loss(x)
            set(original)
            let numeric = (plus - minus) / (Double(upper) - Double(lower))
            let error = abs(Double(analytic) - numeric) / (1 + abs(numeric))
            if error > worst.error { worst = (error, "\(name): analytic \(analytic), numeric \(numeric)") }
        }
        for view in arena.layout.views {
            let values = arena.value(view), gradients = arena.gradient(view)
            for i in 0..<view.count { compare("\(view.name)[\(i)]", values[i], gradients[i]) { values[i] = $0 } }
        }
        for i in 0..<inputCount { compare("x[\(i)]", x[i], dx[i]) { x[i] = $0 } }
        #expect(worst.error < 1e-5, "largest error at \(worst.coordinate)", sourceLocation: sourceLocation)
    }

    /// Outputs and gradients are bit-identical with 1 and with 2 threads, from two layers
    /// made alike.
    static func expectIndependentOfThreadCount(
        sourceLocation: SourceLocation = #_sourceLocation, _ make: () -> SequenceLayerHarness
    ) {
        func run(threads: Int) -> [Float] {
            Threads.configure(threads)
            defer { Threads.configure(1) }
            let harness = make()
            let (y, dx) = harness.pass(
                x: randomArray(harness.inputCount, seed: 11), upstream: randomArray(harness.outputCount, seed: 12))
            return y + dx + Array(UnsafeBufferPointer(start: harness.arena.gradients, count: harness.arena.count))
        }
        #expect(run(threads: 1) == run(threads: 2), sourceLocation: sourceLocation)
    }

    /// A forward, backward and forward pass of a freshly made and reserved layer allocate no
    /// buffer memory. `BufferStatistics` counts every allocation of the process, including
    /// those of suites running at the same time, so a count disturbed by them is tried again
    /// on a new layer: a layer that allocates in its pass allocates every time.
    static func expectPassAllocatesNothing(
        sourceLocation: SourceLocation = #_sourceLocation, _ make: () -> SequenceLayerHarness
    ) {
        var allocationFree = false
        for _ in 0..<10 where !allocationFree {
            let harness = make()
            harness.reserve()
            let x = randomArray(harness.inputCount, seed: 3), upstream = randomArray(harness.outputCount, seed: 4)
            var y = [Float](repeating: 0, count: harness.outputCount)
            var dx = [Float](repeating: 0, count: harness.inputCount)
            let before = BufferStatistics.allocations
            harness.forward(x, &y)
            harness.backward(x, upstream, &dx)
            harness.forward(x, &y)
            allocationFree = BufferStatistics.allocations == before
        }
        #expect(allocationFree, sourceLocation: sourceLocation)
    }
}

/// The pass signatures that `CausalSelfAttention`, `LSTM` and `QuasiLSTM` share.
protocol TestedSequenceLayer {
    func declareBuffers(for pass: PassShape, in plan: inout BufferPlan)
    func forward(
        _ x: UnsafePointer<Float>, shape: TokenShape, output y: UnsafeMutablePointer<Float>, arena: ParameterArena)
    func backward(
        _ x: UnsafePointer<Float>, dOutput dy: UnsafePointer<Float>, shape: TokenShape,
        dInput dx: UnsafeMutablePointer<Float>, arena: ParameterArena)
}

extension CausalSelfAttention: TestedSequenceLayer {}
extension LSTM: TestedSequenceLayer {}
extension QuasiLSTM: TestedSequenceLayer {}

/// The logistic sigmoid in Double, for the reference implementations.
func referenceSigmoid(_ x: Double) -> Double { 1 / (1 + Foundation.exp(-x)) }

/// Softmax of a Double vector.
func referenceSoftmax(_ x: [Double]) -> [Double] {
    let m = x.max() ?? 0
    let e = x.map { Foundation.exp($0 - m) }
    let total = e.reduce(0, +)
    return e.map { $0 / total }
}

/// Reads parameter tensors of an arena as Double, for the reference implementations.
struct ReferenceParameters {
    let arena: ParameterArena
    /// Element `i` (flat, row-major) of `view`.
    func callAsFunction(_ view: ParameterView, _ i: Int) -> Double { Double(arena.value(view)[i]) }
}
