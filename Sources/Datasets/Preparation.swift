// Preparing a token corpus: the tokenizer is built from the train split (or reused while that
// text is unchanged), then each split is tokenized once into a cache file that training maps
// (TokenCache.swift). Everything streams: a split is read in line-aligned chunks, encoded on
// all workers and written out, so memory stays bounded by a chunk and its ids.
//
// Cache folder: DATA/cache/NAME-TOKENIZER/ (wikitext-103-bpe-8000) with train.ids, valid.ids,
// test.ids, the tokenizer file and tokenizer.json.

import Foundation
import Tensor
import Tokenizers

/// The three texts of a corpus to prepare, and the name its cache folder starts with.
public struct CorpusSources: Sendable {
    /// Names the cache folder: `wikitext-2`, or `FILE-HASH` for a text file.
    public let name: String
    /// Where the texts were found, for messages.
    public let origin: String
    public let train: TextSource
    public let valid: TextSource
    public let test: TextSource
    /// Whether the texts are WikiText (an archive or folder in the official layout).
    public let isWikiText: Bool

    /// Three texts under a cache name.
    public init(name: String, origin: String, train: TextSource, valid: TextSource, test: TextSource, isWikiText: Bool) {
        self.name = name
        self.origin = origin
        self.train = train
        self.valid = valid
        self.test = test
        self.isWikiText = isWikiText
    }

    /// The splits of a WikiText archive or folder.
    public init(_ wikiText: WikiText) {
        self.init(
            name: wikiText.name, origin: wikiText.location.path, train: wikiText.train, valid: wikiText.valid,
            test: wikiText.test, isWikiText: true)
    }

    /// The text of `split`.
    public func split(_ split: Split) -> TextSource {
        switch split {
        case .train: train
        case .valid: valid
        case .test: test
        }
    }

    /// A plain text file cut by position into `fractions` (train, valid, test) of its bytes,
    /// each cut moved forward to the next line start so that no line is split.
    public static func plainText(_ url: URL, fractions: [Double]) throws -> CorpusSources {
        let whole = try TextSource(file: url)
        let n = whole.byteCount
        guard n > 0 else { throw DataError("\(url.path): the corpus is empty") }
        let firstCut = try nextLineStart(in: url, from: Int(Double(n) * fractions[0]), size: n)
        let secondCut = try nextLineStart(in: url, from: max(firstCut, Int(Double(n) * fractions[0]) + Int(Double(n) * fractions[1])), size: n)
        var hash = FNV1a()
        hash.add(url.standardizedFileURL.path)
        let stem = WikiText.sanitizedName(url.deletingPathExtension().lastPathComponent)
        return CorpusSources(
            name: "\(stem)-\(String(hash.hex.prefix(8)))", origin: url.path,
            train: TextSource(file: url, range: 0..<firstCut), valid: TextSource(file: url, range: firstCut..<secondCut),
            test: TextSource(file: url, range: secondCut..<n), isWikiText: false)
    }

    /// The offset just after the first line feed at or after `offset - 1` (`offset` itself
    /// when a line starts there), or the end of the file.
    static func nextLineStart(in url: URL, from offset: Int, size: Int) throws -> Int {
        if offset <= 0 { return 0 }
        if offset >= size { return size }
        var position = offset - 1
        var found: Int?
        try TextSource(file: url, range: position..<size).forEachBlock(blockSize: 64 << 10) { block in
            guard found == nil else { return }
            if let i = block.firstIndex(of: 0x0A) { found = position + i + 1 }
            position += block.count
        }
        return found ?? size
    }
}

/// A corpus whose splits are mapped token caches, with what preparing it did.
public struct PreparedCorpus {
    /// The corpus, its splits mapped from the caches.
    public let corpus: Corpus
    /// The cache folder.
    public let folder: URL
    /// The tokenizer the caches were made with.
    public let tokenizer: TrainedTokenizer
    /// The tokenizer file (`tokenizer.model`, `vocab.txt` or `byte-values.txt`).
    public let tokenizerFile: URL
    /// Each cache's header (counts, source identity).
    public let headers: [Split: TokenCacheHeader]
    /// Whether the tokenizer was trained now (false: reused).
    public let trainedTokenizer: Bool
    /// Splits tokenized now (the others were current).
    public let rebuiltSplits: [Split]

    /// The cache file of `split`.
    public func cacheFile(_ split: Split) -> URL { folder.appendingPathComponent("\(split.rawValue).ids") }
}

