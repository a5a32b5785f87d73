import ArgumentParser
import Configuration
import Datasets
import FormalLanguages
import Foundation
import Training

struct Formal: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Formal-language experiments: the fast-weight models and baselines on eight languages.",
        discussion: """
            Examples:
              lmtrain formal data --task parity --out data/parity
              lmtrain formal train --model srwm --task parity --epochs 50
              lmtrain formal eval --checkpoint runs/parity-srwm/checkpoints/best.safetensors
              lmtrain formal sweep --models lt,rdn,srwm --tasks parity --seeds 3 --jobs 2
            See Docs/formal-languages.md.
            """,
        subcommands: [FormalData.self, FormalTrain.self, FormalEval.self, FormalSweep.self])
}

extension FormalTask: ExpressibleByArgument {
    public init?(argument: String) { self.init(name: argument) }
}

extension FormalPreset.Model: ExpressibleByArgument {}

extension FormalSplit: ExpressibleByArgument {}

struct FormalData: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data",
        abstract: "Generate a task's train, Bin0 and Bin1 data and write the benchmark's .src/.tgt files.")

    @Option(help: "Task.") var task: FormalTask
    @Option(help: "Generator seed.") var seed: UInt64 = 1
    @Option(help: "Folder to write train_50, valid_50 (Bin0) and test_50 (Bin1) .src/.tgt into.") var out: String

    func run() throws {
        let dataset = try task.generate(seed: seed)
        try dataset.write(to: URL(fileURLWithPath: out))
        for split in FormalSplit.allCases {
            let s = dataset[split]
            print("\(split.rawValue): \(s.count) sequences, lengths \(s.inputs.lazy.map(\.count).min() ?? 0)–\(s.longest)")
        }
        print("wrote \(out)")
    }
}

struct FormalTrain: ParsableCommand, DataParallelCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train one model on one task (the preset TASK-MODEL, then any lmtrain train option).",
        discussion: """
            Every option of lmtrain train applies after --model and --task: --epochs, --lr,
            --batch-size, --layers, --d-model, --heads, --ff-factor, --emb-size, --seed,
            --eval-every (batches between evaluations inside an epoch), --eval-batch-size,
            --data (a folder of the benchmark's .src/.tgt files), --run-dir, --resume, --threads.
            The budget options are the task's budget for every model: a model without heads or a
            feedforward block (the LSTMs) ignores --heads and --ff-factor, one without an
            embedding size (the Transformers) ignores --emb-size, and the e-LSTM, which has one
            layer, ignores --layers; each ignored option is named on one line.
            """)

    @Option(help: "Model.") var model: FormalPreset.Model
    @Option(help: "Task.") var task: FormalTask
    @Argument(parsing: .allUnrecognized, help: "Options of lmtrain train.") var trainOptions: [String] = []

    /// The budget options `model` has no use for.
    static func unusedBudgetOptions(_ model: FormalPreset.Model) -> Set<String> {
        switch model {
        case .lstm: ["--heads", "--ff-factor"]
        case .elstm: ["--heads", "--ff-factor", "--layers"]
        case .linearTransformer, .deltaNet, .recurrentDeltaNet, .selfReferential, .transformer: ["--emb-size"]
        }
    }

    func run() throws {
        let unused = Self.unusedBudgetOptions(model)
        var options: [String] = [], ignored: [String] = []
        var index = trainOptions.startIndex
        while index < trainOptions.endIndex {
            let option = trainOptions[index]
            let name = String(option.split(separator: "=", maxSplits: 1)[0])
            if unused.contains(name) {
                ignored.append(name)
                index += option.contains("=") ? 1 : 2
            } else {
                options.append(option)
                index += 1
            }
        }
        if !ignored.isEmpty { print("\(model.rawValue) has no use for \(ignored.joined(separator: ", ")): ignored") }
        let train = try Train.parse(["--preset", FormalPreset(task: task, model: model).description] + options)
        try train.run()
    }
}

