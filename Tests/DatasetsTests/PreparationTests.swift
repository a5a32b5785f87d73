@testable import Datasets
import Foundation
import Testing
import TestSupport
import Tokenizers

/// The ids of a token sequence.
func allIDs(_ tokens: TokenSequence) -> [Int32] { (0..<tokens.count).map { tokens[$0] } }

/// Whitespace-separated words plus one per line, as Transformer-XL counts WikiText.
func wordCount(_ bytes: [UInt8]) -> Int {
    WikiTextFixture.lineStrings(bytes).reduce(0) { $0 + $1.split(separator: " ").count + 1 }
}

/// Prepares a fixture corpus folder with `choice`, reporting into a kept reporter.
func prepareFolder(_ folder: URL, _ choice: TokenizerChoice, parts: Int? = nil, force: Bool = false) throws -> (PreparedCorpus, [String]) {
    let reporter = PreparationReporter.silent
    let prepared = try CorpusPreparation.prepare(
        CorpusSources(try WikiText.open(folder)), tokenizer: choice, cacheRoot: folder.deletingLastPathComponent().appendingPathComponent("cache"),
        force: force, parts: parts, reporter: reporter)
    return (prepared, reporter.lines)
}

struct PreparationTests {
    @Test func wordCachesAreLineByLineEncodingWithWordCounts() throws {
        let splits = WikiTextFixture.splits()
        let folder = try WikiTextFixture.writeFolder(splits, in: WikiTextFixture.folder("words"))
        let (prepared, lines) = try prepareFolder(folder, .words)
        #expect(lines.first?.hasPrefix("preparing wikitext-2") == true)
        #expect(prepared.trainedTokenizer && prepared.rebuiltSplits == Split.allCases)
        // The vocabulary is Transformer-XL's, built from train only.
        var builder = WordTokenizer.VocabularyBuilder()
        for line in WikiTextFixture.lineStrings(splits[.train]!) { builder.add(line[...]) }
        let expected = builder.makeTokenizer()
        guard case .words(let words) = prepared.tokenizer else {
            Issue.record("not a word tokenizer")
            return
        }
        #expect(words.tokens == expected.tokens)
        #expect(try WordTokenizer(contentsOf: prepared.tokenizerFile).tokens == expected.tokens)
        #expect(prepared.corpus.unit == .tokens)
        #expect(prepared.corpus.vocabularySize == expected.vocabularySize)
        for split in Split.allCases {
            let reference = try expected.encodeLines(WikiTextFixture.lineStrings(splits[split]!))
            #expect(allIDs(prepared.corpus.split(split)) == reference.ids, "\(split)")
            let header = prepared.headers[split]!
            #expect(header.lineCount == reference.lineCount)
            #expect(header.wordCount == wordCount(splits[split]!))
            #expect(prepared.corpus.split(split).wordCount == header.wordCount)
            #expect(header.source == SourceIdentity(bytes: splits[split]!.count, crc32: splits[split]!.withUnsafeBytes { CRC32.of($0) }))
        }
        let decoded = words.decode(allIDs(prepared.corpus.train))
        #expect(decoded == WikiTextFixture.lineStrings(splits[.train]!).map { $0.split(separator: " ").joined(separator: " ") + "\n" }.joined())
    }

