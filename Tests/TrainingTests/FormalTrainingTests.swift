import Configuration
import FormalLanguages
import Foundation
import Layers
import Models
import Tensor
import Testing
import TestSupport
import Training

/// Small generated data and small models for the formal-language training tests.
enum FormalFixtures {
    /// Strings of 2-10 symbols, Bin1 up to 16: a few training batches, quick evaluations.
    static let settings = FormalGenerationSettings(lowerWindow: 2, upperWindow: 10, binWidth: 6, trainingSize: 40, evaluationSize: 12)

    static func dataset(_ task: FormalTask = .parity, seed: UInt64 = 1) throws -> FormalDataset {
        try task.generate(seed: seed, settings: settings)
    }

    /// The preset of `model` on `task`, made small: width 8, batch 8, 3 epochs, an evaluation
    /// every 2 batches.
    static func config(_ model: FormalPreset.Model, task: FormalTask = .parity, epochs: Int = 3) -> RunConfig {
        var config = FormalPreset(task: task, model: model).config
        switch model {
        case .transformer:
            config.model = ModelConfig(SoftmaxTransformer.Config(modelWidth: 8, layers: 2, heads: 2, feedForwardFactor: 2))
        case .lstm:
            config.model = ModelConfig(RecurrentNetwork.Config(cell: .lstm, embeddingSize: 6, modelWidth: 8, layers: 2))
        case .elstm:
            config.model = ModelConfig(RecurrentNetwork.Config(cell: .elstm, embeddingSize: 6, modelWidth: 8))
        default:
            var fast = config.model.as(FastWeightTransformer.Config.self)!
            fast.modelWidth = 8
            fast.heads = 2
            fast.feedForwardFactor = 2
            config.model = ModelConfig(fast)
        }
        config.training.batchSize = 8
        config.training.epochs = epochs
        config.training.validationInterval = 2
        config.training.logInterval = 1
        config.evaluation.batchSize = 5
        return config
    }

    static func task(_ config: RunConfig, _ dataset: FormalDataset) -> FormalLanguageTask {
        FormalLanguageTask(dataset: dataset, training: config.training, evaluation: config.evaluation, origin: "test data")
    }
}

@Suite(.serialized) struct FormalTrainingTests {
    // MARK: The metric

    /// Sequence accuracy on hand-written logits: all or nothing, unscored positions ignored,
    /// the pad class a class like any other, ties to the first class.
    @Test func sequenceCorrectnessIsAllOrNothingWithThePadClassCounted() {
        // 3 positions x 3 classes (the last is the pad class).
        func correct(_ logits: [Float], _ targets: [Int32]) -> Bool {
            FormalLanguageTask.allCorrect(logits: logits, targets: targets, length: targets.count, classes: 3)
        }
        let logits: [Float] = [2, 1, 0, 0, 3, 1, 1, 0, 0.5]  // arg-max 0, 1, 0
        #expect(correct(logits, [0, 1, 0]))
        #expect(!correct(logits, [0, 1, 1]), "one wrong position fails the sequence")
        #expect(!correct(logits, [1, 1, 0]))
        #expect(correct(logits, [0, 1, -1]), "an unscored (padded) position does not count")
        #expect(correct(logits, [-1, -1, -1]))
        let predictsPad: [Float] = [2, 1, 0, 0, 3, 1, 0, 0, 5]  // arg-max 0, 1, pad
        #expect(!correct(predictsPad, [0, 1, 0]), "predicting the pad class at a real position is an error")
        let tie: [Float] = [1, 1, 0, 1, 1, 0, 1, 1, 0]  // ties: the first class wins
        #expect(correct(tie, [0, 0, 0]))
        #expect(!correct(tie, [1, 0, 0]))
    }

    /// The evaluation of a model whose predictions are known per sequence: the accuracy counts
    /// exactly the right sequences whatever the batch size (and so the padding).
    @Test(arguments: [1, 5, 64]) func evaluationCountsTheRightSequences(batchSize: Int) throws {
        let dataset = try FormalFixtures.dataset(.dyck1)
        var config = FormalFixtures.config(.lstm, task: .dyck1)
        config.evaluation.batchSize = batchSize
        let task = FormalFixtures.task(config, dataset)
        let model = ScriptedPredictions(classes: dataset.targetClassCount)
        for split in [FormalSplit.bin0, .bin1] {
            let sequences = dataset[split]
            let right = sequences.inputs.filter { !ScriptedPredictions.errs(on: $0) }.count
            #expect(right > 0 && right < sequences.count, "the fixture must mix right and wrong sequences")
            let result = try task.evaluate(model, split: split.rawValue, maximumBatches: nil, progress: nil)
            #expect(result.metric("accuracy") == 100 * Double(right) / Double(sequences.count))
            #expect(result.tokens == sequences.targets.reduce(0) { $0 + $1.count })
        }
    }

