import Foundation
import Testing
import TestSupport

/// The `lmtrain` binary built with these tests: the executable next to the test bundle (the
/// same build folder and configuration), else `.build/<configuration>/lmtrain`.
let binary: URL = {
    let sibling = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        .deletingLastPathComponent().appendingPathComponent("lmtrain")
    if FileManager.default.isExecutableFile(atPath: sibling.path) { return sibling }
    #if DEBUG
    let configuration = "debug"
    #else
    let configuration = "release"
    #endif
    return packageRoot.appendingPathComponent(".build/\(configuration)/lmtrain")
}()

/// Runs `arguments` and expects what every user mistake must give: a non-zero exit that is not
/// a signal (a trap ends with one), exactly one line on stderr holding every one of
/// `fragments`, and no Swift runtime or Foundation error text.
func expectOneLineError(_ arguments: [String], _ fragments: [String], in folder: URL) throws {
    let result = try lmtrain(arguments, in: folder)
    #expect(result.status != 0 && result.status < 128, "\(arguments): status \(result.status)")
    #expect(result.stderr.split(separator: "\n").count == 1, "\(arguments): \(result.stderr)")
    for fragment in fragments {
        #expect(result.stderr.contains(fragment), "\(arguments): \(result.stderr)")
    }
    #expect(!result.stderr.contains("Fatal error") && !result.stderr.contains("NSCocoaErrorDomain"), "\(arguments)")
}

struct Invocation {
    let status: Int32
    let stdout: String
    let stderr: String
}

/// Runs the binary in `directory` (its `Data/` there, whatever `LMTRAIN_DATA` says), feeding
/// `input` on standard input when given, with `environment` added to this process's.
func lmtrain(
    _ arguments: [String], in directory: URL? = nil, input: Data? = nil, environment: [String: String] = [:]
) throws -> Invocation {
    try runProcess(binary, arguments, in: directory, input: input, environment: environment)
}

/// Runs `executable` as `lmtrain(...)` runs the binary (a launcher such as mpirun, say).
func runProcess(
    _ executable: URL, _ arguments: [String], in directory: URL? = nil, input: Data? = nil,
    environment: [String: String] = [:]
) throws -> Invocation {
    let process = Process()
    process.executableURL = executable
    process.arguments = arguments
    if let directory { process.currentDirectoryURL = directory }
    process.environment = ProcessInfo.processInfo.environment.filter { $0.key != "LMTRAIN_DATA" }
        .merging(environment) { _, added in added }
    let out = Pipe(), err = Pipe(), stdin = Pipe()
    process.standardOutput = out
    process.standardError = err
    process.standardInput = input == nil ? FileHandle.nullDevice : stdin
    try process.run()
    if let input {
        stdin.fileHandleForWriting.write(input)
        try stdin.fileHandleForWriting.close()
    }
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
            (["train", "--ffn", "nosuch"], "'nosuch' is invalid for '--ffn <ffn>'"),
            (["train", "--ffn", "dense", "--experts", "16"], "--experts applies to --ffn moe|switch|sbase, not dense"),
            (["train", "--ffn", "moe", "--k", "20"], "k = 20 must be between 1 and the number of experts 16"),
            (["train", "--ffn", "moe", "--experts", "100000"], "cannot match"),
            (["train", "--split", "0.9,0.1"], "--split"),
            (["train", "--data", corpus.path, "--run-dir", "/proc/lmtrain-cannot-write"] + tinyFlags, "/proc"),
            (["train", "--resume", folder.appendingPathComponent("no-run").path], "no such run directory"),
            (["eval", "--checkpoint", notCheckpoint.path], "not a valid safetensors file"),
            (["eval", "--checkpoint", notCheckpoint.path, "--split", "train"], "'train' is invalid for '--split <split>'"),
        ]
        // --help is not an error: the whole help, exit 0.
        let help = try lmtrain(["train", "--help"], in: folder)
        #expect(help.status == 0 && help.stdout.contains("--experts") && help.stdout.split(separator: "\n").count > 20)
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

        // A run that died before its first checkpoint starts over with its config and gives
        // the same losses.
        let firstLosses = try String(contentsOf: run.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
            .split(separator: "\n").filter { $0.contains("\"type\":\"train\"") }.map { $0.split(separator: ",")[2] }
        try FileManager.default.removeItem(at: run.appendingPathComponent("checkpoints"))
        let restarted = try lmtrain(["train", "--resume", run.path], in: folder)
        #expect(restarted.status == 0, "\(restarted.stderr)")
        #expect(restarted.stdout.contains("starting it over from step 0"))
        let secondLosses = try String(contentsOf: run.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
            .split(separator: "\n").filter { $0.contains("\"type\":\"train\"") }.map { $0.split(separator: ",")[2] }
        #expect(firstLosses.count == 4 && firstLosses == secondLosses)
    }
}

