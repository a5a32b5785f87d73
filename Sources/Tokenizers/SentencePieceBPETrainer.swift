// Training a SentencePiece-style BPE model in bounded memory, following sentencepiece's
// conventions (trainer_interface.cc, bpe_model_trainer.cc):
//
// Lines: empty lines, lines over `maxSentenceLength` bytes and lines containing U+2585 (the
//   trainer's private "unknown character") are skipped; each line is normalised, and the
//   meta pieces "<unk>", "<s>", "</s>" in it become a boundary (TAB) that nothing merges
//   across. Lines are then cut into words at U+2581 and only the word counts are kept, so
//   memory grows with the number of distinct words, not with the corpus.
// Characters: counted over all words; sorted by count (ties by code point) and taken until
//   `characterCoverage` of all character occurrences is covered; the rest become <unk>.
// Merges: exact BPE over the word-count table. Each step merges the most frequent adjacent
//   pair (ties: the shorter piece in characters, then the lexicographically smaller UTF-8),
//   counting only pairs whose concatenation is a valid piece: at most `maxPieceLength`
//   characters, U+2581 only as the first character, no digit together with anything when
//   `splitDigits`, no two Unicode scripts (Hiragana and Katakana count as Han, combining marks
//   take the script before them, digits are script-less unless `splitByNumber`). A pair
//   whose piece already exists (built another way) is dropped, as sentencepiece does.
//   (sentencepiece itself only rescans the 5% most frequent pairs every 100 merges, so its
//   merge order can differ slightly; this trainer always takes the true best pair.)
// Vocabulary: <unk>=0 (UNKNOWN), <s>=1, </s>=2 (CONTROL), then the merged pieces in merge
//   order with score -index, then the required characters by count with the following
//   scores; exactly `vocabularySize` pieces or a thrown error.

import Foundation
import Heaps

extension SentencePieceBPE {
    /// Which normaliser a trained model uses (and records in its normalizer_spec).
    public enum Normalization: String, Sendable, CaseIterable {
        /// NFKC plus sentencepiece's NMT rules, compiled by lmtrain into a charsmap that Python
        /// sentencepiece reads (the default, as in the σ-MoE setup).
        case nmtNFKC = "nmt_nfkc"
        /// No character rules; only the whitespace handling.
        case identity
    }

    /// Settings for ``train(lines:vocabularySize:splitDigits:characterCoverage:normalization:)``.
    public struct TrainingOptions: Sendable, Equatable {
        /// Total pieces, meta pieces and characters included.
        public var vocabularySize: Int
        /// Keep each decimal digit a piece of its own.
        public var splitDigits: Bool
        /// Fraction of character occurrences the character set must cover (0.98...1).
        public var characterCoverage: Double
        /// Longest piece in characters (1...512).
        public var maxPieceLength: Int
        /// Longer lines (in bytes) are left out of training.
        public var maxSentenceLength: Int
        /// Forbid pieces that mix Unicode scripts.
        public var splitByUnicodeScript: Bool
        /// Treat digits as a script of their own (only matters without `splitDigits`).
        public var splitByNumber: Bool
        /// The normaliser the model will use.
        public var normalization: Normalization

        public init(
            vocabularySize: Int = 8000, splitDigits: Bool = true,
            characterCoverage: Double = 0.9995,
            maxPieceLength: Int = 16, maxSentenceLength: Int = 4192,
            splitByUnicodeScript: Bool = true,
            splitByNumber: Bool = true, normalization: Normalization = .nmtNFKC
        ) {
            self.vocabularySize = vocabularySize
            self.splitDigits = splitDigits
            self.characterCoverage = characterCoverage
            self.maxPieceLength = maxPieceLength
            self.maxSentenceLength = maxSentenceLength
            self.splitByUnicodeScript = splitByUnicodeScript
            self.splitByNumber = splitByNumber
            self.normalization = normalization
        }
    }

    /// Trains a model from lines of text (each line without its terminator).
    public static func train<Lines: Sequence>(
        lines: Lines, vocabularySize: Int = 8000, splitDigits: Bool = true,
        characterCoverage: Double = 0.9995,
        normalization: Normalization = .nmtNFKC
    ) throws -> SentencePieceBPE where Lines.Element: StringProtocol {
        var trainer = try Trainer(
            options: TrainingOptions(
                vocabularySize: vocabularySize, splitDigits: splitDigits,
                characterCoverage: characterCoverage,
                normalization: normalization))
        for line in lines { trainer.add(Substring(line)) }
        return try trainer.makeTokenizer()
    }

