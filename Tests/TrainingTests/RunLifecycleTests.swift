import Configuration
import Foundation
import Layers
import Models
import Testing
import Training

#if canImport(Glibc)
import Glibc
#endif

/// The run directory's lifecycle inside the library: its lock, a stop between steps, a start
/// that failed, the final records of a resumed run, memory admission and config drift.
@Suite(.serialized) struct RunLifecycleTests {
    @Test func aLockedRunDirectoryRefusesASecondLockNamingTheHolder() throws {
        let folder = Fixtures.temporaryDirectory("lock")
        var first: RunDirectoryLock? = try RunDirectoryLock(folder)
        // flock locks belong to open file descriptions: a second open in this process conflicts.
        let refusal = #expect(throws: TrainingError.self) { try RunDirectoryLock(folder) }
        #expect(refusal?.description.contains("in use by process \(getpid())") == true, "\(String(describing: refusal))")
        #expect(first != nil)
        first = nil
        // Released with its descriptor: the directory can be locked again.
        _ = try RunDirectoryLock(folder)
    }

    @Test func aStopRequestEndsTheRunAfterTheStepWithACheckpoint() throws {
        let folder = Fixtures.temporaryDirectory("stop")
        var config = Fixtures.tinyConfig(steps: 20)
        config.training.checkpointInterval = 0
        let trainer = try Trainer(config: config, corpus: Fixtures.textCorpus(), runDirectory: folder)
        let records = try trainer.run { trainer.step >= 3 }
        #expect(records.count == 3)
        #expect(!trainer.isFinished)
        #expect(Trainer.checkpoints(in: folder).map(\.lastPathComponent) == ["step-0000003.safetensors"])
        // The checkpoint continues the run.
        let resumed = try Trainer(
            resuming: Checkpoint.load(Trainer.checkpoints(in: folder)[0]), corpus: Fixtures.textCorpus(), runDirectory: folder)
        #expect(resumed.step == 3)
    }

    @Test func aStartThatFailedLeavesADirectoryANewRunMayTake() throws {
        let folder = Fixtures.temporaryDirectory("unstarted")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        // What an allocation trap used to leave: config.json and an empty metrics log.
        try Data("{}".utf8).write(to: folder.appendingPathComponent("config.json"))
        try Data().write(to: folder.appendingPathComponent("metrics.jsonl"))
        #expect(Trainer.isUnstarted(folder))
        let trainer = try Trainer(config: Fixtures.tinyConfig(steps: 2), corpus: Fixtures.textCorpus(), runDirectory: folder)
        try trainer.run()
        // Now it holds a run: a new one is refused.
        #expect(!Trainer.isUnstarted(folder))
        #expect(throws: TrainingError.self) {
            try Trainer(config: Fixtures.tinyConfig(steps: 2), corpus: Fixtures.textCorpus(), runDirectory: folder)
        }
    }

    @Test func configJSONIsWrittenOnlyOnceTheRunHasStarted() throws {
        let folder = Fixtures.temporaryDirectory("config-late")
        // A metrics log that cannot be opened: the start fails after the config was checked.
        try FileManager.default.createDirectory(at: folder.appendingPathComponent("metrics.jsonl"), withIntermediateDirectories: true)
        #expect(throws: (any Error).self) {
            try Trainer(config: Fixtures.tinyConfig(), corpus: Fixtures.textCorpus(), runDirectory: folder)
        }
        #expect(!FileManager.default.fileExists(atPath: folder.appendingPathComponent("config.json").path))
    }

    @Test func resumingKeepsOneSetOfFinalRecords() throws {
        let folder = Fixtures.temporaryDirectory("final")
        let trainer = try Trainer(config: Fixtures.tinyConfig(steps: 2), corpus: Fixtures.textCorpus(), runDirectory: folder)
        try trainer.run()
        try trainer.finish()
        func finals() throws -> Int {
            try String(contentsOf: folder.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
                .split(separator: "\n").filter { $0.contains("\"type\":\"final\"") }.count
        }
        #expect(try finals() == 2)
        // Interrupted during its final evaluation, then resumed: evaluated again, not twice.
        let resumed = try Trainer(
            resuming: Checkpoint.load(Trainer.checkpoints(in: folder).last!), corpus: Fixtures.textCorpus(),
            runDirectory: folder)
        #expect(try finals() == 0)
        try resumed.finish()
        #expect(try finals() == 2)
    }

    @Test func availableMemoryComesFromTheHookTheCgroupOrMemAvailable() throws {
        let root = Fixtures.temporaryDirectory("memory")
        func write(_ path: String, _ text: String) throws {
            let url = root.appendingPathComponent(path)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data(text.utf8).write(to: url)
        }
        try write("proc/meminfo", "MemTotal:       32000000 kB\nMemFree:  100 kB\nMemAvailable:   2000000 kB\n")
        let base = root.path + "/"
        #expect(try MemoryAdmission.available(environment: [:], fileSystemRoot: base)?.bytes == 2_000_000 * 1024)
        try write("sys/fs/cgroup/memory.max", "max\n")
        #expect(try MemoryAdmission.available(environment: [:], fileSystemRoot: base)?.bytes == 2_000_000 * 1024)
        try write("sys/fs/cgroup/memory.max", "1073741824\n")
        let limited = try MemoryAdmission.available(environment: [:], fileSystemRoot: base)
        #expect(limited?.bytes == 1 << 30 && limited?.source.contains("memory.max") == true)
        let assumed = try MemoryAdmission.available(environment: [MemoryAdmission.assumedVariable: "12345"], fileSystemRoot: base)
        #expect(assumed?.bytes == 12345)
        #expect(throws: TrainingError.self) {
            try MemoryAdmission.available(environment: [MemoryAdmission.assumedVariable: "lots"], fileSystemRoot: base)
        }
    }

    @Test func aRunThatDoesNotFitIsRefusedWithThePredictionAndWhatToLower() throws {
        var config = Fixtures.tinyConfig()
        config.model.vocabularySize = 50
        let small = MemoryAdmission.Available(bytes: 1 << 20, source: "test")
        let refusal = #expect(throws: TrainingError.self) { try MemoryAdmission.check(config, available: small) }
        let message = refusal?.description ?? ""
        #expect(message.contains("MiB at its peak") && message.contains("only 1.0 MiB is available (test)"), "\(message)")
        #expect(message.contains("--batch-size") && message.contains("--force"), "\(message)")
        try MemoryAdmission.check(config, available: .init(bytes: 1 << 40, source: "test"))
        try MemoryAdmission.check(config, available: nil)
    }

    @Test func configDriftNamesEveryChangedFieldOutsideTheModel() throws {
        let checkpoint = Fixtures.tinyConfig()
        var file = checkpoint
        #expect(ConfigDrift.differences(file: file, checkpoint: checkpoint).isEmpty)
        file.training.learningRate = 0.5
        file.training.steps = 99
        file.model = ModelConfig(TransformerXL.Config(
            vocabularySize: 0, modelWidth: 32, layers: 2, heads: 2, headSize: 8,
            feedForward: FeedForwardConfig(DenseFeedForward.Config(hiddenSize: 32)), dropout: 0.1))
        let differences = ConfigDrift.differences(file: file, checkpoint: checkpoint)
        #expect(differences.map(\.key) == ["training.learning_rate", "training.steps"])
        #expect(differences[1].file == "99" && differences[1].checkpoint == "20")
    }
}
