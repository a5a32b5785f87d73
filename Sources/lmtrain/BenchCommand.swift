import ArgumentParser
import Configuration
import Datasets
import Foundation
import Layers
import Models
import Tensor
import Training

struct Bench: ParsableCommand, DataParallelCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure the sgemm rate and the training and evaluation throughput of the bench and quickstart presets.",
        discussion: """
            Without a mode flag: the sgemm rate, the bench preset's training step (dense and
            σ-MoE 16 x 64, K 4; tokens/s, model FLOP/s and its share of the sgemm rate), its
            evaluation under the evaluation protocol (batch 4, 4 segments of memory) against
            training, the same for the quickstart preset, and four feedforward blocks alone.

            With --tokenizers: the tokenization throughput (MB/s) of bytes, words and BPE on the
            train split of --tokenizer-data, and the BPE training time, added to the JSON under
            "tokenizers" (other figures in the file are kept).

            With --formal: the training throughput (tokens/s, forward + backward + Adam) of the
            seven formal-language models at one size (by default the presets' width: batch 32,
            length 64, d_model 64, 4 heads, 2 layers, ff factor 4; 2 symbols and the pad), added
            under "formal".

            With --data-parallel (implied under mpirun): the bench preset's training step, dense
            and σ-MoE, as a data-parallel job: the batch split over the ranks, per rank and in
            total tokens/s, and the gradient all-reduce's seconds per step, under
            "data_parallel" (Docs/distributed.md). Compare `mpirun -np 2 lmtrain bench --threads
            1` with `lmtrain bench --data-parallel --threads 2`.
            """)

    @Option(help: "Timed training steps (after 2 warm-up steps).") var steps: Int = 5
    @Option(help: "Size n of the n x n x n sgemm.") var sgemmSize: Int = 2048
    @Option(help: "Write the figures as JSON here.") var output: String = "bench.json"
    @OptionGroup var threads: ThreadOptions
    @Flag(help: "Measure the tokenizers instead (see below).") var tokenizers = false
    @Option(help: "Corpus for --tokenizers: a WikiText name (in Data/) or path.") var tokenizerData: String = "wikitext-2"
    @Option(help: "BPE pieces for --tokenizers.") var pieces: Int = 8000
    @Flag(help: "Measure the formal-language models instead (see below).") var formal = false
    @Flag(help: "Measure the data-parallel training step instead (see below; implied under mpirun).") var dataParallel = false
    @Option(help: "--formal: sequences per batch.") var formalBatch: Int = 32
    @Option(help: "--formal: sequence length.") var formalLength: Int = 64
    @Option(help: "--formal: d_model (and the LSTM embedding size).") var formalDModel: Int = 64
    @Option(help: "--formal: heads.") var formalHeads: Int = 4
    @Option(help: "--formal: layers (the e-LSTM has one).") var formalLayers: Int = 2
    @Option(help: "--formal: comma-separated models (default: all seven).") var formalModels: String =
        FormalPreset.Model.allCases.map(\.rawValue).joined(separator: ",")

    func validate() throws {
        guard steps >= 1 else { throw ValidationError("--steps must be at least 1") }
        guard sgemmSize >= 64 else { throw ValidationError("--sgemm-size must be at least 64") }
    }

    func run() throws {
        try threads.apply()
        if dataParallel || Job.collective.isDistributed { return try runDataParallel() }
        try OutputPath.checkWritable(output, flag: "--output")
        try OutputPath.check(
            URL(fileURLWithPath: output), flag: "--output", content: .text,
            inputs: tokenizers ? [("--tokenizer-data", tokenizerData)] : [])
        let blas = OpenBLASKernel.status
        print("OpenBLAS kernel \(blas.kernel) (\(blas.reason)); \(blas.config)")
        print(String(format: "OpenBLAS product check: relative error %.1e against a plain loop", OpenBLASKernel.productError()))
        if tokenizers { return try runTokenizers() }
        if formal { return try runFormal(blas) }
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
        report.evaluation = try measureEvaluation(config, name: "bench preset", trainingTokensPerSecond: report.tokensPerSecond)

        // The bench preset with a σ-MoE block of 16 experts x 64, K = 4.
        var moeConfig = config
        moeConfig.model.feedForward = FeedForwardConfig(MixtureOfExperts.SigmaConfig(experts: 16, expertSize: 64, k: 4))
        let moeSeconds = try Benchmark.trainingStepSeconds(moeConfig, warmup: 2, steps: steps)
        let moeMedian = Benchmark.median(moeSeconds)
        print(String(format: "bench preset with --ffn moe --experts 16 --expert-size 64 --k 4: %.3f s/step (median of %d), %.0f tokens/s = %.2f x the dense step time", moeMedian, steps, Double(tokens) / moeMedian, moeMedian / median))
        report.moeTokensPerSecond = Double(tokens) / moeMedian

        // The quick-start model as Scripts/quickstart trains it (dense variant).
        var quick = Preset.quickstart.config
        quick.model.vocabularySize = 205
        let quickSeconds = try Benchmark.trainingStepSeconds(quick, warmup: 2, steps: steps)
        let quickMedian = Benchmark.median(quickSeconds)
        let quickRate = Double(quick.training.batchSize * quick.training.segmentLength) / quickMedian
        print(String(format: "quickstart preset training: %.3f s/step (median of %d), %.0f tokens/s", quickMedian, steps, quickRate))
        report.quickstart = Benchmark.QuickstartFigures(
            secondsPerStep: quickMedian, tokensPerSecond: quickRate, stepSeconds: quickSeconds,
            evaluation: try measureEvaluation(quick, name: "quickstart preset", trainingTokensPerSecond: quickRate))

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
        report.openBLAS = blas
        try writeJSON(report, to: URL(fileURLWithPath: output))
        print("wrote \(output)")
    }
}

