// The Tokenizer protocol: what a training pipeline needs from any tokenizer.
//
// A corpus is encoded line by line, each line on its own (WikiText convention: Transformer-XL
// appends <eos> to every line; the σ-MoE setup calls sentencepiece's encode_as_ids per line).
// Encoding is done by per-thread `LineEncoder`s so a tokenizer can keep private scratch space
// and caches (the BPE word cache) without locks, while the tokenizer itself stays an
// immutable, `Sendable` value.

import Foundation

/// A tokenizer that maps one line of text to token ids and ids back to text.
///
/// Every id a tokenizer produces lies in `0..<vocabularySize`. Lines are encoded separately:
/// encoding a file is the concatenation of encoding each of its lines (see
/// ``Tokenizer/encodeLines(ofFile:threadCount:)``).
public protocol Tokenizer: Sendable {
    /// A single-threaded encoder with its own scratch space; make one per thread.
    associatedtype LineEncoder: TokenizerLineEncoder

    /// Number of distinct ids (the embedding table size).
    var vocabularySize: Int { get }

    /// A short human-readable description for logs and cache headers,
    /// e.g. `"word-level, 33278 types"`.
    var displayName: String { get }

    /// 16 hex digits (FNV-1a 64) over everything that decides which ids a text gets
    /// (the pieces in id order and, for SentencePiece, their types, scores and the
    /// normaliser). Two tokenizers with the same fingerprint encode every text identically,
    /// so a token cache can record it and refuse a mismatching tokenizer.
    var vocabularyFingerprint: String { get }

    /// Returns a fresh encoder for the calling thread.
    func makeLineEncoder() -> LineEncoder

    /// Encodes one line of text (without its line terminator).
    func encode(_ line: Substring) throws -> [Int32]

    /// Turns ids back into text; ids outside `0..<vocabularySize` are rendered as the
    /// tokenizer's unknown-token text.
    func decode(_ ids: [Int32]) -> String

    /// The vocabulary entry of `id`, or nil when `id` is out of range.
    func token(for id: Int32) -> String?
}

/// Encodes lines for one thread; it may cache results between calls, so it is not `Sendable`.
public protocol TokenizerLineEncoder {
    /// Appends the ids of one line, given as UTF-8 bytes without its terminator.
    /// - Throws: ``TokenizerError/invalidUTF8(file:line:byteOffset:)`` (with `file` and `line`
    ///   nil) when `utf8Line` is not valid UTF-8.
    mutating func encode(utf8Line: UnsafeBufferPointer<UInt8>, appendingTo ids: inout [Int32])
        throws
}

/// The ids of a whole corpus, encoded line by line and concatenated.
public struct EncodedCorpus: Sendable, Equatable {
    /// All ids, line after line.
    public var ids: [Int32]
    /// Number of lines encoded (LF-terminated lines, plus a final unterminated one if non-empty).
    public var lineCount: Int

    public init(ids: [Int32], lineCount: Int) {
        self.ids = ids
        self.lineCount = lineCount
    }
}

extension Tokenizer {
    /// Encodes one line with a fresh ``LineEncoder`` (so without a warm cache; for many lines
    /// use ``encodeLines(_:)`` or a ``LineEncoder`` of your own).
    public func encode(_ line: Substring) throws -> [Int32] {
        var encoder = makeLineEncoder()
        var ids: [Int32] = []
        var copy = line
        try copy.withUTF8 { try encoder.encode(utf8Line: $0, appendingTo: &ids) }
        return ids
    }

    /// Encodes one line of text (without its line terminator).
    public func encode(_ line: String) throws -> [Int32] {
        try encode(line[...])
    }

    /// Encodes one line given as raw bytes; throws
    /// ``TokenizerError/invalidUTF8(file:line:byteOffset:)`` naming the offending byte when
    /// they are not UTF-8.
    public func encode(utf8Line bytes: [UInt8]) throws -> [Int32] {
        var encoder = makeLineEncoder()
        var ids: [Int32] = []
        try bytes.withUnsafeBufferPointer { try encoder.encode(utf8Line: $0, appendingTo: &ids) }
        return ids
    }

