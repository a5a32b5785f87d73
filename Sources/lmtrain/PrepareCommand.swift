import ArgumentParser
import Datasets
import Foundation

struct Prepare: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Tokenize a corpus once into token caches that training memory-maps.",
        discussion: """
            Examples:
              lmtrain prepare --data wikitext-103 --tokenizer bpe:8000
              lmtrain prepare --data Data/wikitext-2-v1.zip --tokenizer words
            The tokenizer is built from the train split (bpe:N: a SentencePiece tokenizer.model;
            words: vocab.txt; bytes: byte-values.txt) and reused until that text changes. Each
            split becomes DATA/cache/NAME-TOKENIZER/{train,valid,test}.ids; caches that are stale
            (source, tokenizer or format changed) or damaged are rebuilt. train and eval prepare
            on their own when needed; see Docs/data.md.
            """)

    @Option(help: "Corpus: wikitext-103, wikitext-103-raw, wikitext-2, wikitext-2-raw (in Data/), kjv, or a path to a WikiText archive or folder or a text file.")
    var data: String

    @Option(help: "Tokenizer: bpe:N (SentencePiece BPE, N pieces), words, or bytes (WikiText only).")
    var tokenizer: TokenizerArgument = TokenizerArgument(argument: "bpe:8000")!

    @Option(help: "Train,valid,test fractions for plain text files, e.g. 0.9,0.05,0.05.")
    var split: String?

    @Flag(help: "Build the tokenizer and every cache again even when they are current.")
    var force = false

    @OptionGroup var threads: ThreadOptions

    func run() throws {
        try threads.apply()
        var config = DataConfig(source: data, tokenizer: tokenizer.choice.description)
        if let split {
            let fractions = split.split(separator: ",").map { Double($0.trimmingCharacters(in: .whitespaces)) }
            guard fractions.count == 3, fractions.allSatisfy({ $0 != nil }) else {
                throw ValidationError("--split '\(split)' must be three fractions train,valid,test such as 0.9,0.05,0.05")
            }
            config.split = fractions.map { $0! }
        }
        let prepared = try CorpusLoader.prepare(config, force: force)
        print("tokenizer \(prepared.tokenizerFile.path): \(prepared.tokenizer.displayName) (\(prepared.trainedTokenizer ? "built now" : "reused"))")
        print("split  source MB      lines       words      tokens  tokens/word  cache")
        for split in Split.allCases {
            let h = prepared.headers[split]!
            let words = h.wordCount.map { String($0) } ?? "?"
            let ratio = h.wordCount.map { String(format: "%.3f", Double(h.tokenCount) / Double(max(1, $0))) } ?? "?"
            let state = prepared.rebuiltSplits.contains(split) ? "built" : "current"
            let columns = [
                String(format: "%.2f", Double(h.source.bytes) / 1e6), String(h.lineCount), words, String(h.tokenCount), ratio,
            ]
            let widths = [11, 10, 11, 11, 12]
            let aligned = zip(columns, widths).map { String(repeating: " ", count: max(0, $1 - $0.count)) + $0 }
            print(split.rawValue.padding(toLength: 5, withPad: " ", startingAt: 0) + aligned.joined(separator: " ") + "  \(prepared.cacheFile(split).path) (\(state))")
        }
    }
}
