// Helpers shared by the tokenizer tests: fixtures from the test bundle and the shared corpora.

import Foundation
import Testing

@testable import Tokenizers

/// The shared corpora at `../shared/data` relative to the package root, found from this
/// file's path; tests that need them are skipped when the folder is absent (a fresh clone).
enum SharedData {
    static let root: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent()  // TokenizersTests
        .deletingLastPathComponent()  // Tests
        .deletingLastPathComponent()  // package root
        .appendingPathComponent("../shared/data").standardizedFileURL

    /// The files these tests read.
    static let files = [
        "wikitext-2/wiki.train.tokens", "wikitext-2/wiki.valid.tokens", "wikitext-2/wiki.test.tokens",
        "wikitext-2-raw/wiki.test.raw", "tinyshakespeare/input.txt",
    ]

    static var isAvailable: Bool {
        files.allSatisfy { FileManager.default.fileExists(atPath: root.appendingPathComponent($0).path) }
    }

    static func url(_ relativePath: String) -> URL { root.appendingPathComponent(relativePath) }

    /// The first `count` LF-separated lines of a file (as Python's `split("\n")[:count]`;
    /// split as bytes, since Swift's String treats CR LF as one Character).
    static func lines(_ relativePath: String, first count: Int) throws -> [String] {
        let bytes = [UInt8](try Data(contentsOf: url(relativePath)))
        return bytes.split(separator: 0x0A, omittingEmptySubsequences: false).prefix(count).map {
            String(decoding: $0, as: UTF8.self)
        }
    }

    /// The fixture training corpus (see Scripts/fixtures/make-sentencepiece-fixtures.py).
    static func fixtureCorpus() throws -> [String] {
        let cases = try Fixtures.cases()
        return try lines("tinyshakespeare/input.txt", first: cases.corpus.tinyshakespeareLines)
            + lines("wikitext-2/wiki.valid.tokens", first: cases.corpus.wikitext2ValidLines)
    }
}

/// Files in Tests/TokenizersTests/Fixtures, copied into the test bundle.
enum Fixtures {
    static func url(_ name: String) throws -> URL {
        let base = (name as NSString).deletingPathExtension
        let ext = (name as NSString).pathExtension
        return try #require(
            Bundle.module.url(forResource: base, withExtension: ext, subdirectory: "Fixtures"))
    }

    static func data(_ name: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: url(name)))
    }

    struct Case: Decodable {
        var ids: [Int32]
        var pieces: [String]
        var decoded: String
    }

    struct ModelCases: Decodable {
        var cases: [Case]
    }

    struct Corpus: Decodable {
        var tinyshakespeareLines: Int
        var wikitext2ValidLines: Int
        enum CodingKeys: String, CodingKey {
            case tinyshakespeareLines = "tinyshakespeare_lines"
            case wikitext2ValidLines = "wikitext2_valid_lines"
        }
    }

    /// sentencepiece-cases.json: the test lines and what Python gives for each model.
    struct PythonCases: Decodable {
        var lines: [String]
        var models: [String: ModelCases]
        var corpus: Corpus
    }

    /// lmtrain-bpe-1000.expected.json: what Python gives for the lmtrain-trained model.
    struct LmtrainCases: Decodable {
        var lines: [String]
        var cases: [Case]
    }

    static func cases() throws -> PythonCases {
        try JSONDecoder().decode(
            PythonCases.self, from: Data(contentsOf: url("sentencepiece-cases.json")))
    }

    static func lmtrainCases() throws -> LmtrainCases {
        try JSONDecoder().decode(
            LmtrainCases.self, from: Data(contentsOf: url("lmtrain-bpe-1000.expected.json")))
    }

    static let pythonModels = [
        "python-bpe-1000.model", "python-bpe-nfkc-bytes.model", "python-bpe-identity.model",
    ]
}

/// A temporary folder removed when the test ends.
final class TemporaryFolder {
    let url: URL
    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent(
            "lmtrain-tok-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(at: url) }
    func file(_ name: String) -> URL { url.appendingPathComponent(name) }
}
