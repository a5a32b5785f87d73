import CZlib
import Foundation

/// Reads members of a ZIP archive (stored or deflated) by name, streaming the deflated data
/// through zlib's raw inflate and checking each member's CRC-32 and size.
///
/// Only what the official corpus archives use is supported: no encryption, no ZIP64, no
/// multi-disk archives. Any other layout is reported as an error naming the archive.
public struct ZipArchive: Sendable {
    /// One entry of the central directory.
    public struct Member: Sendable {
        public let name: String
        public let method: UInt16
        public let crc32: UInt32
        public let compressedSize: Int
        public let uncompressedSize: Int
        let localHeaderOffset: Int
    }

    public let url: URL
    public let members: [Member]

    public init(url: URL) throws {
        self.url = url
        guard let handle = FileHandle(forReadingAtPath: url.path) else {
            throw DataError("\(url.path): cannot open the archive (missing or unreadable)")
        }
        defer { try? handle.close() }
        let size = Int(try handle.seekToEnd())
        // The end-of-central-directory record is in the last 64 KiB + 22 bytes.
        let tailLength = min(size, 65_557)
        try handle.seek(toOffset: UInt64(size - tailLength))
        let tail = [UInt8](try handle.read(upToCount: tailLength) ?? Data())
        guard let eocd = Self.findEndOfCentralDirectory(tail) else {
            throw DataError("\(url.path): not a ZIP archive or truncated (no end-of-central-directory record); download it again")
        }
        let entryCount = Int(tail.le16(eocd + 10))
        let directorySize = Int(tail.le32(eocd + 12))
        let directoryOffset = Int(tail.le32(eocd + 16))
        guard directoryOffset + directorySize <= size else {
            throw DataError("\(url.path): truncated ZIP archive (central directory past end of file); download it again")
        }
        try handle.seek(toOffset: UInt64(directoryOffset))
        let directory = [UInt8](try handle.read(upToCount: directorySize) ?? Data())
        guard directory.count == directorySize else {
            throw DataError("\(url.path): truncated ZIP archive; download it again")
        }
        var members: [Member] = []
        var p = 0
        for _ in 0..<entryCount {
            guard p + 46 <= directory.count, directory.le32(p) == 0x0201_4b50 else {
                throw DataError("\(url.path): corrupt ZIP central directory; download it again")
            }
            let nameLength = Int(directory.le16(p + 28))
            let extraLength = Int(directory.le16(p + 30))
            let commentLength = Int(directory.le16(p + 32))
            guard p + 46 + nameLength <= directory.count else {
                throw DataError("\(url.path): corrupt ZIP central directory; download it again")
            }
            let name = String(decoding: directory[(p + 46)..<(p + 46 + nameLength)], as: UTF8.self)
            members.append(
                Member(
                    name: name, method: directory.le16(p + 10), crc32: directory.le32(p + 16),
                    compressedSize: Int(directory.le32(p + 20)),
                    uncompressedSize: Int(directory.le32(p + 24)),
                    localHeaderOffset: Int(directory.le32(p + 42))))
            p += 46 + nameLength + extraLength + commentLength
        }
        self.members = members
    }

    static func findEndOfCentralDirectory(_ bytes: [UInt8]) -> Int? {
        guard bytes.count >= 22 else { return nil }
        var i = bytes.count - 22
        while i >= 0 {
            if bytes.le32(i) == 0x0605_4b50 { return i }
            i -= 1
        }
        return nil
    }

    /// The member whose path is `name` or ends with `/name`.
    public func member(named name: String) -> Member? {
        members.first { $0.name == name || $0.name.hasSuffix("/" + name) }
    }

    /// Streams the member's uncompressed bytes to `body` in chunks, then verifies size and
    /// CRC-32. When `body` throws, the rest of the member is still inflated (not passed on) to
    /// check it: a damaged member is reported as such, not as whatever its garbled bytes made
    /// `body` throw (invalid UTF-8, say); an intact member rethrows `body`'s error.
    public func stream(
        _ member: Member, chunkSize: Int = 1 << 20, _ body: (UnsafeRawBufferPointer) throws -> Void
    ) throws {
        var bodyError: (any Error)?
        try inflateAndCheck(member, chunkSize: chunkSize) { buffer in
            guard bodyError == nil else { return }
            do { try body(buffer) } catch { bodyError = error }
        }
        if let bodyError { throw bodyError }
    }

    /// "ARCHIVE: member M is damaged (WHY); download the archive again".
    func damaged(_ member: Member, _ reason: String) -> DataError {
        DataError("\(url.path): member \(member.name) is damaged (\(reason)); download the archive again")
    }

