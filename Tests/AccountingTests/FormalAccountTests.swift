import Accounting
import Configuration
import FormalLanguages
import Foundation
import Layers
import Models
import Tensor
import Testing
import TestSupport

/// The accountant on the formal-language models: parameter counts equal the arena, the passes
/// are as long as the task's longest strings, the stored fast weights are what backward
/// through time keeps, and the inventory is what a real pass allocates.
@Suite(.serialized) struct FormalAccountTests {
    @Test func everyFormalPresetIsCountedAsBuilt() throws {
        for name in FormalPreset.allNames {
            let preset = FormalPreset(name: name)!
            var config = preset.config
            let account = try Accountant.account(config)
            let model = try config.model.makeModel()
            #expect(account.parameters.total == model.layout.count, "\(name)")
            #expect(account.parameters.components.reduce(0) { $0 + $1.count } == model.layout.count, "\(name)")
            #expect(account.flops.forwardPerToken > 0)
            #expect(Accountant.trainingPass(config).length == preset.task.longestString(of: .train), "\(name)")
            #expect(Accountant.evaluationPass(config).length == preset.task.longestString(of: .bin1), "\(name)")

            // Stored fast weights of every layer: DeltaNet and Recurrent DeltaNet keep, per
            // (sequence, head), ceil(T / C) chunk ends (a buffer that holds evaluation's running
            // W, one per sequence and head, when that is larger) and C - 1 rebuilt steps,
            // C = ceil(sqrt(T)), of d x d each; the SRWM every step's d x (3d + 4); the linear
            // Transformer none (its backward rebuilds W_t in a sweep forward in time).
            let b = FormalPreset.budget(preset.task)
            let d = b.modelWidth / b.heads, t = preset.task.longestString(of: .train)
            let tasks = b.batchSize * b.heads, evaluationTasks = Accountant.evaluationPass(config).batch * b.heads
            var c = 1
            while c * c < t { c += 1 }
            let floats: Int =
                switch preset.model {
                case .deltaNet, .recurrentDeltaNet:
                    d * d * (max(tasks * ((t + c - 1) / c), evaluationTasks) + tasks * (c - 1))
                case .selfReferential: d * (3 * d + 4) * t * tasks
                default: 0
                }
            #expect(account.memory.storedFastWeights == floats * 4 * b.layers, "\(name)")
            // The memory line follows the data, not the unused segment length.
            config.training.segmentLength = 7
            #expect(try Accountant.account(config) == account)
        }
    }

    /// The longest strings: the window's end, 2n and 3n symbols for the counters, two words
    /// and the reset symbol for reset Dyck-1; generated data never exceeds them.
    @Test func longestStringBoundsTheGeneratedData() throws {
        let settings = FormalGenerationSettings(lowerWindow: 2, upperWindow: 14, binWidth: 8, trainingSize: 200, evaluationSize: 100)
        for task in FormalTask.allCases {
            let data = try task.generate(seed: 4, settings: settings)
            #expect(data.train.longest <= task.longestString(of: .train, settings: settings), "\(task)")
            #expect(data.bin0.longest <= task.longestString(of: .bin0, settings: settings), "\(task)")
            #expect(data.bin1.longest <= task.longestString(of: .bin1, settings: settings), "\(task)")
        }
        #expect(FormalTask.counter3.longestString(of: .bin1) == 300)
        #expect(FormalTask.resetDyck.longestString(of: .train) == 101)
        #expect(FormalTask.parity.longestString(of: .bin1) == 100)
    }

    /// Reserving a training pass allocates exactly the declared buffers, and training and
    /// evaluation passes of that size or smaller allocate nothing more.
    @Test(arguments: FormalPreset.Model.allCases)
    func inventoryIsWhatAPassAllocates(model kind: FormalPreset.Model) throws {
        var config = FormalPreset(task: .dyck1, model: kind).config.model
        config.vocabularySize = 3
        config.inputVocabularySize = 3
        if var fast = config.as(FastWeightTransformer.Config.self) {
            fast.modelWidth = 16
            config = ModelConfig(fast)
        }
        let model = try config.makeModel()
        model.initialize(seed: 1)
        let shape = TokenShape(batch: 4, length: 12)
        let pass = PassShape(tokens: shape, memoryCapacity: 0, training: true, dropout: true)
        var plan = BufferPlan()
        model.declareBuffers(for: pass, in: &plan)
        // The process-wide ones vector may already be large enough: leave it out.
        _ = Ones.shared.pointer(count: 1 << 16)
        let ones = plan.entries.first { $0.name == "ones for column sums" }?.bytes ?? 0
        let before = BufferStatistics.allocatedBytes
        model.reserveBuffers(for: pass)
        var rng = RandomGenerator(seed: 2)
        for (b, t, training) in [(4, 12, true), (3, 7, true), (4, 12, false)] {
            let inputs = (0..<(b * t)).map { _ in Int32(rng.integer(below: 3)) }
            let targets = (0..<(b * t)).map { _ in Int32(rng.integer(below: 2)) }
            var context = ForwardContext(training: training, rng: RandomGenerator(seed: 3))
            _ = model.forward(inputs: inputs, targets: targets, shape: TokenShape(batch: b, length: t), context: &context)
            if training { model.backward() }
        }
        #expect(BufferStatistics.allocatedBytes - before == plan.bytes - ones, "\(kind)")
    }
}
