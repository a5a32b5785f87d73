import Datasets
import Foundation
import Models
import Tensor
import Testing
import Configuration
import Training

#if canImport(Glibc)
import Glibc
#endif

/// Damaged, foreign and misplaced checkpoints are refused with one line naming the file and
/// what is wrong; checkpoints of earlier versions still load.
@Suite(.serialized) struct CheckpointIntegrityTests {
    /// A finished two-step run of `config` and its last checkpoint.
    static func trainedRun(_ name: String, config: RunConfig = Fixtures.tinyConfig(steps: 2)) throws -> (run: URL, checkpoint: URL) {
        let directory = Fixtures.temporaryDirectory(name)
        let trainer = try Trainer(config: config, corpus: Fixtures.textCorpus(), runDirectory: directory)
        try trainer.run()
        return (directory, try #require(Trainer.checkpoints(in: directory).last))
    }

    /// The byte range of tensor `name` in the file `data`, from its header.
    static func byteRange(of name: String, in data: Data) throws -> Range<Int> {
        let length = Int(data.prefix(8).withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) })
        let header = try #require(try JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + length))) as? [String: Any])
        let offsets = try #require((header[name] as? [String: Any])?["data_offsets"] as? [Int])
        return (8 + length + offsets[0])..<(8 + length + offsets[1])
    }

    @Test func aFlippedBitInAnyTensorIsNamedOnLoad() throws {
        let (_, checkpoint) = try Self.trainedRun("flip")
        let original = try Data(contentsOf: checkpoint)
        #expect(try Checkpoint.load(checkpoint).checksumNote == nil, "a new checkpoint carries checksums")
        let damaged = checkpoint.deletingLastPathComponent().appendingPathComponent("damaged.safetensors")
        for name in ["embedding.weight", "layers.1.feedforward.down.weight", "optimizer.exp_avg_sq.output.bias", "rng.state"] {
            let range = try Self.byteRange(of: name, in: original)
            var data = original
            data[range.lowerBound + range.count / 2] ^= 0x04
            try data.write(to: damaged)
            #expect {
                _ = try Checkpoint.load(damaged)
            } throws: { error in
                let text = "\(error)"
                return text.contains("damaged.safetensors") && text.contains("tensor \(name) fails its CRC-32 check")
                    && !text.contains("\n")
            }
        }
    }

    @Test func checkpointsWithoutChecksumsStillLoadWithANote() throws {
        let legacy = try Fixtures.file("dense.safetensors", in: "legacy")
        let loaded = try Checkpoint.load(legacy)
        #expect(!loaded.file.hasChecksums)
        let note = try #require(loaded.checksumNote)
        #expect(note.contains("dense.safetensors") && note.contains("no checksums") && !note.contains("\n"))
        _ = try loaded.makeModel()
    }

    @Test func aCorruptHeaderLengthIsAnErrorNotATrap() throws {
        let (_, checkpoint) = try Self.trainedRun("header")
        let original = try Data(contentsOf: checkpoint)
        let damaged = checkpoint.deletingLastPathComponent().appendingPathComponent("length.safetensors")
        for length in [UInt64.max, UInt64(Int.max) + 1, UInt64(original.count), 0] {
            var bytes = length.littleEndian
            var data = original
            data.replaceSubrange(0..<8, with: Data(bytes: &bytes, count: 8))
            try data.write(to: damaged)
            #expect { _ = try Checkpoint.load(damaged) } throws: {
                "\($0)".contains("length.safetensors") && "\($0)".contains("header length \(length)")
            }
        }
    }

    @Test func nonFiniteWeightsAreNamedWhenTheModelIsLoaded() throws {
        let directory = Fixtures.temporaryDirectory("nan")
        let trainer = try Trainer(config: Fixtures.tinyConfig(steps: 1), corpus: Fixtures.textCorpus(), runDirectory: directory)
        let view = try #require(trainer.model.layout.views.first { $0.name == "layers.0.attention.query.weight" })
        trainer.model.arena.value(view)[5] = .nan
        let url = directory.appendingPathComponent("nan.safetensors")
        try Checkpoint.save(
            model: trainer.model, config: trainer.config, dataFingerprint: trainer.task.dataFingerprint,
            vocabulary: trainer.task.vocabularyDescription, training: nil, to: url)
        let loaded = try Checkpoint.load(url)
        #expect { _ = try loaded.makeModel() } throws: {
            "\($0)".contains("nan.safetensors") && "\($0)".contains("tensor layers.0.attention.query.weight holds nan")
                && "\($0)".contains("diverged")
        }
    }

    @Test func resumeRefusesACheckpointOfAnotherConfig() throws {
        let (run, _) = try Self.trainedRun("config-run")
        var wide = Fixtures.tinyConfig(steps: 2)
        var model = try #require(wide.model.as(TransformerXL.Config.self))
        model.modelWidth = 32
        wide.model = ModelConfig(model)
        let (_, foreign) = try Self.trainedRun("config-other", config: wide)
        let misplaced = run.appendingPathComponent("checkpoints/step-0000009.safetensors")
        try FileManager.default.copyItem(at: foreign, to: misplaced)
        #expect {
            _ = try Trainer(resuming: Checkpoint.load(misplaced), corpus: Fixtures.textCorpus(), runDirectory: run)
        } throws: {
            "\($0)".contains("checkpoint \(misplaced.path) has model.d_model 32 but \(run.path)/config.json says 16")
        }
        // The run's own checkpoint resumes.
        try FileManager.default.removeItem(at: misplaced)
        let own = try #require(Trainer.checkpoints(in: run).last)
        _ = try Trainer(resuming: Checkpoint.load(own), corpus: Fixtures.textCorpus(), runDirectory: run)
    }

    /// A process id that no process has (one that just exited).
    static func deadProcessID() throws -> pid_t {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/true")
        try process.run()
        process.waitUntilExit()
        let pid = process.processIdentifier
        #expect(kill(pid, 0) == -1 && errno == ESRCH)
        return pid
    }

    @Test func staleTemporariesOfDeadWritersAreRemovedAtStart() throws {
        let (run, checkpoint) = try Self.trainedRun("stale")
        let dead = try Self.deadProcessID(), live = getpid()
        let checkpoints = run.appendingPathComponent("checkpoints")
        let stale = [
            checkpoints.appendingPathComponent(".step-0000005.safetensors.\(dead).tmp"),
            run.appendingPathComponent(".metrics.jsonl.\(dead).tmp"),
        ]
        let kept = [
            checkpoints.appendingPathComponent(".step-0000006.safetensors.\(live).tmp"),
            checkpoints.appendingPathComponent(".step-0000007.safetensors.1.tmp"),  // init: alive
            checkpoints.appendingPathComponent("notes.\(dead).tmp"),  // not a temporary's name
        ]
        for url in stale + kept { try Data([1, 2, 3]).write(to: url) }
        _ = try Trainer(resuming: Checkpoint.load(checkpoint), corpus: Fixtures.textCorpus(), runDirectory: run)
        for url in stale { #expect(!FileManager.default.fileExists(atPath: url.path), "\(url.lastPathComponent)") }
        for url in kept { #expect(FileManager.default.fileExists(atPath: url.path), "\(url.lastPathComponent)") }
        #expect(AtomicFile.writerPID(ofTemporary: ".step-0000005.safetensors.\(dead).tmp") == dead)
        #expect(AtomicFile.writerPID(ofTemporary: ".x.tmp") == nil)
    }

    @Test func outputsNeverReplaceInputsOrCheckpoints() throws {
        let (run, checkpoint) = try Self.trainedRun("outputs")
        let input = [(flag: "--checkpoint", path: checkpoint.path)]
        let link = run.appendingPathComponent("link.safetensors"), hard = run.appendingPathComponent("hard.safetensors")
        try FileManager.default.createSymbolicLink(at: link, withDestinationURL: checkpoint)
        try FileManager.default.linkItem(at: checkpoint, to: hard)
        let dotted = URL(fileURLWithPath: run.path + "/checkpoints/./" + checkpoint.lastPathComponent)
        for same in [checkpoint, link, hard, dotted] {
            #expect { try OutputPath.check(same, flag: "--dump", content: .safetensors, inputs: input) } throws: {
                "\($0)".contains("--dump \(same.path) is the --checkpoint file")
            }
        }
        // A checkpoint is replaced neither by JSON nor by a step dump; a dump by another dump.
        let other = run.appendingPathComponent("other.safetensors")
        try FileManager.default.copyItem(at: checkpoint, to: other)
        #expect { try OutputPath.check(other, flag: "--output", content: .text, inputs: input) } throws: {
            "\($0)".contains("is a safetensors checkpoint")
        }
        let otherLink = run.appendingPathComponent("other-link.json")
        try FileManager.default.createSymbolicLink(at: otherLink, withDestinationURL: other)
        #expect { try OutputPath.check(otherLink, flag: "--output", content: .text, inputs: input) } throws: {
            "\($0)".contains("is a safetensors checkpoint")
        }
        #expect { try OutputPath.check(other, flag: "--dump", content: .safetensors, inputs: input) } throws: {
            "\($0)".contains("is an lmtrain checkpoint")
        }
        let dump = run.appendingPathComponent("dump.safetensors")
        try [Float(1)].withUnsafeBytes { try SafeTensors.write([.init(name: "loss", dtype: .f32, shape: [], bytes: $0)], metadata: [:], to: dump) }
        try OutputPath.check(dump, flag: "--dump", content: .safetensors, inputs: input)
        #expect { try OutputPath.check(dump, flag: "--output", content: .text, inputs: input) } throws: {
            "\($0)".contains("is a safetensors file")
        }
        let json = run.appendingPathComponent("eval.json")
        try Data("{}".utf8).write(to: json)
        try OutputPath.check(json, flag: "--output", content: .text, inputs: input)
        try OutputPath.check(run.appendingPathComponent("new.json"), flag: "--output", content: .text, inputs: input)
    }
}