    /// Encodes every line of a UTF-8 text held in memory. Lines end at LF; a CR before the LF
    /// is dropped. Work is split at line boundaries over `threadCount` threads, each with its
    /// own ``LineEncoder``; the result is identical for every thread count.
    public func encodeLines(utf8Text text: UnsafeBufferPointer<UInt8>, threadCount: Int = 2) throws
        -> EncodedCorpus
    {
        // One part per thread: parts of equal size take about equal time, and each part's
        // encoder warms its own word cache.
        let ranges = TextLines.splitAtLineBoundaries(text, parts: max(1, threadCount))
        let lineOffsets = ranges.map {
            TextLines.countLines(in: UnsafeBufferPointer(rebasing: text[$0]))
        }
        var firstLine = [Int](repeating: 0, count: ranges.count)
        for i in 1..<max(1, ranges.count) { firstLine[i] = firstLine[i - 1] + lineOffsets[i - 1] }
        let results = try parallelMap(count: ranges.count, threadCount: threadCount) {
            part -> [Int32] in
            var encoder = makeLineEncoder()
            var ids: [Int32] = []
            try TextLines.forEachLine(in: UnsafeBufferPointer(rebasing: text[ranges[part]])) {
                index, line in
                do {
                    try encoder.encode(utf8Line: line, appendingTo: &ids)
                } catch let TokenizerError.invalidUTF8(_, _, byteOffset) {
                    throw TokenizerError.invalidUTF8(
                        file: nil, line: firstLine[part] + index + 1, byteOffset: byteOffset)
                }
            }
            return ids
        }
        var all: [Int32] = []
        all.reserveCapacity(results.reduce(0) { $0 + $1.count })
        for part in results { all.append(contentsOf: part) }
        return EncodedCorpus(ids: all, lineCount: lineOffsets.reduce(0, +))
    }

    /// Encodes every line of a UTF-8 text file (see ``encodeLines(utf8Text:threadCount:)``),
    /// reading it in bounded chunks. Invalid UTF-8 is reported with the file, line and byte.
    public func encodeLines(ofFile url: URL, threadCount: Int = 2) throws -> EncodedCorpus {
        var corpus = EncodedCorpus(ids: [], lineCount: 0)
        try TextLines.forEachChunk(ofFile: url) { chunk in
            do {
                let part = try encodeLines(utf8Text: chunk, threadCount: threadCount)
                corpus.ids.append(contentsOf: part.ids)
                corpus.lineCount += part.lineCount
            } catch let TokenizerError.invalidUTF8(_, line, byteOffset) {
                throw TokenizerError.invalidUTF8(
                    file: url.path, line: line.map { corpus.lineCount + $0 }, byteOffset: byteOffset
                )
            }
        }
        return corpus
    }

    /// Encodes each line of a sequence of strings and concatenates the ids.
    public func encodeLines<Lines: Sequence>(_ lines: Lines) throws -> EncodedCorpus
    where Lines.Element: StringProtocol {
        var encoder = makeLineEncoder()
        var corpus = EncodedCorpus(ids: [], lineCount: 0)
        for line in lines {
            var copy = String(line)
            try copy.withUTF8 { try encoder.encode(utf8Line: $0, appendingTo: &corpus.ids) }
            corpus.lineCount += 1
        }
        return corpus
    }
}

/// Errors from tokenizers; each describes itself in one line that says what to fix.
public enum TokenizerError: Error, Equatable, CustomStringConvertible, LocalizedError {
    /// Text that is not UTF-8. `line` is 1-based, `byteOffset` 0-based within the line;
    /// `file` and `line` are nil when the caller passed a single line.
    case invalidUTF8(file: String?, line: Int?, byteOffset: Int)
    /// A `.model` file that is not a well-formed SentencePiece model.
    case malformedModel(file: String, reason: String)
    /// A vocabulary file or list that cannot be used.
    case invalidVocabulary(source: String, reason: String)
    /// Training could not produce the requested model.
    case trainingFailed(reason: String)
    /// Reading or writing a file failed.
    case fileSystem(path: String, reason: String)

    public var description: String {
        switch self {
        case .invalidUTF8(let file, let line, let byteOffset):
            var location = ""
            if let file { location += " in \(file)" }
            if let line { location += " at line \(line)" }
            return
                "invalid UTF-8\(location), byte \(byteOffset) of the line: re-encode the text as UTF-8"
        case .malformedModel(let file, let reason):
            return "\(file): not a valid SentencePiece model: \(reason)"
        case .invalidVocabulary(let source, let reason):
            return "\(source): invalid vocabulary: \(reason)"
        case .trainingFailed(let reason):
            return "tokenizer training failed: \(reason)"
        case .fileSystem(let path, let reason):
            return "\(path): \(reason)"
        }
    }

    public var errorDescription: String? { description }
}