/// Builds and checks token caches (see the file comment).
public enum CorpusPreparation {
    /// The cache folder of `sources` tokenized with `choice` under `cacheRoot`.
    public static func folder(for sources: CorpusSources, tokenizer choice: TokenizerChoice, cacheRoot: URL) -> URL {
        cacheRoot.appendingPathComponent("\(sources.name)-\(choice.folderName)")
    }

    /// Returns the corpus of `sources` tokenized with `choice`, reusing the tokenizer and every
    /// cache that is current and rebuilding the rest (all of it when `force`). Encoding uses
    /// `parts` workers' worth of parts (default `Threads.count`); the caches do not depend on it.
    public static func prepare(
        _ sources: CorpusSources, tokenizer choice: TokenizerChoice, cacheRoot: URL, force: Bool = false,
        parts: Int? = nil, reporter: PreparationReporter
    ) throws -> PreparedCorpus {
        let folder = folder(for: sources, tokenizer: choice, cacheRoot: cacheRoot)
        do {
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        } catch {
            throw DataError("\(folder.path): cannot create the cache folder; make \(cacheRoot.path) writable or set LMTRAIN_DATA to a writable folder")
        }
        let session = Session(
            sources: sources, choice: choice, folder: folder, reporter: reporter, parts: max(1, parts ?? Threads.count))
        let (tokenizer, trained) = try session.obtainTokenizer(force: force)
        var opened: [Split: TokenCache.Opened] = [:]
        var stale: [Split] = []
        var reasons: [Split: String] = [:]
        func cacheURL(_ split: Split) -> URL { folder.appendingPathComponent("\(split.rawValue).ids") }
        for split in Split.allCases {
            let url = cacheURL(split)
            if force {
                reasons[split] = "tokenizing the \(split.rawValue) split (--force)"
                stale.append(split)
                continue
            }
            switch try TokenCache.open(url, expecting: session.expectation(split, tokenizer: tokenizer)) {
            case .success(let cache):
                opened[split] = cache
            case .failure(.missing):
                reasons[split] = "tokenizing the \(split.rawValue) split into \(url.lastPathComponent)"
                stale.append(split)
            case .failure(let problem):
                reasons[split] = "\(url.path) is stale: \(problem); tokenizing the \(split.rawValue) split again"
                stale.append(split)
            }
        }
        // One set of encoders for all stale splits, so valid and test start with warm caches.
        try session.buildCaches(stale, tokenizer: tokenizer, to: cacheURL) { session.announce(reasons[$0]!) }
        for split in stale {
            switch try TokenCache.open(cacheURL(split), expecting: session.expectation(split, tokenizer: tokenizer)) {
            case .success(let cache): opened[split] = cache
            case .failure(let problem):
                throw DataError("\(cacheURL(split).path): the cache just written does not check (\(problem)); the source may have changed while it was read, run again")
            }
        }
        let rebuilt = stale
        let corpus = makeCorpus(
            sources: sources, choice: choice, tokenizer: tokenizer, fingerprint: session.tokenizerFingerprint, opened: opened)
        if !rebuilt.isEmpty || trained {
            let counts = Split.allCases.map { "\($0.rawValue) \(opened[$0]!.header.tokenCount)" }.joined(separator: ", ")
            session.announce("data ready in \(folder.path): \(counts) tokens")
        }
        return PreparedCorpus(
            corpus: corpus, folder: folder, tokenizer: tokenizer,
            tokenizerFile: folder.appendingPathComponent(choice.fileName),
            headers: opened.mapValues(\.header), trainedTokenizer: trained, rebuiltSplits: rebuilt)
    }

    static func makeCorpus(
        sources: CorpusSources, choice: TokenizerChoice, tokenizer: TrainedTokenizer, fingerprint: UInt64,
        opened: [Split: TokenCache.Opened]
    ) -> Corpus {
        var hash = FNV1a()
        hash.add(choice.description)
        hash.add(fingerprint.hex16)
        for split in Split.allCases {
            let header = opened[split]!.header
            hash.add("\(split.rawValue) \(header.source.bytes) \(header.source.crc32) \(header.tokenCount)")
        }
        var byteVocabulary: ByteVocabulary?
        if case .bytes(let vocabulary) = tokenizer { byteVocabulary = vocabulary }
        return Corpus(
            name: "\(sources.name) (\(choice): \(tokenizer.displayName))", unit: choice == .bytes ? .bytes : .tokens,
            vocabularySize: tokenizer.vocabularySize, train: opened[.train]!.tokens, valid: opened[.valid]!.tokens,
            test: opened[.test]!.tokens, fingerprint: "\(choice.folderName)-\(hash.hex)", byteVocabulary: byteVocabulary)
    }

