import Foundation
import Testing
import TestSupport

/// A safetensors file holding int32 `tokens` [1, ids.count], as `lmtrain step` reads them.
func tokensFile(_ ids: [Int32], at url: URL) throws {
    var header = Data(#"{"tokens":{"data_offsets":[0,\#(ids.count * 4)],"dtype":"I32","shape":[1,\#(ids.count)]}}"#.utf8)
    while header.count % 8 != 0 { header.append(0x20) }
    var length = UInt64(header.count).littleEndian
    var file = Data(bytes: &length, count: 8) + header
    ids.withUnsafeBytes { file.append(contentsOf: $0) }
    try file.write(to: url)
}

/// The byte range of tensor `name` in the safetensors file `data`.
func tensorBytes(_ name: String, in data: Data) throws -> Range<Int> {
    let length = Int(data.prefix(8).withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) })
    let header = try JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + length))) as! [String: Any]
    let offsets = (header[name] as! [String: Any])["data_offsets"] as! [Int]
    return (8 + length + offsets[0])..<(8 + length + offsets[1])
}

@Suite(.serialized) struct CheckpointSafetyCLITests {
    /// Trains the tiny model for 2 steps in `folder/name` (d_model `width`); its checkpoint.
    func tinyRun(_ name: String, in folder: URL, width: Int = 16) throws -> (run: URL, checkpoint: URL) {
        let corpus = try textFile(in: folder)
        let run = folder.appendingPathComponent(name)
        var flags = tinyFlags
        flags[flags.firstIndex(of: "--d-model")! + 1] = String(width)
        let train = try lmtrain(["train", "--data", corpus.path, "--steps", "2", "--run-dir", run.path] + flags, in: folder)
        #expect(train.status == 0, "\(train.stderr)")
        return (run, run.appendingPathComponent("checkpoints/step-0000002.safetensors"))
    }

    @Test func outputsThatWouldReplaceAnInputOrACheckpointAreRefused() throws {
        let folder = scratch("outputs")
        let (run, checkpoint) = try tinyRun("run", in: folder)
        let tokens = folder.appendingPathComponent("tokens.safetensors")
        try tokensFile([1, 2, 3, 4], at: tokens)
        let link = folder.appendingPathComponent("link.safetensors")
        try FileManager.default.createSymbolicLink(at: link, withDestinationURL: checkpoint)
        let copy = run.appendingPathComponent("copy.safetensors")
        try FileManager.default.copyItem(at: checkpoint, to: copy)
        let before = try Data(contentsOf: checkpoint)
        let c = checkpoint.path
        try expectOneLineError(["step", "--checkpoint", c, "--tokens", tokens.path, "--dump", c], ["--dump \(c) is the --checkpoint file"], in: folder)
        try expectOneLineError(["step", "--checkpoint", c, "--tokens", tokens.path, "--dump", link.path], ["is the --checkpoint file"], in: folder)
        try expectOneLineError(["step", "--checkpoint", c, "--tokens", tokens.path, "--dump", tokens.path], ["is the --tokens file"], in: folder)
        try expectOneLineError(["step", "--checkpoint", c, "--tokens", tokens.path, "--dump", copy.path], ["is an lmtrain checkpoint"], in: folder)
        try expectOneLineError(["eval", "--checkpoint", c, "--output", c], ["--output \(c) is the --checkpoint file"], in: folder)
        try expectOneLineError(["eval", "--checkpoint", c, "--output", copy.path], ["is a safetensors checkpoint"], in: folder)
        try expectOneLineError(["formal", "eval", "--checkpoint", c, "--output", link.path], ["is the --checkpoint file"], in: folder)
        try expectOneLineError(["bench", "--output", copy.path], ["is a safetensors checkpoint"], in: folder)
        #expect(try Data(contentsOf: checkpoint) == before)
        #expect(try Data(contentsOf: copy) == before)
        // An ordinary output is still written.
        let dump = folder.appendingPathComponent("dump.safetensors")
        let step = try lmtrain(["step", "--checkpoint", c, "--tokens", tokens.path, "--dump", dump.path], in: folder)
        #expect(step.status == 0 && FileManager.default.fileExists(atPath: dump.path), "\(step.stderr)")
    }

    @Test func damagedForeignAndEarlierCheckpoints() throws {
        let folder = scratch("integrity")
        let (run, checkpoint) = try tinyRun("run", in: folder)
        let original = try Data(contentsOf: checkpoint)

        // A checkpoint of another config copied into the run is not resumed.
        let (_, wide) = try tinyRun("wide", in: folder, width: 32)
        let misplaced = run.appendingPathComponent("checkpoints/step-0000009.safetensors")
        try FileManager.default.copyItem(at: wide, to: misplaced)
        try expectOneLineError(["train", "--resume", run.path], ["has model.d_model 32 but \(run.path)/config.json says 16"], in: folder)
        try FileManager.default.removeItem(at: misplaced)

        // One flipped bit: eval and resume name the file and the tensor.
        var damaged = original
        damaged[try tensorBytes("embedding.weight", in: original).lowerBound + 5] ^= 0x10
        try damaged.write(to: checkpoint)
        let fragment = "\(checkpoint.path): tensor embedding.weight fails its CRC-32 check"
        try expectOneLineError(["eval", "--checkpoint", checkpoint.path, "--split", "valid"], [fragment], in: folder)
        try expectOneLineError(["train", "--resume", run.path], [fragment], in: folder)

        // A corrupt header length is an error, not a trap.
        var length = UInt64.max
        damaged.replaceSubrange(0..<8, with: Data(bytes: &length, count: 8))
        try damaged.write(to: checkpoint)
        try expectOneLineError(["eval", "--checkpoint", checkpoint.path], ["header length \(UInt64.max)"], in: folder)

        // A checkpoint of an earlier lmtrain (no checksums) still works, with a note.
        let legacy = packageRoot.appendingPathComponent("Tests/TrainingTests/Fixtures/legacy/dense.safetensors")
        let tokens = folder.appendingPathComponent("tokens.safetensors")
        try tokensFile([1, 2, 3, 4], at: tokens)
        let step = try lmtrain(["step", "--checkpoint", legacy.path, "--tokens", tokens.path, "--dump", folder.appendingPathComponent("d.safetensors").path], in: folder)
        #expect(step.status == 0, "\(step.stderr)")
        #expect(step.stdout.contains("note: \(legacy.path) carries no checksums"), "\(step.stdout)")
    }
}
