import ArgumentParser
import Datasets
import Foundation

struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Encode text into ids with a SentencePiece .model file, or decode ids back.",
        discussion: """
            Each input line becomes one output line of space-separated ids, as
            spm_encode --output_format=id writes them; with --decode each line of ids becomes
            its text (spm_decode --input_format=id). Any BPE .model works: the tokenizer.model
            that lmtrain prepare saves, or one trained by sentencepiece.
              lmtrain tokenize --model Data/cache/wikitext-103-bpe-8000/tokenizer.model < text.txt > ids.txt
              lmtrain tokenize --model M.model --decode ids.txt
            """)

    @Option(help: "SentencePiece BPE model file (.model).") var model: String
    @Argument(help: "Input file (default: standard input).") var file: String?
    @Flag(help: "Read lines of ids and write their text.") var decode = false
    @OptionGroup var threads: ThreadOptions

    func run() throws {
        try threads.apply()
        let tool = try IDText(model: URL(fileURLWithPath: model))
        let input: IDText.Input = file.map { .file(URL(fileURLWithPath: $0)) } ?? .standardInput
        let output = FileHandle.standardOutput
        let write = { (bytes: UnsafeRawBufferPointer) in output.write(Data(bytes)) }
        if decode {
            try tool.decode(input: input, write: write)
        } else {
            try tool.encode(input: input, write: write)
        }
    }
}
