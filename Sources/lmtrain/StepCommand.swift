import ArgumentParser
import Foundation
import Configuration
import Training

struct Step: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "One forward and backward pass on given tokens, dumping loss, logits and gradients.",
        discussion: "See Docs/verification.md for comparing the dump with another framework.")

    @Option(help: "Checkpoint (.safetensors) whose model to run.") var checkpoint: String
    @Option(help: "safetensors file with an int32 tensor 'tokens' of shape [B, T+1].") var tokens: String
    @Option(help: "Where to write the dump (.safetensors).") var dump: String
    @OptionGroup var threads: ThreadOptions

    func run() throws {
        try threads.apply()
        try OutputPath.check(
            URL(fileURLWithPath: dump), flag: "--dump", content: .safetensors,
            inputs: [("--checkpoint", checkpoint), ("--tokens", tokens)])
        let loaded = try loadCheckpoint(URL(fileURLWithPath: checkpoint))
        let result = try StepDump.run(checkpoint: loaded, tokensURL: URL(fileURLWithPath: tokens), dumpURL: URL(fileURLWithPath: dump))
        print("loss \(result.loss) on \(result.batch) x \(result.length) tokens; wrote \(dump)")
    }
}