@Suite(.serialized) struct AccountingCommandTests {
    @Test func auditFailsOnAnUnequalPairAndPassesOnAMatchedOne() throws {
        let folder = scratch("audit")
        let matched = try lmtrain(["audit", "e8", "e8 --ffn moe --experts 16", "e8-pkm-matched"], in: folder)
        #expect(matched.status == 0, "\(matched.stderr)")
        #expect(matched.stdout.contains("comparable"))
        let unequal = try lmtrain(["audit", "e8", "e8-pkm"], in: folder)
        #expect(unequal.status != 0)
        #expect(unequal.stderr.contains("differ by 36.96%"), "\(unequal.stderr)")
        let mixed = try lmtrain(["audit", "e8", "quickstart"], in: folder)
        #expect(mixed.status != 0 && mixed.stderr.contains("compare models of the same vocabulary"))
        let missing = try lmtrain(["audit", "e8", folder.appendingPathComponent("no-run/").path], in: folder)
        #expect(missing.status != 0 && missing.stderr.contains("no such run directory"))
        let count = try lmtrain(["count", "--preset", "wt-s-star-moe", "--json"], in: folder)
        let json = try JSONSerialization.jsonObject(with: Data(count.stdout.utf8)) as! [String: Any]
        // By hand: 8000*412 + 16 * (5*410*412 + 2*410 + 2 + 4*412 + 2*128*128*412 + 128*412) + 2*412 + 412*8000 + 8000.
        #expect((json["parameters"] as! [String: Any])["total"] as? Int == 237_004_376)
    }

