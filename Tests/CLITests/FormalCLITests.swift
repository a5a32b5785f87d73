import Foundation
import Testing
import TestSupport

/// `lmtrain formal`: data, train, eval, sweep and count through the binary, on generated
/// files cut down to a few dozen strings so that every run takes a moment.
@Suite(.serialized) struct FormalCLITests {
    /// Writes a task's files with `lmtrain formal data`, then keeps the first `train` training
    /// strings and `evaluation` strings of each bin.
    static func smallData(_ task: String, in folder: URL, train: Int = 64, evaluation: Int = 24) throws -> URL {
        let data = folder.appendingPathComponent(task)
        let made = try lmtrain(["formal", "data", "--task", task, "--seed", "3", "--out", data.path], in: folder)
        #expect(made.status == 0, "\(made.stderr)")
        for stem in ["train_50", "valid_50", "test_50"] {
            for ext in ["src", "tgt"] {
                let url = data.appendingPathComponent("\(stem).\(ext)")
                let lines = try String(contentsOf: url, encoding: .utf8).split(separator: "\n")
                #expect(lines.count == (stem == "train_50" ? 10_000 : 2_000) || task != "parity")
                let kept = lines.prefix(stem == "train_50" ? train : evaluation)
                try Data((kept.joined(separator: "\n") + "\n").utf8).write(to: url)
            }
        }
        return data
    }

    static let small = ["--d-model", "16", "--heads", "2", "--emb-size", "8", "--batch-size", "16", "--eval-every", "2", "--eval-batch-size", "8"]

    @Test func dataTrainEvaluateResumeAndCount() throws {
        let folder = scratch("formal")
        let data = try Self.smallData("parity", in: folder)
        let run = folder.appendingPathComponent("run")
        let trained = try lmtrain(
            ["formal", "train", "--model", "srwm", "--task", "parity", "--data", data.path, "--run-dir", run.path, "--epochs", "2"] + Self.small, in: folder)
        #expect(trained.status == 0, "\(trained.stderr)")
        // 64 strings in batches of 16: 4 batches per epoch, evaluations after batches 1, 3, 4 of each.
        #expect(trained.stdout.contains("4 batches per epoch"))
        let log = try String(contentsOf: run.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
        let evaluations = log.split(separator: "\n").filter { $0.contains("\"type\":\"valid\"") }
        #expect(evaluations.count == 2 * 6)
        #expect(evaluations.allSatisfy { $0.contains("\"accuracy\"") })
        for name in ["config.json", "report.json", "checkpoints/best.safetensors", "checkpoints/step-0000008.safetensors"] {
            #expect(FileManager.default.fileExists(atPath: run.appendingPathComponent(name).path), "\(name)")
        }
        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: run.appendingPathComponent("report.json"))) as! [String: Any]
        #expect((report["training_seconds"] as? Double ?? -1) >= 0)

        // The best checkpoint evaluated again gives what the report says.
        let evaluated = try lmtrain(["formal", "eval", "--checkpoint", run.appendingPathComponent("checkpoints/best.safetensors").path], in: folder)
        #expect(evaluated.status == 0, "\(evaluated.stderr)")
        let results = report["results"] as! [[String: Any]]
        for result in results {
            let split = result["split"] as! String
            let accuracy = (result["metrics"] as! [[String: Any]]).first { $0["name"] as? String == "accuracy" }!["value"] as! Double
            #expect(evaluated.stdout.contains(String(format: "%@: loss", split)) && evaluated.stdout.contains(String(format: "accuracy %.2f", accuracy)))
        }

        // A finished run resumes to nothing; a second run in the same folder is refused.
        let resumed = try lmtrain(["train", "--resume", run.path], in: folder)
        #expect(resumed.status == 0 && resumed.stdout.contains("at step 8"), "\(resumed.stderr)")
        let again = try lmtrain(["formal", "train", "--model", "srwm", "--task", "parity", "--data", data.path, "--run-dir", run.path], in: folder)
        #expect(again.status != 0 && again.stderr.contains("already holds a run"))

