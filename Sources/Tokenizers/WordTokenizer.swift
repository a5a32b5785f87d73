// Word-level tokenizer as Transformer-XL uses it for WikiText (its `Vocab` class with
// `special=['<eos>']`, `add_eos=True`):
//   encode(line) = [id(w) for w in line.split()] + [id("<eos>")]
// where `split()` is Python's str.split() (any Unicode whitespace), words missing from the
// vocabulary map to <unk>, and the vocabulary is "<eos>" followed by the training words by
// count descending, ties in order of first occurrence (Python's Counter.most_common is a
// stable sort of a first-occurrence-ordered dict). On WikiText-2 train this gives 33,278 types.

import Foundation

/// Whitespace-separated words plus `<eos>` at the end of every line.
public struct WordTokenizer: Tokenizer {
    /// Appended to every encoded line.
    public static let endOfLineToken = "<eos>"
    /// What out-of-vocabulary words map to.
    public static let unknownToken = "<unk>"

    /// The vocabulary in id order.
    public let tokens: [String]
    /// Id of ``endOfLineToken``.
    public let endOfLineID: Int32
    /// Id of ``unknownToken``.
    public let unknownID: Int32
    let table: ByteStringTable

    /// Makes a tokenizer from a vocabulary in id order. It must contain ``endOfLineToken`` and
    /// ``unknownToken`` and no duplicates, empty tokens or tokens with whitespace.
    public init(tokens: [String]) throws {
        try self.init(tokens: tokens, source: "word vocabulary")
    }

    private init(tokens: [String], source: String) throws {
        var table = ByteStringTable(minimumCapacity: tokens.count)
        for (id, token) in tokens.enumerated() {
            if token.isEmpty {
                throw TokenizerError.invalidVocabulary(
                    source: source, reason: "entry \(id + 1) is empty")
            }
            var copy = token
            let hasSpace = copy.withUTF8 { bytes in
                (0..<bytes.count).contains { WordTokenizer.whitespaceLength(bytes, at: $0) > 0 }
            }
            if hasSpace {
                throw TokenizerError.invalidVocabulary(
                    source: source,
                    reason: "entry \(id + 1) (\(token.debugDescription)) contains whitespace")
            }
            if !table.insert(token).inserted {
                throw TokenizerError.invalidVocabulary(
                    source: source, reason: "entry \(id + 1) (\(token)) appears twice")
            }
        }
        guard let eos = table.index(of: Self.endOfLineToken),
            let unk = table.index(of: Self.unknownToken)
        else {
            throw TokenizerError.invalidVocabulary(
                source: source,
                reason: "it must contain both \(Self.endOfLineToken) and \(Self.unknownToken)")
        }
        self.tokens = tokens
        self.table = table
        endOfLineID = Int32(eos)
        unknownID = Int32(unk)
    }

    /// Loads a vocabulary file: one token per line in id order, UTF-8, LF (or CRLF) line ends.
    public init(contentsOf url: URL) throws {
        let bytes = try readFileBytes(url)
        if let offset = bytes.withUnsafeBufferPointer({ UTF8Validation.firstInvalidOffset($0) }) {
            throw TokenizerError.invalidVocabulary(
                source: url.path, reason: "invalid UTF-8 at byte \(offset)")
        }
        // Split bytes, not Characters: Swift treats CR LF as one Character.
        var lines: [String] = []
        bytes.withUnsafeBufferPointer { text in
            TextLines.forEachLine(in: text) { _, line in
                lines.append(String(decoding: line, as: UTF8.self))
            }
        }
        try self.init(tokens: lines, source: url.path)
    }

    /// Writes the vocabulary as one token per line, atomically.
    public func save(to url: URL) throws {
        var text = [UInt8]()
        for token in tokens {
            text.append(contentsOf: token.utf8)
            text.append(0x0A)
        }
        try writeFileAtomically(text, to: url)
    }

    public var vocabularySize: Int { tokens.count }

    public var displayName: String { "word-level, \(tokens.count) types" }

    public var vocabularyFingerprint: String {
        var hash = FNV1a64()
        hash.addField("WordTokenizer")
        for token in tokens { hash.addField(token) }
        return hash.hex
    }

    public func token(for id: Int32) -> String? {
        tokens.indices.contains(Int(id)) ? tokens[Int(id)] : nil
    }

    /// Words joined by single spaces; each `<eos>` becomes a line break.
    public func decode(_ ids: [Int32]) -> String {
        var text = ""
        var atLineStart = true
        for id in ids {
            if id == endOfLineID {
                text += "\n"
                atLineStart = true
                continue
            }
            if !atLineStart { text += " " }
            text += token(for: id) ?? Self.unknownToken
            atLineStart = false
        }
        return text
    }

    public func makeLineEncoder() -> Encoder { Encoder(tokenizer: self) }

    /// Looks each word up; no state beyond the tokenizer.
    public struct Encoder: TokenizerLineEncoder {
        let tokenizer: WordTokenizer

        public mutating func encode(
            utf8Line line: UnsafeBufferPointer<UInt8>, appendingTo ids: inout [Int32]
        )
            throws
        {
            try UTF8Validation.validate(line)
            WordTokenizer.forEachWord(in: line) { word in
                ids.append(tokenizer.table.index(of: word).map(Int32.init) ?? tokenizer.unknownID)
            }
            ids.append(tokenizer.endOfLineID)
        }
    }

