import Datasets
import Foundation
import Testing
import TestSupport

func temporaryFile(_ name: String) -> URL {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("lmtrain-data-\(getpid())-\(UUID().uuidString.prefix(8))")
    try! FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    return folder.appendingPathComponent(name)
}

struct ZipArchiveTests {
    let text = Array((0..<20_000).map { "line \($0) of some text\n" }.joined().utf8)

    @Test(arguments: [true, false]) func readsMembersAndChecksCRC(deflate: Bool) throws {
        let url = temporaryFile("a.zip")
        try Data(ZipWriter.archive([
            .init(name: "wikitext-2/wiki.valid.tokens", bytes: Array("hello\n".utf8), deflate: deflate),
            .init(name: "enwik8", bytes: text, deflate: deflate),
        ])).write(to: url)
        let archive = try ZipArchive(url: url)
        #expect(archive.members.map(\.name) == ["wikitext-2/wiki.valid.tokens", "enwik8"])
        #expect(archive.member(named: "wiki.valid.tokens") != nil)
        // Small chunks exercise the streaming inflate loop.
        var streamed: [UInt8] = []
        try archive.stream(archive.member(named: "enwik8")!, chunkSize: 1000) { streamed += $0 }
        #expect(streamed == text)
    }

    @Test func corruptTruncatedAndForeignFilesGiveOneLineErrors() throws {
        let bytes = ZipWriter.archive([.init(name: "enwik8", bytes: text, deflate: true)])
        let corrupt = temporaryFile("corrupt.zip")
        var flipped = bytes
        flipped[200] ^= 0x55
        try Data(flipped).write(to: corrupt)
        #expect { let a = try ZipArchive(url: corrupt); _ = try a.read(a.members[0]) } throws: {
            let m = "\($0)"
            return m.contains("corrupt.zip") && !m.contains("\n")
        }
        let truncated = temporaryFile("truncated.zip")
        try Data(bytes.prefix(bytes.count / 2)).write(to: truncated)
        #expect { _ = try ZipArchive(url: truncated) } throws: { "\($0)".contains("truncated") }
        let notZip = temporaryFile("plain.zip")
        try Data("not an archive".utf8).write(to: notZip)
        #expect { _ = try ZipArchive(url: notZip) } throws: { "\($0)".contains("not a ZIP archive") }
        #expect { _ = try ZipArchive(url: temporaryFile("missing.zip")) } throws: { "\($0)".contains("missing") }
    }

    @Test func enwik8ArchiveWithoutTheMemberOrWithAShortMemberIsRejected() throws {
        let url = temporaryFile("enwik8.zip")
        try Data(ZipWriter.archive([.init(name: "other.txt", bytes: text, deflate: true)])).write(to: url)
        #expect { _ = try CorpusLoader.loadEnwik8(url) } throws: { "\($0)".contains("no member named enwik8") }
        try Data(ZipWriter.archive([.init(name: "enwik8", bytes: text, deflate: true)])).write(to: url)
        #expect { _ = try CorpusLoader.loadEnwik8(url) } throws: { "\($0)".contains("expected 100000000") }
    }
}

struct CorpusTests {
    @Test func byteVocabularyIsTheSortedSetOfDistinctBytes() throws {
        let bytes: [UInt8] = Array("banana band".utf8)
        let vocabulary = bytes.withUnsafeBytes { ByteVocabulary(of: $0) }
        #expect(vocabulary.symbols == Array(" abdn".utf8))
        let ids = try bytes.withUnsafeBytes { try vocabulary.encode($0, source: "t") }
        #expect(vocabulary.decode(ids.map { Int32($0) }) == bytes)
    }

