// Streaming text input: one split's text read in bounded, line-aligned chunks, whether it is
// a file, a member of a ZIP archive (inflated on the fly) or a byte range of a file. The
// WikiText-103 train split is 540 MB; nothing here ever holds more than a chunk of it plus the
// longest line.

import CZlib
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The text of one split: a file, a member of a ZIP archive, or a byte range of a file.
public struct TextSource: Sendable, CustomStringConvertible {
    /// Where the bytes come from.
    public enum Location: Sendable {
        /// A whole file.
        case file(URL)
        /// A member of a ZIP archive, inflated while it is read.
        case member(ZipArchive, ZipArchive.Member)
        /// Bytes `range` of a file (a split of a plain text file cut by position).
        case fileRange(URL, Range<Int>)
    }

    public let location: Location
    /// Length of the text in bytes.
    public let byteCount: Int

    /// A whole file; throws when it is missing or unreadable.
    public init(file url: URL) throws {
        var info = stat()
        guard stat(url.path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else {
            throw DataError("\(url.path): no such file")
        }
        location = .file(url)
        byteCount = Int(info.st_size)
    }

    /// A member of an archive.
    public init(archive: ZipArchive, member: ZipArchive.Member) {
        location = .member(archive, member)
        byteCount = member.uncompressedSize
    }

    /// Bytes `range` of the file at `url`.
    public init(file url: URL, range: Range<Int>) {
        location = .fileRange(url, range)
        byteCount = range.count
    }

    /// The path, `archive.zip:member`, or `path[start..<end]`, for messages.
    public var description: String {
        switch location {
        case .file(let url): url.path
        case .member(let archive, let member): "\(archive.url.path):\(member.name)"
        case .fileRange(let url, let range): "\(url.path)[bytes \(range.lowerBound)..<\(range.upperBound)]"
        }
    }

    /// Passes the raw bytes to `body` in blocks of at most `blockSize` (not line-aligned).
    public func forEachBlock(blockSize: Int = 1 << 20, _ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        switch location {
        case .member(let archive, let member):
            try archive.stream(member, chunkSize: blockSize, body)
        case .file(let url):
            try Self.readFile(url, range: nil, blockSize: blockSize, expectedCount: byteCount, body)
        case .fileRange(let url, let range):
            try Self.readFile(url, range: range, blockSize: blockSize, expectedCount: byteCount, body)
        }
    }

    /// Passes the text to `body` in chunks of at most `chunkSize` bytes (more only for a line
    /// longer than that) that end just after a line feed (the last chunk ends where the text
    /// ends), so no line is ever cut.
    public func forEachChunk(chunkSize: Int = 8 << 20, _ body: (UnsafeBufferPointer<UInt8>) throws -> Void) throws {
        let chunker = LineChunker(chunkSize: chunkSize)
        try forEachBlock(blockSize: min(chunkSize, 1 << 20)) { block in
            try chunker.append(block, body)
        }
        try chunker.finish(body)
    }

    /// CRC-32 of the text: from the archive's directory for a member (verified whenever the
    /// member is streamed), computed by reading otherwise.
    public func checksum() throws -> UInt32 {
        if case .member(_, let member) = location { return member.crc32 }
        var crc = CRC32()
        try forEachBlock(blockSize: 4 << 20) { crc.update($0) }
        return crc.value
    }

    static func readFile(
        _ url: URL, range: Range<Int>?, blockSize: Int, expectedCount: Int,
        _ body: (UnsafeRawBufferPointer) throws -> Void
    ) throws {
        let descriptor = open(url.path, O_RDONLY)
        guard descriptor >= 0 else {
            throw DataError("\(url.path): cannot open for reading (\(String(cString: strerror(errno))))")
        }
        defer { close(descriptor) }
        if let range, lseek(descriptor, off_t(range.lowerBound), SEEK_SET) < 0 {
            throw DataError("\(url.path): cannot seek to byte \(range.lowerBound)")
        }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: blockSize, alignment: 16)
        defer { buffer.deallocate() }
        var remaining = range?.count ?? Int.max
        var total = 0
        while remaining > 0 {
            let n = read(descriptor, buffer.baseAddress!, min(blockSize, remaining))
            if n < 0 {
                if errno == EINTR { continue }
                throw DataError("\(url.path): read failed (\(String(cString: strerror(errno))))")
            }
            if n == 0 { break }
            total += n
            remaining -= n
            try body(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
        }
        // A file that grows or shrinks while it is read would give a cache that matches
        // neither version.
        guard total == expectedCount else {
            throw DataError("\(url.path): read \(total) bytes, expected \(expectedCount); the file changed while it was read, run again")
        }
    }
}

/// Regroups arbitrary blocks of bytes into chunks that end just after a line feed.
final class LineChunker {
    let chunkSize: Int
    private var buffer: UnsafeMutablePointer<UInt8>
    private var capacity: Int
    private var filled = 0

