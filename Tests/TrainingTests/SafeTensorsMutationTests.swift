import Datasets
import Foundation
import Layers
import Models
import Tensor
import Testing
import TestSupport
import Configuration
import Training

/// A deterministic mutation run of the checkpoint reader: thousands of seeded mutations of a
/// small real checkpoint (bit flips, truncations, header lengths, header edits) each either
/// load or fail with one line naming the file; none may trap. A mutant whose header is intact
/// but whose tensor bytes changed must fail (the checksums).
@Suite(.serialized) struct SafeTensorsMutationTests {
    @Test func mutatedCheckpointsLoadOrFailWithOneClearLine() throws {
        var config = Fixtures.tinyConfig(steps: 2)
        config.model = ModelConfig(TransformerXL.Config(
            vocabularySize: 0, modelWidth: 8, layers: 1, heads: 2, headSize: 4,
            feedForward: FeedForwardConfig(DenseFeedForward.Config(hiddenSize: 8)), dropout: 0.1))
        let directory = Fixtures.temporaryDirectory("mutations")
        let trainer = try Trainer(config: config, corpus: Fixtures.textCorpus(), runDirectory: directory)
        try trainer.run()
        let url = try #require(Trainer.checkpoints(in: directory).last)
        let original = try Data(contentsOf: url)
        let headerEnd = 8 + Int(original.prefix(8).withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) })

        var rng = RandomGenerator(seed: 20_261_202)
        var (loaded, refused) = (0, 0)
        for index in 0..<3000 {
            let (mutant, mutation) = SafeTensorsMutations.mutate(original, rng: &rng)
            let dataOnly = mutant.count == original.count && mutant.prefix(headerEnd) == original.prefix(headerEnd)
                && mutant != original
            do {
                try Self.readEverything(mutant, url: url, into: trainer)
                loaded += 1
                #expect(!dataOnly, "mutant \(index) (\(mutation)) changed tensor bytes and still loaded")
            } catch {
                refused += 1
                let text = "\(error)"
                #expect(text.contains(url.lastPathComponent) && !text.contains("\n"), "mutant \(index) (\(mutation)): \(text)")
            }
        }
        #expect(loaded > 0 && refused > 2000, "loaded \(loaded), refused \(refused)")
    }

    /// Everything a loader does with a file: parse it, read every tensor, decode the config,
    /// restore the weights, optimiser state, memory and generator into `trainer`'s objects.
    static func readEverything(_ data: Data, url: URL, into trainer: Trainer) throws {
        let file = try SafeTensors.File(data: data, url: url)
        for (name, tensor) in file.tensors {
            switch tensor.dtype {
            case .f32: _ = try file.array(name, dtype: .f32, as: Float.self)
            case .f64: _ = try file.array(name, dtype: .f64, as: Double.self)
            case .i32: _ = try file.array(name, dtype: .i32, as: Int32.self)
            case .i64: _ = try file.array(name, dtype: .i64, as: Int64.self)
            case .u64: _ = try file.array(name, dtype: .u64, as: UInt64.self)
            case .u8: _ = try file.array(name, dtype: .u8, as: UInt8.self)
            }
        }
        let checkpoint = try Checkpoint.open(file)
        _ = try checkpoint.restoreTraining(model: trainer.model, optimizer: trainer.optimizer, state: trainer.state)
    }
}
