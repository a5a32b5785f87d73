import ArgumentParser
import Foundation
import Tensor
import Training

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure the sgemm rate and the training throughput of the bench preset.")

    @Option(help: "Timed training steps (after 2 warm-up steps).") var steps: Int = 5
    @Option(help: "Size n of the n x n x n sgemm.") var sgemmSize: Int = 2048
    @Option(help: "Write the figures as JSON here.") var output: String = "bench.json"
    @OptionGroup var threads: ThreadOptions

    func validate() throws {
        guard steps >= 1 else { throw ValidationError("--steps must be at least 1") }
        guard sgemmSize >= 64 else { throw ValidationError("--sgemm-size must be at least 64") }
    }

    func run() throws {
        try threads.apply()
        let sgemm = Benchmark.sgemmRate(size: sgemmSize, repeats: 5)
        print(String(format: "sgemm %d^3: %.1f GFLOP/s (median of 5, %d threads)", sgemmSize, sgemm, Threads.count))
        var config = Preset.bench.config
        config.model.vocabularySize = 205
        let seconds = try Benchmark.trainingStepSeconds(config, warmup: 2, steps: steps)
        let median = Benchmark.median(seconds)
        let tokens = config.training.batchSize * config.training.segmentLength
        let flopsPerToken = try Benchmark.modelFLOPsPerToken(config)
        let modelRate = flopsPerToken * Double(tokens) / median / 1e9
        let report = Benchmark.Report(
            threads: Threads.count, sgemmSize: sgemmSize, sgemmGFLOPS: sgemm, preset: "bench",
            tokensPerStep: tokens, secondsPerStep: median, tokensPerSecond: Double(tokens) / median,
            modelFLOPsPerToken: flopsPerToken, modelGFLOPS: modelRate, fractionOfSgemm: modelRate / sgemm,
            measuredSteps: steps, stepSeconds: seconds)
        print(String(format: "bench preset training: %.3f s/step (median of %d), %.0f tokens/s, %.1f model GFLOP/s = %.0f%% of sgemm", median, steps, report.tokensPerSecond, modelRate, 100 * report.fractionOfSgemm))
        try writeJSON(report, to: URL(fileURLWithPath: output))
        print("wrote \(output)")
    }
}
