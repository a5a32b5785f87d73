// Parallel line encoding: a line-aligned chunk of text is cut into one part per worker at
// line boundaries, each part is encoded line by line by its own encoder, and the parts' ids
// are taken in order, so the result is the concatenation of encoding every line on its own
// (for any number of parts). Encoders live as long as the engine, so a BPE encoder's word
// cache stays warm from chunk to chunk instead of starting cold on every chunk.

import Foundation
import Tensor
import Tokenizers

/// One part's encoder and results; touched by exactly one worker during `encode`.
struct EncodingPart<Encoder: TokenizerLineEncoder> {
    var encoder: Encoder
    /// Counts whitespace words (a word tokenizer with only `<eos>` and `<unk>`) when the
    /// tokenizer's own ids are not words.
    var wordCounter: WordTokenizer.Encoder?
    var ids: [Int32] = []
    /// Cumulative id count at the end of each line (only when line ends are kept).
    var lineEnds: [Int]?
    var scratch: [Int32] = []
    var lines = 0
    var words = 0
    /// The first failing line (0-based within the part) and its error.
    var failure: (line: Int, error: any Error)?

    mutating func run(_ text: UnsafeBufferPointer<UInt8>) {
        ids.removeAll(keepingCapacity: true)
        lineEnds?.removeAll(keepingCapacity: true)
        lines = 0
        words = 0
        failure = nil
        var current = 0
        do {
            try TextLines.forEachLine(in: text) { index, line in
                current = index
                try encoder.encode(utf8Line: line, appendingTo: &ids)
                if wordCounter != nil {
                    scratch.removeAll(keepingCapacity: true)
                    try wordCounter!.encode(utf8Line: line, appendingTo: &scratch)
                    words += scratch.count
                }
                lineEnds?.append(ids.count)
                lines = index + 1
            }
        } catch {
            failure = (current, error)
        }
    }
}

/// Encodes line-aligned chunks with one warm encoder per part (see the file comment).
final class LineEncodingEngine<T: Tokenizer> {
    let partCount: Int
    let countsWords: Bool
    private let parts: UnsafeMutablePointer<EncodingPart<T.LineEncoder>>

    /// `parts` encoders (spread over `Threads.count` workers); `countWords` adds a whitespace
    /// word count; `keepLineEnds` records where each line's ids end.
    init(tokenizer: T, parts: Int, countWords: Bool, keepLineEnds: Bool = false) {
        partCount = max(1, parts)
        countsWords = countWords
        self.parts = .allocate(capacity: partCount)
        // Cannot fail: both entries are distinct, non-empty and free of whitespace.
        let counter = try! WordTokenizer(tokens: [WordTokenizer.endOfLineToken, WordTokenizer.unknownToken])
        for i in 0..<partCount {
            (self.parts + i).initialize(
                to: EncodingPart(
                    encoder: tokenizer.makeLineEncoder(), wordCounter: countWords ? counter.makeLineEncoder() : nil,
                    lineEnds: keepLineEnds ? [] : nil))
        }
    }

    deinit {
        parts.deinitialize(count: partCount)
        parts.deallocate()
    }

    /// Encodes `chunk` (whole lines). Lines before it (`firstLine`) and the source's name only
    /// serve the error for invalid UTF-8, which names file, line and byte.
    /// - Returns: the lines and (when counted) words of the chunk.
    func encode(_ chunk: UnsafeBufferPointer<UInt8>, firstLine: Int, source: String) throws -> (lines: Int, words: Int) {
        let ranges = Self.lineAlignedRanges(chunk, parts: partCount)
        let partsPointer = SendablePointer(parts)
        let text = SendablePointer(chunk.baseAddress ?? UnsafePointer(bitPattern: 1)!)
        // Each index writes only its own part (see SendablePointer).
        parallelFor(partCount) { p in
            let range = p < ranges.count ? ranges[p] : 0..<0
            partsPointer.mutable[p].run(UnsafeBufferPointer(start: text.pointer + range.lowerBound, count: range.count))
        }
        var lines = 0
        var words = 0
        for p in 0..<partCount {
            let part = parts[p]
            if let failure = part.failure {
                let line = firstLine + lines + failure.line + 1
                if case TokenizerError.invalidUTF8(_, _, let offset) = failure.error {
                    throw TokenizerError.invalidUTF8(file: source, line: line, byteOffset: offset)
                }
                throw failure.error
            }
            lines += part.lines
            words += countsWords ? part.words : part.ids.count
        }
        return (lines, words)
    }

    /// The ids of each part of the last chunk, in order.
    func forEachPart(_ body: (UnsafeBufferPointer<Int32>, _ lineEnds: [Int]?) throws -> Void) rethrows {
        for p in 0..<partCount {
            try parts[p].ids.withUnsafeBufferPointer { try body($0, parts[p].lineEnds) }
        }
    }

    /// About `parts` consecutive ranges of equal size, each extended to just after a line feed
    /// (none for an empty text).
    static func lineAlignedRanges(_ text: UnsafeBufferPointer<UInt8>, parts: Int) -> [Range<Int>] {
        text.isEmpty ? [] : TextLines.splitAtLineBoundaries(text, parts: max(1, parts))
    }
}
