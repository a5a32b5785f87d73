// The word-level tokenizer: WikiText-2 statistics, vocabulary order, files and errors.

import Foundation
import Testing

@testable import Tokenizers

@Suite struct WordTokenizerTests {
    /// The published WikiText-2 numbers (Transformer-XL counts a <eos> per line).
    @Test(.enabled(if: SharedData.isAvailable, "needs ../shared/data"))
    func wikiText2CountsMatchThePublishedNumbers() throws {
        var builder = WordTokenizer.VocabularyBuilder()
        try builder.add(contentsOf: SharedData.url("wikitext-2/wiki.train.tokens"))
        #expect(builder.lineCount == 36_718)
        #expect(builder.tokenCount == 2_088_628)
        let tokenizer = builder.makeTokenizer()
        #expect(tokenizer.vocabularySize == 33_278)
        #expect(tokenizer.tokens[0] == "<eos>")
        #expect(tokenizer.tokens[1] == "the")  // the most frequent word
        let splits: [(String, Int, Int)] = [
            ("wiki.train.tokens", 36_718, 2_088_628), ("wiki.valid.tokens", 3_760, 217_646),
            ("wiki.test.tokens", 4_358, 245_569),
        ]
        for (file, lines, tokens) in splits {
            let corpus = try tokenizer.encodeLines(
                ofFile: SharedData.url("wikitext-2/\(file)"), threadCount: 2)
            #expect(corpus.lineCount == lines, "\(file)")
            #expect(corpus.ids.count == tokens, "\(file)")
            #expect(corpus.ids.filter { $0 == tokenizer.endOfLineID }.count == lines)
            // WikiText-2's valid and test words all occur in train (rare words are already <unk>).
            if file != "wiki.train.tokens" {
                let text = try String(
                    contentsOf: SharedData.url("wikitext-2/\(file)"), encoding: .utf8)
                let unknownInText = text.split(whereSeparator: \.isWhitespace).filter {
                    $0 == "<unk>"
                }.count
                #expect(corpus.ids.filter { $0 == tokenizer.unknownID }.count == unknownInText)
            }
        }
    }

    @Test func vocabularyIsByCountThenFirstOccurrence() throws {
        var builder = WordTokenizer.VocabularyBuilder()
        for line in ["b a c", "c a d", " a  e\t", "d"] { builder.add(line[...]) }
        // Counts: a 3, c 2, d 2, b 1, e 1; c and d tie (c seen first), b and e tie (b first).
        let tokenizer = builder.makeTokenizer()
        #expect(tokenizer.tokens == ["<eos>", "a", "c", "d", "b", "e", "<unk>"])
        #expect(builder.lineCount == 4 && builder.tokenCount == 13)
        #expect(try tokenizer.encode("a x  d") == [1, 6, 3, 0])
        #expect(try tokenizer.encode("") == [0])
        #expect(tokenizer.decode([1, 2, 0, 3, 0]) == "a c\nd\n")
        let minimum = builder.makeTokenizer(minimumCount: 2)
        #expect(minimum.tokens == ["<eos>", "a", "c", "d", "<unk>"])
    }

    /// Python's str.split() whitespace, including the Unicode separators, splits words;
    /// other characters (a zero-width space) do not.
    @Test func wordsSplitOnPythonWhitespace() throws {
        let tokenizer = try WordTokenizer(tokens: ["<eos>", "<unk>", "a", "b", "a\u{200B}b"])
        for separator in [
            "\t", "\u{0B}", "\u{0C}", "\r", "\u{1C}", "\u{1F}", "\u{85}", "\u{A0}", "\u{1680}",
            "\u{2000}", "\u{200A}", "\u{2028}", "\u{2029}", "\u{202F}", "\u{205F}", "\u{3000}",
        ] {
            #expect(
                try tokenizer.encode("a\(separator)b") == [2, 3, 0],
                "U+\(String(separator.unicodeScalars.first!.value, radix: 16))")
        }
        #expect(try tokenizer.encode("a\u{200B}b") == [4, 0])
        #expect(try tokenizer.encode("a\u{2060}b") == [1, 0])
    }

    @Test func vocabularyFileRoundTrips() throws {
        let folder = try TemporaryFolder()
        let file = folder.file("vocab.txt")
        let tokenizer = try WordTokenizer(tokens: ["<eos>", "the", "café", "<unk>", "日本"])
        try tokenizer.save(to: file)
        #expect(try String(contentsOf: file, encoding: .utf8) == "<eos>\nthe\ncafé\n<unk>\n日本\n")
        let loaded = try WordTokenizer(contentsOf: file)
        #expect(loaded.tokens == tokenizer.tokens)
        #expect(loaded.vocabularyFingerprint == tokenizer.vocabularyFingerprint)
        #expect(loaded.unknownID == 3 && loaded.endOfLineID == 0)
        #expect(
            try WordTokenizer(tokens: ["<eos>", "<unk>", "x"]).vocabularyFingerprint
                != tokenizer.vocabularyFingerprint)
        // CRLF files load too (split as bytes: Swift's String treats CR LF as one Character).
        let crlf = folder.file("crlf.txt")
        try "<eos>\r\nx\r\n<unk>\r\n".write(to: crlf, atomically: false, encoding: .utf8)
        #expect(try WordTokenizer(contentsOf: crlf).tokens == ["<eos>", "x", "<unk>"])
        try FileManager.default.removeItem(at: crlf)
        // No temporary files are left behind by the atomic write.
        #expect(
            try FileManager.default.contentsOfDirectory(atPath: folder.url.path) == ["vocab.txt"])
    }

    @Test(arguments: [
        (["<eos>", "a", "a", "<unk>"], "appears twice"),
        (["<eos>", "a"], "must contain both"),
        (["<eos>", "", "<unk>"], "is empty"),
        (["<eos>", "a b", "<unk>"], "contains whitespace"),
    ])
    func invalidVocabulariesAreRejected(tokens: [String], reason: String) {
        do {
            _ = try WordTokenizer(tokens: tokens)
            Issue.record("accepted \(tokens)")
        } catch {
            #expect("\(error)".contains(reason), "\(error)")
        }
    }

    @Test func invalidUTF8InACorpusNamesTheLine() throws {
        let folder = try TemporaryFolder()
        let file = folder.file("corpus.txt")
        try Data(Array("fine\nalso fine\n".utf8) + [0x62, 0x80] + Array("\n".utf8)).write(to: file)
        var builder = WordTokenizer.VocabularyBuilder()
        #expect(throws: TokenizerError.invalidUTF8(file: file.path, line: 3, byteOffset: 1)) {
            try builder.add(contentsOf: file)
        }
    }
}
