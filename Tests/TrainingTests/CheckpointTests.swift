import Datasets
import Foundation
import Layers
import Models
import Tensor
import Testing
import TestSupport
import Configuration
import Training

@Suite(.serialized) struct CheckpointTests {
    /// The layout Python's `safetensors` expects: u64 LE header length, JSON header padded to
    /// 8 bytes, offsets relative to the data area, tensors back to back.
    @Test func fileLayoutFollowsTheSafetensorsFormat() throws {
        let url = Fixtures.temporaryDirectory("st").appendingPathComponent("a.safetensors")
        let a: [Float] = [1, 2, 3, 4, 5, 6]
        let b: [Int32] = [7, -8]
        try a.withUnsafeBytes { ab in
            try b.withUnsafeBytes { bb in
                try SafeTensors.write([
                    .init(name: "a", dtype: .f32, shape: [2, 3], bytes: ab),
                    .init(name: "b", dtype: .i32, shape: [2], bytes: bb),
                ], metadata: ["k": "v"], to: url)
            }
        }
        let data = try Data(contentsOf: url)
        let length = data.prefix(8).withUnsafeBytes { Int(UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self))) }
        #expect(length % 8 == 0)
        let header = try JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + length))) as! [String: Any]
        // The metadata keeps the caller's keys and adds the tensors' CRC-32s, the values of
        // Python's zlib.crc32 over their bytes.
        #expect((header["__metadata__"] as? [String: String]) == ["k": "v", "tensor_crc32": #"{"a":"1939e524","b":"2c8bce2a"}"#])
        let entry = header["a"] as! [String: Any]
        #expect(entry["dtype"] as? String == "F32")
        #expect(entry["shape"] as? [Int] == [2, 3])
        #expect(entry["data_offsets"] as? [Int] == [0, 24])
        #expect((header["b"] as! [String: Any])["data_offsets"] as? [Int] == [24, 32])
        #expect(data.count == 8 + length + 32)
        let file = try SafeTensors.File(url: url)
        #expect(try file.array("a", dtype: .f32, as: Float.self) == a)
        #expect(try file.array("b", dtype: .i32, as: Int32.self) == b)
        // Truncation is detected with a message naming the file.
        let truncated = url.deletingLastPathComponent().appendingPathComponent("t.safetensors")
        try data.prefix(data.count - 4).write(to: truncated)
        #expect { _ = try SafeTensors.File(url: truncated) } throws: { "\($0)".contains("t.safetensors") && "\($0)".contains("truncated") }
    }

    @Test func weightsAndConfigRoundTrip() throws {
        let directory = Fixtures.temporaryDirectory("roundtrip")
        let trainer = try Trainer(config: Fixtures.tinyConfig(steps: 3), corpus: Fixtures.textCorpus(), runDirectory: directory)
        try trainer.run()
        let loaded = try Checkpoint.load(Trainer.checkpoints(in: directory).last!)
        #expect(loaded.config == trainer.config)
        #expect(loaded.step == 3)
        let model = try loaded.makeModel()
        #expect(memcmp(model.arena.values, trainer.model.arena.values, model.layout.count * 4) == 0)
    }

    @Test func checkpointOfAnotherConfigIsRejected() throws {
        let directory = Fixtures.temporaryDirectory("other")
        let trainer = try Trainer(config: Fixtures.tinyConfig(steps: 2), corpus: Fixtures.textCorpus(), runDirectory: directory)
        try trainer.run()
        let loaded = try Checkpoint.load(Trainer.checkpoints(in: directory).last!)
        var config = loaded.config.model.as(TransformerXL.Config.self)!
        config.modelWidth = 32
        let other = try TransformerXL(config: config)
        #expect { try loaded.loadParameters(into: other) } throws: { "\($0)".contains("expected") && "\($0)".contains("another config") }
    }

    /// `lmtrain step`'s dumped gradients against finite differences of the dumped loss.
    @Test func stepDumpGradientsMatchFiniteDifferences() throws {
        let directory = Fixtures.temporaryDirectory("step")
        var config = Fixtures.tinyConfig(steps: 2)
        config.model = ModelConfig(TransformerXL.Config(
            vocabularySize: 0, modelWidth: 8, layers: 2, heads: 2, headSize: 3,
            feedForward: FeedForwardConfig(DenseFeedForward.Config(hiddenSize: 12)), dropout: 0.1))
        let trainer = try Trainer(config: config, corpus: Fixtures.textCorpus(), runDirectory: directory)
        try trainer.run()
        let checkpoint = try Checkpoint.load(Trainer.checkpoints(in: directory).last!)
        let v = trainer.model.outputClasses
        var rng = RandomGenerator(seed: 3)
        let (b, t) = (2, 5)
        let tokens = (0..<(b * (t + 1))).map { _ in Int32(rng.integer(below: v)) }
        let tokensURL = directory.appendingPathComponent("tokens.safetensors")
        try tokens.withUnsafeBytes { try SafeTensors.write([.init(name: "tokens", dtype: .i32, shape: [b, t + 1], bytes: $0)], metadata: [:], to: tokensURL) }
        let dumpURL = directory.appendingPathComponent("dump.safetensors")
        let result = try StepDump.run(checkpoint: checkpoint, tokensURL: tokensURL, dumpURL: dumpURL)
        let dump = try SafeTensors.File(url: dumpURL)
        #expect(dump.tensors["logits"]?.shape == [b, t, v])
        #expect(abs(Double(try dump.array("loss", dtype: .f32, as: Float.self)[0]) - result.loss) < 1e-6)

        // Finite differences on a fresh copy of the checkpoint's model, dropout off.
        let model = try checkpoint.makeModel()
        var inputs = [Int32](), targets = [Int32]()
        for row in 0..<b {
            inputs += tokens[(row * (t + 1))..<(row * (t + 1) + t)]
            targets += tokens[(row * (t + 1) + 1)..<((row + 1) * (t + 1))]
        }
        let shape = TokenShape(batch: b, length: t)
        func loss() -> Double {
            var context = ForwardContext(training: true, dropout: false, rng: RandomGenerator(seed: 0))
            return model.forward(inputs: inputs, targets: targets, shape: shape, context: &context).crossEntropy
        }
        #expect(abs(loss() - result.loss) < 1e-9)
        var dumped: [String: [Float]] = [:]
        for view in model.layout.views { dumped[view.name] = try dump.array(view.name, dtype: .f32, as: Float.self) }
        let tensors = model.layout.views.map { view in
            dumped[view.name]!.withUnsafeBufferPointer {
                CheckedTensor(view.name, values: model.arena.value(view), gradient: UnsafePointer($0.baseAddress!), count: view.count)
            }
        }
        let mismatches = checkGradients(tensors, samples: 5, step: 1e-3, loss: loss)
        withExtendedLifetime(dumped) {}
        #expect(mismatches.isEmpty, "\(mismatches)")
    }
}