    @Test func bpeCachesDoNotDependOnThePartsAndDecodeBack() throws {
        let splits = WikiTextFixture.splits(raw: true, trainLines: 200, otherLines: 40)
        let parent = WikiTextFixture.folder("bpe")
        let archive = parent.appendingPathComponent("wikitext-2-raw-v1.zip")
        try WikiTextFixture.writeArchive(splits, to: archive, name: "wikitext-2-raw", raw: true)
        let reporter = PreparationReporter.silent
        let cacheRoot = parent.appendingPathComponent("cache")
        let sources = CorpusSources(try WikiText.open(archive))
        let one = try CorpusPreparation.prepare(sources, tokenizer: .bpe(pieces: 120), cacheRoot: cacheRoot, parts: 1, reporter: reporter)
        let bytesOne = try Split.allCases.map { try Data(contentsOf: one.cacheFile($0)) }
        for split in Split.allCases { try FileManager.default.removeItem(at: one.cacheFile(split)) }
        let three = try CorpusPreparation.prepare(sources, tokenizer: .bpe(pieces: 120), cacheRoot: cacheRoot, parts: 3, reporter: reporter)
        #expect(three.rebuiltSplits == Split.allCases && !three.trainedTokenizer)
        #expect(try Split.allCases.map { try Data(contentsOf: three.cacheFile($0)) } == bytesOne)
        // The saved model is a genuine .model file: loaded back, it is the same tokenizer.
        let model = try SentencePieceBPE(contentsOf: one.tokenizerFile)
        #expect(model.vocabularySize == 120)
        #expect(UInt64(model.vocabularyFingerprint, radix: 16) == one.tokenizer.fingerprint)
        for split in Split.allCases {
            let lines = WikiTextFixture.lineStrings(splits[split]!)
            // The cache is each line encoded on its own, concatenated (no line-end ids).
            #expect(allIDs(three.corpus.split(split)) == lines.flatMap { try! model.encode($0) }, "\(split)")
            #expect(three.headers[split]!.wordCount == wordCount(splits[split]!))
            // decode(encode(x)) is x up to sentencepiece's whitespace rules (trimmed, single spaces).
            for line in lines {
                #expect(model.decode(try model.encode(line)) == line.split(separator: " ").joined(separator: " "), "\(line)")
            }
        }
        #expect(three.corpus.train.width == 1)  // 120 pieces fit a byte
        #expect(three.corpus.name.contains("bpe:120"))
    }

    @Test func byteCachesReproduceTheTextExactly() throws {
        var splits = WikiTextFixture.splits()
        splits[.test]! += Array(" § only in test \n".utf8)
        let parent = WikiTextFixture.folder("bytes")
        let archive = parent.appendingPathComponent("wikitext-2-v1.zip")
        try WikiTextFixture.writeArchive(splits, to: archive)
        let prepared = try CorpusPreparation.prepare(
            CorpusSources(try WikiText.open(archive)), tokenizer: .bytes, cacheRoot: parent.appendingPathComponent("cache"),
            reporter: .silent)
        let vocabulary = try #require(prepared.corpus.byteVocabulary)
        let all = splits.values.reduce(into: Set<UInt8>()) { $0.formUnion($1) }
        #expect(vocabulary.symbols == all.sorted())  // "§" comes from test alone
        #expect(prepared.corpus.unit == .bytes)
        for split in Split.allCases {
            #expect(vocabulary.decode(allIDs(prepared.corpus.split(split))) == splits[split]!)
            #expect(prepared.headers[split]!.wordCount == wordCount(splits[split]!))
        }
        #expect(try String(contentsOf: prepared.tokenizerFile, encoding: .utf8) == vocabulary.symbols.map { "\($0)\n" }.joined())
    }

