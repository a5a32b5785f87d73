@testable import Datasets
import Foundation
import Testing
import TestSupport
import Tokenizers

/// The chunks a source streams, checked for line alignment on the way.
func streamedChunks(_ source: TextSource, chunkSize: Int) throws -> [[UInt8]] {
    var chunks: [[UInt8]] = []
    try source.forEachChunk(chunkSize: chunkSize) { chunks.append(Array($0)) }
    return chunks
}

struct WikiTextReaderTests {
    @Test(arguments: [true, false])
    func archiveAndFolderStreamTheSameLineAlignedText(deflate: Bool) throws {
        let splits = WikiTextFixture.splits()
        let parent = WikiTextFixture.folder("layout")
        let folder = try WikiTextFixture.writeFolder(splits, in: parent)
        let archive = parent.appendingPathComponent("wikitext-2-v1.zip")
        try WikiTextFixture.writeArchive(splits, to: archive, deflate: deflate)
        let fromFolder = try WikiText.open(folder)
        let fromArchive = try WikiText.open(archive)
        // The parent folder of the extracted corpus works too.
        let fromParent = try WikiText.open(parent)
        for corpus in [fromFolder, fromArchive, fromParent] {
            #expect(corpus.name == "wikitext-2")
            #expect(corpus.kind == .tokens)
        }
        for split in Split.allCases {
            let expected = splits[split]!
            for source in [fromFolder.split(split), fromArchive.split(split)] {
                #expect(source.byteCount == expected.count)
                // Chunks of at most 1 kB (less the part of a line that did not fit): many of
                // them, each ending at a line end, together the text.
                let chunks = try streamedChunks(source, chunkSize: 1000)
                #expect(chunks.count >= expected.count / 1000, "\(split): the text should arrive in several chunks")
                #expect(chunks.allSatisfy { $0.last == 0x0A })
                #expect(chunks.dropLast().allSatisfy { $0.count > 600 && $0.count <= 1000 })
                #expect(Array(chunks.joined()) == expected)
            }
            // The archive's CRC-32 (from its directory) is the one computed from the file.
            #expect(try fromArchive.split(split).checksum() == fromFolder.split(split).checksum())
            #expect(try fromFolder.split(split).checksum() == expected.withUnsafeBytes { CRC32.of($0) })
        }
    }

    @Test func lineLongerThanTheChunkAndUnterminatedLastLine() throws {
        let url = WikiTextFixture.folder("long").appendingPathComponent("text.txt")
        let long = String(repeating: "x", count: 5000)
        let text = Array("a\n\(long)\nb\nlast line without end".utf8)
        try Data(text).write(to: url)
        let chunks = try streamedChunks(try TextSource(file: url), chunkSize: 100)
        #expect(Array(chunks.joined()) == text)
        #expect(chunks.contains { $0.count > 5000 })  // the long line was kept whole
        #expect(chunks.dropLast().allSatisfy { $0.last == 0x0A })
        // A byte range reads exactly that range.
        var ranged: [UInt8] = []
        try TextSource(file: url, range: 2..<5002).forEachBlock(blockSize: 64) { ranged += $0 }
        #expect(ranged == Array(text[2..<5002]))
    }

    @Test func rawArchivesAndFoldersAreFoundByName() throws {
        let data = WikiTextFixture.folder("names")
        try WikiTextFixture.writeArchive(WikiTextFixture.splits(raw: true), to: data.appendingPathComponent("wikitext-2-raw-v1.zip"), name: "wikitext-2-raw", raw: true)
        try WikiTextFixture.writeFolder(WikiTextFixture.splits(seed: 7), in: data, name: "wikitext-103")
        let raw = try WikiText.locate("wikitext-2-raw", in: data)
        #expect(raw.name == "wikitext-2-raw")
        #expect(raw.kind == .raw)
        #expect(raw.location.lastPathComponent == "wikitext-2-raw-v1.zip")
        let big = try WikiText.locate("wikitext-103", in: data)
        #expect(big.kind == .tokens)
        #expect(big.location.lastPathComponent == "wikitext-103")
        #expect { _ = try WikiText.locate("wikitext-2", in: data) } throws: { error in
            let message = "\(error)"
            return message.contains("Scripts/get-data wikitext-2") && message.contains("wikitext-2-v1.zip") && !message.contains("\n")
        }
        // Through the loader's name resolution.
        guard case .wikiText(let resolved) = try CorpusLoader.resolve("wikitext-103", dataDirectory: data) else {
            Issue.record("wikitext-103 did not resolve to WikiText")
            return
        }
        #expect(resolved.train.byteCount == WikiTextFixture.splits(seed: 7)[.train]!.count)
    }

    @Test func missingMembersAndFilesAreOneLineErrors() throws {
        let parent = WikiTextFixture.folder("missing")
        var splits = WikiTextFixture.splits()
        splits[.test] = nil
        let archive = parent.appendingPathComponent("partial.zip")
        try WikiTextFixture.writeArchive(splits, to: archive)
        #expect { _ = try WikiText.open(archive) } throws: { error in
            "\(error)".contains("no member wiki.test.tokens") && !"\(error)".contains("\n")
        }
        splits[.test] = splits[.valid]
        splits[.valid] = nil
        let folder = try WikiTextFixture.writeFolder(splits, in: parent, name: "wikitext-x")
        #expect { _ = try WikiText.open(folder) } throws: { "\($0)".contains("wiki.valid.tokens is missing") }
        let foreign = parent.appendingPathComponent("other.zip")
        try Data(ZipWriter.archive([.init(name: "readme.txt", bytes: Array("hi\n".utf8), deflate: false)])).write(to: foreign)
        #expect { _ = try WikiText.open(foreign) } throws: { "\($0)".contains("not a WikiText archive") }
        #expect { _ = try CorpusLoader.load(DataConfig(source: foreign.path), reporter: .silent) } throws: {
            "\($0)".contains("holds neither enwik8 nor WikiText")
        }
    }
}

