import Foundation

/// Where training data comes from (the `data` section of a run config).
public struct DataConfig: Sendable, Codable, Equatable {
    /// nil for the default corpus (the King James Bible); a known name (`kjv`, `enwik8`,
    /// `wikitext-103`, `wikitext-103-raw`, `wikitext-2`, `wikitext-2-raw`); or a path to a text
    /// file, a folder or a ZIP archive.
    public var source: String?
    /// Train / valid / test fractions for plain text files (enwik8 uses its standard
    /// 90M/5M/5M split).
    public var split: [Double]
    /// `bytes`, `words` (Transformer-XL words) or `bpe:N` (SentencePiece BPE with N pieces);
    /// enwik8 takes bytes only.
    public var tokenizer: String
    /// A formal-language task (`parity`, `dyck-1`, ... Docs/formal-languages.md) instead of a
    /// corpus: its data are generated from `generator_seed`, or read from the benchmark's
    /// `.src`/`.tgt` files in the folder `source` when that is given.
    public var task: String?
    /// The seed of the formal-language generator (the data are the same for every model).
    public var generatorSeed: UInt64

    public init(
        source: String? = nil, split: [Double] = [0.9, 0.05, 0.05], tokenizer: String = "bytes",
        task: String? = nil, generatorSeed: UInt64 = 1
    ) {
        self.source = source
        self.split = split
        self.tokenizer = tokenizer
        self.task = task
        self.generatorSeed = generatorSeed
    }

    enum CodingKeys: String, CodingKey {
        case source, split, tokenizer, task
        case generatorSeed = "generator_seed"
    }

    /// `bytes`, `words` or `bpe:N` with N >= 1.
    static func isTokenizerName(_ name: String) -> Bool {
        if name == "bytes" || name == "words" { return true }
        guard name.hasPrefix("bpe:"), let pieces = Int(name.dropFirst(4)) else { return false }
        return pieces >= 1
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        source = try c.decodeIfPresent(String.self, forKey: .source)
        split = try c.decode([Double].self, forKey: .split)
        tokenizer = try c.decode(String.self, forKey: .tokenizer)
        // Absent in configs written before formal-language tasks existed.
        task = try c.decodeIfPresent(String.self, forKey: .task)
        generatorSeed = try c.decodeIfPresent(UInt64.self, forKey: .generatorSeed) ?? 1
    }

    /// Encodes `source` as null for the default corpus, so config files list every field.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(source, forKey: .source)
        try c.encode(split, forKey: .split)
        try c.encode(tokenizer, forKey: .tokenizer)
        try c.encode(task, forKey: .task)
        try c.encode(generatorSeed, forKey: .generatorSeed)
    }

    public func validate() throws {
        guard split.count == 3, split.allSatisfy({ $0 >= 0 }), abs(split.reduce(0, +) - 1) < 1e-9,
            split[0] > 0
        else {
            throw DataError("data.split must be three non-negative fractions train,valid,test summing to 1, train > 0 (got \(split))")
        }
        guard Self.isTokenizerName(tokenizer) else {
            throw DataError("data.tokenizer '\(tokenizer)' is unknown: use bytes, words or bpe:PIECES (e.g. bpe:8000)")
        }
    }
}

/// Facts about the corpora lmtrain knows by name (../shared/data/README.md).
public enum KnownCorpus {
    /// `bible -f gen1:1-rev22:21` from Debian's bible-kjv packages.
    public static let kjvFile = "kjv.txt"
    public static let kjvBytes = 4_404_412
    public static let kjvSHA256 = "cd45f0c9cedab8e4439bd6486c8952c77cc8b0ecc5d1f6ae3513f2039f47229d"
    public static let enwik8Bytes = 100_000_000
    public static let enwik8SHA256 = "2b49720ec4d78c3c9fabaee6e4179a5e997302b3a70029f30f2d582218c024a8"
    public static let enwik8ZipSHA256 = "547994d9980ebed1288380d652999f38a14fe291a6247c157c3d33d4932534bc"
}

/// Turns a `DataConfig` into a tokenised `Corpus`.
public enum CorpusLoader {
    /// The folder where `Scripts/get-data` puts corpora: `$LMTRAIN_DATA` or `./Data`.
    public static var defaultDataDirectory: URL {
        if let path = ProcessInfo.processInfo.environment["LMTRAIN_DATA"], !path.isEmpty {
            return URL(fileURLWithPath: path)
        }
        return URL(fileURLWithPath: FileManager.default.currentDirectoryPath).appendingPathComponent("Data")
    }

    /// Where `--data` points, once resolved.
    public enum Source: Sendable {
        /// A text file (the default corpus included), split by position.
        case plainText(URL)
        /// enwik8: the raw file or its archive.
        case enwik8(URL)
        /// A WikiText archive or folder.
        case wikiText(WikiText)
    }