    /// Trains a model from a UTF-8 text file, streamed in chunks and counted on `threadCount`
    /// threads.
    public static func train(corpusFile url: URL, options: TrainingOptions, threadCount: Int = 2)
        throws
        -> SentencePieceBPE
    {
        var trainer = try Trainer(options: options)
        try trainer.add(contentsOf: url, threadCount: threadCount)
        return try trainer.makeTokenizer()
    }

    /// Streams text in, then builds the model; see the file comment for the rules.
    public struct Trainer {
        public let options: TrainingOptions
        let normalizer: SentencePieceNormalizer
        let normalizerSpec: NormalizerSpec
        static let metaPieces = ["<unk>", "<s>", "</s>"]
        let metaMatcher = PrefixMatcher(symbols: Trainer.metaPieces)
        var counter = WordCounter()
        var inputFiles: [String] = []

        /// Lines that contributed words.
        public var linesUsed: Int { counter.linesUsed }
        /// Lines left out: longer than `maxSentenceLength` bytes or containing U+2585.
        public var linesSkipped: Int { counter.linesSkipped }
        /// Distinct words counted so far.
        public var distinctWordCount: Int { counter.words.count }

        public init(options: TrainingOptions) throws {
            func invalid(_ what: String) -> TokenizerError { .trainingFailed(reason: what) }
            guard options.vocabularySize > 3 else {
                throw invalid("vocabularySize must exceed the 3 meta pieces")
            }
            guard (0.98...1.0).contains(options.characterCoverage) else {
                throw invalid(
                    "characterCoverage must be in 0.98...1 (got \(options.characterCoverage))")
            }
            guard (1...512).contains(options.maxPieceLength) else {
                throw invalid("maxPieceLength must be in 1...512 (got \(options.maxPieceLength))")
            }
            guard options.maxSentenceLength >= 10 else {
                throw invalid("maxSentenceLength must be at least 10")
            }
            self.options = options
            var spec = NormalizerSpec()
            spec.name = options.normalization.rawValue
            if options.normalization == .nmtNFKC {
                spec.precompiledCharsMap = try NmtNFKCRules.compiled.get()
            }
            normalizerSpec = spec
            normalizer = try SentencePieceNormalizer(
                spec: spec, treatWhitespaceAsSuffix: false, userDefinedSymbols: [])
        }

        /// Adds one line of text (without its terminator).
        public mutating func add(_ line: Substring) {
            var copy = line
            copy.withUTF8 {
                counter.add(
                    line: $0, normalizer: normalizer, metaMatcher: metaMatcher, options: options)
            }
        }

        /// Adds one line given as bytes; throws when they are not UTF-8.
        public mutating func add(utf8Line line: UnsafeBufferPointer<UInt8>) throws {
            try UTF8Validation.validate(line)
            counter.add(
                line: line, normalizer: normalizer, metaMatcher: metaMatcher, options: options)
        }

        /// Adds every line of a UTF-8 file, reading it in bounded chunks and counting each chunk
        /// on `threadCount` threads.
        public mutating func add(contentsOf url: URL, threadCount: Int = 2) throws {
            var linesBefore = 0
            try TextLines.forEachChunk(ofFile: url) { chunk in
                let ranges = TextLines.splitAtLineBoundaries(chunk, parts: max(1, threadCount))
                let lineCounts = ranges.map {
                    TextLines.countLines(in: UnsafeBufferPointer(rebasing: chunk[$0]))
                }
                let (normalizer, metaMatcher, options) = (
                    self.normalizer, self.metaMatcher, self.options
                )
                let firstLine = linesBefore
                let parts = try parallelMap(count: ranges.count, threadCount: threadCount) {
                    part -> WordCounter in
                    var counter = WordCounter()
                    let partFirstLine = firstLine + lineCounts[..<part].reduce(0, +)
                    try TextLines.forEachLine(
                        in: UnsafeBufferPointer(rebasing: chunk[ranges[part]])
                    ) { index, line in
                        if let offset = UTF8Validation.firstInvalidOffset(line) {
                            throw TokenizerError.invalidUTF8(
                                file: url.path, line: partFirstLine + index + 1, byteOffset: offset)
                        }
                        counter.add(
                            line: line, normalizer: normalizer, metaMatcher: metaMatcher,
                            options: options)
                    }
                    return counter
                }
                for part in parts { counter.merge(part) }
                linesBefore += lineCounts.reduce(0, +)
            }
            inputFiles.append(url.path)
        }