struct TokenCacheFormatTests {
    func header(words: Int?) -> TokenCacheHeader {
        TokenCacheHeader(
            width: 2, split: .valid, tokenCount: 12345, vocabularySize: 8000, vocabularyFingerprint: 0x0123_4567_89ab_cdef,
            tokenizer: "bpe:8000", source: SourceIdentity(bytes: 1_121_681, crc32: 0xdead_beef), payloadCRC32: 0x1234_5678,
            lineCount: 3760, wordCount: words)
    }

    @Test func headerRoundTripsAndDamageIsRecognised() throws {
        for words in [217_646, nil] {
            let bytes = header(words: words).encoded()
            #expect(bytes.count == TokenCacheHeader.size)
            let url = WikiTextFixture.folder("header").appendingPathComponent("h.ids")
            try Data(bytes).write(to: url)
            #expect(try TokenCache.readHeader(url) == header(words: words))
        }
        let good = header(words: 5).encoded()
        func problem(_ bytes: [UInt8]) -> String {
            let url = WikiTextFixture.folder("bad").appendingPathComponent("h.ids")
            try! Data(bytes).write(to: url)
            do {
                _ = try TokenCache.readHeader(url)
                return "accepted"
            } catch {
                return "\(error)"
            }
        }
        var foreign = good
        foreign[0] = UInt8(ascii: "X")
        #expect(problem(foreign).contains("not a token cache"))
        var newer = good
        newer[8] = 2
        #expect(problem(newer).contains("format version 2"))
        for offset in [20, 40, 100, 200] {
            var flipped = good
            flipped[offset] ^= 0x10
            #expect(problem(flipped).contains("header checksum"), "byte \(offset)")
        }
        #expect(problem(Array(good.prefix(100))).contains("shorter than the header"))
    }

    @Test func widthFollowsTheVocabularyAndWideIdsSurvive() throws {
        #expect(TokenCacheHeader.width(forVocabularySize: 256) == 1)
        #expect(TokenCacheHeader.width(forVocabularySize: 257) == 2)
        #expect(TokenCacheHeader.width(forVocabularySize: 65_536) == 2)
        #expect(TokenCacheHeader.width(forVocabularySize: 65_537) == 4)
        // Words on WikiText-103 (267,735 types) need 4 bytes: every width must give its ids back.
        let folder = WikiTextFixture.folder("widths")
        for size in [200, 8000, 70_000] {
            let url = folder.appendingPathComponent("\(size).ids")
            let ids: [Int32] = (0..<5000).map { Int32(($0 * 7919) % size) } + [Int32(size - 1)]
            let writer = try TokenCacheWriter(url: url, vocabularySize: size)
            try ids.withUnsafeBufferPointer { try writer.append($0) }
            _ = try writer.commit(
                TokenCacheHeader(
                    width: 0, split: .test, tokenCount: 0, vocabularySize: size, vocabularyFingerprint: 42, tokenizer: "words",
                    source: SourceIdentity(bytes: 10, crc32: 7), payloadCRC32: 0, lineCount: 1, wordCount: 2))
            let expectation = CacheExpectation(
                tokenizer: "words", vocabularySize: size, vocabularyFingerprint: 42, split: .test, sourceBytes: 10,
                sourceChecksum: { 7 })
            guard case .success(let opened) = try TokenCache.open(url, expecting: expectation) else {
                Issue.record("vocabulary \(size): the cache did not open")
                continue
            }
            #expect(opened.tokens.width == TokenCacheHeader.width(forVocabularySize: size))
            #expect((0..<opened.tokens.count).map { opened.tokens[$0] } == ids)
            #expect(opened.tokens.wordCount == 2)
            let fileSize = try FileManager.default.attributesOfItem(atPath: url.path)[.size] as! Int
            #expect(fileSize == TokenCacheHeader.size + ids.count * opened.tokens.width)
            // The same file checked against another source or vocabulary is stale.
            var otherSource = expectation
            otherSource.sourceChecksum = { 8 }
            #expect(try TokenCache.open(url, expecting: otherSource).failureValue == .sourceChanged)
            var otherVocabulary = expectation
            otherVocabulary.vocabularyFingerprint = 43
            #expect(try TokenCache.open(url, expecting: otherVocabulary).failureValue == .tokenizerChanged)
        }
        // An id outside the vocabulary is refused and leaves nothing behind.
        let bad = folder.appendingPathComponent("bad.ids")
        do {
            let writer = try TokenCacheWriter(url: bad, vocabularySize: 100)
            #expect { try [Int32(3), 100].withUnsafeBufferPointer { try writer.append($0) } } throws: { "\($0)".contains("outside 0..<100") }
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.contains("bad") }.isEmpty)
    }
}

extension Result {
    var failureValue: Failure? {
        if case .failure(let failure) = self { return failure }
        return nil
    }
}
