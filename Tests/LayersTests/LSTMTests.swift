import Foundation
import Testing
import Layers
import Tensor
import TestSupport

/// The L-layer LSTM against PyTorch's `nn.LSTM` equations in Double, by finite differences
/// through time and layers, for thread-count independence and allocation-free passes.
@Suite(.serialized) struct LSTMTests {
    static func make(
        inputWidth: Int = 3, width: Int = 5, layers: Int = 2, batch: Int = 2, length: Int = 7
    ) -> SequenceLayerHarness {
        let scope = ParameterScope()
        let lstm = LSTM(scope.child("lstm"), inputWidth: inputWidth, width: width, layers: layers)
        let arena = ParameterArena(layout: scope.layout)
        var initialization = InitializationContext(seed: 51, layerCount: 1)
        lstm.initialize(arena, &initialization)
        return SequenceLayerHarness(
            lstm, arena: arena, batch: batch, length: length, inputWidth: inputWidth, outputWidth: width,
            reference: { naive($0, lstm: lstm, arena: arena, batch: batch, length: length) })
    }

    static func naive(_ x: [Float], lstm: LSTM, arena: ParameterArena, batch: Int, length: Int) -> [Double] {
        let d = lstm.width, w = ReferenceParameters(arena: arena)
        var input = x.map(Double.init), inputWidth = lstm.inputWidth
        for layer in lstm.layers {
            var output = [Double](repeating: 0, count: batch * length * d)
            for item in 0..<batch {
                var h = [Double](repeating: 0, count: d), c = h
                for t in 0..<length {
                    let row = (item * length + t) * inputWidth
                    let a = (0..<(4 * d)).map { r in
                        var sum = w(layer.inputBias, r) + w(layer.hiddenBias, r)
                        for j in 0..<inputWidth { sum += w(layer.inputWeight, r * inputWidth + j) * input[row + j] }
                        for j in 0..<d { sum += w(layer.hiddenWeight, r * d + j) * h[j] }
                        return sum
                    }
                    for j in 0..<d {
                        let i = referenceSigmoid(a[j]), f = referenceSigmoid(a[d + j])
                        let g = Foundation.tanh(a[2 * d + j]), o = referenceSigmoid(a[3 * d + j])
                        c[j] = f * c[j] + i * g
                        h[j] = o * Foundation.tanh(c[j])
                        output[(item * length + t) * d + j] = h[j]
                    }
                }
            }
            input = output
            inputWidth = d
        }
        return input
    }

    @Test(arguments: [(3, 5, 2), (20, 17, 1)]) func forwardMatchesDefinition(inputWidth: Int, width: Int, layers: Int) {
        Self.make(inputWidth: inputWidth, width: width, layers: layers).expectForwardMatchesReference(seed: 52)
    }

    @Test func gradientsMatchFiniteDifferences() {
        Self.make().expectGradientsMatchFiniteDifferences(seed: 53)
    }

    /// The large case splits the input projections' products between the threads.
    @Test(arguments: [(6, 9, 3, 2, 7), (128, 128, 2, 4, 16)])
    func resultsDoNotDependOnThreadCount(inputWidth: Int, width: Int, layers: Int, batch: Int, length: Int) {
        SequenceLayerHarness.expectIndependentOfThreadCount {
            Self.make(inputWidth: inputWidth, width: width, layers: layers, batch: batch, length: length)
        }
    }

    @Test func passAllocatesNothingOnceReserved() {
        SequenceLayerHarness.expectPassAllocatesNothing { Self.make() }
    }

    @Test func tensorsAreNamedPerLayerAndDrawnUniformly() {
        let scope = ParameterScope()
        let lstm = LSTM(scope.child("rnn"), inputWidth: 3, width: 64, layers: 2)
        let arena = ParameterArena(layout: scope.layout)
        var initialization = InitializationContext(seed: 54, layerCount: 1)
        lstm.initialize(arena, &initialization)
        #expect(scope.layout.views.map(\.name) == [
            "rnn.layers.0.weight_ih", "rnn.layers.0.weight_hh", "rnn.layers.0.bias_ih", "rnn.layers.0.bias_hh",
            "rnn.layers.1.weight_ih", "rnn.layers.1.weight_hh", "rnn.layers.1.bias_ih", "rnn.layers.1.bias_hh",
        ])
        #expect(lstm.layers[0].inputWeight.shape == [256, 3])
        #expect(lstm.layers[1].inputWeight.shape == [256, 64])
        let values = UnsafeBufferPointer(start: arena.values, count: arena.count)
        #expect(values.allSatisfy { abs($0) <= 0.125 })
        #expect(abs(Double(values.max()!) - 0.125) < 0.001)
    }
}