        /// Builds the model from everything added so far.
        public func makeTokenizer() throws -> SentencePieceBPE {
            var run = BPETrainingRun(counter: counter, options: options)
            let pieces = try run.run()
            var trainerSpec = TrainerSpec()
            trainerSpec.input = inputFiles
            trainerSpec.modelType = .bpe
            trainerSpec.vocabSize = Int32(options.vocabularySize)
            trainerSpec.characterCoverage = Float(options.characterCoverage)
            trainerSpec.maxSentenceLength = Int32(options.maxSentenceLength)
            trainerSpec.maxSentencePieceLength = Int32(options.maxPieceLength)
            trainerSpec.splitByUnicodeScript = options.splitByUnicodeScript
            trainerSpec.splitByNumber = options.splitByNumber
            trainerSpec.splitDigits = options.splitDigits
            let model = SentencePieceModelProto(
                pieces: pieces, trainerSpec: trainerSpec, normalizerSpec: normalizerSpec)
            return try SentencePieceBPE(model: model, source: "trained model")
        }
    }
}

/// Word counts of normalised text (the trainer's only per-corpus memory).
struct WordCounter {
    var words = ByteStringTable(minimumCapacity: 1 << 12)
    var counts: [Int64] = []
    var linesUsed = 0
    var linesSkipped = 0
    private var normalized: [UInt8] = []
    private var replaced: [UInt8] = []

    mutating func add(
        line: UnsafeBufferPointer<UInt8>, normalizer: SentencePieceNormalizer,
        metaMatcher: PrefixMatcher,
        options: SentencePieceBPE.TrainingOptions
    ) {
        if line.isEmpty { return }
        // sentencepiece skips over-long lines and lines containing its U+2585 marker.
        if line.count > options.maxSentenceLength || containsUnknownMarker(line) {
            linesSkipped += 1
            return
        }
        normalized.removeAll(keepingCapacity: true)
        normalizer.normalize(line, into: &normalized)
        if normalized.isEmpty { return }
        // Meta pieces in the text become TAB, which never joins a piece.
        replaced.removeAll(keepingCapacity: true)
        normalized.withUnsafeBufferPointer { text in
            var i = 0
            while i < text.count {
                let meta = text[i] == UInt8(ascii: "<") ? metaMatcher.match(text, at: i) : 0
                if meta > 0 {
                    replaced.append(0x09)
                    i += meta
                } else {
                    replaced.append(text[i])
                    i += 1
                }
            }
        }
        linesUsed += 1
        let space = SentencePieceNormalizer.spaceSymbol
        replaced.withUnsafeBufferPointer { text in
            var start = 0
            while start < text.count {
                var end = start + 1
                while end < text.count
                    && !(text[end] == space[0] && end + 2 < text.count && text[end + 1] == space[1]
                        && text[end + 2] == space[2])
                {
                    end += 1
                }
                let (index, inserted) = words.insert(
                    UnsafeBufferPointer(rebasing: text[start..<end]))
                if inserted { counts.append(0) }
                counts[index] += 1
                start = end
            }
        }
    }

    private func containsUnknownMarker(_ line: UnsafeBufferPointer<UInt8>) -> Bool {
        guard line.count >= 3 else { return false }
        for i in 0..<(line.count - 2)
        where line[i] == 0xE2 && line[i + 1] == 0x96 && line[i + 2] == 0x85 {
            return true
        }
        return false
    }

