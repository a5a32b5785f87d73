import Foundation
import Testing
import TestSupport

/// The `lmtrain` binary built with these tests.
let binary: URL = {
    #if DEBUG
    let configuration = "debug"
    #else
    let configuration = "release"
    #endif
    return packageRoot.appendingPathComponent(".build/\(configuration)/lmtrain")
}()

struct Invocation {
    let status: Int32
    let stdout: String
    let stderr: String
}

func lmtrain(_ arguments: [String], in directory: URL? = nil) throws -> Invocation {
    let process = Process()
    process.executableURL = binary
    process.arguments = arguments
    if let directory { process.currentDirectoryURL = directory }
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    let errData = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return Invocation(
        status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
        stderr: String(decoding: errData, as: UTF8.self))
}

func scratch(_ name: String) -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("lmtrain-cli-\(getpid())-\(name)-\(UUID().uuidString.prefix(6))")
    try! FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// A small text corpus file.
func textFile(in folder: URL, bytes: Int = 40_000) throws -> URL {
    let url = folder.appendingPathComponent("corpus.txt")
    let sentence = "In the beginning was the word, and the word was with the light. "
    try Data(String(repeating: sentence, count: bytes / sentence.utf8.count + 1).utf8).write(to: url)
    return url
}

/// Flags for a model small enough to train in a debug build.
let tinyFlags = ["--d-model", "16", "--layers", "1", "--heads", "2", "--d-ff", "32", "--batch-size", "2",
                 "--segment-length", "8", "--memory-length", "8", "--log-every", "1", "--eval-every", "0",
                 "--eval-batch-size", "2", "--eval-memory", "1"]

@Suite(.serialized) struct BadInputTests {
    /// Each case: arguments, then a fragment the single error line must contain.
    @Test func everyMistakeIsOneLineAndANonZeroExit() throws {
        let folder = scratch("bad")
        let corpus = try textFile(in: folder)
        let empty = folder.appendingPathComponent("empty.txt")
        try Data().write(to: empty)
        let short = folder.appendingPathComponent("short.txt")
        try Data("abcdefghijklmnop".utf8).write(to: short)
        let corrupt = folder.appendingPathComponent("broken.zip")
        try Data("PK not really an archive".utf8).write(to: corrupt)
        let badConfig = folder.appendingPathComponent("bad.json")
        try Data(#"{"training": {"stepz": 3}}"#.utf8).write(to: badConfig)
        let notCheckpoint = folder.appendingPathComponent("x.safetensors")
        try Data([1, 2, 3]).write(to: notCheckpoint)
        let cases: [([String], String)] = [
            (["train", "--preset", "nosuch"], "unknown preset 'nosuch'"),
            (["train", "--frobnicate"], "--frobnicate"),
            (["train", "--data", corpus.path, "--heads", "3"], "heads 3 does not divide d_model 128"),
            (["train", "--data", folder.appendingPathComponent("absent.txt").path], "no such file"),
            (["train", "--data", corrupt.path], "broken.zip"),
            (["train", "--data", empty.path], "the corpus is empty"),
            (["train", "--data", short.path], "lower --batch-size or --segment-length"),
            (["train", "--config", badConfig.path], "unknown key 'training.stepz'"),
            (["train", "--ffn", "nosuch"], "--ffn nosuch is unknown"),
            (["train", "--ffn", "dense", "--experts", "16"], "--experts applies to --ffn moe|switch|sbase, not dense"),
            (["train", "--ffn", "moe", "--k", "20"], "k = 20 must be between 1 and the number of experts 16"),
            (["train", "--ffn", "moe", "--experts", "100000"], "cannot match"),
            (["train", "--split", "0.9,0.1"], "--split"),
            (["train", "--data", corpus.path, "--run-dir", "/proc/lmtrain-cannot-write"] + tinyFlags, "/proc"),
            (["train", "--resume", folder.appendingPathComponent("no-run").path], "no such run directory"),
            (["eval", "--checkpoint", notCheckpoint.path], "not a valid safetensors file"),
            (["eval", "--checkpoint", notCheckpoint.path, "--split", "train"], "--split must be valid or test"),
        ]
        for (arguments, fragment) in cases {
            let result = try lmtrain(arguments, in: folder)
            let lines = result.stderr.split(separator: "\n")
            #expect(result.status != 0, "\(arguments)")
            #expect(lines.count == 1, "\(arguments): \(result.stderr)")
            #expect(result.stderr.contains(fragment), "\(arguments): \(result.stderr)")
        }
    }
}

@Suite(.serialized) struct EndToEndTests {
    /// train -> resume refusal -> eval -> step -> count, through the binary.
    @Test func shortRunWritesEverythingAndToolsReadIt() throws {
        let folder = scratch("e2e")
        let corpus = try textFile(in: folder)
        let run = folder.appendingPathComponent("run")
        let train = try lmtrain(["train", "--data", corpus.path, "--steps", "4", "--run-dir", run.path] + tinyFlags, in: folder)
        #expect(train.status == 0, "\(train.stderr)")
        #expect(train.stdout.contains("evaluation (batch 2, memory 1 x 8)"))
        for name in ["config.json", "metrics.jsonl", "report.json", "checkpoints/step-0000004.safetensors"] {
            #expect(FileManager.default.fileExists(atPath: run.appendingPathComponent(name).path), "\(name)")
        }
        // The same run directory is never overwritten by a new run.
        let again = try lmtrain(["train", "--data", corpus.path, "--steps", "4", "--run-dir", run.path] + tinyFlags, in: folder)
        #expect(again.status != 0 && again.stderr.contains("already holds a run"))
        // --resume keeps the saved config.
        let changed = try lmtrain(["train", "--resume", run.path, "--lr", "1"], in: folder)
        #expect(changed.status != 0 && changed.stderr.contains("--resume continues the saved config"))

        let checkpoint = run.appendingPathComponent("checkpoints/step-0000004.safetensors").path
        let output = folder.appendingPathComponent("eval.json")
        let eval = try lmtrain(["eval", "--checkpoint", checkpoint, "--split", "valid", "--output", output.path], in: folder)
        #expect(eval.status == 0, "\(eval.stderr)")
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: output)) as! [String: Any]
        #expect(json["split"] as? String == "valid")
        #expect((json["bpc"] as? Double ?? 0) > 0)
        #expect(json["memory_segments"] as? Int == 4)

        let count = try lmtrain(["count", "--preset", "e8"], in: folder)
        #expect(count.status == 0)
        #expect(count.stdout.contains("41234721"))
    }
}