    // MARK: Batches and schedule

    /// Every epoch is a permutation of the training split drawn from the seed: each string
    /// once, the last batch partial, the same batches for the same seed, other orders for other
    /// epochs and seeds.
    @Test func epochsArePermutationsDrawnFromTheSeed() throws {
        let dataset = try FormalFixtures.dataset()
        var config = FormalFixtures.config(.lstm)
        config.training.batchSize = 6
        func batches(seed: UInt64, epoch: Int) -> [[Int32]] {
            config.training.seed = seed
            let task = FormalFixtures.task(config, dataset)
            #expect(task.batchesPerEpoch == 7)
            return (epoch * 7..<(epoch + 1) * 7).map { step in
                let batch = task.trainingBatch(step: step).batch
                let count = batch.shape.rows
                return Array(UnsafeBufferPointer(start: batch.inputs, count: count)) + [Int32(batch.shape.batch)]
            }
        }
        let first = batches(seed: 1, epoch: 0)
        #expect(first.map { Int($0.last!) } == [6, 6, 6, 6, 6, 6, 4])
        #expect(first == batches(seed: 1, epoch: 0))
        #expect(first != batches(seed: 1, epoch: 1))
        #expect(first != batches(seed: 2, epoch: 0))

        // The strings of one epoch, unpadded, are the training split's.
        config.training.seed = 1
        let task = FormalFixtures.task(config, dataset)
        var seen: [[Int32]] = []
        for step in 0..<7 {
            let batch = task.trainingBatch(step: step).batch
            let t = batch.shape.length
            for row in 0..<batch.shape.batch {
                let length = (0..<t).filter { batch.targets[row * t + $0] >= 0 }.count
                seen.append(Array(UnsafeBufferPointer(start: batch.inputs + row * t, count: length)))
                #expect((length..<t).allSatisfy { batch.inputs[row * t + $0] == dataset.inputPadID })
            }
        }
        func key(_ s: [Int32]) -> String { s.map(String.init).joined(separator: ",") }
        #expect(seen.map(key).sorted() == dataset.train.inputs.map(key).sorted())
    }

    /// Evaluations after batches 0, N, 2N, ... of each epoch and after its last batch.
    @Test func evaluationScheduleFollowsTheEpochs() throws {
        let dataset = try FormalFixtures.dataset()
        var config = FormalFixtures.config(.lstm)
        config.training.batchSize = 6
        config.training.validationInterval = 3
        let every3 = FormalFixtures.task(config, dataset)
        #expect((1...16).filter(every3.evaluatesAfter(step:)) == [1, 4, 7, 8, 11, 14, 15])
        config.training.validationInterval = 0
        let epochEnds = FormalFixtures.task(config, dataset)
        #expect((1...16).filter(epochEnds.evaluatesAfter(step:)) == [7, 14])
    }

    // MARK: Training runs

