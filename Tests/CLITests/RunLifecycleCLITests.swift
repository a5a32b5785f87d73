import Foundation
import Testing
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// `lmtrain` running in the background, its output going to files (a pipe nobody reads would
/// fill and stall it).
final class BackgroundRun {
    let process = Process()
    let stdout: URL, stderr: URL

    init(_ arguments: [String], in directory: URL) throws {
        let id = UUID().uuidString.prefix(6)
        stdout = directory.appendingPathComponent("bg-\(id).out")
        stderr = directory.appendingPathComponent("bg-\(id).err")
        FileManager.default.createFile(atPath: stdout.path, contents: nil)
        FileManager.default.createFile(atPath: stderr.path, contents: nil)
        process.executableURL = binary
        process.arguments = arguments
        process.currentDirectoryURL = directory
        process.environment = ProcessInfo.processInfo.environment.filter { $0.key != "LMTRAIN_DATA" }
        process.standardOutput = try FileHandle(forWritingTo: stdout)
        process.standardError = try FileHandle(forWritingTo: stderr)
        process.standardInput = FileHandle.nullDevice
        try process.run()
    }

    var pid: Int32 { process.processIdentifier }

    func signal(_ number: Int32) { kill(pid, number) }

    /// Waits for the end and returns what it printed.
    func wait() throws -> Invocation {
        process.waitUntilExit()
        return Invocation(
            status: process.terminationStatus, stdout: try String(contentsOf: stdout, encoding: .utf8),
            stderr: try String(contentsOf: stderr, encoding: .utf8))
    }
}

/// Polls `condition` every 20 ms for up to `seconds`.
func waitUntil(seconds: Double = 120, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if condition() { return true }
        usleep(20_000)
    }
    return false
}

/// Train records in a run's metrics log.
func trainLines(_ run: URL) -> Int {
    let text = (try? String(contentsOf: run.appendingPathComponent("metrics.jsonl"), encoding: .utf8)) ?? ""
    return text.split(separator: "\n").filter { $0.contains("\"type\":\"train\"") }.count
}

/// A run that is still training when the test acts on it (about 3 ms a step in a release
/// build), short enough that resuming it finishes in seconds.
let longRunSteps = 2000
let longRunFlags = [
    "--d-model", "64", "--layers", "2", "--heads", "2", "--d-ff", "128", "--batch-size", "4",
    "--segment-length", "32", "--memory-length", "32", "--log-every", "1", "--eval-every", "0",
    "--eval-batch-size", "2", "--eval-memory", "1", "--steps", "\(longRunSteps)", "--threads", "1",
]

@Suite(.serialized) struct RunLifecycleCLITests {
    @Test func numericFlagsOutOfRangeNameTheFlag() throws {
        let folder = scratch("ranges")
        let cases: [([String], String)] = [
            (["train", "--steps", "-5"], "--steps must be at least 1 (got -5)"),
            (["train", "--stop-at", "-1"], "--stop-at must be at least 1 (got -1)"),
            (["train", "--stop-at", "0"], "--stop-at must be at least 1 (got 0)"),
            (["train", "--batch-size", "0"], "--batch-size must be at least 1 (got 0)"),
            (["train", "--eval-every", "-1"], "--eval-every must be at least 0 (got -1)"),
            (["train", "--lr", "-0.1"], "--lr must be a finite number > 0 (got -0.1)"),
            (["train", "--dropout", "1.5"], "--dropout must be a finite number >= 0 and < 1 (got 1.5)"),
            (["train", "--adam-beta2", "1"], "--adam-beta2 must be a finite number >= 0 and < 1 (got 1.0)"),
            (["train", "--ffn", "moe", "--experts", "-2"], "--experts must be at least 1 (got -2)"),
            (["train", "--threads", "-1"], "--threads must be >= 0 (got -1)"),
            (["count", "--layers", "-3"], "--layers must be at least 1 (got -3)"),
            (["formal", "train", "--model", "lstm", "--task", "parity", "--steps", "-5"], "--steps must be at least 1 (got -5)"),
            (["formal", "train", "--model", "lstm", "--task", "parity", "--stop-at=-1"], "--stop-at must be at least 1"),
            (["train", "--resume", folder.path, "--run-dir", folder.path], "--resume continues a run in its own directory: drop --run-dir"),
        ]
        for (arguments, fragment) in cases {
            try expectOneLineError(arguments, [fragment], in: folder)
        }
    }