    /// Counts words line by line and builds the vocabulary; memory grows with the number of
    /// distinct words only, so a corpus of any length can be streamed through it.
    public struct VocabularyBuilder: Sendable {
        var words = ByteStringTable(minimumCapacity: 1 << 16)
        var counts: [Int] = []
        /// Lines seen so far.
        public private(set) var lineCount = 0
        /// Tokens seen so far, counting one `<eos>` per line.
        public private(set) var tokenCount = 0

        public init() {}

        /// Counts the words of one line (without its terminator).
        public mutating func add(_ line: Substring) {
            var copy = line
            copy.withUTF8 { addValidated($0) }
        }

        /// Counts the words of one line given as bytes; throws when they are not UTF-8.
        public mutating func add(utf8Line line: UnsafeBufferPointer<UInt8>) throws {
            try UTF8Validation.validate(line)
            addValidated(line)
        }

        /// Counts every line of a UTF-8 file, reading it in bounded chunks.
        public mutating func add(contentsOf url: URL) throws {
            let linesBefore = lineCount
            try TextLines.forEachChunk(ofFile: url) { chunk in
                try TextLines.forEachLine(in: chunk) { _, line in
                    if let offset = UTF8Validation.firstInvalidOffset(line) {
                        throw TokenizerError.invalidUTF8(
                            file: url.path, line: lineCount - linesBefore + 1, byteOffset: offset)
                    }
                    addValidated(line)
                }
            }
        }

        private mutating func addValidated(_ line: UnsafeBufferPointer<UInt8>) {
            WordTokenizer.forEachWord(in: line) { word in
                let (index, inserted) = words.insert(word)
                if inserted { counts.append(0) }
                counts[index] += 1
                tokenCount += 1
            }
            tokenCount += 1
            lineCount += 1
        }

        /// Number of distinct words seen.
        public var distinctWordCount: Int { words.count }

        /// `<eos>`, then the words seen at least `minimumCount` times by count descending, ties
        /// by first occurrence; `<unk>` is appended last if the text never contained it.
        public func makeTokenizer(minimumCount: Int = 1) -> WordTokenizer {
            var order = Array(0..<words.count).filter { counts[$0] >= minimumCount }
            // Stable: ties keep first-occurrence order, as Python's most_common does.
            order = order.enumerated().sorted { a, b in
                counts[a.element] != counts[b.element]
                    ? counts[a.element] > counts[b.element] : a.offset < b.offset
            }.map(\.element)
            var tokens = [WordTokenizer.endOfLineToken]
            for index in order {
                let word = words.string(at: index)
                if word != WordTokenizer.endOfLineToken { tokens.append(word) }
            }
            if !tokens.contains(WordTokenizer.unknownToken) {
                tokens.append(WordTokenizer.unknownToken)
            }
            // Cannot fail: the entries are distinct, non-empty and whitespace-free, and both
            // specials are present.
            return try! WordTokenizer(tokens: tokens, source: "built vocabulary")
        }
    }

    /// Calls `body` with each maximal run of non-whitespace bytes.
    static func forEachWord(
        in line: UnsafeBufferPointer<UInt8>, _ body: (UnsafeBufferPointer<UInt8>) -> Void
    ) {
        var i = 0
        var start = -1
        while i < line.count {
            let space = whitespaceLength(line, at: i)
            if space > 0 {
                if start >= 0 { body(UnsafeBufferPointer(rebasing: line[start..<i])) }
                start = -1
                i += space
            } else {
                if start < 0 { start = i }
                i += 1
            }
        }
        if start >= 0 { body(UnsafeBufferPointer(rebasing: line[start..<line.count])) }
    }

    /// Byte length of the whitespace character at `i`, or 0. The set is Python's
    /// `str.isspace()`: ASCII \t \n \v \f \r, the separators U+001C-001F, space, U+0085,
    /// U+00A0, U+1680, U+2000-200A, U+2028, U+2029, U+202F, U+205F, U+3000.
    @inline(__always)
    static func whitespaceLength(_ s: UnsafeBufferPointer<UInt8>, at i: Int) -> Int {
        let b = s[i]
        if b < 0x80 {
            return (b == 0x20 || (b >= 0x09 && b <= 0x0D) || (b >= 0x1C && b <= 0x1F)) ? 1 : 0
        }
        let n = s.count
        switch b {
        case 0xC2:
            return i + 1 < n && (s[i + 1] == 0x85 || s[i + 1] == 0xA0) ? 2 : 0
        case 0xE1:
            return i + 2 < n && s[i + 1] == 0x9A && s[i + 2] == 0x80 ? 3 : 0
        case 0xE2:
            guard i + 2 < n else { return 0 }
            let (c1, c2) = (s[i + 1], s[i + 2])
            if c1 == 0x80 && ((c2 >= 0x80 && c2 <= 0x8A) || c2 == 0xA8 || c2 == 0xA9 || c2 == 0xAF)
            {
                return 3
            }
            return c1 == 0x81 && c2 == 0x9F ? 3 : 0
        case 0xE3:
            return i + 2 < n && s[i + 1] == 0x80 && s[i + 2] == 0x80 ? 3 : 0
        default:
            return 0
        }
    }
}
