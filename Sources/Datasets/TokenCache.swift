// Token cache files: one split's ids, written once by `lmtrain prepare` (or by train/eval when
// the cache is missing or stale) and memory-mapped by training.
//
// Layout (little-endian), a 256-byte header then the ids:
//   0   8  magic "LMTRTOKS"             80  32 tokenizer name, UTF-8, NUL-padded ("bpe:8000")
//   8   4  format version (1)           112 140 reserved, zero
//   12  4  header size (256)            252  4 CRC-32 of header bytes 0..<252
//   16  4  bytes per id (1, 2 or 4)     256    ids: count x width bytes, unsigned
//   20  4  split (0 train, 1 valid, 2 test)
//   24  8  id count
//   32  8  vocabulary size
//   40  8  vocabulary fingerprint (the tokenizer's FNV-1a 64 over everything that decides ids)
//   48  8  source text length in bytes
//   56  4  source text CRC-32
//   60  4  CRC-32 of the ids
//   64  8  lines of the source text
//   72  8  words of the source text: whitespace tokens plus one per line (2^64-1: unknown)
// A cache is used only when every field matches what the current source and tokenizer would
// produce and both CRCs check; anything else (another version, a foreign or truncated file,
// a changed source or vocabulary) makes it stale, and it is rebuilt by temp file + rename.

import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The identity of a source text as caches record it: its length and CRC-32.
public struct SourceIdentity: Sendable, Codable, Equatable {
    /// Length in bytes.
    public var bytes: Int
    /// zlib's CRC-32 of the bytes.
    public var crc32: UInt32

    public init(bytes: Int, crc32: UInt32) {
        self.bytes = bytes
        self.crc32 = crc32
    }
}

/// The fixed-size header of a token cache file.
public struct TokenCacheHeader: Sendable, Equatable {
    /// The first 8 bytes of every cache file.
    public static let magic = Array("LMTRTOKS".utf8)
    /// The format version this build writes and reads.
    public static let version: UInt32 = 1
    /// Header length in bytes; the ids start here.
    public static let size = 256
    static let tokenizerNameBytes = 32

    /// Bytes per id: 1, 2 or 4.
    public var width: Int
    public var split: Split
    /// Number of ids.
    public var tokenCount: Int
    public var vocabularySize: Int
    /// The tokenizer's FNV-1a 64 fingerprint (``TrainedTokenizer/fingerprint``).
    public var vocabularyFingerprint: UInt64
    /// `bytes`, `words` or `bpe:N`.
    public var tokenizer: String
    /// The text the ids were made from.
    public var source: SourceIdentity
    /// CRC-32 of the id bytes.
    public var payloadCRC32: UInt32
    /// Lines of the source text (LF-terminated, plus a last unterminated one).
    public var lineCount: Int
    /// Whitespace-separated words plus one per line (Transformer-XL's word-level token count);
    /// nil when the text is not UTF-8 (possible for byte corpora only).
    public var wordCount: Int?

    /// The narrowest width that holds every id of a vocabulary.
    public static func width(forVocabularySize size: Int) -> Int {
        size <= 256 ? 1 : size <= 65_536 ? 2 : 4
    }