    mutating func merge(_ other: WordCounter) {
        for index in 0..<other.words.count {
            let (mine, inserted) = other.words.keyBytes.withUnsafeBufferPointer { bytes in
                words.insert(
                    UnsafeBufferPointer(
                        rebasing: bytes[
                            other.words.keyStarts[index]..<other.words.keyStarts[index + 1]]))
            }
            if inserted { counts.append(0) }
            counts[mine] += other.counts[index]
        }
        linesUsed += other.linesUsed
        linesSkipped += other.linesSkipped
    }
}

/// One BPE training run over a word-count table.
struct BPETrainingRun {
    let counter: WordCounter
    let options: SentencePieceBPE.TrainingOptions

    /// Per symbol (characters first, then merged pieces).
    private var symbolBytes: [[UInt8]] = []
    private var symbolCharacters: [Int] = []
    private var symbolHasSpace: [Bool] = []
    private var symbolHasDigit: [Bool] = []
    /// Per character of the symbol: script id, or `inheritScript` / `anyScript` / `noScript`.
    private var symbolScripts: [[Int]] = []
    static let inheritScript = -1
    static let anyScript = -2
    static let noScript = -3  // U+2581: outside the script rule

    init(counter: WordCounter, options: SentencePieceBPE.TrainingOptions) {
        self.counter = counter
        self.options = options
    }

    static func isDecimalDigit(_ c: UInt32) -> Bool {
        (0x30...0x39).contains(c) || (0xFF10...0xFF19).contains(c)
    }

    @inline(__always) static func pairKey(_ a: Int32, _ b: Int32) -> UInt64 {
        UInt64(UInt32(bitPattern: a)) << 32 | UInt64(UInt32(bitPattern: b))
    }

