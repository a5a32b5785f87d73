import Datasets
import Foundation

/// Small corpora in WikiText's format (README: every line starts with a space and ends with
/// " \n", blank lines are " \n", titles " = Title = ", numbers split with @,@), built from a
/// fixed word list and seed, packed as the official folders and archives.
enum WikiTextFixture {
    static let words = [
        "the", "of", "and", "in", "to", "a", "was", "is", "for", "on", "as", "with", "by", "he", "at", "from",
        "his", "an", "were", "are", "which", "game", "season", "city", "river", "album", "song", "army",
        "church", "Valkyria", "Chronicles", "café", "naïve", "Zürich", "über", "日本", "東京", "first",
        "after", "during", "between", "world", "war", "team", "played", "released", "built", "known",
        ",", ".", "\"", "(", ")", ";", "@-@", "'s", "<unk>",
    ]

    /// `count` lines: a title, then paragraphs and section headings separated by blank lines.
    /// `raw` drops the `<unk>` tokens (as the .raw files have none).
    static func lines(count: Int, seed: UInt64, raw: Bool = false) -> [String] {
        var state = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        func next(_ n: Int) -> Int {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int((state >> 33) % UInt64(n))
        }
        let vocabulary = raw ? words.filter { $0 != "<unk>" } : words
        // Titles are not capitalised: a letter seen once would fall outside BPE's character coverage.
        var lines = [" = \(vocabulary[next(20) + 20]) \(vocabulary[next(20) + 20]) = ", " "]
        while lines.count < count {
            switch next(10) {
            case 0:
                lines += [" = = \(vocabulary[next(vocabulary.count)]) \(vocabulary[next(vocabulary.count)]) = = ", " "]
            case 1:
                lines.append(" ")
            default:
                var words: [String] = []
                for _ in 0..<(3 + next(25)) {
                    words.append(next(12) == 0 ? "\(1 + next(9)) @,@ \(100 + next(900))" : vocabulary[next(vocabulary.count)])
                }
                lines.append(" " + words.joined(separator: " ") + " ")
            }
        }
        return Array(lines.prefix(count))
    }

    static func text(_ lines: [String]) -> [UInt8] { Array(lines.map { $0 + "\n" }.joined().utf8) }

    /// The three splits of a small corpus.
    static func splits(seed: UInt64 = 1, raw: Bool = false, trainLines: Int = 400, otherLines: Int = 60) -> [Split: [UInt8]] {
        [
            .train: text(lines(count: trainLines, seed: seed, raw: raw)),
            .valid: text(lines(count: otherLines, seed: seed + 100, raw: raw)),
            .test: text(lines(count: otherLines, seed: seed + 200, raw: raw)),
        ]
    }

    /// `parent/NAME/wiki.SPLIT.tokens` (or `.raw`); returns the corpus folder.
    @discardableResult
    static func writeFolder(_ splits: [Split: [UInt8]], in parent: URL, name: String = "wikitext-2", raw: Bool = false) throws -> URL {
        let folder = parent.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        for (split, bytes) in splits {
            try Data(bytes).write(to: folder.appendingPathComponent(WikiText.fileName(split, kind: raw ? .raw : .tokens)))
        }
        return folder
    }

    /// An archive with members `NAME/wiki.SPLIT.tokens` (or `.raw`), deflated.
    static func writeArchive(_ splits: [Split: [UInt8]], to url: URL, name: String = "wikitext-2", raw: Bool = false, deflate: Bool = true) throws {
        let members = Split.allCases.compactMap { split in
            splits[split].map { ZipWriter.Member(name: "\(name)/\(WikiText.fileName(split, kind: raw ? .raw : .tokens))", bytes: $0, deflate: deflate) }
        }
        try Data(ZipWriter.archive(members)).write(to: url)
    }

    /// A fresh empty folder.
    static func folder(_ name: String) -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("lmtrain-wikitext-\(getpid())-\(name)-\(UUID().uuidString.prefix(8))")
        try! FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// The lines of a text as the tokenizers see them (LF-terminated, no terminator).
    static func lineStrings(_ bytes: [UInt8]) -> [String] {
        var lines = String(decoding: bytes, as: UTF8.self).components(separatedBy: "\n")
        if lines.last == "" { lines.removeLast() }
        return lines
    }
}
