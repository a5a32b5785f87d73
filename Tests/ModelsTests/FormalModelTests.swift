import Foundation
import Layers
import Models
import Tensor
import Testing
import TestSupport

/// The per-position classifiers of the formal-language experiments: every model against finite
/// differences on a padded batch long enough that the recurrences matter, padding that changes
/// nothing, and the parameter names and shapes Docs/checkpoint-format.md lists.
@Suite(.serialized) struct FormalModelTests {
    /// Small configs of every model: V_in 4 (3 symbols and the pad), V_out 3.
    static let models: [ModelConfig] = [
        ModelConfig(FastWeightTransformer.Config(mixer: .linearTransformer, vocabularySize: 3, inputVocabularySize: 4, modelWidth: 8, layers: 2, heads: 2, feedForwardFactor: 2)),
        ModelConfig(FastWeightTransformer.Config(mixer: .deltaNet, vocabularySize: 3, inputVocabularySize: 4, modelWidth: 8, layers: 2, heads: 2, feedForwardFactor: 2)),
        ModelConfig(FastWeightTransformer.Config(mixer: .recurrentDeltaNet, vocabularySize: 3, inputVocabularySize: 4, modelWidth: 8, layers: 2, heads: 2, feedForwardFactor: 2)),
        ModelConfig(FastWeightTransformer.Config(mixer: .selfReferential, vocabularySize: 3, inputVocabularySize: 4, modelWidth: 8, layers: 2, heads: 2, feedForwardFactor: 2)),
        ModelConfig(SoftmaxTransformer.Config(vocabularySize: 3, inputVocabularySize: 4, modelWidth: 8, layers: 2, heads: 2, feedForwardFactor: 2)),
        ModelConfig(RecurrentNetwork.Config(cell: .lstm, vocabularySize: 3, inputVocabularySize: 4, embeddingSize: 5, modelWidth: 6, layers: 2)),
        ModelConfig(RecurrentNetwork.Config(cell: .elstm, vocabularySize: 3, inputVocabularySize: 4, embeddingSize: 5, modelWidth: 6)),
    ]

    /// Two sequences of 8 and 5 symbols, the second padded with the pad id 3 and unscored.
    static let shape = TokenShape(batch: 2, length: 8)
    static let inputs: [Int32] = [0, 2, 1, 1, 0, 2, 2, 1, 1, 0, 0, 2, 1, 3, 3, 3]
    static let targets: [Int32] = [1, 0, 2, 2, 1, 0, 1, 2, 0, 2, 1, 1, 0, -1, -1, -1]

    static func model(_ config: ModelConfig, seed: UInt64 = 3) throws -> any SequenceModel {
        let model = try config.makeModel()
        model.initialize(seed: seed)
        return model
    }

    @Test(arguments: 0..<models.count) func wholeModelGradients(index: Int) throws {
        let model = try Self.model(Self.models[index])
        // Move biases off zero so every gradient matters; the feedforward biases get a positive
        // shift so that no hidden unit sits within a finite-difference step of ReLU's kink.
        var rng = RandomGenerator(seed: 9)
        for view in model.layout.views where view.name.hasSuffix("bias") {
            let shift = view.name.hasSuffix("feedforward.up.bias") ? 0.3 : 0
            Initializer.normal(model.arena.value(view), count: view.count, std: 0.2, mean: shift, rng: &rng)
        }
        func loss() -> Double {
            var context = ForwardContext(training: true, rng: RandomGenerator(seed: 8))
            return model.forward(inputs: Self.inputs, targets: Self.targets, shape: Self.shape, context: &context).objective
        }
        model.arena.zeroGradients()
        var context = ForwardContext(training: true, rng: RandomGenerator(seed: 8))
        let result = model.forward(inputs: Self.inputs, targets: Self.targets, shape: Self.shape, context: &context)
        #expect(result.scoredPositions == 13)
        model.backward()
        let mismatches = checkGradients(model.checkedTensors, samples: 8, step: 1e-3, loss: loss)
        #expect(mismatches.isEmpty, "\(Self.models[index].summary): \(mismatches)")
    }