    /// State of one `prepare` call: the sources' checksums (each computed at most once) and
    /// whether the opening line was printed.
    final class Session {
        let sources: CorpusSources
        let choice: TokenizerChoice
        let folder: URL
        let reporter: PreparationReporter
        let parts: Int
        let checksums = ChecksumMemo()
        var announced = false
        /// ``TrainedTokenizer/fingerprint`` of the tokenizer in use (computed once: it hashes
        /// the whole model).
        var tokenizerFingerprint: UInt64 = 0

        init(sources: CorpusSources, choice: TokenizerChoice, folder: URL, reporter: PreparationReporter, parts: Int) {
            self.sources = sources
            self.choice = choice
            self.folder = folder
            self.reporter = reporter
            self.parts = parts
        }

        /// Prints `line`, after one line that says what is being prepared.
        func announce(_ line: String) {
            if !announced {
                announced = true
                reporter.note("preparing \(sources.name) (\(sources.origin)) with tokenizer \(choice) in \(folder.path)")
            }
            reporter.note(line)
        }

        func identity(_ split: Split) throws -> SourceIdentity {
            let source = sources.split(split)
            return SourceIdentity(bytes: source.byteCount, crc32: try checksums.value(split, source))
        }

        func expectation(_ split: Split, tokenizer: TrainedTokenizer) -> CacheExpectation {
            let source = sources.split(split)
            let memo = checksums
            return CacheExpectation(
                tokenizer: choice.description, vocabularySize: tokenizer.vocabularySize,
                vocabularyFingerprint: tokenizerFingerprint, split: split, sourceBytes: source.byteCount,
                sourceChecksum: { try memo.value(split, source) })
        }

        // MARK: The tokenizer

        /// The saved tokenizer when it was built from the current texts, else a new one.
        func obtainTokenizer(force: Bool) throws -> (TrainedTokenizer, trained: Bool) {
            let file = folder.appendingPathComponent(choice.fileName)
            let manifestURL = folder.appendingPathComponent("tokenizer.json")
            var reason = "no \(choice.fileName) in the cache folder yet"
            if force {
                reason = "--force"
            } else if let manifest = TokenizerManifest.read(manifestURL), manifest.format == TokenizerManifest.format,
                manifest.tokenizer == choice.description, manifest.file == choice.fileName
            {
                if manifest.trainedOn == (try choice.trainingSplits.map { try identity($0) }) {
                    if let saved = try? TrainedTokenizer.load(choice, from: file) {
                        tokenizerFingerprint = saved.fingerprint
                        if tokenizerFingerprint.hex16 == manifest.fingerprint { return (saved, false) }
                    }
                    reason = "\(file.path) is missing, unreadable or not the one recorded in tokenizer.json"
                } else {
                    reason = "the text it was trained on changed"
                }
            } else if FileManager.default.fileExists(atPath: file.path) {
                reason = "tokenizer.json is missing or from another version"
            }
            let splitNames = choice.trainingSplits.map(\.rawValue).joined(separator: ", ")
            announce("building the \(choice) tokenizer from \(splitNames) (\(reason))")
            let started = Date()
            let tokenizer = try train()
            let seconds = Date().timeIntervalSince(started)
            tokenizerFingerprint = tokenizer.fingerprint
            try tokenizer.save(to: file)
            // Written after the tokenizer file: a crash between the two leaves a manifest whose
            // fingerprint does not match, and the tokenizer is trained again.
            try TokenizerManifest(
                format: TokenizerManifest.format, tokenizer: choice.description, file: choice.fileName,
                fingerprint: tokenizerFingerprint.hex16, trainedOn: try choice.trainingSplits.map { try identity($0) },
                seconds: seconds
            ).write(to: manifestURL)
            reporter.note(String(format: "  %@: %@ in %.1f s, saved as %@", choice.description, tokenizer.displayName, seconds, file.path))
            return (tokenizer, true)
        }