    @Test func plainTextSplitsByPositionAndRejectsEmptyFiles() throws {
        let url = temporaryFile("text.txt")
        try Data(String(repeating: "abcdefghij", count: 100).utf8).write(to: url)
        let corpus = try CorpusLoader.loadPlainText(url, split: [0.8, 0.1, 0.1])
        #expect((corpus.train.count, corpus.valid.count, corpus.test.count) == (800, 100, 100))
        #expect(corpus.vocabularySize == 10)
        #expect(corpus.valid[0] == 0)  // position 800 holds 'a'
        let empty = temporaryFile("empty.txt")
        try Data().write(to: empty)
        #expect { _ = try CorpusLoader.loadPlainText(empty, split: [0.9, 0.05, 0.05]) } throws: { "\($0)".contains("empty") }
        #expect { _ = try CorpusLoader.load(DataConfig(source: "/nonexistent/file.txt")) } throws: { "\($0)".contains("no such file") }
        #expect { try DataConfig(split: [0.5, 0.6, 0.1]).validate() } throws: { "\($0)".contains("data.split") }
    }

    @Test func sharedEnwik8PrefixLoadsAsBytes() throws {
        guard let url = SharedData.file("enwik8/enwik5") else {
            print(SharedData.skipReason)
            return
        }
        // enwik5 is the first 10^5 bytes of enwik8 plus one newline (README).
        #expect(try SHA256.hexDigest(ofFile: url) == "a2014499bb59e37253ce9c23d56761ec3bae18ef757144b22272fab07200045d")
        let corpus = try CorpusLoader.loadPlainText(url, split: [0.9, 0.05, 0.05])
        #expect(corpus.train.count + corpus.valid.count + corpus.test.count == 100_001)
        #expect(corpus.unit == .bytes)
    }

    @Test func defaultCorpusIsRegeneratedAndVerifiedWhenBibleIsInstalled() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/bible") else {
            print("Debian's bible-kjv is not installed (Scripts/test installs it): KJV regeneration test skipped")
            return
        }
        let folder = temporaryFile("x").deletingLastPathComponent()
        let url = try CorpusLoader.defaultKJV(dataDirectory: folder)
        #expect(try SHA256.hexDigest(ofFile: url) == KnownCorpus.kjvSHA256)
        let corpus = try CorpusLoader.load(DataConfig(), dataDirectory: folder)
        #expect(corpus.train.count + corpus.valid.count + corpus.test.count == KnownCorpus.kjvBytes)
    }
}

struct BatcherTests {
    @Test func streamsAreContiguousAcrossChunks() {
        let tokens = TokenSequence(bytes: (0..<103).map { UInt8($0) })
        let batcher = OrderedBatcher(tokens: tokens, batch: 4, segmentLength: 6)
        #expect(batcher.streamLength == 25)
        #expect(batcher.fullChunks == 4)  // 24 predictable positions per stream
        #expect(batcher.allChunks == 4)
        var inputs = [Int32](repeating: -1, count: 24), targets = inputs
        batcher.chunk(0, inputs: &inputs, targets: &targets)
        #expect(Array(inputs[0..<6]) == [0, 1, 2, 3, 4, 5])
        #expect(Array(targets[0..<6]) == [1, 2, 3, 4, 5, 6])
        #expect(Array(inputs[6..<12]) == [25, 26, 27, 28, 29, 30])  // stream 1 starts at 25
        batcher.chunk(1, inputs: &inputs, targets: &targets)
        #expect(Array(inputs[0..<6]) == [6, 7, 8, 9, 10, 11])  // chunk 1 continues chunk 0
        let uneven = OrderedBatcher(tokens: tokens, batch: 4, segmentLength: 7)
        #expect(uneven.fullChunks == 3)
        #expect(uneven.allChunks == 4)
        #expect(uneven.length(ofChunk: 3) == 3)  // the evaluation tail
    }
}

struct ChecksumTests {
    @Test func sha256KnownVectors() {
        func digest(_ s: String) -> String {
            var h = SHA256()
            Array(s.utf8).withUnsafeBytes { h.update($0) }
            return h.finalizeHex()
        }
        #expect(digest("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(digest("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(digest(String(repeating: "a", count: 1000)) == "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3")
    }
}