    @Test func aBusyRunDirectoryIsRefusedNamingTheProcessAndKill9LeavesNoStaleLock() throws {
        let folder = scratch("lock")
        let corpus = try textFile(in: folder)
        let run = folder.appendingPathComponent("run")
        let first = try BackgroundRun(["train", "--data", corpus.path, "--run-dir", run.path, "--checkpoint-every", "20"] + longRunFlags, in: folder)
        defer { first.signal(SIGKILL) }
        #expect(waitUntil { trainLines(run) > 0 }, "the first run never trained")
        for arguments in [["train", "--resume", run.path], ["train", "--data", corpus.path, "--run-dir", run.path] + tinyFlags] {
            let second = try lmtrain(arguments, in: folder)
            #expect(second.status != 0)
            #expect(second.stderr.split(separator: "\n").count == 1, "\(second.stderr)")
            #expect(second.stderr.contains("is in use by process \(first.pid)"), "\(second.stderr)")
        }
        first.signal(SIGKILL)
        let killed = try first.wait()
        #expect(killed.status == SIGKILL)
        // The lock died with its holder; the run resumes and finishes.
        let resumed = try lmtrain(["train", "--resume", run.path, "--threads", "1"], in: folder)
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(FileManager.default.fileExists(atPath: run.appendingPathComponent("report.json").path))
    }

    @Test(arguments: [SIGINT, SIGTERM])
    func aSignalStopsAfterTheStepWithACheckpointAndTheResumeHint(signal: Int32) throws {
        let folder = scratch("signal")
        let corpus = try textFile(in: folder)
        let run = folder.appendingPathComponent("run")
        let training = try BackgroundRun(["train", "--data", corpus.path, "--run-dir", run.path] + longRunFlags, in: folder)
        defer { training.signal(SIGKILL) }
        #expect(waitUntil { trainLines(run) > 0 }, "the run never trained")
        training.signal(signal)
        let stopped = try training.wait()
        #expect(stopped.status == 128 + signal, "\(stopped.stdout)\n\(stopped.stderr)")
        #expect(stopped.stdout.contains("continue with: lmtrain train --resume \(run.path)"), "\(stopped.stdout)")
        let checkpoints = try FileManager.default.contentsOfDirectory(atPath: run.appendingPathComponent("checkpoints").path)
            .filter { $0.hasPrefix("step-") }.sorted()
        let step = trainLines(run)
        #expect(step < longRunSteps && checkpoints.last == String(format: "step-%07d.safetensors", step), "\(checkpoints), step \(step)")
        let resumed = try lmtrain(["train", "--resume", run.path, "--threads", "1"], in: folder)
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(resumed.stdout.contains("at step \(step)"))
        #expect(trainLines(run) == longRunSteps)
    }

    @Test func anUnstartedRunDirectoryIsTakenOverAndAFinishedRunIsNotResumedAgain() throws {
        let folder = scratch("unstarted")
        let corpus = try textFile(in: folder)
        let run = folder.appendingPathComponent("run")
        // What a start whose allocation trapped used to leave behind.
        try FileManager.default.createDirectory(at: run, withIntermediateDirectories: true)
        try Data("{}".utf8).write(to: run.appendingPathComponent("config.json"))
        let train = try lmtrain(["train", "--data", corpus.path, "--steps", "3", "--run-dir", run.path] + tinyFlags, in: folder)
        #expect(train.status == 0, "\(train.stderr)")
        // The final evaluation shows its progress (plain lines: this is not a terminal).
        #expect(train.stdout.contains("evaluating valid: ") && train.stdout.contains("evaluated test: "), "\(train.stdout)")

        let metrics = try Data(contentsOf: run.appendingPathComponent("metrics.jsonl"))
        let again = try lmtrain(["train", "--resume", run.path], in: folder)
        #expect(again.status == 0, "\(again.stderr)")
        #expect(again.stdout.contains("finished at step 3") && again.stdout.contains("nothing to resume"), "\(again.stdout)")
        #expect(try Data(contentsOf: run.appendingPathComponent("metrics.jsonl")) == metrics)
    }

