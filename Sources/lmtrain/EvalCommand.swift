import ArgumentParser
import Datasets
import Foundation
import Configuration
import Training

struct Eval: ParsableCommand, DataParallelCommand {
    static let configuration = CommandConfiguration(
        abstract: "Evaluate a checkpoint on a split with the Transformer-XL test protocol.")

    @Option(help: "Checkpoint (.safetensors) to evaluate.") var checkpoint: String
    @Option(help: "Split.") var split: EvaluatedSplit = .test
    @Option(help: "Data (default: the data the checkpoint was trained on).") var data: String?
    @Option(help: "Streams per evaluation batch.") var batchSize: Int = 4
    @Option(help: "Memory length in segments (fills up 1, 2, ... at the start).") var memorySegments: Int = 4
    @Option(help: "Segment length (default: the training segment length).") var segmentLength: Int?
    @Option(help: "Write the result as JSON here.") var output: String?
    @OptionGroup var threads: ThreadOptions

    func validate() throws {
        guard batchSize >= 1 else { throw ValidationError("--batch-size must be at least 1") }
        guard memorySegments >= 0 else { throw ValidationError("--memory-segments must be >= 0") }
        if let segmentLength, segmentLength < 1 { throw ValidationError("--segment-length must be at least 1") }
    }

    /// The splits a checkpoint is evaluated on.
    enum EvaluatedSplit: String, CaseIterable, ExpressibleByArgument {
        case valid, test
    }

    func run() throws {
        try threads.apply()
        let url = output.map { URL(fileURLWithPath: $0) }
            ?? URL(fileURLWithPath: checkpoint).deletingPathExtension().appendingPathExtension("eval-\(split).json")
        try OutputPath.check(url, flag: "--output", content: .text, inputs: [("--checkpoint", checkpoint), ("--data", data ?? "")])
        let loaded = try loadCheckpoint(URL(fileURLWithPath: checkpoint))
        var dataConfig = loaded.config.data
        if let data { dataConfig.source = data }
        let corpus = try CorpusLoader.load(dataConfig)
        guard corpus.vocabularyDescription == loaded.vocabulary else {
            throw ValidationError("\(checkpoint) was trained with another vocabulary than \(corpus.name) has: evaluate on data with the same vocabulary")
        }
        let model = try loaded.makeModel()
        let length = segmentLength ?? loaded.config.training.segmentLength
        let start = Date()
        let result = try LanguageModelingTask.evaluate(
            model, tokens: corpus.split(Split(rawValue: split.rawValue)!), unit: corpus.unit, split: split.rawValue,
            batchSize: batchSize, segmentLength: length, memorySegments: memorySegments,
            collective: Job.collective)
        // Under mpirun every rank has the whole split's result; rank 0 writes it.
        guard Job.collective.rank == 0 else { return }
        print("\(split): loss \(String(format: "%.4f", result.loss)) | \(result.metricText) | \(result.tokens) tokens | batch \(batchSize), segment \(length), memory \(memorySegments) segments | \(String(format: "%.1f", Date().timeIntervalSince(start))) s")
        try writeJSON(result, to: url)
        print("wrote \(url.path)")
    }
}