    /// Stopped after step 7 and resumed: the same losses, gradients, parameters, best score
    /// and evaluations as one uninterrupted run, for a fast-weight model and the LSTM.
    @Test(arguments: [FormalPreset.Model.recurrentDeltaNet, .lstm])
    func resumedRunMatchesUninterruptedBitForBit(model: FormalPreset.Model) throws {
        let dataset = try FormalFixtures.dataset()
        let config = FormalFixtures.config(model)
        let straightDirectory = Fixtures.temporaryDirectory("formal-straight")
        let straight = try Trainer(config: config, task: FormalFixtures.task(config, dataset), runDirectory: straightDirectory)
        let expected = try straight.run()
        #expect(expected.count == 15)

        let directory = Fixtures.temporaryDirectory("formal-split")
        let first = try Trainer(config: config, task: FormalFixtures.task(config, dataset), runDirectory: directory)
        try first.run(stopAt: 7)
        let checkpoint = try Checkpoint.load(Trainer.checkpoints(in: directory).last!)
        #expect(checkpoint.step == 7)
        let second = try Trainer(resuming: checkpoint, task: FormalFixtures.task(config, dataset), runDirectory: directory)
        let resumed = try second.run()
        #expect(resumed.map(\.loss) == expected.suffix(8).map(\.loss))
        #expect(resumed.map(\.gradientNorm) == expected.suffix(8).map(\.gradientNorm))
        #expect(second.bestScore == straight.bestScore)
        for view in straight.model.layout.views {
            #expect(memcmp(straight.model.arena.value(view), second.model.arena.value(view), view.count * 4) == 0, "\(view.name)")
        }
        func evaluations(_ run: URL) throws -> [String] {
            try String(contentsOf: run.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
                .split(separator: "\n").filter { $0.contains("\"type\":\"valid\"") }.map(String.init)
        }
        #expect(try evaluations(directory) == evaluations(straightDirectory))
        // The best checkpoint of both runs holds the same parameters.
        let a = try Checkpoint.load(straight.bestCheckpoint), b = try Checkpoint.load(second.bestCheckpoint)
        #expect(a.step == b.step)
        let modelA = try a.makeModel(), modelB = try b.makeModel()
        try a.loadParameters(into: modelA)
        try b.loadParameters(into: modelB)
        #expect(memcmp(modelA.arena.values, modelB.arena.values, modelA.layout.count * 4) == 0)
    }

    /// The best checkpoint is kept only when the mean of the two accuracies improves strictly;
    /// training stops at the first evaluation with both at 100%, and the final evaluation uses
    /// the best checkpoint.
    @Test func bestCheckpointAndStopWhenSolved() throws {
        let dataset = try FormalFixtures.dataset()
        let config = FormalFixtures.config(.lstm)
        // (Bin0, Bin1) of evaluations 1, 2, ...: after steps 1, 3, 5, 6, 7, ...
        let scripted = ScriptedScores(FormalFixtures.task(config, dataset), scores: [(50, 0), (80, 10), (90, 0), (100, 100)])
        let directory = Fixtures.temporaryDirectory("formal-solved")
        let trainer = try Trainer(config: config, task: scripted, runDirectory: directory)
        try trainer.run(stopAt: 5)
        #expect(trainer.bestScore == 45)
        #expect(try Checkpoint.load(trainer.bestCheckpoint).step == 3, "a tie (step 5) does not replace the best")
        #expect(!trainer.isFinished)
        let records = try trainer.run()
        #expect(records.count == 1 && trainer.step == 6, "stops at the evaluation that solves the task")
        #expect(trainer.solved && trainer.isFinished)
        #expect(try Checkpoint.load(trainer.bestCheckpoint).step == 6)
        let last = try Checkpoint.load(Trainer.checkpoints(in: directory).last!)
        #expect(last.step == 6 && last.solved)
        // A resumed solved run has nothing left to train.
        let resumed = try Trainer(resuming: last, task: scripted, runDirectory: directory)
        #expect(resumed.isFinished)
        #expect(try resumed.run().isEmpty)
        let report = try trainer.finish()
        #expect(report.checkpoint == trainer.bestCheckpoint.path)
    }

    // MARK: lmtrain step

    /// `lmtrain step` with int32 `inputs` and `targets` [B, T], one row padded: the dumped
    /// gradients agree with finite differences of the dumped loss, padded targets unscored.
    @Test(arguments: [FormalPreset.Model.selfReferential, .transformer])
    func stepDumpWithInputsAndTargets(model: FormalPreset.Model) throws {
        let dataset = try FormalFixtures.dataset()
        let config = FormalFixtures.config(model, epochs: 1)
        let directory = Fixtures.temporaryDirectory("formal-step")
        let trainer = try Trainer(config: config, task: FormalFixtures.task(config, dataset), runDirectory: directory)
        try trainer.run(stopAt: 2)
        let checkpoint = try Checkpoint.load(Trainer.checkpoints(in: directory).last!)
        let pad = dataset.inputPadID, padClass = dataset.targetPadID
        let (b, t) = (2, 12)
        let first = dataset.train.inputs[0], second = dataset.train.inputs[1]
        var inputs = [Int32](repeating: pad, count: b * t), targets = [Int32](repeating: padClass, count: b * t)
        for (row, k) in [(0, 0), (1, 1)] {
            let word = row == 0 ? first : second
            for i in 0..<min(t, word.count) {
                inputs[row * t + i] = word[i]
                targets[row * t + i] = dataset.train.targets[k][i]
            }
        }
        let url = directory.appendingPathComponent("inputs.safetensors")
        try inputs.withUnsafeBytes { i in
            try targets.withUnsafeBytes { g in
                try SafeTensors.write(
                    [.init(name: "inputs", dtype: .i32, shape: [b, t], bytes: i), .init(name: "targets", dtype: .i32, shape: [b, t], bytes: g)],
                    metadata: [:], to: url)
            }
        }
        let dumpURL = directory.appendingPathComponent("dump.safetensors")
        let result = try StepDump.run(checkpoint: checkpoint, tokensURL: url, dumpURL: dumpURL)
        let dump = try SafeTensors.File(url: dumpURL)
        #expect(dump.tensors["logits"]?.shape == [b, t, dataset.targetClassCount])

        let fresh = try checkpoint.makeModel()
        let scored = targets.map { $0 == padClass ? FormalBatch.ignoredTarget : $0 }
        #expect(scored.filter { $0 >= 0 }.count == min(t, first.count) + min(t, second.count))
        let shape = TokenShape(batch: b, length: t)
        func loss() -> Double {
            var context = ForwardContext(training: true, dropout: false, rng: RandomGenerator(seed: 0))
            return fresh.forward(inputs: inputs, targets: scored, shape: shape, context: &context).crossEntropy
        }
        #expect(abs(loss() - result.loss) < 1e-9)
        var dumped: [String: [Float]] = [:]
        for view in fresh.layout.views { dumped[view.name] = try dump.array(view.name, dtype: .f32, as: Float.self) }
        let tensors = fresh.layout.views.map { view in
            dumped[view.name]!.withUnsafeBufferPointer {
                CheckedTensor(view.name, values: fresh.arena.value(view), gradient: UnsafePointer($0.baseAddress!), count: view.count)
            }
        }
        let mismatches = checkGradients(tensors, samples: 4, step: 1e-3, loss: loss)
        withExtendedLifetime(dumped) {}
        #expect(mismatches.isEmpty, "\(mismatches)")

        // An input id past the pad id is refused, naming the file.
        inputs[0] = pad + 1
        try inputs.withUnsafeBytes { i in
            try targets.withUnsafeBytes { g in
                try SafeTensors.write(
                    [.init(name: "inputs", dtype: .i32, shape: [b, t], bytes: i), .init(name: "targets", dtype: .i32, shape: [b, t], bytes: g)],
                    metadata: [:], to: url)
            }
        }
        #expect {
            try StepDump.run(checkpoint: checkpoint, tokensURL: url, dumpURL: dumpURL)
        } throws: { "\($0)".contains(url.path) && "\($0)".contains("input id \(pad + 1)") }
    }
}