    /// The 256 header bytes, checksum included.
    public func encoded() -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: Self.size)
        func put<T: FixedWidthInteger>(_ value: T, at offset: Int) {
            withUnsafeBytes(of: value.littleEndian) { raw in
                for (i, byte) in raw.enumerated() { bytes[offset + i] = byte }
            }
        }
        bytes.replaceSubrange(0..<8, with: Self.magic)
        put(Self.version, at: 8)
        put(UInt32(Self.size), at: 12)
        put(UInt32(width), at: 16)
        put(UInt32(Split.allCases.firstIndex(of: split)!), at: 20)
        put(UInt64(tokenCount), at: 24)
        put(UInt64(vocabularySize), at: 32)
        put(vocabularyFingerprint, at: 40)
        put(UInt64(source.bytes), at: 48)
        put(source.crc32, at: 56)
        put(payloadCRC32, at: 60)
        put(UInt64(lineCount), at: 64)
        put(wordCount.map { UInt64($0) } ?? UInt64.max, at: 72)
        let name = Array(tokenizer.utf8.prefix(Self.tokenizerNameBytes))
        bytes.replaceSubrange(80..<(80 + name.count), with: name)
        let crc = bytes.withUnsafeBytes { CRC32.of(UnsafeRawBufferPointer(rebasing: $0[0..<252])) }
        put(crc, at: 252)
        return bytes
    }

    /// Parses a header, or says why the bytes are not a current header.
    static func decode(_ raw: UnsafeRawBufferPointer) -> Result<TokenCacheHeader, CacheProblem> {
        guard raw.count > 0 else { return .failure(.truncated("empty file")) }
        let magicBytes = min(raw.count, magic.count)
        guard raw.prefix(magicBytes).elementsEqual(magic.prefix(magicBytes)) else { return .failure(.foreign) }
        guard raw.count >= size else { return .failure(.truncated("\(raw.count) bytes, shorter than the header")) }
        func get<T: FixedWidthInteger>(_ type: T.Type, _ offset: Int) -> T {
            T(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: T.self))
        }
        let version = get(UInt32.self, 8)
        guard version == Self.version else { return .failure(.version(Int(version))) }
        guard get(UInt32.self, 252) == CRC32.of(UnsafeRawBufferPointer(rebasing: raw[0..<252])),
            get(UInt32.self, 12) == UInt32(size)
        else { return .failure(.corrupt("the header checksum does not match")) }
        let width = Int(get(UInt32.self, 16))
        let splitIndex = Int(get(UInt32.self, 20))
        guard [1, 2, 4].contains(width), Split.allCases.indices.contains(splitIndex) else {
            return .failure(.corrupt("invalid width or split in the header"))
        }
        let nameBytes = raw[80..<(80 + tokenizerNameBytes)].prefix { $0 != 0 }
        let words = get(UInt64.self, 72)
        // Counts beyond Int (a damaged header whose checksum still matches, or a crafted one),
        // and id counts whose byte length would not fit, are refused, not trapped on.
        guard let tokenCount = Int(exactly: get(UInt64.self, 24)), tokenCount <= Int.max / 4 - size,
            let vocabularySize = Int(exactly: get(UInt64.self, 32)),
            let sourceBytes = Int(exactly: get(UInt64.self, 48)),
            let lineCount = Int(exactly: get(UInt64.self, 64)),
            words == UInt64.max || Int(exactly: words) != nil
        else { return .failure(.corrupt("a count in the header is out of range")) }
        return .success(
            TokenCacheHeader(
                width: width, split: Split.allCases[splitIndex], tokenCount: tokenCount,
                vocabularySize: vocabularySize, vocabularyFingerprint: get(UInt64.self, 40),
                tokenizer: String(decoding: nameBytes, as: UTF8.self),
                source: SourceIdentity(bytes: sourceBytes, crc32: get(UInt32.self, 56)),
                payloadCRC32: get(UInt32.self, 60), lineCount: lineCount,
                wordCount: words == UInt64.max ? nil : Int(words)))
    }
}

/// Why a cache file cannot be used as it is (it is then rebuilt).
public enum CacheProblem: Error, Equatable, Sendable, CustomStringConvertible {
    /// No file yet.
    case missing
    /// The file does not start with the magic.
    case foreign
    /// Written by another format version.
    case version(Int)
    /// A checksum does not match, or a field is impossible.
    case corrupt(String)
    /// Shorter (or longer) than its header says.
    case truncated(String)
    /// Made with another tokenizer or vocabulary.
    case tokenizerChanged
    /// Made from another text.
    case sourceChanged
    /// Anything else (e.g. the file holds another split).
    case other(String)

    public var description: String {
        switch self {
        case .missing: "not built yet"
        case .foreign: "not a token cache (wrong magic)"
        case .version(let v): "format version \(v), this build writes \(TokenCacheHeader.version)"
        case .corrupt(let why): "corrupt (\(why))"
        case .truncated(let why): "truncated (\(why))"
        case .tokenizerChanged: "the tokenizer or its vocabulary changed"
        case .sourceChanged: "the source text changed"
        case .other(let why): why
        }
    }
}

/// What a current cache of a split must record.
struct CacheExpectation {
    var tokenizer: String
    var vocabularySize: Int
    var vocabularyFingerprint: UInt64
    var split: Split
    var sourceBytes: Int
    /// Computed only when everything cheaper already matches (it may read the whole source).
    var sourceChecksum: () throws -> UInt32
}

/// A whole file mapped read-only; unmapped when the last sequence using it goes away.
final class MappedFile: @unchecked Sendable {
    let base: UnsafeRawPointer
    let length: Int

