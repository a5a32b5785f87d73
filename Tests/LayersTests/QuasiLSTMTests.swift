import Foundation
import Testing
import Layers
import Tensor
import TestSupport

/// The e-LSTM against its equations in Double, by finite differences through time, for
/// thread-count independence and allocation-free passes.
@Suite(.serialized) struct QuasiLSTMTests {
    /// The official std 0.1 of the cell's tensors leaves the recurrence weak; the test draws
    /// them larger so that every path carries gradient.
    static func make(inputWidth: Int = 3, width: Int = 5, batch: Int = 2, length: Int = 7) -> SequenceLayerHarness {
        let scope = ParameterScope()
        let layer = QuasiLSTM(scope.child("elstm"), inputWidth: inputWidth, width: width)
        let arena = ParameterArena(layout: scope.layout)
        var initialization = InitializationContext(seed: 61, layerCount: 1)
        layer.initialize(arena, &initialization)
        for view in [layer.cellZ, layer.cellF, layer.biasZ, layer.biasF, layer.inputZ, layer.inputF] {
            Initializer.normal(arena.value(view), count: view.count, std: 0.8, rng: &initialization.rng)
        }
        return SequenceLayerHarness(
            layer, arena: arena, batch: batch, length: length, inputWidth: inputWidth, outputWidth: width,
            reference: { naive($0, layer: layer, arena: arena, batch: batch, length: length) })
    }

    static func naive(_ x: [Float], layer: QuasiLSTM, arena: ParameterArena, batch: Int, length: Int) -> [Double] {
        let e = layer.inputWidth, d = layer.width, w = ReferenceParameters(arena: arena)
        var out = [Double](repeating: 0, count: batch * length * d)
        for item in 0..<batch {
            var c = [Double](repeating: 0, count: d)
            for t in 0..<length {
                let input = (0..<e).map { Double(x[(item * length + t) * e + $0]) }
                let previous = c
                for j in 0..<d {
                    var pz = w(layer.biasZ, j) + w(layer.cellZ, j) * previous[j]
                    var pf = w(layer.biasF, j) + w(layer.cellF, j) * previous[j]
                    for i in 0..<e {
                        pz += w(layer.inputZ, j * e + i) * input[i]
                        pf += w(layer.inputF, j * e + i) * input[i]
                    }
                    let z = Foundation.tanh(pz), f = referenceSigmoid(pf)
                    c[j] = f * previous[j] + (1 - f) * z
                }
                // The output gate sees the input and the new cell.
                let joined = input + c
                for j in 0..<d {
                    let p = (0..<(e + d)).reduce(w(layer.outputBias, j)) {
                        $0 + w(layer.outputWeight, j * (e + d) + $1) * joined[$1]
                    }
                    out[(item * length + t) * d + j] = c[j] * referenceSigmoid(p)
                }
            }
        }
        return out
    }

    @Test(arguments: [(3, 5), (20, 33)]) func forwardMatchesDefinition(inputWidth: Int, width: Int) {
        Self.make(inputWidth: inputWidth, width: width).expectForwardMatchesReference(seed: 62)
    }

    @Test func gradientsMatchFiniteDifferences() {
        Self.make().expectGradientsMatchFiniteDifferences(seed: 63)
    }

    /// The large case splits the products between the threads.
    @Test(arguments: [(6, 21, 2, 7), (128, 128, 4, 16)])
    func resultsDoNotDependOnThreadCount(inputWidth: Int, width: Int, batch: Int, length: Int) {
        SequenceLayerHarness.expectIndependentOfThreadCount {
            Self.make(inputWidth: inputWidth, width: width, batch: batch, length: length)
        }
    }

    @Test func passAllocatesNothingOnceReserved() {
        SequenceLayerHarness.expectPassAllocatesNothing { Self.make() }
    }

    @Test func initialisationFollowsTheOfficialDistributions() {
        let scope = ParameterScope()
        let layer = QuasiLSTM(scope.child("q"), inputWidth: 28, width: 36)
        let arena = ParameterArena(layout: scope.layout)
        var initialization = InitializationContext(seed: 64, layerCount: 1)
        layer.initialize(arena, &initialization)
        let std = Initializer.standardDeviation(arena.value(layer.inputZ), count: 2 * layer.inputZ.count)
        #expect(abs(std / 0.1 - 1) < 0.05)
        let output = UnsafeBufferPointer(start: arena.value(layer.outputWeight), count: layer.outputWeight.count)
        #expect(output.allSatisfy { abs($0) <= 0.125 })
        #expect(abs(Double(output.max()!) - 0.125) < 0.002)
        #expect(scope.layout.views.map(\.name) == [
            "q.input_z.weight", "q.input_f.weight", "q.cell_z", "q.cell_f", "q.bias_z", "q.bias_f",
            "q.output.weight", "q.output.bias",
        ])
    }
}
