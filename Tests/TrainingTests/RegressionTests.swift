import Configuration
import Datasets
import Foundation
import Layers
import Models
import Tensor
import Testing
import TestSupport
import Training

/// Numbers recorded once and compared ever after: any change to the mathematics, the
/// initialisation, the dropout draws or the data order shows up here.
@Suite(.serialized) struct RecordedLossTests {
    /// The first 10 training losses (loss + regulariser) of `Fixtures.tinyConfig(steps: 10)`
    /// on `Fixtures.textCorpus()`: dropout 0.1 and, for σ-MoE, 4 experts of 8, K 2, expert
    /// dropout 0.1, γ 0.01, with dropout masks drawn per stream. Recorded with lmtrain at the
    /// commit that introduced per-stream draws (data-parallel training) on an AMD EPYC
    /// (family 25).
    static let recorded: [String: [Double]] = [
        "dense": [
            3.0888916575640906, 3.1339077710872516, 3.0644237796077505, 3.1765739500988275, 3.0368707389570773,
            3.013323131541256, 3.03412200929597, 2.8893118865671568, 2.8951540938578546, 3.069184979889542,
        ],
        "moe": [
            3.232189215934996, 2.943838766062293, 3.139449635300972, 2.9333293760333863, 3.1197127881584588,
            2.9315454704325066, 2.87306411350296, 2.859891563355741, 2.9484294946999206, 2.7332242831751934,
        ],
    ]

    /// The same runs with the masks drawn over the whole batch at once (`dropout_draws`
    /// `shared`, what runs from before per-stream draws keep), recorded with lmtrain at commit
    /// b3a1463 on an AMD EPYC (family 25): the old draws are reproduced exactly.
    static let recordedShared: [String: [Double]] = [
        "dense": [
            3.061686581670074, 3.1593981124460697, 3.039007387822494, 3.3058851223031525, 3.0563762416131794,
            3.1609335117973387, 2.9790440056240186, 2.9942771776695736, 2.9712278021033853, 3.0465611991094192,
        ],
        "moe": [
            3.0927565871501113, 2.917993504907056, 3.09174806227657, 3.037941210764621, 3.0654843189582244,
            2.846841271439901, 3.060104638645273, 2.929691780014015, 2.9716156721136855, 2.712907276946656,
        ],
    ]

    @Test(arguments: ["dense", "moe"], [DropoutDraws.perStream, .shared])
    func firstTenLossesAreTheRecordedOnes(variant: String, draws: DropoutDraws) throws {
        var config = Fixtures.tinyConfig(steps: 10)
        config.training.dropoutDraws = draws
        if variant == "moe" {
            config = Fixtures.with(config, MixtureOfExperts.SigmaConfig(experts: 4, expertSize: 8, k: 2, expertDropout: 0.1, regularization: 0.01))
        }
        let trainer = try Trainer(config: config, corpus: Fixtures.textCorpus(), runDirectory: Fixtures.temporaryDirectory("recorded"))
        let losses = try (0..<10).map { _ in try trainer.trainStep().loss }
        let expected = (draws == .shared ? Self.recordedShared : Self.recorded)[variant]!
        for (step, (loss, expected)) in zip(losses, expected).enumerated() {
            #expect(abs(loss / expected - 1) < 1e-5, "\(variant) \(draws) step \(step + 1): \(loss), recorded \(expected)")
        }
    }
}

/// Checkpoints written by lmtrain before model kinds, optimiser choices and the model protocol
/// existed (commit b3a1463): they load, compute what they computed then, and resume.
@Suite(.serialized) struct LegacyCheckpointTests {
    static func file(_ name: String) throws -> URL { try Fixtures.file(name, in: "legacy") }

    /// The corpus those runs trained on (`--data text.txt`).
    static func corpus() throws -> Corpus {
        let sentence = "In the beginning God created the heaven and the earth. And the earth was without form, and void; and darkness was upon the face of the deep. "
        let file = Fixtures.temporaryDirectory("legacy").appendingPathComponent("text.txt")
        try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(String(repeating: sentence, count: 40).utf8).write(to: file)
        return try CorpusLoader.load(DataConfig(source: file.path))
    }

    /// Losses 7 to 10 of the same runs trained without interruption, by that lmtrain.
    static let continuation: [String: [Double]] = [
        "dense": [3.533151274546981, 3.6296284697018564, 3.664592368528247, 3.21060643857345],
        "pkm": [3.5075328007806093, 3.4836070938035846, 3.8562280961778015, 3.288361101411283],
    ]

    @Test(arguments: ["dense", "pkm"]) func oldCheckpointLoadsAndComputesTheSameStep(name: String) throws {
        let checkpoint = try Checkpoint.load(try Self.file("\(name).safetensors"))
        #expect(checkpoint.config.model.kind == TransformerXL.Config.kind)
        #expect(checkpoint.config.training.optimizer == .adamw && checkpoint.config.training.schedule == .cosine)
        let dump = Fixtures.temporaryDirectory("legacy-step").appendingPathComponent("dump.safetensors")
        try FileManager.default.createDirectory(at: dump.deletingLastPathComponent(), withIntermediateDirectories: true)
        try StepDump.run(checkpoint: checkpoint, tokensURL: try Self.file("tokens.safetensors"), dumpURL: dump)
        let now = try SafeTensors.File(url: dump)
        let then = try SafeTensors.File(url: try Self.file("\(name)-step.safetensors"))
        #expect(Set(now.tensors.keys) == Set(then.tensors.keys))
        for tensorName in then.tensors.keys {
            let a = try now.array(tensorName, dtype: .f32, as: Float.self)
            let b = try then.array(tensorName, dtype: .f32, as: Float.self)
            let scale = max(b.map { abs($0) }.max() ?? 0, 1e-3)
            let worst = zip(a, b).map { abs($0 - $1) }.max() ?? 0
            #expect(a.count == b.count && worst / scale < 1e-5, "\(name) \(tensorName): \(worst / scale)")
        }
    }

    @Test(arguments: ["dense", "pkm"]) func oldCheckpointResumesWithTheSameLosses(name: String) throws {
        let checkpoint = try Checkpoint.load(try Self.file("\(name).safetensors"))
        let directory = Fixtures.temporaryDirectory("legacy-resume")
        let trainer = try Trainer(resuming: checkpoint, corpus: Self.corpus(), runDirectory: directory)
        #expect(trainer.step == 6)
        let losses = try trainer.run().map(\.loss)
        for (step, (loss, expected)) in zip(losses, Self.continuation[name]!).enumerated() {
            #expect(abs(loss / expected - 1) < 1e-5, "\(name) step \(step + 7): \(loss), then \(expected)")
        }
        #expect(losses.count == 4)
    }
}
