import Foundation
import Testing
import TestSupport

/// `mpirun -np 2 lmtrain ...` on this machine (Open MPI, oversubscribed, root allowed through
/// its environment variables) against one process. A language model's batch forms 2 gradient
/// groups (the default), one per rank, whose sums both add in the same order, so the job's
/// losses, gradient norms, usage counts and evaluations are one process's to the last bit;
/// formal-language batches of varying size keep one group, and equal to rounding.
@Suite(.serialized) struct DataParallelCLITests {
    /// Open MPI's launcher, from Debian's openmpi-bin (Scripts/test installs it).
    static let launcher: URL? = ["/usr/bin/mpirun", "/usr/local/bin/mpirun"].map { URL(fileURLWithPath: $0) }
        .first { FileManager.default.isExecutableFile(atPath: $0.path) }

    /// Open MPI's settings for these tests: root allowed, more ranks than cores allowed.
    static let environment = [
        "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1", "OMPI_MCA_rmaps_base_oversubscribe": "1",
    ]

    /// Runs `arguments` as `ranks` ranks of one job.
    static func mpirun(_ ranks: Int, _ arguments: [String], in folder: URL) throws -> Invocation {
        let launcher = try #require(launcher, "mpirun not found: install openmpi-bin (Scripts/test does)")
        return try runProcess(launcher, ["-np", "\(ranks)", "--oversubscribe", binary.path] + arguments, in: folder, environment: environment)
    }

    /// A Transformer-XL small enough for 50 steps in seconds, with memory and a batch of 4.
    static let small = [
        "--d-model", "32", "--layers", "2", "--heads", "2", "--batch-size", "4",
        "--segment-length", "16", "--memory-length", "16", "--log-every", "1", "--eval-every", "25",
        "--eval-batches", "4", "--eval-batch-size", "2", "--eval-memory", "1", "--dropout", "0",
        "--threads", "1", "--lr", "0.003", "--warmup", "5",
    ]

    /// The `train` records of a run's metrics.
    static func trainRecords(_ run: URL) throws -> [[String: Any]] {
        try records(run).filter { $0["type"] as? String == "train" }
    }

