import Foundation

/// A read-only sequence of token ids stored with 1, 2 or 4 bytes per id, in memory or
/// memory-mapped from a token cache file.
public final class TokenSequence: @unchecked Sendable {
    public let count: Int
    /// Bytes per id: 1, 2 or 4.
    public let width: Int
    /// Words of the text these ids encode (whitespace-separated tokens plus one per line, as
    /// Transformer-XL counts WikiText), when known: a token cache records it so that evaluation
    /// can report the word-level perplexity. Slices do not carry it.
    public let wordCount: Int?
    private let base: UnsafeRawPointer
    private let owner: AnyObject

    /// Ids held in memory.
    public init(bytes: [UInt8]) {
        let storage = ArrayOwner(bytes)
        owner = storage
        base = storage.pointer
        count = bytes.count
        width = 1
        wordCount = nil
    }

    /// Ids in a region owned by `owner` (a mapped file or an array), `width` bytes each,
    /// little-endian.
    public init(base: UnsafeRawPointer, count: Int, width: Int, owner: AnyObject, wordCount: Int? = nil) {
        precondition([1, 2, 4].contains(width))
        self.base = base
        self.count = count
        self.width = width
        self.owner = owner
        self.wordCount = wordCount
    }

    /// Ids `range` of this sequence, sharing its storage.
    public func slice(_ range: Range<Int>) -> TokenSequence {
        precondition(range.lowerBound >= 0 && range.upperBound <= count)
        return TokenSequence(
            base: base + range.lowerBound * width, count: range.count, width: width, owner: owner)
    }

    @inlinable public subscript(index: Int) -> Int32 { load(index) }

    @usableFromInline func load(_ index: Int) -> Int32 {
        switch width {
        case 1: Int32(base.load(fromByteOffset: index, as: UInt8.self))
        case 2: Int32(base.loadUnaligned(fromByteOffset: 2 * index, as: UInt16.self))
        default: base.loadUnaligned(fromByteOffset: 4 * index, as: Int32.self)
        }
    }

    /// Copies ids `start ..< start + length` into `destination`.
    public func copy(from start: Int, length: Int, into destination: UnsafeMutablePointer<Int32>) {
        precondition(start >= 0 && start + length <= count)
        switch width {
        case 1:
            let p = base.assumingMemoryBound(to: UInt8.self) + start
            for i in 0..<length { destination[i] = Int32(p[i]) }
        default:
            for i in 0..<length { destination[i] = load(start + i) }
        }
    }
}

private final class ArrayOwner {
    let storage: UnsafeMutableRawPointer
    var pointer: UnsafeRawPointer { UnsafeRawPointer(storage) }
    init(_ bytes: [UInt8]) {
        storage = .allocate(byteCount: max(1, bytes.count), alignment: 16)
        bytes.withUnsafeBytes { storage.copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
    }
    deinit { storage.deallocate() }
}

/// A byte vocabulary: the sorted set of distinct byte values of a corpus, as the
/// Transformer-XL enwik8 setup defines it (205 symbols for enwik8).
public struct ByteVocabulary: Sendable, Codable, Equatable {
    /// The byte value of each id, ascending.
    public let symbols: [UInt8]

    public init(symbols: [UInt8]) { self.symbols = symbols }

    /// The distinct byte values of `bytes`.
    public init(of bytes: UnsafeRawBufferPointer) {
        var seen = [Bool](repeating: false, count: 256)
        for byte in bytes { seen[Int(byte)] = true }
        symbols = (0..<256).filter { seen[$0] }.map { UInt8($0) }
    }

    public var count: Int { symbols.count }

    /// Maps raw bytes to ids; throws if a byte is not in the vocabulary.
    public func encode(_ bytes: UnsafeRawBufferPointer, source: String) throws -> [UInt8] {
        var table = [Int16](repeating: -1, count: 256)
        for (id, symbol) in symbols.enumerated() { table[Int(symbol)] = Int16(id) }
        var ids = [UInt8](repeating: 0, count: bytes.count)
        for (i, byte) in bytes.enumerated() {
            let id = table[Int(byte)]
            if id < 0 {
                throw DataError("\(source): byte value \(byte) at offset \(i) is not in the vocabulary of \(count) byte values")
            }
            ids[i] = UInt8(id)
        }
        return ids
    }

    /// The bytes of `ids`.
    public func decode(_ ids: [Int32]) -> [UInt8] { ids.map { symbols[Int($0)] } }
}