// MARK: - Stand-ins

/// A model with known predictions: right at every scored position, except that a sequence
/// whose length is a multiple of 4 gets the pad class at its last position; padded positions
/// predict a wrong class, which must not count.
final class ScriptedPredictions: SequenceModel {
    let classes: Int
    let layout = ParameterLayout()
    lazy var arena = ParameterArena(layout: layout)
    private var output: [Float] = []
    private var losses: [Double] = []

    init(classes: Int) { self.classes = classes }

    static func errs(on input: [Int32]) -> Bool { input.count % 4 == 0 }

    var outputClasses: Int { classes }
    func initialize(seed: UInt64) {}
    func makeState(batch: Int, capacity: Int) -> (any CarriedState)? { nil }

    func forward(_ batch: TokenBatch, state: (any CarriedState)?, context: inout ForwardContext) -> ForwardLoss {
        let (b, t, v) = (batch.shape.batch, batch.shape.length, classes)
        output = [Float](repeating: 0, count: b * t * v)
        losses = [Double](repeating: 0, count: b * t)
        for row in 0..<b {
            let length = (0..<t).filter { batch.targets[row * t + $0] >= 0 }.count
            let word = (0..<length).map { batch.inputs[row * t + $0] }
            for i in 0..<t {
                let target = Int(batch.targets[row * t + i])
                let predicted = i >= length ? (Int(batch.inputs[row * t]) + 1) % (v - 1)
                    : i == length - 1 && Self.errs(on: word) ? v - 1 : target
                output[(row * t + i) * v + predicted] = 1
            }
        }
        return ForwardLoss(crossEntropySum: 0, scoredPositions: (0..<(b * t)).filter { batch.targets[$0] >= 0 }.count, auxiliaryLoss: 0)
    }