    /// Two variants through `lmtrain compare` on a tiny corpus: the report, its plots, and the
    /// refusal of an unequal pair.
    @Test func compareWritesTheReportAndRefusesUnequalVariants() throws {
        let folder = scratch("compare")
        let corpus = try textFile(in: folder)
        let small = ["--data", corpus.path, "--steps", "2", "--batch-size", "2", "--segment-length", "8",
                     "--memory-length", "8", "--eval-batch-size", "2", "--eval-memory", "1", "--log-every", "1"]
        let output = folder.appendingPathComponent("cmp")
        let run = try lmtrain(["compare", "--preset", "quickstart", "--variants", "dense,moe", "--output", output.path] + small, in: folder)
        #expect(run.status == 0, "\(run.stderr)")
        for name in ["report.md", "report.json", "validation.svg", "usage.svg", "dense/report.json", "moe/report.json"] {
            #expect(FileManager.default.fileExists(atPath: output.appendingPathComponent(name).path), "\(name)")
        }
        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: output.appendingPathComponent("report.json"))) as! [String: Any]
        let rows = report["rows"] as! [[String: Any]]
        #expect(rows.map { $0["variant"] as! String } == ["dense", "moe"])
        #expect(rows[1]["feedforward_share_used"] as? Double == 0.25)
        #expect(report["unequal"] as? Bool == false)
        let markdown = try String(contentsOf: output.appendingPathComponent("report.md"), encoding: .utf8)
        #expect(markdown.contains("| variant | params | active | FFN used | FLOPs/token | valid bpc | test bpc | train tok/s | peak memory |"))
        // PKM with as many values as hidden units has far fewer parameters: refused...
        let refused = try lmtrain(["compare", "--preset", "quickstart", "--variants", "dense,pkm", "--output", folder.appendingPathComponent("x").path] + small, in: folder)
        #expect(refused.status != 0 && refused.stderr.contains("refusing an unequal comparison"), "\(refused.stderr)")
        // ...unless allowed, and then the report says so.
        let allowed = folder.appendingPathComponent("unequal")
        let forced = try lmtrain(["compare", "--preset", "quickstart", "--variants", "dense,pkm", "--allow-unequal", "--output", allowed.path] + small, in: folder)
        #expect(forced.status == 0, "\(forced.stderr)")
        let forcedMarkdown = try String(contentsOf: allowed.appendingPathComponent("report.md"), encoding: .utf8)
        #expect(forcedMarkdown.contains("do NOT have equal parameter counts"))
    }

    /// `compare --seeds 2`: a run per variant and seed, the summary over seeds with the
    /// difference to dense, and a stopped comparison continued by the same command (finished
    /// runs kept, the stopped one resumed) or refused when the config changed.
    @Test func compareWithSeedsSummarisesAndContinues() throws {
        let folder = scratch("compare-seeds")
        let corpus = try textFile(in: folder)
        let small = ["--data", corpus.path, "--steps", "2", "--batch-size", "2", "--segment-length", "8",
                     "--memory-length", "8", "--eval-batch-size", "2", "--eval-memory", "1", "--log-every", "1", "--seed", "7"]
        let output = folder.appendingPathComponent("cmp")
        // --seeds 2 for dense, 3 for σ-MoE through VARIANT:N.
        let command = ["compare", "--preset", "quickstart", "--variants", "dense,moe:3", "--seeds", "2", "--output", output.path] + small
        let run = try lmtrain(command, in: folder)
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stdout.contains("over the seeds"))
        let reportURL = output.appendingPathComponent("report.json")
        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: reportURL)) as! [String: Any]
        #expect(report["seeds"] as? [Int] == [7, 8, 9])
        let rows = report["rows"] as! [[String: Any]]
        #expect(rows.map { "\($0["variant"]!)-\($0["seed"]!)" } == ["dense-7", "dense-8", "moe-7", "moe-8", "moe-9"])
        let summaries = report["summaries"] as! [[String: Any]]
        #expect(summaries.map { $0["seeds"] as? Int } == [2, 3])
        let testValues = rows.map { (($0["test"] as! [String: Any])["metrics"] as! [[String: Any]])[0]["value"] as! Double }
        let dense = (summaries[0]["test"] as! [String: Any])["mean"] as! Double
        #expect(abs(dense - (testValues[0] + testValues[1]) / 2) < 1e-12)
        let difference = summaries[1]["test_difference_to_dense"] as! [String: Any]
        #expect(abs(difference["difference"] as! Double - ((testValues[2] + testValues[3] + testValues[4]) / 3 - dense)) < 1e-12)
        #expect(difference["half_width_95"] is Double)
        // The seeds' runs differ (their initialisations do).
        #expect(testValues[0] != testValues[1])

        // A comparison stopped in its last run: the same command keeps the finished runs and
        // resumes the stopped one.
        let dense7 = try Data(contentsOf: output.appendingPathComponent("dense-seed-7/metrics.jsonl"))
        try FileManager.default.removeItem(at: reportURL)
        try FileManager.default.removeItem(at: output.appendingPathComponent("moe-seed-9/report.json"))
        let again = try lmtrain(command, in: folder)
        #expect(again.status == 0, "\(again.stderr)")
        #expect(again.stdout.components(separatedBy: "finished earlier: kept").count == 5, "\(again.stdout)")
        #expect(try Data(contentsOf: output.appendingPathComponent("dense-seed-7/metrics.jsonl")) == dense7)
        #expect(FileManager.default.fileExists(atPath: reportURL.path))
        let resumed = try JSONSerialization.jsonObject(with: Data(contentsOf: reportURL)) as! [String: Any]
        let resumedValues = (resumed["rows"] as! [[String: Any]]).map { (($0["test"] as! [String: Any])["metrics"] as! [[String: Any]])[0]["value"] as! Double }
        #expect(resumedValues == testValues)

        // The results document from the finished comparison: its seed table and the claims.
        let document = folder.appendingPathComponent("results.md")
        let results = try lmtrain(["results", "--comparison", output.path, "--output", document.path, "--commit", "abc123"], in: folder)
        #expect(results.status == 0, "\(results.stderr)")
        let markdown = try String(contentsOf: document, encoding: .utf8)
        #expect(markdown.contains("at commit `abc123`"))
        #expect(markdown.contains("| moe | 3 |"), "\(markdown)")
        #expect(markdown.contains("σ-MoE matches or beats the parameter-equal dense model"))
        #expect(markdown.contains("moe − dense, test bpc: "))
        let unfinished = try lmtrain(["results", "--comparison", folder.path], in: folder)
        #expect(unfinished.status != 0 && unfinished.stderr.contains("no report.json"), "\(unfinished.stderr)")

        // A seed count that is not a positive number: one line naming the flag.
        let badCount = try lmtrain(["compare", "--preset", "quickstart", "--variants", "dense:0,moe"], in: folder)
        #expect(badCount.status != 0 && badCount.stderr.contains("--variants: 'dense:0' needs a seed count"), "\(badCount.stderr)")

        // Stopped again, but asked with other settings: refused.
        try FileManager.default.removeItem(at: reportURL)
        let changed = try lmtrain(command + ["--lr", "0.002"], in: folder)
        #expect(changed.status != 0 && changed.stderr.contains("holds a stopped comparison with another config"), "\(changed.stderr)")
    }

    /// The accountant's predicted training peak is within 15% of the measured peak resident
    /// memory of real runs of the bench preset, dense and σ-MoE.
    @Test(.enabled(if: isReleaseBuild, "bench-preset training steps need a release build: run Scripts/test"))
    func predictedPeakMemoryMatchesMeasuredRuns() throws {
        let folder = scratch("rss")
        // A 300 kB slice of the default corpus keeps the final evaluation short.
        let kjv = packageRoot.appendingPathComponent("Data/kjv.txt")
        let text = try Data(contentsOf: kjv).prefix(300_000)
        let corpus = folder.appendingPathComponent("kjv-300k.txt")
        try text.write(to: corpus)
        for flags in [[String](), ["--ffn", "moe", "--experts", "16", "--expert-size", "64", "--k", "4"]] {
            let run = folder.appendingPathComponent("run-\(flags.count)")
            let result = try lmtrain(["train", "--preset", "bench", "--steps", "3", "--data", corpus.path, "--run-dir", run.path] + flags, in: folder)
            #expect(result.status == 0, "\(result.stderr)")
            let report = try JSONSerialization.jsonObject(with: Data(contentsOf: run.appendingPathComponent("report.json"))) as! [String: Any]
            let measured = Double(report["peak_resident_bytes"] as! Int)
            let count = try lmtrain(["count", "--preset", "bench", "--data", corpus.path, "--json"] + flags, in: folder)
            let account = try JSONSerialization.jsonObject(with: Data(count.stdout.utf8)) as! [String: Any]
            let predicted = Double((account["memory"] as! [String: Any])["peak_training"] as! Int)
            #expect(abs(predicted / measured - 1) < 0.15, "\(flags): predicted \(predicted / 1048576) MiB, measured \(measured / 1048576) MiB")
        }
    }
}