        func train() throws -> TrainedTokenizer {
            switch choice {
            case .bytes:
                var seen = [Bool](repeating: false, count: 256)
                for split in Split.allCases {
                    let source = sources.split(split)
                    let bar = ProgressBar(title: "byte values of \(split.rawValue)", totalBytes: source.byteCount, reporter: reporter)
                    var done = 0
                    var crc = CRC32()
                    try source.forEachBlock(blockSize: 4 << 20) { block in
                        seen.withUnsafeMutableBufferPointer { table in
                            for byte in block { table[Int(byte)] = true }
                        }
                        crc.update(block)
                        done += block.count
                        bar.advance(to: done)
                    }
                    try checksums.record(split, crc.value, source)
                }
                guard seen.filter({ $0 }).count >= 2 else {
                    throw DataError("\(sources.origin): the corpus has fewer than 2 distinct bytes; nothing to learn")
                }
                return .bytes(ByteVocabulary(symbols: (0..<256).filter { seen[$0] }.map { UInt8($0) }))
            case .words:
                var builder = WordTokenizer.VocabularyBuilder()
                try forEachTrainLine(title: "counting words of train") { try builder.add(utf8Line: $0) }
                guard builder.distinctWordCount > 0 else {
                    throw DataError("\(sources.train): the train split has no words; nothing to learn")
                }
                return .words(builder.makeTokenizer())
            case .bpe(let pieces):
                do {
                    var trainer = try SentencePieceBPE.Trainer(options: .init(vocabularySize: pieces))
                    if case .file(let url) = sources.train.location {
                        // The whole-file path counts on every worker.
                        reporter.note("  counting the words of \(url.path) on \(parts) threads")
                        try trainer.add(contentsOf: url, threadCount: parts)
                    } else {
                        try forEachTrainLine(title: "counting words of train") { try trainer.add(utf8Line: $0) }
                    }
                    reporter.note("  \(trainer.distinctWordCount) distinct words; choosing \(pieces) pieces")
                    return .bpe(try trainer.makeTokenizer())
                } catch TokenizerError.trainingFailed(let reason) {
                    // The trainer speaks of its own option; say it in terms of --tokenizer.
                    let advice = reason.replacingOccurrences(of: "vocabularySize \(pieces)", with: "bpe:\(pieces)")
                        .replacingOccurrences(of: "lower vocabularySize", with: "use a smaller bpe:N")
                    throw DataError("\(sources.name): cannot train bpe:\(pieces) on the train split: \(advice)")
                }
            }
        }

        /// Calls `body` with each line of the train split, naming file and line on invalid UTF-8.
        func forEachTrainLine(title: String, _ body: (UnsafeBufferPointer<UInt8>) throws -> Void) throws {
            let source = sources.train
            let bar = ProgressBar(title: title, totalBytes: source.byteCount, reporter: reporter)
            var done = 0
            var lines = 0
            var crc = CRC32()
            try source.forEachChunk { chunk in
                crc.update(UnsafeRawBufferPointer(chunk))
                try TextLines.forEachLine(in: chunk) { _, line in
                    lines += 1
                    do {
                        try body(line)
                    } catch TokenizerError.invalidUTF8(_, _, let offset) {
                        throw TokenizerError.invalidUTF8(file: source.description, line: lines, byteOffset: offset)
                    }
                }
                done += chunk.count
                bar.advance(to: done)
            }
            try checksums.record(.train, crc.value, source)
        }

        // MARK: The caches

        /// Tokenizes each of `splits` into its cache file (written atomically).
        /// `starting(split)` runs before each split (to say why it is built).
        func buildCaches(
            _ splits: [Split], tokenizer: TrainedTokenizer, to url: (Split) -> URL, starting: (Split) -> Void
        ) throws {
            guard !splits.isEmpty else { return }
            switch tokenizer {
            case .words(let words):
                let engine = LineEncodingEngine(tokenizer: words, parts: parts, countWords: false)
                for split in splits {
                    starting(split)
                    try buildCache(split, tokenizer: tokenizer, to: url(split), engine: engine)
                }
            case .bpe(let bpe):
                let engine = LineEncodingEngine(tokenizer: bpe, parts: parts, countWords: true)
                for split in splits {
                    starting(split)
                    try buildCache(split, tokenizer: tokenizer, to: url(split), engine: engine)
                }
            case .bytes(let vocabulary):
                for split in splits {
                    starting(split)
                    try buildByteCache(split, vocabulary: vocabulary, tokenizer: tokenizer, to: url(split))
                }
            }
        }

        /// Encodes `split` with `engine` into the cache file `url`.
        func buildCache<T: Tokenizer>(
            _ split: Split, tokenizer: TrainedTokenizer, to url: URL, engine: LineEncodingEngine<T>
        ) throws {
            let source = sources.split(split)
            let writer = try TokenCacheWriter(url: url, vocabularySize: tokenizer.vocabularySize)
            let bar = ProgressBar(title: "tokenizing \(split.rawValue)", totalBytes: source.byteCount, reporter: reporter)
            var crc = CRC32()
            var lines = 0
            var words = 0
            var done = 0
            try source.forEachChunk { chunk in
                crc.update(UnsafeRawBufferPointer(chunk))
                let counted = try engine.encode(chunk, firstLine: lines, source: source.description)
                try engine.forEachPart { ids, _ in try writer.append(ids) }
                lines += counted.lines
                words += counted.words
                done += chunk.count
                bar.advance(to: done)
            }
            try finish(split, writer: writer, tokenizer: tokenizer, crc: crc.value, lines: lines, words: words, bar: bar)
        }