    func backward() {}
    func advance(_ state: any CarriedState) {}
    var logits: UnsafePointer<Float> { output.withUnsafeBufferPointer { $0.baseAddress! } }
    var positionLosses: UnsafePointer<Double> { losses.withUnsafeBufferPointer { $0.baseAddress! } }
    var usage: [UsageCounts] { [] }
    func resetUsage() {}
    var persistentState: [String: [Float]] { [:] }
    func loadPersistentState(_ tensors: (String) throws -> [Float]?) throws {}
    var parameterComponents: [ParameterComponent] { [] }
    var activeParametersPerToken: Int { 0 }
    var feedForwardShareUsed: Double? { nil }
    func forwardFLOPs(_ pass: PassShape) -> [FLOPComponent] { [] }
    func stateBytes(batch: Int, capacity: Int) -> Int { 0 }
    func reserveBuffers(for pass: PassShape) {}
    func declareBuffers(for pass: PassShape, in plan: inout BufferPlan) {}
}

/// A formal-language task whose evaluations report scripted (Bin0, Bin1) accuracies, one pair
/// per periodic evaluation, for the selection and stopping rules.
final class ScriptedScores: TrainingTask {
    let inner: FormalLanguageTask
    let scores: [(Double, Double)]
    private var evaluations = 0

    init(_ inner: FormalLanguageTask, scores: [(Double, Double)]) {
        self.inner = inner
        self.scores = scores
    }

    var dataName: String { inner.dataName }
    var dataSummary: String { inner.dataSummary }
    var outputClasses: Int { inner.outputClasses }
    var inputClasses: Int { inner.inputClasses }
    var dataFingerprint: String { inner.dataFingerprint }
    var vocabularyDescription: String { inner.vocabularyDescription }
    var batchesPerEpoch: Int { inner.batchesPerEpoch }
    var largestTrainingBatch: TokenShape? { inner.largestTrainingBatch }
    func trainingBatch(step: Int) -> (batch: TokenBatch, restartsState: Bool) { inner.trainingBatch(step: step) }
    func evaluatesAfter(step: Int) -> Bool { inner.evaluatesAfter(step: step) }
    var validationSplits: [String] { inner.validationSplits }
    var validationBatches: Int? { inner.validationBatches }
    var finalSplits: [String] { inner.finalSplits }

    func evaluate(
        _ model: any SequenceModel, split: String, maximumBatches: Int?, collective: any Collective,
        progress: ((EvaluationProgress) -> Void)?
    ) throws -> EvaluationResult {
        let index = min(evaluations / 2, scores.count - 1)
        evaluations += 1
        let accuracy = split == "bin0" ? scores[index].0 : scores[index].1
        return EvaluationResult(split: split, tokens: 1, loss: 1, metrics: [Metric(name: "accuracy", value: accuracy, label: "accuracy", decimals: 2)])
    }

    func selectionScore(_ results: [EvaluationResult]) -> Double? { inner.selectionScore(results) }
    func isSolved(_ results: [EvaluationResult]) -> Bool { inner.isSolved(results) }
    var batchDescription: String { inner.batchDescription }
    var evaluationDescription: String { inner.evaluationDescription }
    func describe(loss: Double) -> String { inner.describe(loss: loss) }
    var uniformPredictionText: String { inner.uniformPredictionText }
}