    @Test func aRunThatCannotFitIsRefusedBeforeAllocatingUnlessForced() throws {
        let folder = scratch("memory")
        let corpus = try textFile(in: folder)
        let run = folder.appendingPathComponent("run")
        let arguments = ["train", "--data", corpus.path, "--steps", "2", "--run-dir", run.path] + tinyFlags
        let hook = ["LMTRAIN_ASSUME_AVAILABLE_MEMORY": "1000000"]
        let refused = try lmtrain(arguments, in: folder, environment: hook)
        #expect(refused.status != 0)
        #expect(refused.stderr.split(separator: "\n").count == 1, "\(refused.stderr)")
        for fragment in ["at its peak", "only 1.0 MiB is available (LMTRAIN_ASSUME_AVAILABLE_MEMORY)", "--batch-size", "--force"] {
            #expect(refused.stderr.contains(fragment), "\(refused.stderr)")
        }
        #expect(!FileManager.default.fileExists(atPath: run.appendingPathComponent("config.json").path))
        let forced = try lmtrain(arguments + ["--force"], in: folder, environment: hook)
        #expect(forced.status == 0, "\(forced.stderr)")
    }

    @Test func defaultRunDirectoriesOfOneSecondDoNotCollide() throws {
        let folder = scratch("default-dir")
        let corpus = try textFile(in: folder)
        // Runs of every second of the next minute already exist here.
        let formatter = DateFormatter()
        formatter.dateFormat = "yyyyMMdd-HHmmss"
        let now = Date()
        for second in 0..<60 {
            let taken = folder.appendingPathComponent("runs/quickstart-\(formatter.string(from: now.addingTimeInterval(Double(second))))")
            try FileManager.default.createDirectory(at: taken, withIntermediateDirectories: true)
            try Data("{}".utf8).write(to: taken.appendingPathComponent("config.json"))
            try Data("{\"type\":\"train\",\"step\":1}\n".utf8).write(to: taken.appendingPathComponent("metrics.jsonl"))
        }
        let train = try lmtrain(["train", "--data", corpus.path, "--steps", "1"] + tinyFlags, in: folder)
        #expect(train.status == 0, "\(train.stderr)")
        let line = train.stdout.split(separator: "\n").first { $0.hasPrefix("run ") && $0.contains("/runs/quickstart-") }
        #expect(line?.hasSuffix("-2") == true, "\(train.stdout)")
    }

    @Test func resumeSaysWhatItDoesWithAnEditedConfigAndThreadsAreNotOverGranted() throws {
        let folder = scratch("drift")
        let corpus = try textFile(in: folder)
        let run = folder.appendingPathComponent("run")
        let cores = Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        let train = try lmtrain(["train", "--data", corpus.path, "--steps", "4", "--stop-at", "2", "--run-dir", run.path, "--threads", "\(cores + 5)"] + tinyFlags, in: folder)
        #expect(train.status == 0, "\(train.stderr)")
        #expect(train.stdout.contains("--threads \(cores + 5) is more than the \(cores) cores here: using \(cores)"), "\(train.stdout)")
        #expect(train.stdout.contains(", \(cores) threads"), "\(train.stdout)")

        let file = run.appendingPathComponent("config.json")
        let edited = try String(contentsOf: file, encoding: .utf8)
            .replacingOccurrences(of: "\"steps\" : 4", with: "\"steps\" : 40")
        try Data(edited.utf8).write(to: file)
        let resumed = try lmtrain(["train", "--resume", run.path], in: folder)
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(resumed.stdout.contains("differs from its checkpoint in training.steps (config.json 40, checkpoint 4)"), "\(resumed.stdout)")
        #expect(resumed.stdout.contains("resume continues with the checkpoint's values"))
        #expect(trainLines(run) == 4)
    }

    @Test func benchRefusesAnUnwritableOutputBeforeMeasuring() throws {
        let folder = scratch("bench-output")
        let result = try lmtrain(["bench", "--output", "/proc/lmtrain-cannot-write/bench.json"], in: folder)
        #expect(result.status != 0)
        #expect(result.stderr.split(separator: "\n").count == 1 && result.stderr.contains("--output /proc/lmtrain-cannot-write/bench.json"), "\(result.stderr)")
        #expect(!result.stdout.contains("sgemm"), "the benchmark ran first: \(result.stdout)")
    }
}