struct FormalEval: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval", abstract: "Sequence accuracy of a checkpoint on Bin0 and Bin1 (or one split).")

    @Option(help: "Checkpoint (.safetensors), e.g. RUN/checkpoints/best.safetensors.") var checkpoint: String
    @Option(help: "Split (default: bin0 and bin1).") var split: FormalSplit?
    @Option(help: "A folder of the benchmark's .src/.tgt files (default: the checkpoint's data).") var data: String?
    @Option(help: "Write the results as JSON here.") var output: String?
    @OptionGroup var threads: ThreadOptions

    func run() throws {
        try threads.apply()
        let url = output.map { URL(fileURLWithPath: $0) }
            ?? URL(fileURLWithPath: checkpoint).deletingPathExtension().appendingPathExtension("eval.json")
        try OutputPath.check(url, flag: "--output", content: .text, inputs: [("--checkpoint", checkpoint), ("--data", data ?? "")])
        let loaded = try loadCheckpoint(URL(fileURLWithPath: checkpoint))
        var config = loaded.config
        guard config.data.task != nil else {
            throw ValidationError("\(checkpoint) is not a formal-language run: use lmtrain eval")
        }
        if let data { config.data.source = data }
        let task = try FormalLanguageTask(config: config)
        guard task.vocabularyDescription == loaded.vocabulary else {
            throw ValidationError("\(checkpoint) was trained with other vocabularies than \(task.dataName) has")
        }
        let model = try loaded.makeModel()
        let splits = split.map { [$0.rawValue] } ?? task.finalSplits
        var results: [EvaluationResult] = []
        for name in splits {
            let result = try task.evaluate(model, split: name, maximumBatches: nil, progress: nil)
            print("\(name): loss \(String(format: "%.4f", result.loss)) | \(result.metricText) | \(result.settings["sequences"] ?? 0) sequences")
            results.append(result)
        }
        try writeJSON(results, to: url)
        print("wrote \(url.path)")
    }
}