    mutating func run() throws -> [SentencePieceModelProto.Piece] {
        // Characters and the required set.
        var characterCounts: [UInt32: Int64] = [:]
        var total: Int64 = 0
        var wordScalars: [[UInt32]] = []
        wordScalars.reserveCapacity(counter.words.count)
        for index in 0..<counter.words.count {
            let scalars = counter.words.string(at: index).unicodeScalars.map(\.value)
            let count = counter.counts[index]
            for c in scalars where c != 0 {
                characterCounts[c, default: 0] += count
                total += count
            }
            wordScalars.append(scalars)
        }
        guard total > 0 else {
            throw TokenizerError.trainingFailed(reason: "the training text is empty")
        }
        let byFrequency = characterCounts.sorted {
            $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key
        }
        var required: [(character: UInt32, count: Int64)] = []
        var accumulated: Int64 = 0
        for (character, count) in byFrequency {
            // sentencepiece compares in float: `const float coverage = 1.0 * acc / all`.
            let coverage = Float(Double(accumulated) / Double(total))
            if coverage >= Float(options.characterCoverage) { break }
            accumulated += count
            if character == 0x09 { continue }  // the meta-piece boundary is never a piece
            required.append((character, count))
        }
        let mergeTarget = options.vocabularySize - 3 - required.count
        guard mergeTarget >= 0 else {
            throw TokenizerError.trainingFailed(
                reason:
                    "vocabularySize \(options.vocabularySize) is smaller than the 3 meta pieces plus "
                    + "\(required.count) required characters; raise it or lower characterCoverage")
        }

        // Symbols for the required characters; any other character is <unk> (id -1) and
        // never merges.
        var scripts = UnicodeScriptClassifier()
        var characterSymbol: [UInt32: Int32] = [:]
        for (character, _) in required {
            characterSymbol[character] = Int32(symbolBytes.count)
            appendSymbol(scalars: [character], scripts: &scripts)
        }
        var wordSymbols: [[Int32]] = wordScalars.map { $0.map { characterSymbol[$0] ?? -1 } }
        let wordCounts = counter.counts

        // Pair counts, which words hold each pair, and a max-heap with lazy deletion.
        var pairCounts: [UInt64: Int64] = [:]
        var pairWords: [UInt64: [Int32]] = [:]
        var validity: [UInt64: Bool] = [:]
        func isValid(_ a: Int32, _ b: Int32) -> Bool {
            if a < 0 || b < 0 { return false }
            let key = Self.pairKey(a, b)
            if let known = validity[key] { return known }
            let valid = isValidPiece(a, b)
            validity[key] = valid
            return valid
        }
        for (w, symbols) in wordSymbols.enumerated() where symbols.count > 1 {
            for k in 1..<symbols.count where isValid(symbols[k - 1], symbols[k]) {
                let key = Self.pairKey(symbols[k - 1], symbols[k])
                pairCounts[key, default: 0] += wordCounts[w]
                pairWords[key, default: []].append(Int32(w))
            }
        }
        // The order reads the symbol tables, which grow as pieces merge: every heap call
        // gets it with the run as it is then.
        func precedes(_ x: PairEntry, _ y: PairEntry) -> Bool { PairEntry.precedes(x, y, self) }
        var heap = BinaryHeap<PairEntry>()
        for (key, count) in pairCounts {
            heap.push(PairEntry(count: count, key: key), by: precedes)
        }

        var merged: [[UInt8]] = []
        var mergedSet = Set<[UInt8]>()
        var banned = Set<UInt64>()
        var lastVisit = [Int32](repeating: -1, count: wordSymbols.count)
        var delta: [UInt64: Int64] = [:]
        while merged.count < mergeTarget {
            guard let best = heap.pop(by: precedes) else {
                throw TokenizerError.trainingFailed(
                    reason:
                        "vocabularySize \(options.vocabularySize) is more than this corpus supports: "
                        + "after \(merged.count) merges no pair of pieces is left to merge "
                        + "(at most \(3 + required.count + merged.count) pieces); lower vocabularySize"
                )
            }
            // Skip stale heap entries: the pair's count changed after it was pushed.
            guard pairCounts[best.key] == best.count, !banned.contains(best.key) else { continue }
            let a = Int32(truncatingIfNeeded: best.key >> 32)
            let b = Int32(truncatingIfNeeded: best.key & 0xFFFF_FFFF)
            let bytes = symbolBytes[Int(a)] + symbolBytes[Int(b)]
            if mergedSet.contains(bytes) {
                // The same piece was already built from other parts: drop this pair for good.
                banned.insert(best.key)
                pairCounts[best.key] = nil
                continue
            }
            merged.append(bytes)
            mergedSet.insert(bytes)
            let c = Int32(symbolBytes.count)
            appendSymbol(scalars: symbolScalars(a) + symbolScalars(b), scripts: &scripts)

            delta.removeAll(keepingCapacity: true)
            let step = Int32(merged.count)
            for w in pairWords[best.key] ?? [] where lastVisit[Int(w)] != step {
                lastVisit[Int(w)] = step
                let old = wordSymbols[Int(w)]
                var new: [Int32] = []
                new.reserveCapacity(old.count)
                var i = 0
                while i < old.count {
                    if i + 1 < old.count && old[i] == a && old[i + 1] == b {
                        new.append(c)
                        i += 2
                    } else {
                        new.append(old[i])
                        i += 1
                    }
                }
                if new.count == old.count { continue }
                let count = wordCounts[Int(w)]
                for k in 1..<old.count where isValid(old[k - 1], old[k]) {
                    delta[Self.pairKey(old[k - 1], old[k]), default: 0] -= count
                }
                if new.count > 1 {
                    for k in 1..<new.count where isValid(new[k - 1], new[k]) {
                        let key = Self.pairKey(new[k - 1], new[k])
                        delta[key, default: 0] += count
                        if new[k - 1] == c || new[k] == c { pairWords[key, default: []].append(w) }
                    }
                }
                wordSymbols[Int(w)] = new
            }
            pairWords[best.key] = nil
            for (key, change) in delta where change != 0 && !banned.contains(key) {
                let updated = (pairCounts[key] ?? 0) + change
                if updated > 0 {
                    pairCounts[key] = updated
                    heap.push(PairEntry(count: updated, key: key), by: precedes)
                } else {
                    pairCounts[key] = nil
                    pairWords[key] = nil
                }
            }
        }

        var pieces = [
            SentencePieceModelProto.Piece(piece: "<unk>", score: 0, type: .unknown),
            SentencePieceModelProto.Piece(piece: "<s>", score: 0, type: .control),
            SentencePieceModelProto.Piece(piece: "</s>", score: 0, type: .control),
        ]
        var index = 0
        for bytes in merged {
            pieces.append(
                .init(piece: String(decoding: bytes, as: UTF8.self), score: -Float(index)))
            index += 1
        }
        for (character, _) in required {
            pieces.append(.init(piece: String(Unicode.Scalar(character)!), score: -Float(index)))
            index += 1
        }
        return pieces
    }