    @Test func staleCachesAreRebuiltAndCurrentOnesReused() throws {
        let parent = WikiTextFixture.folder("stale")
        var splits = WikiTextFixture.splits()
        let folder = try WikiTextFixture.writeFolder(splits, in: parent)
        let cache = parent.appendingPathComponent("cache/wikitext-2-words")
        func file(_ split: Split) -> URL { cache.appendingPathComponent("\(split.rawValue).ids") }
        func modify(_ url: URL, _ change: (inout [UInt8]) -> Void) throws {
            var bytes = [UInt8](try Data(contentsOf: url))
            change(&bytes)
            try Data(bytes).write(to: url)
        }
        func expectRebuilt(_ splits: [Split], trained: Bool, reason: String, _ comment: Comment) throws -> PreparedCorpus {
            let (prepared, lines) = try prepareFolder(folder, .words)
            #expect(prepared.rebuiltSplits == splits, comment)
            #expect(prepared.trainedTokenizer == trained, comment)
            #expect(lines.contains { $0.contains(reason) }, "\(comment): \(lines)")
            return prepared
        }
        let first = try prepareFolder(folder, .words).0
        let reference = Split.allCases.map { allIDs(first.corpus.split($0)) }

        // Nothing changed: nothing is rebuilt or even said.
        let (again, quiet) = try prepareFolder(folder, .words)
        #expect(again.rebuiltSplits.isEmpty && !again.trainedTokenizer && quiet.isEmpty)
        #expect(again.corpus.fingerprint == first.corpus.fingerprint)

        // A changed valid text of the same length: only valid is tokenized again.
        let validFile = folder.appendingPathComponent("wiki.valid.tokens")
        try modify(validFile) { bytes in
            let i = bytes.firstIndex(of: UInt8(ascii: "e"))!
            bytes[i] = UInt8(ascii: "o")
        }
        splits[.valid] = [UInt8](try Data(contentsOf: validFile))
        let changed = try expectRebuilt([.valid], trained: false, reason: "the source text changed", "valid changed")
        #expect(changed.corpus.fingerprint != first.corpus.fingerprint)

        // Damaged caches.
        try modify(file(.train)) { $0.removeLast(3) }
        _ = try expectRebuilt([.train], trained: false, reason: "truncated", "train.ids truncated")
        try modify(file(.test)) { $0[TokenCacheHeader.size + 5] ^= 0x01 }
        _ = try expectRebuilt([.test], trained: false, reason: "checksum does not match", "a flipped id in test.ids")
        try Data("not a cache at all\n".utf8).write(to: file(.valid))
        _ = try expectRebuilt([.valid], trained: false, reason: "not a token cache", "a foreign valid.ids")
        try modify(file(.train)) { $0[8] = 9 }
        _ = try expectRebuilt([.train], trained: false, reason: "format version 9", "another format version")
        try modify(file(.test)) { $0[30] ^= 0x40 }
        let repaired = try expectRebuilt([.test], trained: false, reason: "header checksum", "a flipped header byte")
        #expect(allIDs(repaired.corpus.train) == reference[0] && allIDs(repaired.corpus.test) == reference[2])

        // A different vocabulary in the tokenizer file (recorded as such): every cache is stale.
        guard case .words(let words) = repaired.tokenizer else { throw DataError("not words") }
        var swapped = words.tokens
        swapped.swapAt(1, 2)
        let changedWords = try WordTokenizer(tokens: swapped)
        try changedWords.save(to: cache.appendingPathComponent("vocab.txt"))
        let manifestURL = cache.appendingPathComponent("tokenizer.json")
        var manifest = try #require(TokenizerManifest.read(manifestURL))
        manifest.fingerprint = TrainedTokenizer.words(changedWords).fingerprint.hex16
        try manifest.write(to: manifestURL)
        let revocabled = try expectRebuilt(Split.allCases, trained: false, reason: "the tokenizer or its vocabulary changed", "vocabulary changed")
        #expect(allIDs(revocabled.corpus.train) == (try changedWords.encodeLines(WikiTextFixture.lineStrings(splits[.train]!))).ids)

        // A tokenizer file that no longer matches its record is built again.
        try Data("<eos>\n".utf8).write(to: cache.appendingPathComponent("vocab.txt"))
        _ = try expectRebuilt(Split.allCases, trained: true, reason: "not the one recorded in tokenizer.json", "vocab.txt damaged")

        // New train text: a new tokenizer and new caches throughout.
        try Data(WikiTextFixture.text(WikiTextFixture.lines(count: 300, seed: 99))).write(to: folder.appendingPathComponent("wiki.train.tokens"))
        _ = try expectRebuilt(Split.allCases, trained: true, reason: "the text it was trained on changed", "train changed")

        // Nothing half-written is left in the folder.
        let names = try FileManager.default.contentsOfDirectory(atPath: cache.path).sorted()
        #expect(names == ["test.ids", "tokenizer.json", "train.ids", "valid.ids", "vocab.txt"])
    }