    /// The token caches of the data directory: `DATA/cache`.
    public static func cacheRoot(dataDirectory: URL) -> URL { dataDirectory.appendingPathComponent("cache") }

    /// Loads the corpus `config` describes. Byte corpora from text files and enwik8 are read
    /// into memory; WikiText and every `words` / `bpe:N` corpus goes through the token caches
    /// of `DATA/cache`, which are built or rebuilt first when missing or stale (said on
    /// `reporter`).
    public static func load(
        _ config: DataConfig, dataDirectory: URL = defaultDataDirectory, reporter: PreparationReporter = .console
    ) throws -> Corpus {
        try config.validate()
        let choice = try TokenizerChoice(config.tokenizer)
        switch try resolve(config.source, dataDirectory: dataDirectory) {
        case .enwik8(let url):
            guard choice == .bytes else {
                throw DataError("--tokenizer \(choice): enwik8 is a byte-level corpus (bits per character); use --tokenizer bytes")
            }
            return try loadEnwik8(url)
        case .plainText(let url) where choice == .bytes:
            return try loadPlainText(url, split: config.split)
        case .plainText, .wikiText:
            return try prepare(config, dataDirectory: dataDirectory, reporter: reporter).corpus
        }
    }

    /// Tokenizes the corpus of `config` into its token caches (reusing what is current, all
    /// anew when `force`): WikiText with any tokenizer, or a text file with `words` / `bpe:N`.
    public static func prepare(
        _ config: DataConfig, dataDirectory: URL = defaultDataDirectory, force: Bool = false,
        reporter: PreparationReporter = .console
    ) throws -> PreparedCorpus {
        try config.validate()
        let choice = try TokenizerChoice(config.tokenizer)
        let sources: CorpusSources
        switch try resolve(config.source, dataDirectory: dataDirectory) {
        case .enwik8:
            throw DataError("enwik8 is read directly as bytes and needs no preparation; prepare WikiText or a text file with --tokenizer words or bpe:N")
        case .plainText(let url):
            guard choice != .bytes else {
                throw DataError("\(url.path): text files are read directly with --tokenizer bytes and need no preparation; use --tokenizer words or bpe:N")
            }
            sources = try CorpusSources.plainText(url, fractions: config.split)
        case .wikiText(let wikiText):
            sources = CorpusSources(wikiText)
        }
        return try CorpusPreparation.prepare(
            sources, tokenizer: choice, cacheRoot: cacheRoot(dataDirectory: dataDirectory), force: force, reporter: reporter)
    }

    /// Resolves `--data`: nil or `kjv` (the default corpus), `enwik8`, a WikiText name (looked
    /// up in `dataDirectory`), or a path to a text file, a folder or a ZIP archive.
    public static func resolve(_ source: String?, dataDirectory: URL) throws -> Source {
        switch source {
        case nil, "kjv":
            return .plainText(try defaultKJV(dataDirectory: dataDirectory))
        case "enwik8":
            let zip = dataDirectory.appendingPathComponent("enwik8.zip")
            let raw = dataDirectory.appendingPathComponent("enwik8")
            if FileManager.default.fileExists(atPath: raw.path) { return .enwik8(raw) }
            if FileManager.default.fileExists(atPath: zip.path) { return .enwik8(zip) }
            throw DataError("enwik8 is not in \(dataDirectory.path): run Scripts/get-data enwik8, or pass --data PATH/enwik8.zip")
        case let name? where WikiText.knownNames.contains(name):
            return .wikiText(try WikiText.locate(name, in: dataDirectory))
        case let path?:
            return try resolvePath(URL(fileURLWithPath: path))
        }
    }