/// `lmtrain formal sweep`'s report, read from run folders whose accuracies are scripted.
@Suite(.serialized) struct FormalSweepReportTests {
    @Test func reportReadsRunsAndCountsSolvedSeeds() throws {
        let dataset = try FormalFixtures.dataset()
        let config = FormalFixtures.config(.lstm)
        let folder = Fixtures.temporaryDirectory("sweep-report")
        // Seed 1 reaches 100% on both bins at its third evaluation (after step 5 = epoch 1);
        // seed 2 never does and trains all 3 epochs (15 steps, 9 evaluations).
        let scripts: [UInt64: [(Double, Double)]] = [1: [(50, 0), (80, 10), (100, 100)], 2: [(50, 0), (60, 20)]]
        for (seed, scores) in scripts {
            var seeded = config
            seeded.training.seed = seed
            let directory = folder.appendingPathComponent("parity/lstm/seed-\(seed)")
            let trainer = try Trainer(
                config: seeded, task: ScriptedScores(FormalFixtures.task(seeded, dataset), scores: scores), runDirectory: directory)
            try trainer.run()
            try trainer.finish()
        }
        let runs = (1...2).map { seed in
            FormalSweepReport.run(task: "parity", model: "lstm", seed: UInt64(seed), directory: folder.appendingPathComponent("parity/lstm/seed-\(seed)"))
        }
        #expect(runs[0].epochsToSolveBin1 == 1 && runs[0].epochsTrained == 1)
        #expect(runs[0].bin0 == 100 && runs[0].bin1 == 100)
        #expect(runs[1].epochsToSolveBin1 == nil && runs[1].epochsTrained == 3)
        #expect(runs[1].bin1Curve.count == 9 && runs[1].bin1Curve.last == [3, 20])
        #expect(runs[1].bin0 == 60 && runs[1].bin1 == 20)
        // A cell not yet trained counts as unfinished.
        let missing = FormalSweepReport.run(task: "parity", model: "lt", seed: 1, directory: folder.appendingPathComponent("parity/lt/seed-1"))
        #expect(!missing.finished)

        let report = FormalSweepReport(
            tasks: ["parity"], models: ["lstm", "lt"], seeds: ["parity": 2], command: "lmtrain formal sweep", runs: runs + [missing])
        let lines = report.markdown.split(separator: "\n").map(String.init)
        #expect(lines.contains("| parity | 100.0 / 100.0 | - |"))
        #expect(lines.contains { $0.hasPrefix("| lstm | 1 of 2 | 1.0 | 100.0, 20.0 |") })
        #expect(lines.contains { $0.hasPrefix("Runs: 2 finished of 3") })
        let chart = report.chart(task: "parity")
        #expect(chart.hasPrefix("<svg") && chart.contains("lstm s2"))
        // report.json round-trips.
        let decoded = try JSONDecoder().decode(FormalSweepReport.self, from: JSONEncoder().encode(report))
        #expect(decoded.markdown == report.markdown)
    }
}

/// The formal-language results in the docs are lmtrain's own output: every committed
/// `Docs/formal-results/*/report.md` is what its `report.json` renders, and every block of
/// Docs/formal-languages.md marked `<!-- from formal-results/X/report.md -->` ... `<!-- end -->`
/// stands in that report line for line.
@Suite struct FormalResultsDocsTests {
    @Test func tablesInTheDocsAreTheReportsOwn() throws {
        let results = packageRoot.appendingPathComponent("Docs/formal-results")
        var reports: [String: [String]] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: results.path).sorted() {
            let folder = results.appendingPathComponent(name)
            let markdown = try String(contentsOf: folder.appendingPathComponent("report.md"), encoding: .utf8)
            let report = try JSONDecoder().decode(FormalSweepReport.self, from: Data(contentsOf: folder.appendingPathComponent("report.json")))
            #expect(report.markdown == markdown, "\(name): report.md is not what report.json renders")
            reports[name] = markdown.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        }
        #expect(!reports.isEmpty)
        let docs = try String(contentsOf: packageRoot.appendingPathComponent("Docs/formal-languages.md"), encoding: .utf8)
            .split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var blocks = 0
        var index = 0
        while index < docs.count {
            let line = docs[index]
            index += 1
            guard line.hasPrefix("<!-- from formal-results/"), line.hasSuffix("/report.md -->") else { continue }
            let name = String(line.dropFirst("<!-- from formal-results/".count).dropLast("/report.md -->".count))
            var block: [String] = []
            while index < docs.count && docs[index] != "<!-- end -->" {
                block.append(docs[index])
                index += 1
            }
            let report = try #require(reports[name], "no Docs/formal-results/\(name)")
            let found = (0...max(0, report.count - block.count)).contains { Array(report[$0..<($0 + block.count)]) == block }
            #expect(found && !block.isEmpty, "the block from \(name) differs from its report.md")
            blocks += 1
        }
        #expect(blocks >= 2)
    }
}