    @Test func invalidUTF8NamesFileLineAndByte() throws {
        var splits = WikiTextFixture.splits()
        var lines = WikiTextFixture.lineStrings(splits[.valid]!).map { Array($0.utf8) }
        lines[4] = Array(" abc d".utf8) + [0xC3, 0x28] + Array(" efg ".utf8)  // C3 28: a broken 2-byte sequence
        splits[.valid] = Array(lines.map { $0 + [0x0A] }.joined())
        let parent = WikiTextFixture.folder("utf8")
        let folder = try WikiTextFixture.writeFolder(splits, in: parent)
        for choice in [TokenizerChoice.words, .bpe(pieces: 120)] {
            #expect { _ = try prepareFolder(folder, choice) } throws: { error in
                guard case TokenizerError.invalidUTF8(let file, let line, let offset) = error else { return false }
                return file == folder.appendingPathComponent("wiki.valid.tokens").path && line == 5 && offset == 6
                    && !"\(error)".contains("\n")
            }
            let cache = CorpusPreparation.folder(for: CorpusSources(try WikiText.open(folder)), tokenizer: choice, cacheRoot: parent.appendingPathComponent("cache"))
            let names = try FileManager.default.contentsOfDirectory(atPath: cache.path)
            #expect(!names.contains("valid.ids") && !names.contains { $0.hasSuffix(".tmp") }, "\(names)")
        }
        // In the train split of an archive, the vocabulary pass reports it.
        var broken = WikiTextFixture.splits()
        broken[.train]!.insert(0xFF, at: broken[.train]!.firstIndex(of: 0x0A)! + 1)  // line 2, byte 0
        let archive = parent.appendingPathComponent("broken.zip")
        try WikiTextFixture.writeArchive(broken, to: archive)
        #expect {
            _ = try CorpusPreparation.prepare(
                CorpusSources(try WikiText.open(archive)), tokenizer: .words, cacheRoot: parent.appendingPathComponent("cache2"), reporter: .silent)
        } throws: { error in
            guard case TokenizerError.invalidUTF8(let file, let line, let offset) = error else { return false }
            return file == "\(archive.path):wikitext-2/wiki.train.tokens" && line == 2 && offset == 0
        }
    }

    @Test func morePiecesThanTheCorpusSupportsIsOneLine() throws {
        let folder = try WikiTextFixture.writeFolder(WikiTextFixture.splits(trainLines: 50, otherLines: 10), in: WikiTextFixture.folder("pieces"))
        #expect { _ = try prepareFolder(folder, .bpe(pieces: 50_000)) } throws: { error in
            let message = "\(error)"
            return message.contains("cannot train bpe:50000") && message.contains("use a smaller bpe:N") && !message.contains("\n")
        }
    }

    @Test func textFilesWithTokenTokenizersSplitAtLineStarts() throws {
        let data = WikiTextFixture.folder("plain")
        let lines = WikiTextFixture.lines(count: 500, seed: 5)
        let text = WikiTextFixture.text(lines)
        let url = data.appendingPathComponent("story.txt")
        try Data(text).write(to: url)
        let config = DataConfig(source: url.path, split: [0.8, 0.1, 0.1], tokenizer: "words")
        let prepared = try CorpusLoader.prepare(config, dataDirectory: data, reporter: .silent)
        #expect(prepared.folder.deletingLastPathComponent().path == data.appendingPathComponent("cache").path)
        #expect(prepared.folder.lastPathComponent.hasPrefix("story-") && prepared.folder.lastPathComponent.hasSuffix("-words"))
        let counts = Split.allCases.map { prepared.headers[$0]!.source.bytes }
        #expect(counts.reduce(0, +) == text.count)
        // Each split starts at a line start near its fraction of the bytes.
        #expect(text[counts[0] - 1] == 0x0A && text[counts[0] + counts[1] - 1] == 0x0A)
        #expect(abs(Double(counts[0]) / Double(text.count) - 0.8) < 0.01)
        #expect(Split.allCases.map { prepared.headers[$0]!.lineCount }.reduce(0, +) == lines.count)
        // Loading goes through the same caches; bytes still read the file directly.
        let loaded = try CorpusLoader.load(config, dataDirectory: data, reporter: .silent)
        #expect(loaded.fingerprint == prepared.corpus.fingerprint)
        let bytes = try CorpusLoader.load(DataConfig(source: url.path, split: [0.8, 0.1, 0.1]), dataDirectory: data, reporter: .silent)
        #expect(bytes.unit == .bytes && bytes.train.count == Int(Double(text.count) * 0.8))
        #expect { _ = try CorpusLoader.prepare(DataConfig(source: url.path), dataDirectory: data, reporter: .silent) } throws: {
            "\($0)".contains("need no preparation")
        }
    }

    @Test func enwik8TakesBytesOnly() throws {
        let url = WikiTextFixture.folder("enwik8").appendingPathComponent("enwik8.zip")
        try Data(ZipWriter.archive([.init(name: "enwik8", bytes: Array("abc".utf8), deflate: false)])).write(to: url)
        #expect { _ = try CorpusLoader.load(DataConfig(source: url.path, tokenizer: "bpe:100"), reporter: .silent) } throws: {
            "\($0)".contains("use --tokenizer bytes")
        }
        #expect { _ = try CorpusLoader.load(DataConfig(source: url.path, tokenizer: "bpe:x"), reporter: .silent) } throws: {
            "\($0)".contains("use bytes, words or bpe:PIECES")
        }
    }
}