        /// Maps each byte to its id; words are counted only while the text is UTF-8 (byte
        /// corpora need not be).
        func buildByteCache(_ split: Split, vocabulary: ByteVocabulary, tokenizer: TrainedTokenizer, to url: URL) throws {
            let source = sources.split(split)
            let writer = try TokenCacheWriter(url: url, vocabularySize: tokenizer.vocabularySize)
            let bar = ProgressBar(title: "tokenizing \(split.rawValue)", totalBytes: source.byteCount, reporter: reporter)
            var table = [Int16](repeating: -1, count: 256)
            for (id, symbol) in vocabulary.symbols.enumerated() { table[Int(symbol)] = Int16(id) }
            let counter = try! WordTokenizer(tokens: [WordTokenizer.endOfLineToken, WordTokenizer.unknownToken])
            let engine = LineEncodingEngine(tokenizer: counter, parts: parts, countWords: false)
            let chunkSize = 8 << 20
            let ids = UnsafeMutablePointer<UInt8>.allocate(capacity: chunkSize)
            defer { ids.deallocate() }
            var crc = CRC32()
            var lines = 0
            var words: Int? = 0
            var done = 0
            try source.forEachChunk(chunkSize: chunkSize) { chunk in
                crc.update(UnsafeRawBufferPointer(chunk))
                var start = 0
                while start < chunk.count {
                    let n = min(chunkSize, chunk.count - start)
                    var missing: Int16 = 0
                    for i in 0..<n {
                        let id = table[Int(chunk[start + i])]
                        missing |= id & Int16(bitPattern: 0x8000)
                        ids[i] = UInt8(truncatingIfNeeded: id)
                    }
                    guard missing == 0 else {
                        throw DataError("\(source): a byte value outside the vocabulary built from it; the file changed while it was prepared, run again")
                    }
                    try writer.appendBytes(UnsafeRawBufferPointer(start: ids, count: n))
                    start += n
                }
                if words != nil, let counted = try? engine.encode(chunk, firstLine: lines, source: source.description) {
                    lines += counted.lines
                    words! += counted.words
                } else {
                    words = nil
                    lines += TextLines.countLines(in: chunk)
                }
                done += chunk.count
                bar.advance(to: done)
            }
            try finish(split, writer: writer, tokenizer: tokenizer, crc: crc.value, lines: lines, words: words, bar: bar)
        }

        /// Checks the source against its earlier checksum, commits the cache and reports it.
        func finish(
            _ split: Split, writer: TokenCacheWriter, tokenizer: TrainedTokenizer, crc: UInt32, lines: Int, words: Int?,
            bar: ProgressBar
        ) throws {
            let source = sources.split(split)
            try checksums.record(split, crc, source)
            let header = try writer.commit(
                TokenCacheHeader(
                    width: writer.width, split: split, tokenCount: 0, vocabularySize: tokenizer.vocabularySize,
                    vocabularyFingerprint: tokenizerFingerprint, tokenizer: choice.description,
                    source: SourceIdentity(bytes: source.byteCount, crc32: crc), payloadCRC32: 0,
                    lineCount: lines, wordCount: words))
            let perWord = words.map { String(format: ", %.3f tokens per word", Double(header.tokenCount) / Double(max(1, $0))) } ?? ""
            bar.finish("\(header.tokenCount) tokens, \(lines) lines\(words.map { ", \($0) words" } ?? "")\(perWord)")
        }
    }
}

/// Checksums of the sources, each computed once per preparation, and checked for agreement
/// whenever a split is read again (a text that changes during preparation is an error).
final class ChecksumMemo: @unchecked Sendable {
    private var values: [Split: UInt32] = [:]

    func value(_ split: Split, _ source: TextSource) throws -> UInt32 {
        if let known = values[split] { return known }
        let crc = try source.checksum()
        values[split] = crc
        return crc
    }

    func record(_ split: Split, _ crc: UInt32, _ source: TextSource) throws {
        if let known = values[split], known != crc {
            throw DataError("\(source): the file changed while it was prepared; run again")
        }
        values[split] = crc
    }
}
