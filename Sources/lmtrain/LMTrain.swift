import ArgumentParser
import Foundation
import Tensor

@main
struct LMTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lmtrain",
        abstract: "Train and evaluate Transformer-XL language models on the CPU.",
        discussion: """
            Examples:
              lmtrain train --preset quickstart
              lmtrain train --data Data/enwik8.zip --preset e8 --steps 1000
              lmtrain train --data wikitext-103 --tokenizer bpe:8000 --preset wt-s
              lmtrain prepare --data wikitext-103 --tokenizer bpe:8000
              lmtrain eval --checkpoint runs/quickstart/checkpoints/step-0001000.safetensors --split test
              lmtrain bench
            """,
        subcommands: [
            Train.self, Eval.self, Prepare.self, Tokenize.self, Step.self, Count.self, Audit.self, Compare.self,
            Bench.self, Formal.self, Scaling.self, Results.self,
        ])

    /// Runs the command; user mistakes print one line and exit non-zero (no stack traces).
    static func main() {
        // Before anything computes: the best OpenBLAS kernel for this CPU (may run lmtrain again).
        OpenBLASKernel.selectForThisCPU()
        // Under mpirun: MPI starts here (after any re-execution above, before any work).
        Job.start()
        do {
            var command = try parseAsRoot()
            try Job.requireSingleProcess(unless: command)
            try command.run()
            Job.finish()
        } catch let error as ExitCode {
            // Interruptions reach every rank of a job together (their stop is agreed).
            Job.finish()
            Foundation.exit(error.rawValue)
        } catch {
            // --help and --version arrive as errors with a success exit code: print them whole.
            if exitCode(for: error) == .success {
                exit(withError: error)
            }
            let message = Self.message(for: error)
            let firstLine = message.split(separator: "\n").first.map(String.init) ?? message
            Job.fail(firstLine, code: exitCode(for: error).rawValue)
        }
    }
}
