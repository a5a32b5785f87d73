import ArgumentParser
import Configuration
import Datasets
import Foundation
import Layers
import Models
import Tensor
import Training

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure the sgemm rate and the training throughput of the bench preset.",
        discussion: """
            With --tokenizers: the tokenization throughput (MB/s) of bytes, words and BPE on the
            train split of --tokenizer-data, and the BPE training time, added to the JSON under
            "tokenizers" (other figures in the file are kept).
            """)

    @Option(help: "Timed training steps (after 2 warm-up steps).") var steps: Int = 5
    @Option(help: "Size n of the n x n x n sgemm.") var sgemmSize: Int = 2048
    @Option(help: "Write the figures as JSON here.") var output: String = "bench.json"
    @OptionGroup var threads: ThreadOptions
    @Flag(help: "Measure the tokenizers instead (see below).") var tokenizers = false
    @Option(help: "Corpus for --tokenizers: a WikiText name (in Data/) or path.") var tokenizerData: String = "wikitext-2"
    @Option(help: "BPE pieces for --tokenizers.") var pieces: Int = 8000

    func validate() throws {
        guard steps >= 1 else { throw ValidationError("--steps must be at least 1") }
        guard sgemmSize >= 64 else { throw ValidationError("--sgemm-size must be at least 64") }
    }

    func run() throws {
        try threads.apply()
        if tokenizers { return try runTokenizers() }
        let sgemm = Benchmark.sgemmRate(size: sgemmSize, repeats: 5)
        print(String(format: "sgemm %d^3: %.1f GFLOP/s (median of 5, %d threads)", sgemmSize, sgemm, Threads.count))
        var config = Preset.bench.config
        config.model.vocabularySize = 205
        let seconds = try Benchmark.trainingStepSeconds(config, warmup: 2, steps: steps)
        let median = Benchmark.median(seconds)
        let tokens = config.training.batchSize * config.training.segmentLength
        let flopsPerToken = try Benchmark.modelFLOPsPerToken(config)
        let modelRate = flopsPerToken * Double(tokens) / median / 1e9
        var report = Benchmark.Report(
            threads: Threads.count, sgemmSize: sgemmSize, sgemmGFLOPS: sgemm, preset: "bench",
            tokensPerStep: tokens, secondsPerStep: median, tokensPerSecond: Double(tokens) / median,
            modelFLOPsPerToken: flopsPerToken, modelGFLOPS: modelRate, fractionOfSgemm: modelRate / sgemm,
            measuredSteps: steps, stepSeconds: seconds)
        print(String(format: "bench preset training: %.3f s/step (median of %d), %.0f tokens/s, %.1f model GFLOP/s = %.0f%% of sgemm", median, steps, report.tokensPerSecond, modelRate, 100 * report.fractionOfSgemm))

        // The bench preset with a σ-MoE block of 16 experts x 64, K = 4.
        var moeConfig = config
        moeConfig.model.feedForward = FeedForwardConfig(MixtureOfExperts.SigmaConfig(experts: 16, expertSize: 64, k: 4))
        let moeSeconds = try Benchmark.trainingStepSeconds(moeConfig, warmup: 2, steps: steps)
        let moeMedian = Benchmark.median(moeSeconds)
        print(String(format: "bench preset with --ffn moe --experts 16 --expert-size 64 --k 4: %.3f s/step (median of %d) = %.2f x dense", moeMedian, steps, moeMedian / median))

        // Feedforward blocks alone: 8192 tokens, d_model 512, forward + backward.
        let blocks: [(String, FeedForwardConfig)] = [
            ("dense d_ff 2048", FeedForwardConfig(DenseFeedForward.Config(hiddenSize: 2048))),
            ("σ-MoE 16 x 128, K 4", FeedForwardConfig(MixtureOfExperts.SigmaConfig(experts: 16, expertSize: 128, k: 4))),
            ("PKM 4 heads, 62^2 values, knn 128, dense path", FeedForwardConfig(ProductKeyMemory.Config(keysPerHalf: 62, heads: 4, knn: 128, path: .dense))),
            ("PKM 4 heads, 62^2 values, knn 128, sparse path", FeedForwardConfig(ProductKeyMemory.Config(keysPerHalf: 62, heads: 4, knn: 128, path: .sparse))),
        ]
        var blockMedians: [String: Double] = [:]
        for (name, block) in blocks {
            let seconds = try Benchmark.feedForwardSeconds(block, width: 512, tokens: 8192, repeats: steps)
            blockMedians[name] = Benchmark.median(seconds)
            print(String(format: "feedforward block %@: %.1f ms forward+backward (median of %d)", name, 1000 * Benchmark.median(seconds), steps))
        }
        let ratio = blockMedians["σ-MoE 16 x 128, K 4"]! / blockMedians["dense d_ff 2048"]!
        print(String(format: "σ-MoE / dense block time: %.2f (equal parameters, 25%% of the compute)", ratio))
        let pkmRatio = blockMedians["PKM 4 heads, 62^2 values, knn 128, sparse path"]! / blockMedians["PKM 4 heads, 62^2 values, knn 128, dense path"]!
        print(String(format: "PKM sparse / dense path time: %.2f", pkmRatio))
        report.moeStepSeconds = moeMedian
        report.moeToDenseStepRatio = moeMedian / median
        report.feedForwardBlockSeconds = blockMedians
        report.moeToDenseBlockRatio = ratio
        try writeJSON(report, to: URL(fileURLWithPath: output))
        print("wrote \(output)")
    }
}

extension Bench {
    /// The tokenizer benchmark, merged into the JSON at `output` under "tokenizers".
    func runTokenizers() throws {
        guard case .wikiText(let wikiText) = try CorpusLoader.resolve(tokenizerData, dataDirectory: CorpusLoader.defaultDataDirectory) else {
            throw ValidationError("--tokenizer-data \(tokenizerData): not a WikiText corpus (give wikitext-2 or a path to its archive or folder)")
        }
        let report = try TokenizerBenchmark.run(CorpusSources(wikiText), pieces: pieces) { print($0) }
        let url = URL(fileURLWithPath: output)
        var object = (FileManager.default.contents(atPath: url.path)).flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] } ?? [:]
        object["tokenizers"] = try JSONSerialization.jsonObject(with: JSONEncoder().encode(report))
        try AtomicFile.write(try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys]), to: url)
        print("wrote \(output)")
    }
}