    static func records(_ run: URL) throws -> [[String: Any]] {
        try String(contentsOf: run.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
            .split(separator: "\n").map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
    }

    /// Expects the same steps (loss and gradient norm within `tolerance` relative, usage counts
    /// equal), the same periodic evaluations and, when both runs finished, the same report.
    static func expectSameRun(_ a: URL, _ b: URL, tolerance: Double, _ label: String) throws {
        let (x, y) = (try records(a), try records(b))
        #expect(x.count == y.count && !x.isEmpty, "\(label): \(x.count) and \(y.count) records")
        for (p, q) in zip(x, y) {
            #expect(p["type"] as? String == q["type"] as? String && p["step"] as? Int == q["step"] as? Int, "\(label)")
            for key in ["loss", "gradient_norm"] where p["type"] as? String == "train" {
                let (u, v) = (p[key] as! Double, q[key] as! Double)
                #expect(abs(u - v) <= tolerance * abs(v), "\(label) step \(p["step"]!): \(key) \(u) vs \(v)")
            }
            if p["type"] as? String == "valid" {
                let (u, v) = (p["loss"] as! Double, q["loss"] as! Double)
                #expect(abs(u - v) <= tolerance * abs(v), "\(label) valid at step \(p["step"]!): \(u) vs \(v)")
            }
            let usage = { (r: [String: Any]) in ((r["usage"] as? [[String: Any]]) ?? []).map { $0["counts"] as! [Int] } }
            #expect(usage(p) == usage(q), "\(label) step \(p["step"]!): usage counts differ")
        }
    }

    static func finalLosses(_ run: URL) throws -> [Double] {
        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: run.appendingPathComponent("report.json"))) as! [String: Any]
        return (report["results"] as! [[String: Any]]).map { $0["loss"] as! Double }
    }

    /// 50 steps of every kind of feedforward block whose training reduces over the batch (the
    /// σ-MoE regulariser, Switch's balancing loss, PKM's batch-normalised query), the dense and
    /// top-K blocks, and σ-MoE with dropout: two ranks give one process's losses and gradient
    /// norms exactly at every step, and the same final evaluation.
    @Test(arguments: [
        ["--ffn", "dense", "--d-ff", "64"],
        ["--ffn", "moe", "--experts", "8", "--k", "2", "--moe-reg", "0.01"],
        ["--ffn", "switch", "--experts", "8"],
        ["--ffn", "sbase", "--experts", "8", "--k", "2"],
        ["--ffn", "pkm", "--pkm-query", "mlp-bn", "--pkm-heads", "2", "--pkm-knn", "8"],
        ["--ffn", "topk", "--d-ff", "64"],
        // Dropout and expert dropout: every stream draws from its own generator.
        ["--ffn", "moe", "--experts", "8", "--k", "2", "--dropout", "0.1", "--expert-dropout", "0.1"],
    ])
    func twoRanksTrainLikeOneProcess(variant: [String]) throws {
        let folder = scratch("mpi-\(variant[1])")
        let corpus = try textFile(in: folder)
        let common = ["train", "--data", corpus.path, "--steps", "50"] + Self.small + variant
        let single = folder.appendingPathComponent("single"), job = folder.appendingPathComponent("job")
        let one = try lmtrain(common + ["--run-dir", single.path], in: folder)
        #expect(one.status == 0, "\(one.stderr)")
        let two = try Self.mpirun(2, common + ["--run-dir", job.path], in: folder)
        #expect(two.status == 0, "\(two.stderr)")
        #expect(try Self.trainRecords(job).count == 50)
        try Self.expectSameRun(single, job, tolerance: 0, variant[1])
        let (u, v) = (try Self.finalLosses(single), try Self.finalLosses(job))
        #expect(u.count == 2 && u == v, "\(u) vs \(v)")
        // Rank 0 speaks for the job: one progress report, not two.
        #expect(two.stdout.components(separatedBy: "evaluation (").count == 2, "\(two.stdout)")
    }

    /// Checkpoints hold every stream's memory, so a job resumes under another number of ranks
    /// (two ranks, then one process: one process's losses) and under the same number bit for
    /// bit (two ranks stopped and resumed: the uninterrupted two-rank losses exactly).
    @Test func resumesUnderAnotherAndTheSameNumberOfRanks() throws {
        let folder = scratch("mpi-resume")
        let corpus = try textFile(in: folder)
        let common = ["train", "--data", corpus.path, "--steps", "40", "--ffn", "moe", "--experts", "8", "--k", "2"] + Self.small
        let single = folder.appendingPathComponent("single"), whole = folder.appendingPathComponent("whole")
        #expect(try lmtrain(common + ["--run-dir", single.path], in: folder).status == 0)
        #expect(try Self.mpirun(2, common + ["--run-dir", whole.path], in: folder).status == 0)

        let switched = folder.appendingPathComponent("switched")
        let first = try Self.mpirun(2, common + ["--run-dir", switched.path, "--stop-at", "20"], in: folder)
        #expect(first.status == 0, "\(first.stderr)")
        // Rank 0's checkpoint holds the memory of all 4 streams (2 from each rank).
        let file = try Data(contentsOf: switched.appendingPathComponent("checkpoints/step-0000020.safetensors"))
        let headerLength = Int(file.prefix(8).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) })
        let header = try JSONSerialization.jsonObject(with: file.subdata(in: 8..<(8 + headerLength))) as! [String: Any]
        #expect((header["memory.layers.0"] as? [String: Any])?["shape"] as? [Int] == [4, 16, 32])
        let resumed = try lmtrain(["train", "--resume", switched.path, "--threads", "1"], in: folder)
        #expect(resumed.status == 0, "\(resumed.stderr)")
        try Self.expectSameRun(single, switched, tolerance: 0, "2 ranks then 1")

        let same = folder.appendingPathComponent("same")
        #expect(try Self.mpirun(2, common + ["--run-dir", same.path, "--stop-at", "20"], in: folder).status == 0)
        let again = try Self.mpirun(2, ["train", "--resume", same.path, "--threads", "1"], in: folder)
        #expect(again.status == 0, "\(again.stderr)")
        try Self.expectSameRun(whole, same, tolerance: 0, "2 ranks stopped and resumed")
    }

    /// `lmtrain eval` under mpirun splits the streams and gives one process's numbers.
    @Test func evaluationSplitsTheStreams() throws {
        let folder = scratch("mpi-eval")
        let corpus = try textFile(in: folder)
        let run = folder.appendingPathComponent("run")
        #expect(try lmtrain(["train", "--data", corpus.path, "--steps", "5", "--run-dir", run.path] + Self.small, in: folder).status == 0)
        let checkpoint = run.appendingPathComponent("checkpoints/step-0000005.safetensors").path
        let flags = ["eval", "--checkpoint", checkpoint, "--split", "valid", "--batch-size", "4", "--threads", "1"]
        let one = try lmtrain(flags + ["--output", folder.appendingPathComponent("one.json").path], in: folder)
        let two = try Self.mpirun(2, flags + ["--output", folder.appendingPathComponent("two.json").path], in: folder)
        #expect(one.status == 0 && two.status == 0, "\(one.stderr) \(two.stderr)")
        let loss = { (name: String) throws -> Double in
            let object = try JSONSerialization.jsonObject(with: Data(contentsOf: folder.appendingPathComponent(name))) as! [String: Any]
            return object["loss"] as! Double
        }
        let (u, v) = (try loss("one.json"), try loss("two.json"))
        #expect(abs(u - v) <= 1e-6 * abs(u), "\(u) vs \(v)")
        #expect(two.stdout.split(separator: "\n").filter { $0.hasPrefix("valid:") }.count == 1, "\(two.stdout)")
    }

    /// Formal-language models split the batch by sequences, a last short batch unevenly.
    @Test func formalLanguageModelTrainsLikeOneProcess() throws {
        let folder = scratch("mpi-formal")
        let data = try FormalCLITests.smallData("parity", in: folder, train: 70)
        let common = ["formal", "train", "--model", "deltanet", "--task", "parity", "--data", data.path, "--epochs", "3", "--threads", "1", "--log-every", "1"]
            + FormalCLITests.small
        let single = folder.appendingPathComponent("single"), job = folder.appendingPathComponent("job")
        let one = try lmtrain(common + ["--run-dir", single.path], in: folder)
        #expect(one.status == 0, "\(one.stderr)")
        let two = try Self.mpirun(2, common + ["--run-dir", job.path], in: folder)
        #expect(two.status == 0, "\(two.stderr)")
        // 70 strings in batches of 16: the fifth batch of each epoch has 6 (3 per rank).
        #expect(try Self.trainRecords(job).count == 15)
        try Self.expectSameRun(single, job, tolerance: 1e-5, "deltanet parity")
    }

    /// A batch the ranks cannot split is refused with one line naming the flag; a command that
    /// runs as one process refuses mpirun.
    @Test func refusesWhatCannotRunDataParallel() throws {
        let folder = scratch("mpi-refuse")
        let corpus = try textFile(in: folder)
        let odd = try Self.mpirun(3, ["train", "--data", corpus.path, "--run-dir", folder.appendingPathComponent("r").path] + Self.small, in: folder)
        #expect(odd.status != 0)
        #expect(odd.stderr.contains("--batch-size 4 does not split over 3 ranks"), "\(odd.stderr)")
        let count = try Self.mpirun(2, ["count", "--preset", "quickstart"], in: folder)
        #expect(count.status != 0 && count.stderr.contains("lmtrain count runs as one process"), "\(count.stderr)")
    }

    /// A rank killed mid-run takes the job down, Open MPI's report names it, no checkpoint is
    /// left half-written, and `--resume` continues from the last complete checkpoint.
    @Test func aKilledRankEndsTheJobAndTheRunResumes() throws {
        let folder = scratch("mpi-kill")
        let corpus = try textFile(in: folder)
        let run = folder.appendingPathComponent("run")
        let flags = ["train", "--data", corpus.path, "--steps", "400", "--checkpoint-every", "10", "--run-dir", run.path] + Self.small
        let process = Process()
        process.executableURL = try #require(Self.launcher)
        process.arguments = ["-np", "2", "--oversubscribe", binary.path] + flags
        process.currentDirectoryURL = folder
        process.environment = ProcessInfo.processInfo.environment.merging(Self.environment) { _, added in added }
        let err = Pipe()
        process.standardOutput = FileHandle.nullDevice
        process.standardError = err
        try process.run()
        // Wait for a checkpoint, then kill rank 1 (the rank whose environment says so).
        let checkpoints = run.appendingPathComponent("checkpoints")
        let deadline = Date().addingTimeInterval(120)
        while Date() < deadline, ((try? FileManager.default.contentsOfDirectory(atPath: checkpoints.path)) ?? []).filter({ $0.hasPrefix("step-") }).count < 2 {
            Thread.sleep(forTimeInterval: 0.1)
        }
        let rankOne = try #require(Self.processes(running: run.path).first { Self.environment(of: $0)["OMPI_COMM_WORLD_RANK"] == "1" })
        kill(rankOne, SIGKILL)
        let errData = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let stderr = String(decoding: errData, as: UTF8.self)
        #expect(process.terminationStatus != 0)
        #expect(stderr.contains("rank 1"), "\(stderr)")
        let left = try FileManager.default.contentsOfDirectory(atPath: checkpoints.path)
        #expect(left.allSatisfy { $0.hasSuffix(".safetensors") && !$0.contains(".tmp") }, "\(left)")
        // The newest checkpoint is complete: the run resumes from it (one process, 20 more steps).
        let resumed = try lmtrain(["train", "--resume", run.path, "--threads", "1", "--stop-at", "\(Self.newestStep(checkpoints) + 5)"], in: folder)
        #expect(resumed.status == 0 && resumed.stdout.contains("resuming"), "\(resumed.stderr)")
    }

    static func newestStep(_ checkpoints: URL) -> Int {
        ((try? FileManager.default.contentsOfDirectory(atPath: checkpoints.path)) ?? [])
            .compactMap { Int($0.replacingOccurrences(of: "step-", with: "").replacingOccurrences(of: ".safetensors", with: "")) }
            .max() ?? 0
    }

    /// PIDs of lmtrain processes whose command line holds `fragment`.
    static func processes(running fragment: String) -> [pid_t] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { entry in
            guard let pid = pid_t(entry),
                let line = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline"),
                String(decoding: line, as: UTF8.self).contains(fragment),
                String(decoding: line, as: UTF8.self).hasPrefix(binary.path)
            else { return nil }
            return pid
        }
    }

    static func environment(of pid: pid_t) -> [String: String] {
        let data = FileManager.default.contents(atPath: "/proc/\(pid)/environ") ?? Data()
        var result: [String: String] = [:]
        for entry in data.split(separator: 0) {
            let text = String(decoding: entry, as: UTF8.self)
            if let equals = text.firstIndex(of: "=") { result[String(text[..<equals])] = String(text[text.index(after: equals)...]) }
        }
        return result
    }
}