    /// Every uncompressed byte of `member` to `emit`, then the size and CRC-32 checks.
    private func inflateAndCheck(
        _ member: Member, chunkSize: Int, _ emit: (UnsafeRawBufferPointer) -> Void
    ) throws {
        guard let handle = FileHandle(forReadingAtPath: url.path) else {
            throw DataError("\(url.path): cannot open the archive")
        }
        defer { try? handle.close() }
        try handle.seek(toOffset: UInt64(member.localHeaderOffset))
        let header = [UInt8](try handle.read(upToCount: 30) ?? Data())
        guard header.count == 30, header.le32(0) == 0x0403_4b50 else {
            throw damaged(member, "no local header at offset \(member.localHeaderOffset)")
        }
        let dataOffset = member.localHeaderOffset + 30 + Int(header.le16(26)) + Int(header.le16(28))
        try handle.seek(toOffset: UInt64(dataOffset))

        var crc = crc32(0, nil, 0)
        var produced = 0
        var remaining = member.compressedSize
        func pass(_ buffer: UnsafeRawBufferPointer) {
            crc = crc32(crc, buffer.baseAddress?.assumingMemoryBound(to: Bytef.self), uInt(buffer.count))
            produced += buffer.count
            emit(buffer)
        }
        func readCompressed() throws -> Data {
            let n = min(remaining, chunkSize)
            let data = try handle.read(upToCount: n) ?? Data()
            if data.count < n { throw damaged(member, "its data ends early: the archive is truncated") }
            remaining -= n
            return data
        }

        switch member.method {
        case 0:
            while remaining > 0 {
                let data = try readCompressed()
                data.withUnsafeBytes { pass($0) }
            }
        case 8:
            var stream = z_stream()
            guard inflateInit2_(&stream, -MAX_WBITS, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
                throw DataError("zlib inflateInit failed")
            }
            defer { inflateEnd(&stream) }
            var output = [UInt8](repeating: 0, count: chunkSize)
            var finished = false
            while !finished {
                if remaining == 0 && stream.avail_in == 0 {
                    throw damaged(member, "the deflate data ends before its last block")
                }
                var input = try readCompressed()
                try input.withUnsafeMutableBytes { inBuffer in
                    stream.next_in = inBuffer.baseAddress?.assumingMemoryBound(to: Bytef.self)
                    stream.avail_in = uInt(inBuffer.count)
                    repeat {
                        let status = output.withUnsafeMutableBytes { outBuffer -> Int32 in
                            stream.next_out = outBuffer.baseAddress?.assumingMemoryBound(to: Bytef.self)
                            stream.avail_out = uInt(outBuffer.count)
                            return inflate(&stream, Z_NO_FLUSH)
                        }
                        let have = chunkSize - Int(stream.avail_out)
                        if have > 0 { output.withUnsafeBytes { pass(UnsafeRawBufferPointer(rebasing: $0[0..<have])) } }
                        if status == Z_STREAM_END {
                            finished = true
                            break
                        }
                        if status != Z_OK && status != Z_BUF_ERROR {
                            let reason = stream.msg.map { String(cString: $0) } ?? "zlib status \(status)"
                            throw damaged(member, "deflate data: \(reason)")
                        }
                        if status == Z_BUF_ERROR && stream.avail_in == 0 { break }
                    } while stream.avail_out == 0 || stream.avail_in > 0
                }
            }
        default:
            throw DataError("\(url.path): member \(member.name) uses compression method \(member.method); only stored and deflate are supported")
        }
        guard produced == member.uncompressedSize else {
            throw damaged(member, "it inflates to \(produced) bytes, the archive's directory says \(member.uncompressedSize)")
        }
        guard UInt32(crc) == member.crc32 else {
            throw damaged(member, "CRC-32 mismatch")
        }
    }

    /// The whole member in memory.
    public func read(_ member: Member) throws -> [UInt8] {
        var bytes: [UInt8] = []
        // Deflate expands at most 1032-fold: a damaged directory cannot make this reserve more.
        bytes.reserveCapacity(min(member.uncompressedSize, 1032 * member.compressedSize + 64))
        try stream(member) { bytes.append(contentsOf: $0) }
        return bytes
    }
}

extension [UInt8] {
    func le16(_ i: Int) -> UInt16 { UInt16(self[i]) | UInt16(self[i + 1]) << 8 }
    func le32(_ i: Int) -> UInt32 {
        UInt32(self[i]) | UInt32(self[i + 1]) << 8 | UInt32(self[i + 2]) << 16 | UInt32(self[i + 3]) << 24
    }
}