struct IDTextTests {
    /// A model trained on the fixture, saved next to it.
    func model(in folder: URL) throws -> URL {
        let corpus = try WikiTextFixture.writeFolder(WikiTextFixture.splits(raw: true, trainLines: 200, otherLines: 20), in: folder, raw: true)
        let (prepared, _) = try prepareFolder(corpus, .bpe(pieces: 120))
        return prepared.tokenizerFile
    }

    @Test func encodeWritesIdLinesAndDecodeReadsThemBack() throws {
        let folder = WikiTextFixture.folder("idtext")
        let tool = try IDText(model: try model(in: folder))
        let lines = WikiTextFixture.lines(count: 80, seed: 11, raw: true) + ["", "   ", "no final line feed"]
        let input = folder.appendingPathComponent("input.txt")
        var text = WikiTextFixture.text(lines)
        text.removeLast()  // the last line ends without a line feed
        try Data(text).write(to: input)
        var encoded: [UInt8] = []
        try tool.encode(input: .file(input), parts: 2) { encoded += $0 }
        let idLines = WikiTextFixture.lineStrings(encoded)
        #expect(idLines.count == lines.count)
        let model = try SentencePieceBPE(contentsOf: tool.modelURL)
        for (line, ids) in zip(lines, idLines) {
            #expect(ids == (try model.encode(line)).map(String.init).joined(separator: " "), "\(line)")
        }
        let idFile = folder.appendingPathComponent("ids.txt")
        try Data(encoded).write(to: idFile)
        var decoded: [UInt8] = []
        try tool.decode(input: .file(idFile)) { decoded += $0 }
        #expect(WikiTextFixture.lineStrings(decoded) == lines.map { $0.split(separator: " ").joined(separator: " ") })

        // Not ids, or ids past the vocabulary: one line naming the line.
        try Data("5 6\n7 x9 8\n".utf8).write(to: idFile)
        #expect { try tool.decode(input: .file(idFile)) { _ in } } throws: { "\($0)".contains("line 2: 'x9' is not an id") }
        try Data("5 120\n".utf8).write(to: idFile)
        #expect { try tool.decode(input: .file(idFile)) { _ in } } throws: { "\($0)".contains("id 120 is outside the vocabulary 0..<120") }
    }

    @Test func truncatedOrMissingModelsAreOneLine() throws {
        let folder = WikiTextFixture.folder("truncated")
        let good = try Data(contentsOf: try model(in: folder))
        let truncated = folder.appendingPathComponent("short.model")
        try good.prefix(good.count / 2).write(to: truncated)
        #expect { _ = try IDText(model: truncated) } throws: { error in
            "\(error)".contains("not a valid SentencePiece model") && !"\(error)".contains("\n")
        }
        #expect { _ = try IDText(model: folder.appendingPathComponent("none.model")) } throws: { "\($0)".contains("no such file") }
    }
}
