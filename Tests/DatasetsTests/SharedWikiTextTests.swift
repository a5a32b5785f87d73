@testable import Datasets
import Foundation
import Testing
import TestSupport
import Tokenizers

/// The real WikiText files of ../shared/data (skipped with one line where absent): the reader
/// and the word tokenizer must give the counts its README publishes.
@Suite(.serialized) struct SharedWikiTextTests {
    /// README: whitespace tokens plus one `<eos>` per line, and the published checksums.
    static let facts: [(path: String, sha256: String, lines: Int, words: Int)] = [
        ("wikitext-2/wiki.valid.tokens", "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8", 3_760, 217_646),
        ("wikitext-2/wiki.test.tokens", "d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0", 4_358, 245_569),
        // WT-103 valid and test hold the same articles line for line (README).
        ("wikitext-103/wiki.valid.tokens", "9aee9f52d6e77de6c7751fc5e7c44287db3ec0eaf15477098acc6b93c1c4250b", 3_760, 217_646),
        ("wikitext-103/wiki.test.tokens", "56db52eb157b1ab5c89646eef70510c1eca6e12a3bfdb99f0d6b05b4eacb75b9", 4_358, 245_569),
    ]

    /// Lines and word-tokenizer ids of a file, read through `TextSource`.
    static func wordIDs(_ url: URL, _ tokenizer: WordTokenizer) throws -> (lines: Int, ids: [Int32]) {
        var encoder = tokenizer.makeLineEncoder()
        var ids: [Int32] = []
        var lines = 0
        try TextSource(file: url).forEachChunk(chunkSize: 256 << 10) { chunk in
            try TextLines.forEachLine(in: chunk) { _, line in
                try encoder.encode(utf8Line: line, appendingTo: &ids)
                lines += 1
            }
        }
        return (lines, ids)
    }

    @Test func validAndTestCountsAndChecksumsMatchTheREADME() throws {
        guard SharedData.root != nil else {
            print(SharedData.skipReason)
            return
        }
        // Only <eos> and <unk>: every word becomes <unk>, so the ids count words and lines.
        let counter = try WordTokenizer(tokens: [WordTokenizer.endOfLineToken, WordTokenizer.unknownToken])
        for fact in Self.facts {
            guard let url = SharedData.file(fact.path) else {
                print("\(fact.path) is absent from ../shared/data: skipped")
                continue
            }
            #expect(try SHA256.hexDigest(ofFile: url) == fact.sha256, "\(fact.path)")
            let (lines, ids) = try Self.wordIDs(url, counter)
            #expect(lines == fact.lines, "\(fact.path)")
            #expect(ids.count == fact.words, "\(fact.path)")
            #expect(ids.filter { $0 == counter.endOfLineID }.count == fact.lines)
        }
    }

    @Test(arguments: [("valid", 10_061), ("test", 12_726)])
    func wikiText2DiffersFromWikiText103OnlyWhereItHasUnk(split: String, places: Int) throws {
        guard let small = SharedData.file("wikitext-2/wiki.\(split).tokens"),
            let large = SharedData.file("wikitext-103/wiki.\(split).tokens")
        else {
            print(SharedData.skipReason)
            return
        }
        // One vocabulary for both files, so equal words get equal ids.
        var builder = WordTokenizer.VocabularyBuilder()
        try builder.add(contentsOf: small)
        try builder.add(contentsOf: large)
        let words = builder.makeTokenizer()
        let (a, b) = (try Self.wordIDs(small, words).ids, try Self.wordIDs(large, words).ids)
        #expect(a.count == b.count)
        let differing = zip(a, b).filter { $0 != $1 }
        #expect(differing.count == places)
        #expect(differing.allSatisfy { $0.0 == words.unknownID && $0.1 != words.unknownID })
    }

    @Test func wikiText2TrainThroughTheWordPipeline() throws {
        guard let train = SharedData.file("wikitext-2/wiki.train.tokens") else {
            print(SharedData.skipReason)
            return
        }
        let cacheRoot = WikiTextFixture.folder("wt2-words")
        let prepared = try CorpusPreparation.prepare(
            CorpusSources(try WikiText.open(train.deletingLastPathComponent())), tokenizer: .words, cacheRoot: cacheRoot,
            reporter: .silent)
        // README: 36,718 lines / 2,088,628 tokens; 33,278 types including <eos> and <unk>.
        #expect(prepared.headers[.train]!.lineCount == 36_718)
        #expect(prepared.headers[.train]!.wordCount == 2_088_628)
        #expect(prepared.corpus.train.count == 2_088_628)
        #expect(prepared.corpus.vocabularySize == 33_278)
        #expect(prepared.corpus.valid.count == 217_646 && prepared.corpus.test.count == 245_569)
        #expect(prepared.corpus.train.width == 2)
        // Transformer-XL's order: <eos>, then by count ("the" is the commonest word).
        guard case .words(let words) = prepared.tokenizer else { return }
        #expect(words.tokens[0] == "<eos>" && words.tokens[1] == "the")
    }
}
