import Foundation
import Testing

/// Absurd numbers on the command line and in `--config` files: one line naming the flag or
/// key, a non-zero exit, never a trap (a trap exits with a signal, or prints "Fatal error").
@Suite(.serialized) struct InputValidationCLITests {
    /// Item: NaN and infinite reals, from flags (named by flag) and from JSON (named by key),
    /// for the language-model and the formal-language presets.
    @Test func nonFiniteRealsAreRefusedNamingTheFlagOrKey() throws {
        let folder = scratch("nonfinite")
        let flags: [([String], String)] = [
            (["--lr", "nan"], "--lr"), (["--weight-decay", "inf"], "--weight-decay"),
            (["--dropout", "nan"], "--dropout"), (["--ffn", "moe", "--moe-reg", "nan"], "--moe-reg"),
            (["--ffn", "moe", "--expert-dropout", "nan"], "--expert-dropout"), (["--clip=-inf"], "--clip"),
            (["--ffn", "switch", "--balance", "inf"], "--balance"), (["--adam-epsilon", "nan"], "--adam-epsilon"),
        ]
        for (arguments, flag) in flags {
            try expectOneLineError(["count"] + arguments, [flag, "finite"], in: folder)
        }
        try expectOneLineError(["count", "--preset", "parity-srwm", "--dropout", "nan"], ["--dropout", "finite"], in: folder)
        try expectOneLineError(["formal", "train", "--model", "lstm", "--task", "parity", "--lr", "inf"], ["--lr", "finite"], in: folder)
        // JSON has no NaN or infinity; a number beyond Double's range is refused with the key.
        let huge = folder.appendingPathComponent("huge.json")
        try Data(#"{"training": {"learning_rate": 1e999}}"#.utf8).write(to: huge)
        try expectOneLineError(["count", "--config", huge.path], ["learning_rate", "1e999", "huge.json"], in: folder)
        let formal = folder.appendingPathComponent("formal.json")
        try Data(#"{"model": {"dropout": -1e999}}"#.utf8).write(to: formal)
        try expectOneLineError(
            ["count", "--preset", "parity-lstm", "--config", formal.path], ["dropout", "1e999", "formal.json"], in: folder)
    }

    /// Item: every size flag of count, train and formal at a value no model could have, alone
    /// and together: a one-line refusal naming the field, not an overflow trap.
    @Test func absurdSizesAreRefusedNamingTheField() throws {
        let folder = scratch("sizes")
        try expectOneLineError(["count", "--d-model", "4000000000", "--layers", "1000000"], ["--d-model", "too large"], in: folder)
        let sizeFlags = [
            "--d-model", "--layers", "--heads", "--head-size", "--batch-size", "--segment-length", "--memory-length",
            "--eval-batch-size", "--eval-memory", "--steps", "--epochs", "--warmup", "--log-every", "--eval-every",
            "--eval-batches", "--checkpoint-every", "--keep-checkpoints",
        ]
        let huge = "4611686018427387904"  // 2^62
        for flag in sizeFlags {
            try expectOneLineError(["count", flag, huge], ["too large"], in: folder)
        }
        let feedForward: [[String]] = [
            ["--ffn", "dense", "--d-ff"], ["--ffn", "topk", "--topk", "4", "--d-ff"], ["--ffn", "topk", "--d-ff", "64", "--topk"],
            ["--ffn", "moe", "--experts"], ["--ffn", "moe", "--expert-size"], ["--ffn", "moe", "--k"],
            ["--ffn", "pkm", "--pkm-keys"], ["--ffn", "pkm", "--pkm-heads"], ["--ffn", "pkm", "--pkm-knn"],
        ]
        for arguments in feedForward {
            try expectOneLineError(["count"] + arguments + [huge], [arguments.last!, "too large"], in: folder)
            // At the limit the flag passes; the block's own checks or the size limits answer, or
            // the count is printed, never a trap.
            let result = try lmtrain(["count"] + arguments + ["\(1 << 24)"], in: folder)
            #expect(result.status < 128 && !result.stderr.contains("Fatal error"), "\(arguments): \(result.stderr)")
        }
        for flag in ["--ff-factor", "--emb-size", "--d-model", "--layers", "--heads", "--batch-size"] {
            try expectOneLineError(["count", "--preset", "parity-lstm", flag, huge], ["too large"], in: folder)
        }
        // Each size allowed alone, too large together.
        try expectOneLineError(
            ["count", "--d-model", "1048576", "--head-size", "4", "--heads", "262144", "--d-ff", "1048576",
             "--segment-length", "1048576", "--memory-length", "1048576"], ["too large", "lower them"], in: folder)
        try expectOneLineError(["formal", "train", "--model", "srwm", "--task", "parity", "--d-model", huge], ["too large"], in: folder)
        // A sweep's seed counts: refused, not a plan of 2^62 runs listed for ever.
        try expectOneLineError(["formal", "sweep", "--tasks", "parity", "--seeds", huge], ["--seeds", "at most 1000"], in: folder)
        try expectOneLineError(["formal", "sweep", "--tasks", "parity", "--seeds", "-5"], ["--seeds must be at least 1 (got -5)"], in: folder)
        try expectOneLineError(
            ["formal", "sweep", "--models", "lstm", "--tasks", "parity", "--output", "/proc/lmtrain-sweep"],
            ["--output /proc/lmtrain-sweep: cannot create the folder"], in: folder)
        try expectOneLineError(["formal", "sweep", "--tasks", "parity", "--task-seeds", "parity=\(huge)"], ["--task-seeds", "1000"], in: folder)
    }

    /// Item: a non-integer for an integer key names the key, the type and the file.
    @Test func wrongTypesInAConfigFileNameKeyTypeAndFile() throws {
        let folder = scratch("types")
        let cases: [(String, [String])] = [
            (#"{"model": {"d_model": 64.5}}"#, ["model.d_model", "an integer", "c.json"]),
            (#"{"training": {"steps": "ten"}}"#, ["training.steps", "an integer", "c.json"]),
            (#"{"training": {"learning_rate": "fast"}}"#, ["training.learning_rate", "a number", "c.json"]),
            (#"{"training": {"steps": 1e30}}"#, ["training.steps", "an integer", "c.json"]),
            (#"{"model": {"layers": null}}"#, ["model.layers", "c.json"]),
        ]
        let file = folder.appendingPathComponent("c.json")
        for (json, fragments) in cases {
            try Data(json.utf8).write(to: file)
            try expectOneLineError(["count", "--config", file.path], fragments, in: folder)
        }
        try Data("{\"model\": ".utf8).write(to: file)
        try expectOneLineError(["count", "--config", file.path], ["c.json", "not valid JSON"], in: folder)
    }

    /// Item: a split too short for evaluation is refused before training, with nothing written.
    @Test func emptyEvaluationSplitIsRefusedBeforeTraining() throws {
        let folder = scratch("split")
        let corpus = try textFile(in: folder)
        let run = folder.appendingPathComponent("run")
        for split in ["1,0,0", "0.99999,0.00001,0"] {
            try expectOneLineError(
                ["train", "--data", corpus.path, "--split", split, "--steps", "2", "--run-dir", run.path] + tinyFlags,
                ["split has", "--split"], in: folder)
            let checkpoints = (try? FileManager.default.contentsOfDirectory(atPath: run.appendingPathComponent("checkpoints").path)) ?? []
            #expect(checkpoints.isEmpty, "\(split): \(checkpoints)")
        }
    }
}
