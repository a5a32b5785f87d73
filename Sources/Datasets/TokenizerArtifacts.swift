// The tokenizer of a prepared corpus and the files it is kept in, next to the caches:
//   bytes    byte-values.txt   the distinct byte values of all three splits, one decimal a line
//   words    vocab.txt         the word vocabulary of the train split, one token a line
//   bpe:N    tokenizer.model   a SentencePiece model (readable by Python sentencepiece and spm_encode)
// plus tokenizer.json, which records what the tokenizer was trained on (length and CRC-32 of
// each text) and its vocabulary fingerprint, so it is reused until its training text changes.

import Foundation
import Tokenizers

/// A tokenizer name as `--tokenizer` and `DataConfig.tokenizer` give it.
public enum TokenizerChoice: Sendable, Equatable, CustomStringConvertible {
    /// One id per byte value present in the corpus.
    case bytes
    /// Transformer-XL words: whitespace-separated tokens plus `<eos>` per line.
    case words
    /// SentencePiece BPE with this many pieces (split digits), each line encoded separately.
    case bpe(pieces: Int)

    /// Parses `bytes`, `words` or `bpe:N`.
    public init(_ name: String) throws {
        if name == "bytes" {
            self = .bytes
        } else if name == "words" {
            self = .words
        } else if name.hasPrefix("bpe:"), let pieces = Int(name.dropFirst(4)), pieces >= 1 {
            self = .bpe(pieces: pieces)
        } else {
            throw DataError("--tokenizer '\(name)' is unknown: use bytes, words or bpe:PIECES (e.g. bpe:8000)")
        }
    }

    public var description: String {
        switch self {
        case .bytes: "bytes"
        case .words: "words"
        case .bpe(let pieces): "bpe:\(pieces)"
        }
    }

    /// The tokenizer part of a cache folder name: `bytes`, `words`, `bpe-8000`.
    public var folderName: String { description.replacingOccurrences(of: ":", with: "-") }

    /// The file the trained tokenizer is saved in.
    public var fileName: String {
        switch self {
        case .bytes: "byte-values.txt"
        case .words: "vocab.txt"
        case .bpe: "tokenizer.model"
        }
    }

    /// The splits the tokenizer is built from: all of them for bytes (so that no byte of valid
    /// or test is unknown, as for enwik8), the train split otherwise.
    var trainingSplits: [Split] { self == .bytes ? Split.allCases : [.train] }
}

/// A tokenizer built for a corpus.
public enum TrainedTokenizer: Sendable {
    /// The distinct byte values of the corpus.
    case bytes(ByteVocabulary)
    /// A Transformer-XL word vocabulary.
    case words(WordTokenizer)
    /// A SentencePiece BPE model.
    case bpe(SentencePieceBPE)

    /// Number of ids.
    public var vocabularySize: Int {
        switch self {
        case .bytes(let v): v.count
        case .words(let t): t.vocabularySize
        case .bpe(let t): t.vocabularySize
        }
    }

    /// FNV-1a 64 over everything that decides the ids (the tokenizers' own fingerprints).
    public var fingerprint: UInt64 {
        switch self {
        case .bytes(let v):
            var hash = FNV1a()
            hash.add("ByteVocabulary")
            v.symbols.withUnsafeBytes { hash.add($0) }
            return hash.value
        case .words(let t): return UInt64(t.vocabularyFingerprint, radix: 16) ?? 0
        case .bpe(let t): return UInt64(t.vocabularyFingerprint, radix: 16) ?? 0
        }
    }

    /// A short description for messages ("word-level, 33278 types").
    public var displayName: String {
        switch self {
        case .bytes(let v): "\(v.count) byte values"
        case .words(let t): t.displayName
        case .bpe(let t): t.displayName
        }
    }

    /// Writes the tokenizer file atomically.
    public func save(to url: URL) throws {
        switch self {
        case .bytes(let v):
            try AtomicFile.write(Data(v.symbols.map { "\($0)\n" }.joined().utf8), to: url)
        case .words(let t): try t.save(to: url)
        case .bpe(let t): try t.save(to: url)
        }
    }

    /// Reads a tokenizer file of `choice`.
    public static func load(_ choice: TokenizerChoice, from url: URL) throws -> TrainedTokenizer {
        switch choice {
        case .bytes:
            guard let text = try? String(contentsOf: url, encoding: .utf8) else {
                throw DataError("\(url.path): cannot read the byte values")
            }
            let values = text.split(separator: "\n").map { UInt8($0) }
            guard !values.isEmpty, values.allSatisfy({ $0 != nil }) else {
                throw DataError("\(url.path): not a list of byte values")
            }
            let symbols = values.map { $0! }
            guard symbols == symbols.sorted(), Set(symbols).count == symbols.count else {
                throw DataError("\(url.path): byte values must be distinct and ascending")
            }
            return .bytes(ByteVocabulary(symbols: symbols))
        case .words:
            return .words(try WordTokenizer(contentsOf: url))
        case .bpe(let pieces):
            let model = try SentencePieceBPE(contentsOf: url)
            guard model.vocabularySize == pieces else {
                throw DataError("\(url.path): has \(model.vocabularySize) pieces, not \(pieces)")
            }
            return .bpe(model)
        }
    }
}

/// `tokenizer.json`: what the tokenizer file was trained on.
struct TokenizerManifest: Codable, Equatable {
    static let format = 1
    var format: Int
    var tokenizer: String
    var file: String
    /// 16 hex digits: ``TrainedTokenizer/fingerprint`` of the file's tokenizer.
    var fingerprint: String
    /// The texts it was built from, in ``TokenizerChoice/trainingSplits`` order.
    var trainedOn: [SourceIdentity]
    var seconds: Double

    enum CodingKeys: String, CodingKey {
        case format, tokenizer, file, fingerprint, seconds
        case trainedOn = "trained_on"
    }

    static func read(_ url: URL) -> TokenizerManifest? {
        guard let data = FileManager.default.contents(atPath: url.path) else { return nil }
        return try? JSONDecoder().decode(TokenizerManifest.self, from: data)
    }

    func write(to url: URL) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try AtomicFile.write(try encoder.encode(self), to: url)
    }
}

extension UInt64 {
    /// 16 lower-case hex digits.
    var hex16: String {
        let digits = String(self, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
}