    /// Causal models: what stands in the padding changes neither the scored loss nor the
    /// logits of the real positions.
    @Test(arguments: 0..<models.count) func paddingChangesNothing(index: Int) throws {
        let model = try Self.model(Self.models[index])
        func run(_ inputs: [Int32]) -> (Double, [Float]) {
            var context = ForwardContext(training: false, rng: RandomGenerator(seed: 0))
            let loss = model.forward(inputs: inputs, targets: Self.targets, shape: Self.shape, context: &context)
            let logits = Array(UnsafeBufferPointer(start: model.logits, count: Self.shape.rows * 3))
            return (loss.crossEntropySum, Array(logits[0..<((8 + 5) * 3)]))
        }
        var other = Self.inputs
        other[13] = 0
        other[15] = 2
        let (a, logitsA) = run(Self.inputs), (b, logitsB) = run(other)
        #expect(a == b && logitsA == logitsB, "\(Self.models[index].summary)")
    }

    @Test func parameterNamesAndShapes() throws {
        let srwm = try Self.model(Self.models[3])
        func layer(_ l: Int) -> [String] {
            [
                "mixer.norm.weight", "mixer.norm.bias", "mixer.core.initial_y", "mixer.core.initial_q",
                "mixer.core.initial_k", "mixer.core.initial_beta", "mixer.output.weight",
                "feedforward_norm.weight", "feedforward_norm.bias", "feedforward.up.weight",
                "feedforward.up.bias", "feedforward.down.weight", "feedforward.down.bias",
            ].map { "layers.\(l).\($0)" }
        }
        #expect(srwm.layout.views.map(\.name) == ["embedding.weight"] + layer(0) + layer(1) + ["output.weight", "output.bias"])
        #expect(srwm.layout.view(named: "layers.0.mixer.core.initial_beta")?.shape == [2, 4, 4])
        let rdn = try Self.model(Self.models[2])
        #expect(rdn.layout.view(named: "layers.1.mixer.projection.weight")?.shape == [2 * (3 * 4 + 1), 8])
        #expect(rdn.layout.view(named: "layers.1.mixer.core.recurrent_query")?.shape == [2, 4, 4])
        let lt = try Self.model(Self.models[0])
        #expect(lt.layout.view(named: "layers.0.mixer.projection.weight")?.shape == [2 * 3 * 4, 8])
        // Parameters per layer as the paper's models have them: LN 2D, W_qkv(b), W_o, FF.
        let d = 8, h = 2, f = 16
        let ffPerLayer = 2 * d + f * d + f + d * f + d
        #expect(lt.layout.count == 4 * d + 2 * (2 * d + 3 * d * d + d * d + ffPerLayer) + 3 * d + 3)
        #expect(rdn.layout.count == 4 * d + 2 * (2 * d + (3 * d + h) * d + 3 * h * 16 + h * 4 + d * d + ffPerLayer) + 3 * d + 3)
    }

    /// PyTorch's TransformerEncoder starts every layer as a copy of one initialised layer.
    @Test func transformerLayersStartAsCopies() throws {
        let model = try Self.model(Self.models[4])
        for view in model.layout.views where view.name.hasPrefix("layers.1.") {
            let first = model.layout.view(named: "layers.0." + view.name.dropFirst("layers.1.".count))!
            #expect(memcmp(model.arena.value(view), model.arena.value(first), 4 * view.count) == 0, "\(view.name)")
        }
        let embedding = model.layout.view(named: "embedding.weight")!
        let std = Initializer.standardDeviation(model.arena.value(embedding), count: embedding.count)
        #expect(std > 0.5 && std < 1.6, "embedding N(0, 1): \(std)")
    }

    /// Configs that cannot work give one line naming the field.
    @Test func badConfigsNameTheField() {
        var fwp = FastWeightTransformer.Config(mixer: .selfReferential, vocabularySize: 3, inputVocabularySize: 4, modelWidth: 10, layers: 1, heads: 4, feedForwardFactor: 2)
        #expect { try fwp.validate() } throws: { "\($0)".contains("model.heads 4 must divide d_model 10") }
        fwp.heads = 2
        fwp.feedForwardFactor = 0
        #expect { try fwp.validate() } throws: { "\($0)".contains("model.ff_factor") }
        let elstm = RecurrentNetwork.Config(cell: .elstm, vocabularySize: 3, inputVocabularySize: 4, embeddingSize: 5, modelWidth: 6, layers: 2)
        #expect { try elstm.validate() } throws: { "\($0)".contains("model.layers must be 1 for the e-LSTM") }
    }
}