    private func symbolScalars(_ symbol: Int32) -> [UInt32] {
        String(decoding: symbolBytes[Int(symbol)], as: UTF8.self).unicodeScalars.map(\.value)
    }

    private mutating func appendSymbol(scalars: [UInt32], scripts: inout UnicodeScriptClassifier) {
        var bytes: [UInt8] = []
        var classes: [Int] = []
        for c in scalars {
            bytes.append(contentsOf: String(Unicode.Scalar(c)!).utf8)
            if c == 0x2581 {
                classes.append(Self.noScript)
                continue
            }
            var script = scripts.script(of: c)
            if script == UnicodeScriptClassifier.hiragana
                || script == UnicodeScriptClassifier.katakana || c == 0x30FC
            {
                script = UnicodeScriptClassifier.han
            } else if script == UnicodeScriptClassifier.inherited {
                script = Self.inheritScript
            }
            if !options.splitByNumber && Self.isDecimalDigit(c) { script = Self.anyScript }
            classes.append(script)
        }
        symbolBytes.append(bytes)
        symbolCharacters.append(scalars.count)
        symbolHasSpace.append(scalars.contains(0x2581))
        symbolHasDigit.append(scalars.contains(where: Self.isDecimalDigit))
        symbolScripts.append(classes)
    }

    /// sentencepiece's IsValidSentencePiece for the concatenation of two valid pieces.
    private func isValidPiece(_ a: Int32, _ b: Int32) -> Bool {
        let (a, b) = (Int(a), Int(b))
        if symbolCharacters[a] + symbolCharacters[b] > options.maxPieceLength { return false }
        // U+2581 may only start a piece; `b` is never at the start.
        if symbolHasSpace[b] { return false }
        // With split_digits a digit is only ever a piece of one character.
        if options.splitDigits && (symbolHasDigit[a] || symbolHasDigit[b]) { return false }
        if options.splitByUnicodeScript {
            var previous = Self.anyScript
            for script in symbolScripts[a] + symbolScripts[b] where script != Self.noScript {
                let current = script == Self.inheritScript ? previous : script
                if current != Self.anyScript && previous != Self.anyScript && previous != current {
                    return false
                }
                previous = current
            }
        }
        return true
    }

    /// sentencepiece's order among pairs of equal count: the shorter piece (in characters),
    /// then the smaller UTF-8 bytes.
    fileprivate func tieBreakPrecedes(_ x: UInt64, _ y: UInt64) -> Bool {
        let (xa, xb) = (Int(x >> 32), Int(x & 0xFFFF_FFFF))
        let (ya, yb) = (Int(y >> 32), Int(y & 0xFFFF_FFFF))
        let xLength = symbolCharacters[xa] + symbolCharacters[xb]
        let yLength = symbolCharacters[ya] + symbolCharacters[yb]
        if xLength != yLength { return xLength < yLength }
        // Compare the two concatenations byte by byte without building them.
        let (x1, x2, y1, y2) = (symbolBytes[xa], symbolBytes[xb], symbolBytes[ya], symbolBytes[yb])
        let xCount = x1.count + x2.count
        let yCount = y1.count + y2.count
        var i = 0
        while i < xCount && i < yCount {
            let xByte = i < x1.count ? x1[i] : x2[i - x1.count]
            let yByte = i < y1.count ? y1[i] : y2[i - y1.count]
            if xByte != yByte { return xByte < yByte }
            i += 1
        }
        if xCount != yCount { return xCount < yCount }
        // The same piece from different parts: order by the parts' ids so runs are reproducible.
        return x < y
    }
}

/// A pair and its count when it was queued, in the merge queue (a max-heap with lazy deletion).
private struct PairEntry {
    var count: Int64
    var key: UInt64

    /// sentencepiece's order: the higher count first, then `tieBreakPrecedes`.
    static func precedes(_ x: PairEntry, _ y: PairEntry, _ run: BPETrainingRun) -> Bool {
        if x.count != y.count { return x.count > y.count }
        if x.key == y.key { return false }
        return run.tieBreakPrecedes(x.key, y.key)
    }
}