    init(url: URL) throws {
        let descriptor = open(url.path, O_RDONLY)
        guard descriptor >= 0 else {
            throw DataError("\(url.path): cannot open (\(String(cString: strerror(errno))))")
        }
        defer { close(descriptor) }
        var info = stat()
        guard fstat(descriptor, &info) == 0 else { throw DataError("\(url.path): cannot stat") }
        length = Int(info.st_size)
        guard length > 0 else {
            base = UnsafeRawPointer(bitPattern: 1)!  // never dereferenced: length 0
            return
        }
        let mapped = mmap(nil, length, PROT_READ, MAP_SHARED, descriptor, 0)
        guard let mapped, mapped != MAP_FAILED else {
            throw DataError("\(url.path): cannot map the file (\(String(cString: strerror(errno))))")
        }
        base = UnsafeRawPointer(mapped)
    }

    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: length > 0 ? base : nil, count: length) }

    deinit {
        if length > 0 { munmap(UnsafeMutableRawPointer(mutating: base), length) }
    }
}

/// Reading and writing token cache files.
public enum TokenCache {
    /// A cache opened and checked: its ids (over the mapped file) and header.
    public struct Opened {
        /// The ids, over the mapped file.
        public let tokens: TokenSequence
        /// The file's header.
        public let header: TokenCacheHeader
    }

    /// Reads the header of `url` without checking it against anything.
    public static func readHeader(_ url: URL) throws -> TokenCacheHeader {
        let file = try MappedFile(url: url)
        switch TokenCacheHeader.decode(file.bytes) {
        case .success(let header): return header
        case .failure(let problem): throw DataError("\(url.path): \(problem)")
        }
    }

    /// Maps the cache at `url` and checks it against `expected`; the ids' CRC is checked last,
    /// so a stale cache is usually recognised from its header alone.
    static func open(_ url: URL, expecting expected: CacheExpectation) throws -> Result<Opened, CacheProblem> {
        guard FileManager.default.fileExists(atPath: url.path) else { return .failure(.missing) }
        let file = try MappedFile(url: url)
        let header: TokenCacheHeader
        switch TokenCacheHeader.decode(file.bytes) {
        case .success(let h): header = h
        case .failure(let problem): return .failure(problem)
        }
        let expectedLength = TokenCacheHeader.size + header.tokenCount * header.width
        guard file.length == expectedLength else {
            return .failure(.truncated("\(file.length) bytes, the header announces \(expectedLength)"))
        }
        guard header.tokenizer == expected.tokenizer, header.vocabularySize == expected.vocabularySize,
            header.vocabularyFingerprint == expected.vocabularyFingerprint,
            header.width == TokenCacheHeader.width(forVocabularySize: expected.vocabularySize)
        else { return .failure(.tokenizerChanged) }
        guard header.split == expected.split else { return .failure(.other("it holds the \(header.split) split")) }
        guard header.source.bytes == expected.sourceBytes, header.source.crc32 == (try expected.sourceChecksum()) else {
            return .failure(.sourceChanged)
        }
        let payload = UnsafeRawBufferPointer(rebasing: file.bytes[TokenCacheHeader.size...])
        guard CRC32.of(payload) == header.payloadCRC32 else { return .failure(.corrupt("the ids' checksum does not match")) }
        // A crafted file can carry matching checksums; an id outside the vocabulary would index
        // past the embedding table, so every id is checked once (a pass cheaper than the CRC's).
        if let position = firstIdOutsideVocabulary(payload, width: header.width, vocabularySize: header.vocabularySize) {
            return .failure(.corrupt("the id at position \(position) is outside the vocabulary of \(header.vocabularySize)"))
        }
        let tokens = TokenSequence(
            base: file.base + TokenCacheHeader.size, count: header.tokenCount, width: header.width, owner: file,
            wordCount: header.wordCount)
        return .success(Opened(tokens: tokens, header: header))
    }
}

/// The position of the first id in `payload` (ids of `width` bytes, little-endian) that is not
/// below `vocabularySize`; nil when every id is.
func firstIdOutsideVocabulary(_ payload: UnsafeRawBufferPointer, width: Int, vocabularySize: Int) -> Int? {
    func scan<T: FixedWidthInteger & UnsignedInteger>(_: T.Type) -> Int? {
        let ids = payload.bindMemory(to: T.self)
        return ids.firstIndex { Int(T(littleEndian: $0)) >= vocabularySize }
    }
    switch width {
    case 1: return vocabularySize >= 256 ? nil : scan(UInt8.self)
    case 2: return scan(UInt16.self)
    default: return scan(UInt32.self)
    }
}

/// Writes a cache file through a temporary file in the same folder, renamed over the target
/// only when complete and flushed, so a crash never leaves a half-written cache behind a
/// valid name (and a reader mapping the old file keeps its old contents).
final class TokenCacheWriter {
    let url: URL
    let temporary: URL
    let width: Int
    let vocabularySize: Int
    private var descriptor: Int32
    private var buffer: UnsafeMutableRawPointer
    private let bufferBytes = 1 << 20
    private var buffered = 0
    private(set) var tokenCount = 0
    private var crc = CRC32()
    private var committed = false