extension Bench {
    /// Evaluation batches of `config`'s model timed once its memory is full (`steps` of them),
    /// printed against the training throughput measured just before.
    func measureEvaluation(_ config: RunConfig, name: String, trainingTokensPerSecond: Double) throws -> Benchmark.EvaluationFigures {
        let seconds = try Benchmark.evaluationBatchSeconds(config, batches: steps)
        let figures = try Benchmark.EvaluationFigures(config, batchSeconds: seconds, trainingTokensPerSecond: trainingTokensPerSecond)
        print(String(
            format: "%@ evaluation (batch %d, memory %d x %d): %.3f s/batch (median of %d), %.0f tokens/s = %.2f x training (%.2f x at equal FLOP/s)",
            name, figures.batchSize, figures.memorySegments, config.training.segmentLength, figures.secondsPerBatch, steps,
            figures.tokensPerSecond, figures.toTrainingRatio, figures.ratioAtEqualFLOPRate))
        return figures
    }

    /// The bench preset's training step (dense and σ-MoE 16 x 64, K 4) as a data-parallel job of
    /// every rank, merged into the JSON at `output` under "data_parallel" by rank 0.
    func runDataParallel() throws {
        let collective = Job.collective
        if collective.rank == 0 { try OutputPath.checkWritable(output, flag: "--output") }
        var config = Preset.bench.config
        config.model.vocabularySize = 205
        var moe = config
        moe.model.feedForward = FeedForwardConfig(MixtureOfExperts.SigmaConfig(experts: 16, expertSize: 64, k: 4))
        let tokens = config.training.batchSize * config.training.segmentLength
        print("data-parallel bench preset: \(collective.size) ranks x \(Threads.count) threads, batch \(config.training.batchSize) x \(config.training.segmentLength) split over the ranks")
        var figures: [Benchmark.DataParallelFigures] = []
        for (variant, variantConfig) in [("dense", config), ("moe", moe)] {
            let seconds = try Benchmark.dataParallelStepSeconds(variantConfig, warmup: 2, steps: steps, collective: collective)
            let parameters = try variantConfig.model.makeModel().layout.count
            let f = Benchmark.DataParallelFigures(
                ranks: collective.size, threadsPerRank: Threads.count, variant: variant, tokensPerStep: tokens,
                parameters: parameters, seconds: seconds)
            print(String(
                format: "%@: %.3f s/step (median of %d), %.0f tokens/s in total, %.0f per rank; gradient all-reduce (%d floats) %.2f ms/step = %.1f%% of the step",
                variant, f.secondsPerStep, steps, f.tokensPerSecond, f.tokensPerSecondPerRank, parameters,
                1000 * f.allReduceSecondsPerStep, 100 * f.allReduceSecondsPerStep / f.secondsPerStep))
            figures.append(f)
        }
        // The all-reduce alone at growing sizes: the cost model's bandwidth and latency terms.
        var sweep: [[String: Any]] = []
        if collective.isDistributed {
            for floats in [1 << 14, 1 << 17, 1 << 20, 1 << 22, 1 << 24] {
                let median = Benchmark.median(Benchmark.allReduceSeconds(count: floats, repeats: 7, collective: collective))
                // The ring's traffic per rank: 2 (N - 1)/N x 4 bytes per float.
                let sent = 2 * Double(collective.size - 1) / Double(collective.size) * 4 * Double(floats)
                print(String(
                    format: "all-reduce of %d floats (%.1f MB): %.3f ms (median of 7), %.1f Gbit/s of ring traffic per rank",
                    floats, 4 * Double(floats) / 1e6, 1000 * median, sent * 8 / median / 1e9))
                sweep.append(["floats": floats, "seconds": median, "ring_gbits_per_second": sent * 8 / median / 1e9])
            }
        }
        guard collective.rank == 0 else { return }
        let runs = try JSONSerialization.jsonObject(with: JSONEncoder().encode(figures))
        try merge(["openblas": OpenBLASKernel.status.kernel, "runs": runs, "all_reduce": sweep], under: "data_parallel")
    }