    init(chunkSize: Int) {
        self.chunkSize = max(1, chunkSize)
        capacity = self.chunkSize + (1 << 20)
        buffer = .allocate(capacity: capacity)
    }

    deinit { buffer.deallocate() }

    /// Adds `block`; emits every complete chunk it finishes.
    func append(_ block: UnsafeRawBufferPointer, _ emit: (UnsafeBufferPointer<UInt8>) throws -> Void) throws {
        guard block.count > 0 else { return }
        if filled + block.count > capacity {
            // Only a line longer than the chunk can make the buffer grow.
            let grown = UnsafeMutablePointer<UInt8>.allocate(capacity: max(2 * capacity, filled + block.count))
            grown.update(from: buffer, count: filled)
            buffer.deallocate()
            buffer = grown
            capacity = max(2 * capacity, filled + block.count)
        }
        (buffer + filled).update(from: block.baseAddress!.assumingMemoryBound(to: UInt8.self), count: block.count)
        filled += block.count
        if filled >= chunkSize { try emitCompleteLines(emit) }
    }

    /// Emits whatever is left (a last line without a line feed included).
    func finish(_ emit: (UnsafeBufferPointer<UInt8>) throws -> Void) throws {
        if filled > 0 { try emit(UnsafeBufferPointer(start: buffer, count: filled)) }
        filled = 0
    }

    /// Emits chunks of at most `chunkSize` bytes, each ending at the last line feed within
    /// that size (or, for a longer line, at the line's end), while enough bytes are buffered.
    private func emitCompleteLines(_ emit: (UnsafeBufferPointer<UInt8>) throws -> Void) throws {
        var start = 0
        while filled - start >= chunkSize {
            var end = start + chunkSize
            while end > start && buffer[end - 1] != 0x0A { end -= 1 }
            if end == start {
                // A line longer than a chunk: emit it whole once its end has arrived.
                end = start + chunkSize
                while end < filled && buffer[end - 1] != 0x0A { end += 1 }
                guard buffer[end - 1] == 0x0A else { break }
            }
            try emit(UnsafeBufferPointer(start: buffer + start, count: end - start))
            start = end
        }
        let rest = filled - start
        if start > 0 && rest > 0 { buffer.update(from: buffer + start, count: rest) }
        filled = rest
    }
}

/// Reads a file descriptor (standard input) in line-aligned chunks, as
/// ``TextSource/forEachChunk(chunkSize:_:)`` does for files.
public enum LineChunks {
    /// Calls `body` with line-aligned chunks of at most `chunkSize` bytes until end of input.
    public static func read(
        descriptor: Int32, name: String, chunkSize: Int = 4 << 20,
        _ body: (UnsafeBufferPointer<UInt8>) throws -> Void
    ) throws {
        let chunker = LineChunker(chunkSize: chunkSize)
        let block = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { block.deallocate() }
        while true {
            let n = Glibc.read(descriptor, block.baseAddress!, block.count)
            if n < 0 {
                if errno == EINTR { continue }
                throw DataError("\(name): read failed (\(String(cString: strerror(errno))))")
            }
            if n == 0 { break }
            try chunker.append(UnsafeRawBufferPointer(rebasing: block[0..<n]), body)
        }
        try chunker.finish(body)
    }
}

/// CRC-32 (zlib's, as ZIP archives use), for identifying source texts and checking caches.
public struct CRC32: Sendable {
    /// The CRC-32 of everything added so far.
    public private(set) var value: UInt32 = 0

    public init() {}

    /// Adds `bytes`.
    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard var p = bytes.baseAddress?.assumingMemoryBound(to: Bytef.self) else { return }
        var remaining = bytes.count
        var crc = uLong(value)
        // zlib takes 32-bit lengths.
        while remaining > 0 {
            let n = min(remaining, 1 << 30)
            crc = crc32(crc, p, uInt(n))
            p += n
            remaining -= n
        }
        value = UInt32(crc)
    }

    /// The CRC-32 of `bytes`.
    public static func of(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        var crc = CRC32()
        crc.update(bytes)
        return crc.value
    }
}