    /// A file, folder or archive given by path.
    static func resolvePath(_ url: URL) throws -> Source {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) else {
            throw DataError("--data \(url.path): no such file or folder")
        }
        if isDirectory.boolValue {
            if WikiText.looksLikeWikiText(url) { return .wikiText(try WikiText.open(url)) }
            for name in ["enwik8", "enwik8.zip"] {
                let candidate = url.appendingPathComponent(name)
                if FileManager.default.fileExists(atPath: candidate.path) { return .enwik8(candidate) }
            }
            throw DataError("--data \(url.path): the folder holds neither WikiText files (wiki.train.tokens, ...) nor enwik8; give a text file, an archive, or one of these folders")
        }
        if url.pathExtension.lowercased() == "zip" {
            let archive = try ZipArchive(url: url)
            if archive.member(named: "enwik8") != nil { return .enwik8(url) }
            if WikiText.looksLikeWikiText(url) { return .wikiText(try WikiText.open(url)) }
            throw DataError("\(url.path): archive holds neither enwik8 nor WikiText files (members: \(archive.members.prefix(5).map(\.name).joined(separator: ", ")))")
        }
        if url.lastPathComponent == "enwik8" { return .enwik8(url) }
        return .plainText(url)
    }

    /// Any file as bytes, split by position into `split` fractions.
    public static func loadPlainText(_ url: URL, split: [Double]) throws -> Corpus {
        let bytes = try readFile(url)
        guard !bytes.isEmpty else { throw DataError("\(url.path): the corpus is empty") }
        let vocabulary = bytes.withUnsafeBytes { ByteVocabulary(of: $0) }
        guard vocabulary.count >= 2 else {
            throw DataError("\(url.path): the corpus has fewer than 2 distinct bytes; nothing to learn")
        }
        let ids = try bytes.withUnsafeBytes { try vocabulary.encode($0, source: url.path) }
        let n = ids.count
        let trainEnd = Int(Double(n) * split[0])
        let validEnd = trainEnd + Int(Double(n) * split[1])
        return makeCorpus(
            name: "\(url.lastPathComponent) (\(n) bytes, \(vocabulary.count) byte values)",
            ids: ids, vocabulary: vocabulary, boundaries: (trainEnd, validEnd))
    }

    /// enwik8 from `enwik8.zip` (inflated in memory) or the raw file: the standard
    /// 90M / 5M / 5M split, vocabulary = distinct byte values of the whole file.
    public static func loadEnwik8(_ url: URL) throws -> Corpus {
        var bytes: [UInt8]
        if url.pathExtension.lowercased() == "zip" {
            let archive = try ZipArchive(url: url)
            guard let member = archive.member(named: "enwik8") else {
                throw DataError("\(url.path): archive has no member named enwik8; download it again with Scripts/get-data enwik8")
            }
            guard member.uncompressedSize == KnownCorpus.enwik8Bytes else {
                throw DataError("\(url.path): member enwik8 has \(member.uncompressedSize) bytes, expected \(KnownCorpus.enwik8Bytes); download it again")
            }
            bytes = try archive.read(member)
        } else {
            bytes = try readFile(url)
        }
        guard bytes.count == KnownCorpus.enwik8Bytes else {
            throw DataError("\(url.path): enwik8 has \(bytes.count) bytes, expected \(KnownCorpus.enwik8Bytes) (truncated?); run Scripts/get-data enwik8")
        }
        let vocabulary = bytes.withUnsafeBytes { ByteVocabulary(of: $0) }
        let ids = try bytes.withUnsafeBytes { try vocabulary.encode($0, source: url.path) }
        bytes = []
        return makeCorpus(
            name: "enwik8 (\(vocabulary.count) byte values)", ids: ids, vocabulary: vocabulary,
            boundaries: (90_000_000, 95_000_000))
    }

    static func makeCorpus(
        name: String, ids: [UInt8], vocabulary: ByteVocabulary, boundaries: (Int, Int)
    ) -> Corpus {
        let all = TokenSequence(bytes: ids)
        var hash = FNV1a()
        ids.withUnsafeBytes { hash.add($0) }
        vocabulary.symbols.withUnsafeBytes { hash.add($0) }
        return Corpus(
            name: name, unit: .bytes, vocabularySize: vocabulary.count,
            train: all.slice(0..<boundaries.0), valid: all.slice(boundaries.0..<boundaries.1),
            test: all.slice(boundaries.1..<all.count), fingerprint: "bytes-\(hash.hex)",
            byteVocabulary: vocabulary)
    }

    static func readFile(_ url: URL) throws -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw DataError("\(url.path): cannot read the file")
        }
        return [UInt8](data)
    }

    /// `Data/kjv.txt`, regenerated from Debian's `bible` program when missing and verified
    /// against the published checksum.
    public static func defaultKJV(dataDirectory: URL) throws -> URL {
        let url = dataDirectory.appendingPathComponent(KnownCorpus.kjvFile)
        if FileManager.default.fileExists(atPath: url.path) { return url }
        guard let bible = ["/usr/bin/bible", "/usr/games/bible"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw DataError("the default corpus \(url.path) is missing and Debian's bible-kjv is not installed: run Scripts/get-data kjv, or pass --data FILE")
        }
        try FileManager.default.createDirectory(at: dataDirectory, withIntermediateDirectories: true)
        let temporary = AtomicFile.temporaryURL(for: url)
        _ = FileManager.default.createFile(atPath: temporary.path, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: bible)
        process.arguments = ["-f", "gen1:1-rev22:21"]
        process.standardOutput = try FileHandle(forWritingTo: temporary)
        try process.run()
        process.waitUntilExit()
        let digest = try SHA256.hexDigest(ofFile: temporary)
        guard process.terminationStatus == 0, digest == KnownCorpus.kjvSHA256 else {
            try? FileManager.default.removeItem(at: temporary)
            throw DataError("\(bible) produced a KJV text with sha256 \(digest), expected \(KnownCorpus.kjvSHA256): reinstall bible-kjv-text or pass --data FILE")
        }
        try AtomicFile.commit(temporary, to: url)
        return url
    }
}