    /// The formal-language models' training throughput, merged into the JSON at `output` under
    /// "formal": per model the step times and the median tokens/s.
    func runFormal(_ blas: OpenBLASKernel.Status) throws {
        let shape = TokenShape(batch: formalBatch, length: formalLength)
        let (d, heads, layers) = (formalDModel, formalHeads, formalLayers)
        let training = FormalPreset(task: .parity, model: .linearTransformer).config.training
        var figures: [String: Any] = [
            "batch": shape.batch, "length": shape.length, "d_model": d, "heads": heads, "layers": layers,
            "ff_factor": 4, "embedding_size": d, "threads": Threads.count,
            "openblas": ["kernel": blas.kernel, "reason": blas.reason, "config": blas.config],
        ]
        print("formal-language models: batch \(shape.batch), length \(shape.length), d_model \(d), \(heads) heads, \(layers) layers, ff factor 4, \(Threads.count) threads")
        var models: [String: Any] = [:]
        let kinds = try formalModels.split(separator: ",").map { name in
            guard let kind = FormalPreset.Model(rawValue: String(name)) else {
                throw ValidationError("--formal-models: '\(name)' is unknown: use \(FormalPreset.Model.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            return kind
        }
        for kind in kinds {
            var config = FormalPreset(task: .parity, model: kind).config.model
            config = switch kind {
            case .lstm: ModelConfig(RecurrentNetwork.Config(cell: .lstm, embeddingSize: d, modelWidth: d, layers: layers))
            case .elstm: ModelConfig(RecurrentNetwork.Config(cell: .elstm, embeddingSize: d, modelWidth: d))
            case .transformer: ModelConfig(SoftmaxTransformer.Config(modelWidth: d, layers: layers, heads: heads, feedForwardFactor: 4))
            default: ModelConfig(FastWeightTransformer.Config(
                mixer: config.as(FastWeightTransformer.Config.self)!.mixer, modelWidth: d, layers: layers, heads: heads, feedForwardFactor: 4))
            }
            config.vocabularySize = 3
            config.inputVocabularySize = 3
            let seconds = try Benchmark.sequenceModelStepSeconds(config, training: training, shape: shape, warmup: 2, steps: steps)
            let median = Benchmark.median(seconds)
            let rate = Double(shape.rows) / median
            print(String(format: "%@: %.1f ms/step (median of %d), %.0f tokens/s", kind.rawValue, 1000 * median, steps, rate))
            models[kind.rawValue] = ["seconds_per_step_median": median, "tokens_per_second": rate, "step_seconds": seconds]
        }
        figures["models"] = models
        try merge(figures, under: "formal")
    }

    /// The tokenizer benchmark, merged into the JSON at `output` under "tokenizers".
    func runTokenizers() throws {
        guard case .wikiText(let wikiText) = try CorpusLoader.resolve(tokenizerData, dataDirectory: CorpusLoader.defaultDataDirectory) else {
            throw ValidationError("--tokenizer-data \(tokenizerData): not a WikiText corpus (give wikitext-2 or a path to its archive or folder)")
        }
        let report = try TokenizerBenchmark.run(CorpusSources(wikiText), pieces: pieces) { print($0) }
        try merge(try JSONSerialization.jsonObject(with: JSONEncoder().encode(report)), under: "tokenizers")
    }

    /// Writes `value` under `key` of the JSON object at `output`, keeping its other figures.
    func merge(_ value: Any, under key: String) throws {
        let url = URL(fileURLWithPath: output)
        var object = (FileManager.default.contents(atPath: url.path)).flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] } ?? [:]
        object[key] = value
        try AtomicFile.write(try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys]), to: url)
        print("wrote \(output) (\(key))")
    }
}
