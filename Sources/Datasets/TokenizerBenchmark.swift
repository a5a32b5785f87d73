// `lmtrain bench --tokenizers`: tokenization throughput of the three tokenizers on a train
// split held in memory (so the disk is not measured), and the time to train the BPE model.
// Throughput is MB of source text per second, encoders starting cold as in `prepare`.

import Foundation
import Tensor
import Tokenizers

/// Measures the tokenizers on a corpus's train split.
public enum TokenizerBenchmark {
    /// The figures, as written into the bench JSON under `tokenizers`.
    public struct Report: Codable, Sendable {
        public var corpus: String
        public var trainBytes: Int
        public var threads: Int
        public var repeats: Int
        /// Median MB/s over the repeats.
        public var bytesMBPerSecond: Double
        public var wordsMBPerSecond: Double
        public var bpeMBPerSecond: Double
        /// BPE on one thread, for the scaling.
        public var bpeSingleThreadMBPerSecond: Double
        public var wordVocabularySeconds: Double
        public var wordTypes: Int
        public var bpePieces: Int
        public var bpeTrainingSeconds: Double
        public var bpeTokens: Int
        public var wordTokens: Int

        enum CodingKeys: String, CodingKey {
            case corpus, threads, repeats
            case trainBytes = "train_bytes"
            case bytesMBPerSecond = "bytes_mb_per_second"
            case wordsMBPerSecond = "words_mb_per_second"
            case bpeMBPerSecond = "bpe_mb_per_second"
            case bpeSingleThreadMBPerSecond = "bpe_single_thread_mb_per_second"
            case wordVocabularySeconds = "word_vocabulary_seconds"
            case wordTypes = "word_types"
            case bpePieces = "bpe_pieces"
            case bpeTrainingSeconds = "bpe_training_seconds"
            case bpeTokens = "bpe_tokens"
            case wordTokens = "word_tokens"
        }
    }

    /// Runs every measurement on the train split of `sources` with `Threads.count` workers;
    /// `note` receives one line per result.
    public static func run(
        _ sources: CorpusSources, pieces: Int = 8000, repeats: Int = 3, note: (String) -> Void
    ) throws -> Report {
        // The text in memory, cut into the chunks `prepare` would read.
        var text: [UInt8] = []
        text.reserveCapacity(sources.train.byteCount)
        try sources.train.forEachBlock { text.append(contentsOf: $0) }
        let megabytes = Double(text.count) / 1e6
        let threads = Threads.count
        note(String(format: "tokenizer benchmark on %@ train (%.1f MB), %d threads, median of %d", sources.name, megabytes, threads, repeats))

        func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
        func timed(_ body: () throws -> Void) rethrows -> Double {
            let start = Date()
            try body()
            return Date().timeIntervalSince(start)
        }
        /// MB/s of encoding all of `text` with a fresh engine of `parts` parts.
        func encodingRate<T: Tokenizer>(_ tokenizer: T, parts: Int, countWords: Bool) throws -> (Double, Int) {
            var tokens = 0
            let seconds = try (0..<repeats).map { _ in
                try timed {
                    let engine = LineEncodingEngine(tokenizer: tokenizer, parts: parts, countWords: countWords)
                    tokens = 0
                    try text.withUnsafeBufferPointer { all in
                        try forEachChunk(of: all) { chunk in
                            _ = try engine.encode(chunk, firstLine: 0, source: "benchmark")
                            engine.forEachPart { ids, _ in tokens += ids.count }
                        }
                    }
                }
            }
            return (megabytes / median(seconds), tokens)
        }

        // Bytes: the table lookup that byte caches use.
        let vocabulary = text.withUnsafeBytes { ByteVocabulary(of: $0) }
        let byteSeconds = try (0..<repeats).map { _ in
            try timed { _ = try text.withUnsafeBytes { try vocabulary.encode($0, source: "benchmark") } }
        }
        let bytesRate = megabytes / median(byteSeconds)
        note(String(format: "  bytes: %.0f MB/s (%d byte values)", bytesRate, vocabulary.count))

        // Words: the vocabulary of the train split, then encoding.
        var builder = WordTokenizer.VocabularyBuilder()
        let vocabularySeconds = try timed {
            try text.withUnsafeBufferPointer { all in
                try TextLines.forEachLine(in: all) { _, line in try builder.add(utf8Line: line) }
            }
        }
        let words = builder.makeTokenizer()
        let (wordsRate, wordTokens) = try encodingRate(words, parts: threads, countWords: false)
        note(String(format: "  words: %.1f MB/s (%d types; vocabulary built in %.2f s)", wordsRate, words.vocabularySize, vocabularySeconds))

        // BPE: training from the file as prepare does, then encoding with the word count that
        // prepare adds.
        var bpe: SentencePieceBPE?
        let trainingSeconds = try timed {
            var trainer = try SentencePieceBPE.Trainer(options: .init(vocabularySize: pieces))
            if case .file(let url) = sources.train.location {
                try trainer.add(contentsOf: url, threadCount: threads)
            } else {
                try text.withUnsafeBufferPointer { all in
                    try TextLines.forEachLine(in: all) { _, line in try trainer.add(utf8Line: line) }
                }
            }
            bpe = try trainer.makeTokenizer()
        }
        note(String(format: "  bpe:%d training: %.2f s", pieces, trainingSeconds))
        let (bpeRate, bpeTokens) = try encodingRate(bpe!, parts: threads, countWords: true)
        let (bpeSingle, _) = try encodingRate(bpe!, parts: 1, countWords: true)
        note(String(format: "  bpe:%d encoding: %.1f MB/s on %d threads, %.1f MB/s on 1 (%d tokens, %.3f per word)", pieces, bpeRate, threads, bpeSingle, bpeTokens, Double(bpeTokens) / Double(max(1, wordTokens))))
        return Report(
            corpus: sources.name, trainBytes: text.count, threads: threads, repeats: repeats, bytesMBPerSecond: bytesRate,
            wordsMBPerSecond: wordsRate, bpeMBPerSecond: bpeRate, bpeSingleThreadMBPerSecond: bpeSingle,
            wordVocabularySeconds: vocabularySeconds, wordTypes: words.vocabularySize, bpePieces: pieces,
            bpeTrainingSeconds: trainingSeconds, bpeTokens: bpeTokens, wordTokens: wordTokens)
    }

    /// Line-aligned chunks of about 8 MB, as `prepare` reads them.
    static func forEachChunk(of text: UnsafeBufferPointer<UInt8>, _ body: (UnsafeBufferPointer<UInt8>) throws -> Void) rethrows {
        var start = 0
        while start < text.count {
            var end = min(text.count, start + (8 << 20))
            while end < text.count && text[end - 1] != 0x0A { end += 1 }
            try body(UnsafeBufferPointer(rebasing: text[start..<end]))
            start = end
        }
    }
}