    init(url: URL, vocabularySize: Int) throws {
        self.url = url
        self.vocabularySize = vocabularySize
        width = TokenCacheHeader.width(forVocabularySize: vocabularySize)
        temporary = AtomicFile.temporaryURL(for: url)
        descriptor = open(temporary.path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard descriptor >= 0 else {
            throw DataError("\(temporary.path): cannot create the cache file (\(String(cString: strerror(errno)))); check that \(url.deletingLastPathComponent().path) is writable")
        }
        buffer = .allocate(byteCount: bufferBytes, alignment: 16)
        // The header is written last, once the count and checksum are known.
        let placeholder = [UInt8](repeating: 0, count: TokenCacheHeader.size)
        try placeholder.withUnsafeBytes { try writeAll($0) }
    }

    deinit {
        buffer.deallocate()
        if !committed {
            if descriptor >= 0 { close(descriptor) }
            unlink(temporary.path)
        }
    }

    /// Appends ids, each in `0..<vocabularySize`.
    func append(_ ids: UnsafeBufferPointer<Int32>) throws {
        var start = 0
        while start < ids.count {
            let n = min(ids.count - start, (bufferBytes - buffered) / width)
            if n == 0 {
                try flush()
                continue
            }
            // Unsigned, so negative ids count as too large; a running maximum keeps the loops
            // branch-free.
            var largest: UInt32 = 0
            let source = ids.baseAddress! + start
            switch width {
            case 1:
                let out = (buffer + buffered).assumingMemoryBound(to: UInt8.self)
                for i in 0..<n {
                    let id = UInt32(bitPattern: source[i])
                    largest = max(largest, id)
                    out[i] = UInt8(truncatingIfNeeded: id)
                }
            case 2:
                let out = (buffer + buffered).assumingMemoryBound(to: UInt16.self)
                for i in 0..<n {
                    let id = UInt32(bitPattern: source[i])
                    largest = max(largest, id)
                    out[i] = UInt16(truncatingIfNeeded: id).littleEndian
                }
            default:
                let out = (buffer + buffered).assumingMemoryBound(to: UInt32.self)
                for i in 0..<n {
                    let id = UInt32(bitPattern: source[i])
                    largest = max(largest, id)
                    out[i] = id.littleEndian
                }
            }
            guard n == 0 || Int(largest) < vocabularySize else {
                throw DataError("\(url.path): the tokenizer produced id \(Int32(bitPattern: largest)) outside 0..<\(vocabularySize); the tokenizer file is inconsistent, delete \(url.deletingLastPathComponent().path) and prepare again")
            }
            buffered += n * width
            tokenCount += n
            start += n
        }
    }

    /// Appends ids that are already one byte each (byte corpora).
    func appendBytes(_ ids: UnsafeRawBufferPointer) throws {
        precondition(width == 1)
        var start = 0
        while start < ids.count {
            let n = min(ids.count - start, bufferBytes - buffered)
            if n == 0 {
                try flush()
                continue
            }
            (buffer + buffered).copyMemory(from: ids.baseAddress! + start, byteCount: n)
            buffered += n
            tokenCount += n
            start += n
        }
    }

    private func flush() throws {
        guard buffered > 0 else { return }
        let bytes = UnsafeRawBufferPointer(start: buffer, count: buffered)
        crc.update(bytes)
        try writeAll(bytes)
        buffered = 0
    }

    private func writeAll(_ bytes: UnsafeRawBufferPointer) throws {
        var written = 0
        while written < bytes.count {
            let n = write(descriptor, bytes.baseAddress! + written, bytes.count - written)
            if n < 0 {
                if errno == EINTR { continue }
                throw DataError("\(temporary.path): write failed (\(String(cString: strerror(errno)))); free some disk space and prepare again")
            }
            written += n
        }
    }

    /// Writes the header (count and checksum filled in), flushes and renames into place.
    func commit(_ header: TokenCacheHeader) throws -> TokenCacheHeader {
        try flush()
        var header = header
        header.width = width
        header.tokenCount = tokenCount
        header.vocabularySize = vocabularySize
        header.payloadCRC32 = crc.value
        let bytes = header.encoded()
        let wrote = bytes.withUnsafeBytes { pwrite(descriptor, $0.baseAddress!, $0.count, 0) }
        guard wrote == TokenCacheHeader.size, fsync(descriptor) == 0 else {
            throw DataError("\(temporary.path): cannot finish the cache file (\(String(cString: strerror(errno))))")
        }
        close(descriptor)
        descriptor = -1
        try AtomicFile.commit(temporary, to: url)
        committed = true
        return header
    }
}