struct FormalSweep: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sweep",
        abstract: "Train a grid of models x tasks x seeds, resumably, and report it.",
        discussion: """
            Runs lmtrain formal train for every cell, JOBS at a time, each in OUTPUT/TASK/MODEL/seed-S
            with its log in log.txt there. A finished cell (report.json) is not trained again; an
            interrupted one is resumed. Options after the grid's own (e.g. --epochs 30) go to every
            run. Writes report.md, report.json and accuracy-TASK.svg into OUTPUT.
            """)

    @Option(help: "Comma-separated models: \(FormalPreset.Model.allCases.map(\.rawValue).joined(separator: ", ")).")
    var models: String = FormalPreset.Model.allCases.map(\.rawValue).joined(separator: ",")
    @Option(help: "Comma-separated tasks: \(FormalTask.allCases.map(\.rawValue).joined(separator: ", ")).")
    var tasks: String = FormalTask.allCases.map(\.rawValue).joined(separator: ",")
    @Option(parsing: .unconditional, help: "Seeds per cell (1 ... N).") var seeds: Int = 1
    @Option(help: "Other seed counts for some tasks, e.g. parity=3.") var taskSeeds: String = ""
    @Option(parsing: .unconditional, help: "Runs at the same time.") var jobs: Int = 2
    @Option(parsing: .unconditional, help: "Compute threads of each run.") var threadsPerRun: Int = 1
    @Option(help: "Output folder.") var output: String = "runs/formal-sweep"
    @Argument(parsing: .allUnrecognized, help: "Options of lmtrain train for every run.") var trainOptions: [String] = []

    func validate() throws {
        try check(seeds, "--seeds", atLeast(1))
        try check(jobs, "--jobs", atLeast(1))
        try check(threadsPerRun, "--threads-per-run", atLeast(1))
        guard seeds <= Self.largestSeedCount else {
            throw ValidationError("--seeds \(seeds) is too many: at most \(Self.largestSeedCount) per cell")
        }
        _ = try seedCounts()
    }

    /// Seeds per cell beyond this are a typo (the sweep would list runs for ever).
    static let largestSeedCount = 1000

    /// --task-seeds as task name -> seeds.
    func seedCounts() throws -> [String: Int] {
        var counts: [String: Int] = [:]
        for item in taskSeeds.split(separator: ",") {
            let parts = item.split(separator: "=")
            guard parts.count == 2, let task = FormalTask(name: String(parts[0])), let count = Int(parts[1]), count >= 1, count <= Self.largestSeedCount else {
                throw ValidationError("--task-seeds: '\(item)' is not TASK=N with a known task and 1 <= N <= \(Self.largestSeedCount) (e.g. parity=3)")
            }
            counts[task.rawValue] = count
        }
        return counts
    }

    func run() throws {
        let seedsPerTask = try seedCounts()
        let modelList = try models.split(separator: ",").map { name in
            guard let model = FormalPreset.Model(rawValue: String(name)) else {
                throw ValidationError("--models: '\(name)' is unknown: use \(FormalPreset.Model.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            return model
        }
        let taskList = try tasks.split(separator: ",").map { name in
            guard let task = FormalTask(name: String(name)) else {
                throw ValidationError("--tasks: '\(name)' is unknown: use \(FormalTask.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            return task
        }
        let folder = URL(fileURLWithPath: output)
        do {
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        } catch {
            throw ValidationError("--output \(output): cannot create the folder; choose a writable location")
        }
        struct Cell { let task: FormalTask, model: FormalPreset.Model, seed: UInt64, directory: URL }
        let cells = taskList.flatMap { task in
            modelList.flatMap { model in
                (1...(seedsPerTask[task.rawValue] ?? seeds)).map { seed in
                    Cell(task: task, model: model, seed: UInt64(seed),
                         directory: folder.appendingPathComponent("\(task.rawValue)/\(model.rawValue)/seed-\(seed)"))
                }
            }
        }
        var pending = cells.filter { !FileManager.default.fileExists(atPath: $0.directory.appendingPathComponent("report.json").path) }
        print("\(cells.count) runs, \(cells.count - pending.count) already finished; \(jobs) at a time")
        var running: [(Process, Cell)] = []
        var failures: [String] = []
        while !pending.isEmpty || !running.isEmpty {
            while running.count < jobs, !pending.isEmpty {
                let cell = pending.removeFirst()
                let started = FileManager.default.fileExists(atPath: cell.directory.appendingPathComponent("config.json").path)
                let arguments = started
                    ? ["train", "--resume", cell.directory.path, "--threads", String(threadsPerRun)]
                    : ["formal", "train", "--model", cell.model.rawValue, "--task", cell.task.rawValue,
                       "--seed", String(cell.seed), "--run-dir", cell.directory.path, "--threads", String(threadsPerRun)] + trainOptions
                try FileManager.default.createDirectory(at: cell.directory, withIntermediateDirectories: true)
                running.append((try Self.launch(arguments, log: cell.directory.appendingPathComponent("log.txt")), cell))
                print("\(started ? "resumed" : "started") \(cell.task.rawValue) \(cell.model.rawValue) seed \(cell.seed)")
            }
            Thread.sleep(forTimeInterval: 0.5)
            running.removeAll { process, cell in
                guard !process.isRunning else { return false }
                let status = process.terminationStatus
                print("\(status == 0 ? "finished" : "FAILED (exit \(status))") \(cell.task.rawValue) \(cell.model.rawValue) seed \(cell.seed)")
                if status != 0 { failures.append("\(cell.directory.path)/log.txt") }
                return true
            }
        }
        let report = FormalSweepReport(
            tasks: taskList.map(\.rawValue), models: modelList.map(\.rawValue),
            seeds: Dictionary(uniqueKeysWithValues: taskList.map { ($0.rawValue, seedsPerTask[$0.rawValue] ?? seeds) }),
            command: (["lmtrain"] + CommandLine.arguments.dropFirst()).joined(separator: " "),
            runs: cells.map { FormalSweepReport.run(task: $0.task.rawValue, model: $0.model.rawValue, seed: $0.seed, directory: $0.directory) })
        try writeJSON(report, to: folder.appendingPathComponent("report.json"))
        try AtomicFile.write(Data(report.markdown.utf8), to: folder.appendingPathComponent("report.md"))
        for task in report.tasks {
            try AtomicFile.write(Data(report.chart(task: task).utf8), to: folder.appendingPathComponent("accuracy-\(task).svg"))
        }
        print(report.markdown)
        guard failures.isEmpty else {
            throw ValidationError("\(failures.count) run(s) failed; see \(failures.joined(separator: ", "))")
        }
    }

    /// Starts this binary with `arguments`, its output appended to `log`.
    static func launch(_ arguments: [String], log: URL) throws -> Process {
        if !FileManager.default.fileExists(atPath: log.path) { try Data().write(to: log) }
        let handle = try FileHandle(forWritingTo: log)
        handle.seekToEndOfFile()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        process.arguments = arguments
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        return process
    }
}