        // The accountant knows every formal preset.
        let count = try lmtrain(["count", "--preset", "parity-srwm"], in: folder)
        #expect(count.status == 0 && count.stdout.contains("stored fast weights") && count.stdout.contains("batch 32 x 50 positions"), "\(count.stderr)")
    }

    /// A grid of two models, two seeds: report.md with the table and the seeds table, the
    /// charts, and a second call that trains nothing.
    @Test func sweepRunsTheGridAndResumes() throws {
        let folder = scratch("formal-sweep")
        let data = try Self.smallData("parity", in: folder, train: 32, evaluation: 8)
        let output = folder.appendingPathComponent("grid")
        let arguments = ["formal", "sweep", "--models", "lstm,elstm", "--tasks", "parity", "--seeds", "2", "--jobs", "2",
                         "--output", output.path, "--data", data.path, "--epochs", "1"] + Self.small
        let first = try lmtrain(arguments, in: folder)
        #expect(first.status == 0, "\(first.stderr)")
        #expect(first.stdout.contains("4 runs, 0 already finished"))
        let markdown = try String(contentsOf: output.appendingPathComponent("report.md"), encoding: .utf8)
        #expect(markdown.contains("| parity |") && markdown.contains("## parity: seeds") && markdown.contains("Runs: 4 finished of 4"))
        #expect(FileManager.default.fileExists(atPath: output.appendingPathComponent("accuracy-parity.svg").path))
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: output.appendingPathComponent("report.json"))) as! [String: Any]
        #expect((json["runs"] as! [Any]).count == 4)
        let second = try lmtrain(arguments, in: folder)
        #expect(second.status == 0 && second.stdout.contains("4 runs, 4 already finished"), "\(second.stdout)")
    }

    @Test func badFormalInputIsOneLine() throws {
        let folder = scratch("formal-bad")
        let data = try Self.smallData("dyck-1", in: folder, train: 20, evaluation: 8)
        // A wrong target: position 1 of line 2 says depth 0 after an opening bracket.
        let wrong = folder.appendingPathComponent("wrong")
        try FileManager.default.copyItem(at: data, to: wrong)
        let targets = wrong.appendingPathComponent("train_50.tgt")
        var lines = try String(contentsOf: targets, encoding: .utf8).split(separator: "\n").map(String.init)
        var symbols = lines[1].split(separator: " ").map(String.init)
        symbols[0] = symbols[0] == "1" ? "0" : "1"
        lines[1] = symbols.joined(separator: " ")
        try Data((lines.joined(separator: "\n") + "\n").utf8).write(to: targets)
        let cases: [([String], String)] = [
            (["formal", "train", "--model", "lsmt", "--task", "parity"], "'lsmt' is invalid for '--model <model>'"),
            (["formal", "train", "--model", "lstm", "--task", "parityy"], "'parityy' is invalid for '--task <task>'"),
            (["formal", "data", "--task", "nope", "--out", "x"], "'nope' is invalid for '--task <task>'"),
            (["formal", "sweep", "--models", "lstm,foo"], "--models: 'foo' is unknown"),
            (["formal", "train", "--model", "lstm", "--task", "dyck-1", "--data", folder.appendingPathComponent("absent").path], "absent/train_50.src: missing"),
            (["formal", "train", "--model", "lstm", "--task", "dyck-1", "--data", wrong.path], "train_50.tgt: line 2, position 1"),
            (["train", "--preset", "dyck-1-elstm", "--layers", "2", "--data", data.path], "model.layers must be 1 for the e-LSTM"),
            (["train", "--preset", "dyck-1-lstm", "--heads", "2", "--data", data.path], "unknown key 'model.heads'"),
            (["formal", "train", "--model", "lt", "--task", "dyck-1", "--heads", "3", "--data", data.path], "heads"),
        ]
        for (arguments, fragment) in cases {
            // Training runs get their own folder, so that a case that wrongly starts leaves no run behind.
            let runDirectory = ["--run-dir", folder.appendingPathComponent("run-\(UUID().uuidString.prefix(6))").path]
            let result = try lmtrain(arguments + (arguments.contains("train") ? runDirectory : []), in: folder)
            #expect(result.status != 0, "\(arguments)")
            #expect(result.stderr.split(separator: "\n").count == 1, "\(arguments): \(result.stderr)")
            #expect(result.stderr.contains(fragment), "\(arguments): \(result.stderr)")
        }
    }
}
